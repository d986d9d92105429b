"""What the baselines share: the engine's MultiTrainer (GANs), the linear LR policy, EMA of integer buffers, and
the padding/canvas/weights helpers."""

import numpy as np
import pytest
import torch

from srbench.engine import CHECKPOINT, MultiTrainer, PatchSampler, TrainConfig, _ema, _lr_lambda
from srbench.method import SlicePairs
from srbench.torch_method import canvas_pairs, crop, pad_center


pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs(n=4, size=24, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.random((n, size, size), dtype=np.float32)
    return SlicePairs(lr=(0.5 * hr).astype(np.float32), hr=hr, case_ids=["c"] * n)


class Counter:
    """A stateful helper (like an image pool) that must survive a checkpoint."""

    def __init__(self):
        self.calls, self.last = 0, torch.zeros(2)

    def state_dict(self):
        return {"calls": self.calls, "last": self.last.clone()}

    def load_state_dict(self, state):
        self.calls, self.last = state["calls"], state["last"].clone()


def _gan(workdir, steps=10, **kw):
    torch.manual_seed(5)
    G = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Dropout(0.3), torch.nn.Conv2d(4, 1, 3, padding=1))
    D = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 4, stride=2), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))
    counter = Counter()

    def step_fn(m, batch, update):
        lr, hr = batch
        fake = m["G"](lr)
        loss_d = torch.nn.functional.softplus(m["D"](fake.detach())).mean() + \
            torch.nn.functional.softplus(-m["D"](hr)).mean()
        update("D", loss_d)
        loss_g = torch.nn.functional.softplus(-m["D"](fake)).mean() + 10 * (fake - hr).abs().mean()
        update("G", loss_g)
        counter.calls += 1
        counter.last = torch.stack([loss_d.detach(), loss_g.detach()])
        return {"D": loss_d, "G": loss_g}

    cfg = TrainConfig(steps=steps, batch_size=3, optimizer="adam", lr=1e-2, betas=(0.5, 0.999), schedule="linear",
                      ema_decay=0.9, grad_clip=None, checkpoint_every=3, **kw)
    sampler = PatchSampler(_pairs(), 16, 3, seed=1, min_foreground=0.0)
    return MultiTrainer({"G": G, "D": D}, {"D": ["D"], "G": ["G"]}, step_fn, sampler, cfg, workdir,
                        torch.device("cpu"), ema=["G"], extra_state={"counter": counter}), counter


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_multitrainer_resumes_exactly(tmp_path):
    straight, _ = _gan(tmp_path / "a")
    record = straight.fit()
    assert record["finished"] and record["steps"] == 10
    first, _ = _gan(tmp_path / "b", max_seconds=1e-9)
    assert first.fit()["steps"] == 1 and (tmp_path / "b" / CHECKPOINT).exists()
    resumed, counter = _gan(tmp_path / "b")
    record = resumed.fit()
    assert record["resumed_from_step"] == 1 and record["steps"] == 10 and counter.calls == 10
    for name in ("G", "D"):
        assert _same(straight.models[name].state_dict(), resumed.models[name].state_dict())
    assert _same(straight.emas["G"].state_dict(), resumed.emas["G"].state_dict())
    assert _same(straight.optimizers["G"].state_dict()["state"][0], resumed.optimizers["G"].state_dict()["state"][0])
    assert resumed.inference_model("G") is resumed.emas["G"].module
    assert resumed.inference_model("D") is resumed.models["D"]
    assert isinstance(record["loss_history"][-1][1], dict) and set(record["loss_history"][-1][1]) == {"D", "G"}


def test_each_update_touches_only_its_group(tmp_path):
    trainer, _ = _gan(tmp_path)
    d_before = {k: v.clone() for k, v in trainer.models["D"].state_dict().items()}
    g_before = {k: v.clone() for k, v in trainer.models["G"].state_dict().items()}
    batch = trainer.sampler()
    fake = trainer.models["G"](batch[0])
    trainer._update("G", (fake - batch[1]).abs().mean() + trainer.models["D"](fake).mean())
    assert _same(d_before, trainer.models["D"].state_dict())  # D took part in the loss but was not updated
    assert not _same(g_before, trainer.models["G"].state_dict())
    assert all(p.grad is None for p in trainer.models["D"].parameters())


def test_a_step_must_update_every_group(tmp_path):
    trainer, _ = _gan(tmp_path)
    trainer.step_fn = lambda m, batch, update: (update("G", m["G"](batch[0]).mean()), {})[1]
    with pytest.raises(RuntimeError, match="did not update"):
        trainer.train_step()


def test_linear_policy_is_constant_then_decays_to_zero():
    f = _lr_lambda(TrainConfig(steps=200, schedule="linear", decay_start=0.5, min_lr_ratio=0.0))
    assert f(0) == f(99) == f(100) == 1.0
    assert f(150) == pytest.approx(0.5) and f(200) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        _lr_lambda(TrainConfig(schedule="step"))


def test_ema_copies_integer_buffers():
    model = torch.nn.Linear(2, 2)
    model.register_buffer("index", torch.tensor([3, 7, 11]))
    ema = _ema(model, 0.999)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update_parameters(model)
    assert torch.equal(ema.module.index, torch.tensor([3, 7, 11])) and ema.module.index.dtype == torch.long
    assert not torch.equal(ema.module.weight, model.weight)


def test_padding_to_a_multiple_and_back_and_training_canvases():
    x = torch.rand(2, 1, 233, 197)
    padded, box = pad_center(x, 64, value=-1.0)
    assert padded.shape[-2:] == (256, 256) and torch.equal(crop(padded, box), x)
    assert float(padded[0, 0, 0, 0]) == -1.0
    canvas = canvas_pairs(_pairs(n=2, size=20), 32, 4)
    assert canvas.hr.shape == (2, 36, 36) and float(canvas.hr.sum()) == pytest.approx(float(_pairs(n=2, size=20).hr.sum()))
