"""The shipped tiny demo checkpoints: one shared budget, chosen on validation, no test scores in their training
records, cards that say what ran, committed leaderboard rows that are these weights and reproduce."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srbench import budget
from srbench.method import sha256_file
from srbench.plugins import get_registry, lookup
from srbench.runner import make_dataset, make_degradation, prepare
from srbench.scoring import score_arrays

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "leaderboards" / "demo" / "brain-t1map"
LEARNED = {"res-srdiff": "res_srdiff", "pix2pix": "pix2pix", "cyclegan": "cyclegan", "tm-ddpm": "tm_ddpm"}


def _weights(method: str) -> Path:
    return ROOT / "plugins" / LEARNED[method] / "weights" / "demo-tiny.safetensors"


def _training_record(method: str) -> dict:
    return json.loads(_weights(method).with_suffix(".json").read_text(encoding="utf-8"))


def _json(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as records store them


def _latest(method: str) -> tuple[dict, Path]:
    runs = [(json.loads(p.read_text(encoding="utf-8")), p.parent) for p in (BOARD / method).glob("*/record.json")]
    assert runs, f"no committed {method} run"
    return max(runs, key=lambda r: r[0]["finished_at"])


def _keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_the_training_record_describes_these_weights_and_the_tiny_preset(method):
    record = _training_record(method)
    assert record["weights_sha256"] == sha256_file(_weights(method))
    assert record["split_hash"] == make_dataset("demo").manifest().hash  # trained on today's demo split
    preset = lookup("methods", method).presets["tiny"]
    config = record["training"]["config"]
    for key in ("steps", "batch_size", "lr", "optimizer", "val_every", "val_metric", "val_slices"):
        assert config[key] == _json(preset["train"][key]), key  # `srbench train` with the preset does the same
    assert record["method_card"]["settings"]["patch"] == preset["patch"] == budget.TINY.patch
    assert record["training"]["finished"]


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_weights_were_chosen_on_validation_and_no_test_score_was_seen(method):
    training = _training_record(method)["training"]
    val = training["validation"]
    assert val["split"] == "val" and val["metric"] == budget.TINY.val_metric and val["every"] == budget.TINY.val_every
    steps = [step for step, _ in val["curve"]]
    assert steps == list(range(budget.TINY.val_every, budget.TINY.steps + 1, budget.TINY.val_every))
    best = max(val["curve"], key=lambda sv: sv[1])
    assert val["best_step"] == best[0] and val["best_value"] == pytest.approx(best[1])
    assert not any("test" in key.lower() for key in _keys(training))


def test_every_learned_checkpoint_saw_the_same_budget():
    budgets = {m: _training_record(m)["training"]["budget"] for m in LEARNED}
    for method, spent in budgets.items():
        assert (spent["samples_seen"], spent["patch"], spent["batch_size"]) == \
            (budget.TINY.samples, budget.TINY.patch, budget.TINY.batch_size), method
        assert spent["wall_seconds"] > 0 and spent["device"]


def test_the_cards_state_the_loss_that_ran():
    trained = _training_record("res-srdiff")
    assert "LPIPS term dropped" in trained["training"]["loss"]
    row, _ = _latest("res-srdiff")  # the committed run's card: what ran, from the weights' training record
    card = row["method_card"]
    assert "LPIPS term dropped" in card["loss"] and card["loss_source"].startswith("the training record")
    assert card["head"] == "residual" and card["head_formula"] == "x0 = y + g(x_t, t, y)"
    assert card["input_interpolator"] == "bspline" and card["budget"]["samples_seen"] == budget.TINY.samples


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_the_leaderboard_row_is_the_shipped_checkpoint(method):
    row, _ = _latest(method)
    assert row["weights"]["source"] == "shipped" and row["weights"]["sha256"] == sha256_file(_weights(method))
    assert row["method_card"]["budget"]["samples_seen"] == budget.TINY.samples


def test_the_shipped_res_srdiff_checkpoint_reproduces_its_committed_scores():
    from srbench_plugins.res_srdiff import ResSRDiff

    record, run_dir = _latest("res-srdiff")
    committed = pd.read_csv(run_dir / "scores.csv")
    dataset = make_dataset("demo")
    _, degradation = make_degradation(dataset.default_degradation)
    case = next(iter(dataset.cases("test")))
    p = prepare(case, degradation, record["config"]["seed"])
    method = ResSRDiff(preset="tiny", device="cpu", seed=record["config"]["seed"])
    method.load(_weights("res-srdiff"))
    recorded = record["method_card"]["settings"]["inference"]["precision"]
    if method.settings["inference"]["precision"] != recorded:
        pytest.skip(f"the committed run sampled in {recorded}, which this machine does not compute natively")
    # the run's first four slices at the run's batch size: each slice draws the same noise as in the run
    method.batch_size = record["config"]["batch_size"]
    first = p.slices[:4]
    sr = method.predict_volume(p.lr, p.hr, first)
    metrics = [m for m in get_registry().metrics.values() if m.name in ("psnr", "ssim", "gmsd")]
    scores = score_arrays(sr, p.hr_array[first], metrics, mask=p.mask[first])
    rows = committed[committed["case"] == case.case_id].set_index("slice").loc[first]
    for name, values in scores.values.items():
        np.testing.assert_allclose(values, rows[name].to_numpy(), rtol=0, atol=1e-3 if name == "psnr" else 1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("method", ["res-srdiff", "bicubic", "bspline", "pix2pix", "cyclegan", "tm-ddpm"])
def test_every_demo_method_has_a_committed_run(method):
    record, _ = _latest(method)
    assert record["status"] == "finished" and record["n_slices"] == 32
