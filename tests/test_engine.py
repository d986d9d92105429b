"""The shared training engine: exact resume, EMA, LR schedule, atomic checkpoints."""

import numpy as np
import pytest
import torch

from srbench.engine import CHECKPOINT, PatchSampler, TrainConfig, Trainer, _lr_lambda
from srbench.method import SlicePairs


def _pairs(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.random((n, size, size), dtype=np.float32)
    return SlicePairs(lr=(hr * 0.5).astype(np.float32), hr=hr, case_ids=["c"] * n)


def _model():
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))


def _loss(model, batch):
    lr, hr = batch
    return torch.nn.functional.mse_loss(model(lr), hr), {}


def _trainer(workdir, steps, **kw):
    cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=3, **kw)
    sampler = PatchSampler(_pairs(), patch=16, batch_size=4, seed=7, min_foreground=0.0)
    return Trainer(_model(), _loss, sampler, cfg, workdir, torch.device("cpu"))


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_goes_down(tmp_path):
    trainer = _trainer(tmp_path, steps=60, ema_decay=None)
    batch = PatchSampler(_pairs(seed=1), patch=16, batch_size=8, seed=3, min_foreground=0.0)()
    with torch.no_grad():
        before = float(_loss(trainer.model, batch)[0])
    record = trainer.fit()
    with torch.no_grad():
        after = float(_loss(trainer.model, batch)[0])
    assert record["steps"] == 60 and after < 0.5 * before


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight = _trainer(tmp_path / "a", steps=10)
    straight.fit()
    # Interrupt after 5 steps (max_seconds=0 stops after the first step, so run step by step).
    part = _trainer(tmp_path / "b", steps=10)
    for _ in range(5):
        part.train_step()
    part.save_checkpoint()
    del part
    resumed = _trainer(tmp_path / "b", steps=10)
    record = resumed.fit()
    assert record["resumed_from_step"] == 5 and record["steps"] == 10
    assert _same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert _same_state(straight.ema.state_dict(), resumed.ema.state_dict())
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)


def test_max_seconds_stops_with_a_checkpoint_and_a_rerun_finishes(tmp_path):
    first = _trainer(tmp_path, steps=20, max_seconds=1e-9).fit()
    assert not first["finished"] and first["steps"] == 1
    assert (tmp_path / CHECKPOINT).exists()
    second = _trainer(tmp_path, steps=20).fit()
    assert second["finished"] and second["steps"] == 20 and second["resumed_from_step"] == 1


def test_ema_differs_from_raw_weights_and_is_used_for_inference(tmp_path):
    trainer = _trainer(tmp_path, steps=8, ema_decay=0.9)
    trainer.fit()
    raw, ema = trainer.model.state_dict(), trainer.inference_model().state_dict()
    assert not _same_state(raw, ema)
    assert trainer.inference_model() is trainer.ema.module


def test_warmup_then_cosine_schedule():
    f = _lr_lambda(TrainConfig(steps=110, warmup_steps=10, min_lr_ratio=0.0))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)


def test_patch_sampler_prefers_tissue_and_is_reproducible():
    pairs = _pairs(n=3, size=64)
    pairs.hr[:, :, :48] = 0  # tissue only in the right quarter
    a = PatchSampler(pairs, 16, 8, seed=1, min_foreground=0.5)
    b = PatchSampler(pairs, 16, 8, seed=1, min_foreground=0.5)
    lr_a, hr_a = a()
    lr_b, hr_b = b()
    assert torch.equal(hr_a, hr_b) and hr_a.shape == (8, 1, 16, 16)
    assert ((hr_a > 0).float().mean(dim=(1, 2, 3)) >= 0.5).all()


def test_ema_warm_up_forgets_the_first_steps():
    from srbench.engine import _ema, ema_decay_at

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 100_000) == 0.999
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = _ema(model, 0.999)
    ema.update_parameters(model)  # the first update copies the weights after the first step (here 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(999):
        ema.update_parameters(model)
    # Expected: the product of the per-update decays is what remains of the first step's 0.
    remaining = 1.0
    for n in range(1, 1000):
        remaining *= ema_decay_at(0.999, n)
    assert float(ema.module.weight.detach()) == pytest.approx(1.0 - remaining, abs=1e-5)
    assert float(ema.module.weight.detach()) > 0.98  # a fixed 0.999 would give ~0.63


def test_restarts_follow_each_earlier_schedule_to_its_end():
    f = _lr_lambda(TrainConfig(steps=300, warmup_steps=10, min_lr_ratio=0.0, restarts=(110,)))
    plain = _lr_lambda(TrainConfig(steps=110, warmup_steps=10, min_lr_ratio=0.0))
    assert all(f(s) == pytest.approx(plain(s)) for s in range(111))  # the first leg ends at its minimum
    assert f(111) > 0.5  # then the LR jumps back up: the longer schedule's value at step 111
    assert f(111) == pytest.approx(_lr_lambda(TrainConfig(steps=300, warmup_steps=10, min_lr_ratio=0.0))(111))
    with pytest.raises(ValueError, match="restarts"):
        _lr_lambda(TrainConfig(steps=100, warmup_steps=10, restarts=(100,)))


def test_extending_a_finished_run_equals_the_restarts_schedule_in_one_go(tmp_path):
    # What a shipped checkpoint's record relies on: train 6 steps, resume the finished run to 12; the same as
    # one uninterrupted 12-step run that names 6 as a restart.
    _trainer(tmp_path / "legs", steps=6).fit()
    extended = _trainer(tmp_path / "legs", steps=12)
    assert extended.fit()["resumed_from_step"] == 6
    at_once = _trainer(tmp_path / "once", steps=12, restarts=(6,))
    at_once.fit()
    assert _same_state(extended.model.state_dict(), at_once.model.state_dict())
    assert _same_state(extended.ema.state_dict(), at_once.ema.state_dict())
    plain = _trainer(tmp_path / "plain", steps=12)
    plain.fit()
    assert not _same_state(plain.model.state_dict(), at_once.model.state_dict())  # the restart does matter


def test_a_shorter_steps_override_drops_the_restarts_past_it(monkeypatch, tmp_path):
    from srbench import runner, training
    from srbench_plugins.res_srdiff import PRESETS

    # a preset whose schedule restarts (as an extended run's does); a shorter run must keep only the earlier ones
    monkeypatch.setitem(PRESETS["tiny"]["train"], "restarts", (1000, 3000, 6000))
    monkeypatch.setitem(PRESETS["tiny"]["train"], "steps", 13_000)
    seen = {}

    def fake_fit(self, train, val, workdir):
        seen.update(self.settings["train"])
        raise SystemExit

    monkeypatch.setattr("srbench_plugins.res_srdiff.ResSRDiff.fit", fake_fit)
    monkeypatch.setattr(training, "training_pairs", lambda *a, **k: None)
    with pytest.raises(SystemExit):
        training.train(runner.RunOptions(method="res-srdiff", dataset="demo", device="cpu"), tmp_path / "w.safetensors",
                     steps=2000)
    assert seen["steps"] == 2000 and seen["restarts"] == (1000,)
