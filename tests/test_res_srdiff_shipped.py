"""The shipped res-srdiff demo checkpoint: its training record, its leaderboard row, and that it reproduces it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srbench.method import sha256_file
from srbench.plugins import get_registry
from srbench.runner import make_dataset, make_degradation, prepare
from srbench.scoring import score_arrays
from srbench_plugins.res_srdiff import PRESETS, ResSRDiff

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "plugins" / "res_srdiff" / "weights" / "demo-tiny.safetensors"
BOARD = ROOT / "leaderboards" / "demo" / "brain-t1map"


def _json(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as records store them


def _latest(method: str) -> tuple[dict, Path]:
    runs = [(json.loads(p.read_text(encoding="utf-8")), p.parent) for p in (BOARD / method).glob("*/record.json")]
    assert runs, f"no committed {method} run"
    return max(runs, key=lambda r: r[0]["finished_at"])


def test_the_training_record_describes_these_weights_and_the_tiny_preset():
    record = json.loads(WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["weights_sha256"] == sha256_file(WEIGHTS)
    assert record["split_hash"] == make_dataset("demo").manifest().hash  # trained on today's demo split
    settings, preset = record["method_card"]["settings"], PRESETS["tiny"]
    for key in ("network", "diffusion", "sample_steps", "head", "input_interpolator", "patch"):
        assert settings[key] == _json(preset[key]), key
    config, train = record["training"]["config"], preset["train"]
    for key in ("steps", "restarts", "batch_size", "lr", "warmup_steps", "ema_decay", "optimizer"):
        assert config[key] == _json(train[key]), key  # `srbench train` with the preset follows the same schedule
    assert record["training"]["finished"] and record["training"]["inference_weights"] == "EMA"


def test_the_leaderboard_row_is_the_shipped_checkpoint_and_beats_bicubic():
    ours, _ = _latest("res-srdiff")
    bicubic, _ = _latest("bicubic")
    assert ours["weights"]["source"] == "shipped" and ours["weights"]["sha256"] == sha256_file(WEIGHTS)
    assert ours["method_card"]["sampling_steps"] == 4 and ours["n_slices"] == bicubic["n_slices"]
    mean = {name: {m: r["summary"]["per_slice"][m]["mean"] for m in ("psnr", "ssim", "gmsd")}
            for name, r in (("ours", ours), ("bicubic", bicubic))}
    assert mean["ours"]["psnr"] > mean["bicubic"]["psnr"]
    assert mean["ours"]["ssim"] > mean["bicubic"]["ssim"]
    assert mean["ours"]["gmsd"] < mean["bicubic"]["gmsd"]


def test_the_shipped_checkpoint_reproduces_its_committed_scores():
    record, run_dir = _latest("res-srdiff")
    committed = pd.read_csv(run_dir / "scores.csv")
    dataset = make_dataset("demo")
    _, degradation = make_degradation(dataset.default_degradation)
    case = next(iter(dataset.cases("test")))
    p = prepare(case, degradation, record["config"]["seed"])
    method = ResSRDiff(preset="tiny", device="cpu", seed=record["config"]["seed"])
    method.load(WEIGHTS)
    first = p.slices[:method.batch_size]  # the run's first batch: same slices, same noise draws
    sr = method.predict_volume(p.lr, p.hr, first)
    metrics = [m for m in get_registry().metrics.values() if m.name in ("psnr", "ssim", "gmsd")]
    scores = score_arrays(sr, p.hr_array[first], metrics, mask=p.mask[first])
    rows = committed[committed["case"] == case.case_id].set_index("slice").loc[first]
    for name, values in scores.values.items():
        np.testing.assert_allclose(values, rows[name].to_numpy(), rtol=0, atol=1e-3 if name == "psnr" else 1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("method", ["res-srdiff", "bicubic", "pix2pix", "cyclegan", "tm-ddpm"])
def test_every_demo_method_has_a_committed_run(method):
    record, _ = _latest(method)
    assert record["status"] == "finished" and record["n_slices"] == 32
