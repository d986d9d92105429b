"""Checkpoint selection on the validation split: the weights kept are the best-scoring ones, the record holds the
curve and the chosen step, patience stops early, and everything survives an interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srbench.engine import PatchSampler, TrainConfig, Trainer
from srbench.method import SlicePairs
from srbench.selection import BEST
from srbench.validation import NetworkValidation, Validator, evenly_spaced


def _pairs(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.random((n, size, size), dtype=np.float32)
    return SlicePairs(lr=(hr * 0.5).astype(np.float32), hr=hr, case_ids=["c"] * n,
                      mask=np.ones_like(hr, dtype=bool))


class Scripted:
    """A validate callable whose scores follow a script, remembering the weights it saw at each evaluation."""

    n, higher_is_better = 2, True

    def __init__(self, scores):
        self.scores, self.seen = list(scores), {}

    def better(self, value, best):
        return best is None or value > best

    def __call__(self, loop):
        self.seen[loop.step] = {k: v.clone() for k, v in loop.inference_model().state_dict().items()}
        return self.scores[len(self.seen) - 1]


def _trainer(workdir, validate, steps=12, **kw):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    cfg = TrainConfig(steps=steps, batch_size=2, lr=1e-2, warmup_steps=0, checkpoint_every=2, val_every=3,
                      ema_decay=None, **kw)
    sampler = PatchSampler(_pairs(), patch=16, batch_size=2, seed=1, min_foreground=0.0)
    loss = lambda net, batch: (torch.nn.functional.mse_loss(net(batch[0]), batch[1]), {})  # noqa: E731
    return Trainer(model, loss, sampler, cfg, workdir, torch.device("cpu"), validate=validate)


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_fit_ends_on_the_best_validation_weights_and_records_the_curve(tmp_path):
    validate = Scripted([1.0, 3.0, 2.0, 2.5])  # evaluations at steps 3, 6, 9, 12: best at step 6
    trainer = _trainer(tmp_path, validate)
    record = trainer.fit()
    val = record["validation"]
    assert [step for step, _ in val["curve"]] == [3, 6, 9, 12]
    assert val["best_step"] == 6 and val["best_value"] == 3.0 and val["split"] == "val"
    assert _same(trainer.inference_model().state_dict(), validate.seen[6])
    assert not _same(validate.seen[12], validate.seen[6])  # training went on past the chosen step
    assert record["steps"] == 12 and record["finished"]
    assert "test" not in json.dumps(record)  # a training record never carries test scores


def test_patience_stops_early_and_a_rerun_does_not_train_on(tmp_path):
    validate = Scripted([5.0, 4.0, 3.0, 9.0])
    record = _trainer(tmp_path, validate, patience=2).fit()
    assert record["steps"] == 9 and record["validation"]["stopped_by_patience"]
    assert record["validation"]["best_step"] == 3
    again = _trainer(tmp_path, Scripted([]), patience=2)
    assert again.fit()["steps"] == 9  # resumed after the early stop: nothing more to do


def test_an_interrupted_run_keeps_its_curve_and_best_weights(tmp_path):
    straight_val = Scripted([1.0, 3.0, 2.0, 2.5])
    straight = _trainer(tmp_path / "a", straight_val)
    straight.fit()
    first = Scripted([1.0, 3.0, 2.0, 2.5])
    part = _trainer(tmp_path / "b", first, steps=12, max_seconds=1e-9)  # stops (with a checkpoint) after step 1
    while part.fit()["steps"] < 7:  # step by step, as if killed and restarted, past the best evaluation
        part = _trainer(tmp_path / "b", first, steps=12, max_seconds=1e-9)
    assert (tmp_path / "b" / BEST).exists()
    resumed = _trainer(tmp_path / "b", Scripted([2.0, 2.5]))  # the evaluations still to come
    record = resumed.fit()
    assert [s for s, _ in record["validation"]["curve"]] == [3, 6, 9, 12]
    assert record["validation"]["best_step"] == 6
    assert _same(resumed.inference_model().state_dict(), straight.inference_model().state_dict())


def test_validator_scores_masked_psnr_on_evenly_spaced_slices():
    pairs = _pairs(n=12)
    validator = Validator(pairs, "psnr", slices=4)
    assert validator.n == 4 and evenly_spaced(12, 4) == [0, 4, 7, 11]
    perfect = validator(lambda lr, g: torch.from_numpy(pairs.hr[evenly_spaced(12, 4)][:, None]), torch.device("cpu"))
    halved = validator(lambda lr, g: lr, torch.device("cpu"))
    assert perfect > 60 and 5 < halved < 30 and validator.better(perfect, halved)
    assert validator(lambda lr, g: lr * float("nan"), torch.device("cpu")) == float("-inf")
    with pytest.raises(Exception, match="not one of"):
        Validator(pairs, "nope")


def test_network_validation_swaps_in_the_loop_weights_and_restores_the_method_net():
    class Method:
        device, seed = torch.device("cpu"), 0

        def __init__(self):
            self.net = "training net"

        def predict_slices(self, lr, generator):
            assert self.net == "ema net"
            return lr

    method = Method()
    validation = NetworkValidation(method, Validator(_pairs(), "psnr"), lambda loop: "ema net")
    assert np.isfinite(validation(loop=None)) and method.net == "training net"
