"""Stochastic methods give a seed's output whatever the inference batch size: each slice draws its noise from its
own generator, split off the run's (``srbench.slice_noise``)."""

import doctest

import numpy as np
import pytest
import torch

from srbench import slice_noise
from srbench.plugins import lookup
from srbench.tiny_data import tiny_volume

SLICES = range(2, 7)  # five slices: batches of 1 (five), 3 (3 + 2) and the default (one batch)


def test_the_documented_examples_run():
    result = doctest.testmod(slice_noise, verbose=False)
    assert result.attempted >= 4 and result.failed == 0


def test_the_run_generator_advances_one_draw_per_slice():
    run = torch.Generator().manual_seed(0)
    seeds = [g.initial_seed() for g in slice_noise.slice_generators(run, 2) + slice_noise.slice_generators(run, 3)]
    at_once = [g.initial_seed() for g in slice_noise.slice_generators(torch.Generator().manual_seed(0), 5)]
    assert seeds == at_once and len(set(seeds)) == 5
    assert all(g.device.type == "cpu" for g in slice_noise.slice_generators(run, 2))


@pytest.fixture(scope="module")
def volume():
    return tiny_volume()  # 46 x 39 in-plane: padded to each network's multiple, as real slices are


def _method(name: str, seed: int):
    cls = lookup("methods", name)
    method = cls(preset="tiny", device="cpu", seed=seed)
    method.load(cls.shipped_checkpoint("demo", "tiny"))
    if name == "tm-ddpm":
        method.settings["sample_steps"] = 4  # DDIM with 4 steps instead of 50: the same noise logic, fast
    return method


@pytest.mark.parametrize("name", ["res-srdiff", "tm-ddpm", "pix2pix"])
def test_a_seed_gives_one_output_at_any_batch_size(name, volume):
    method = _method(name, seed=0)
    assert method.stochastic
    outputs = {}
    for batch_size in (1, 3, type(method).batch_size, method.batch_size):
        method.batch_size = batch_size
        outputs[batch_size] = method.predict_volume(volume.lr, volume.hr, SLICES)
    one = outputs[1]
    for batch_size, out in outputs.items():
        # Not bit-exact: oneDNN picks its convolution and matmul kernels by batch size, so float32 sums may be
        # ordered differently (measured up to 7e-7); the noise itself is the same.
        np.testing.assert_allclose(out, one, rtol=0, atol=1e-5, err_msg=f"batch size {batch_size}")
    other_seed = _method(name, seed=1).predict_volume(volume.lr, volume.hr, SLICES)
    assert np.abs(other_seed - one).max() > 1e-3  # the noise matters: the test above could fail
