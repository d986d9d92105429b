"""The res-srdiff method plugin: inference contract, weights, seeding, official checkpoints, training resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import srbench_plugins.res_srdiff as rs
from srbench.errors import SRBenchError

MICRO = {
    **rs.PRESETS["tiny"],
    "network": dict(image_size=32, in_channels=1, out_channels=1, model_channels=32, num_res_blocks=[1, 1],
                    attention_resolutions=(16,), channel_mult=(1, 2), lq_size=32),
    "train": dict(steps=4, batch_size=2, lr=1e-3, warmup_steps=0, ema_decay=0.9, checkpoint_every=2),
    "patch": 32,
}


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(rs.ResSRDiff.presets, "micro", MICRO)
    return lambda seed=0: rs.ResSRDiff(preset="micro", device="cpu", seed=seed)


def _lr(n=2, h=37, w=29):
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(1))


def test_output_shape_range_dtype_on_sizes_that_need_padding(micro):
    out = micro().predict_slices(_lr(), torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 37, 29) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_same_seed_same_output_other_seed_differs(micro):
    m = micro()
    a = m.predict_slices(_lr(), torch.Generator().manual_seed(3))
    b = m.predict_slices(_lr(), torch.Generator().manual_seed(3))
    c = m.predict_slices(_lr(), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_load_round_trip_gives_identical_predictions(micro, tmp_path):
    a = micro(seed=0)
    a.save(tmp_path / "w.safetensors")
    torch.manual_seed(99)  # a different random init, overwritten by load
    b = micro(seed=0)
    b.load(tmp_path / "w.safetensors")
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(a.predict_slices(_lr(), g()), b.predict_slices(_lr(), g()))


def test_official_pth_checkpoint_loads_with_module_prefix_and_plain_head(micro, tmp_path):
    a = micro()
    state = {"module." + k: v for k, v in a.net.state_dict().items()}
    torch.save({"model_state_dict": state, "epoch": 3}, tmp_path / "official.pth")
    b = micro()
    b.load(tmp_path / "official.pth")
    assert b.head == "plain"  # official checkpoints predict x0 directly
    assert all(torch.equal(v, b.net.state_dict()[k]) for k, v in a.net.state_dict().items())


def test_weights_of_another_architecture_are_refused_in_one_line(micro, tmp_path):
    rs.ResSRDiff(preset="tiny").save(tmp_path / "tiny.safetensors")
    with pytest.raises(SRBenchError, match="do not fit res-srdiff preset 'micro'"):
        micro().load(tmp_path / "tiny.safetensors")


def test_residual_head_adds_the_condition(micro):
    m = micro()
    x, y, t = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), torch.tensor([2])
    with torch.no_grad():
        plain = m.net(x, t, lq=y)
        assert torch.allclose(m.model_fn(m.net)(x, t, y), y + plain)
        m.head = "plain"
        assert torch.equal(m.model_fn(m.net)(x, t, y), plain)


def test_card_records_steps_head_and_respacing():
    card = rs.ResSRDiff(preset="tiny-t15").card()
    assert card["training_steps_T"] == 15 and card["sampling_steps"] == 4
    assert card["head"] == "residual" and card["shift_mask"] == "official"
    assert card["head_formula"] == "x0 = y + g(x_t, t, y)" and card["input_interpolator"] == "bspline"
    # untrained: the card says the loss is the preset's, not one that ran
    assert card["loss"].startswith("4 x MSE") and card["loss_source"].startswith("the preset")
    official = rs.ResSRDiff(preset="tiny").card()
    assert official["training_steps_T"] == 4 and official["parameters"] == 4_055_791


def test_fit_returns_a_training_record_and_leaves_a_checkpoint(micro, tmp_path):
    from srbench.method import SlicePairs

    hr = torch.rand(4, 48, 48, generator=torch.Generator().manual_seed(2)).numpy()
    pairs = SlicePairs(lr=hr * 0.8, hr=hr, case_ids=["c"] * 4)
    m = micro()
    m.settings["train"]["steps"] = 6
    record = m.fit(pairs, None, tmp_path / "work")
    assert record["steps"] == 6 and "UNAVAILABLE" in (record["lpips"] or "UNAVAILABLE")
    assert record["inference_weights"] == "EMA" and (tmp_path / "work" / "checkpoint.pt").exists()


def test_killed_training_resumes_to_the_target_step(tmp_path):
    """SIGKILL `srbench train` after its first checkpoint; the same command resumes and finishes."""
    exe = Path(sys.executable).parent / "srbench"
    work, out = tmp_path / "work", tmp_path / "w.safetensors"
    cmd = [str(exe), "train", "-m", "res-srdiff", "-d", "demo", "--device", "cpu", "--steps", "40",
           "--checkpoint-every", "1", "--output", str(out), "--workdir", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (work / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(work / "checkpoint.pt", weights_only=True)["step"]
    assert 1 <= step < 40 and not out.exists()
    cmd[cmd.index("40")] = str(step + 2)  # finish quickly: two more steps
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-500:]
    record = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["training"]["resumed_from_step"] == step and record["training"]["steps"] == step + 2


def test_pretrained_only_skips_instead_of_training(monkeypatch, tmp_path):
    from srbench.runner import RunOptions, run

    monkeypatch.setattr(rs.ResSRDiff, "shipped_checkpoint", classmethod(lambda cls, dataset, preset: None))
    monkeypatch.setattr(rs.ResSRDiff, "fit", lambda *a, **k: pytest.fail("must not train"))
    out_dir, ran = run(RunOptions(method="res-srdiff", dataset="demo", results_dir=tmp_path, pretrained_only=True))
    assert out_dir is None and not ran and not any(tmp_path.iterdir())
