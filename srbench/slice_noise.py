"""Noise per slice: a stochastic method's random draws for slice k of a volume, whatever the batch size.

``Method.predict_volume`` seeds one CPU ``torch.Generator`` from the run's seed for each volume and hands it to
``predict_slices`` batch after batch. Noise drawn for a whole batch at once (one ``randn`` of shape (N, ...))
depends on how the slices were cut into batches, so a seed's output would change with the batch size (and with
the device, whose default batch size may differ). Instead, a stochastic method turns the generator into one
generator per slice of the batch (:func:`slice_generators`): the run's generator advances by exactly one draw per
slice, so slice k of a volume gets the k-th seed however the volume was batched, and each slice draws all its
noise from its own generator, in the same order in any batch. :func:`randn` and :func:`rand` stack such
per-slice draws into one tensor.

Noise stays on the CPU, so a seed gives the same output on CPU and CUDA: move the stacked tensor to the device
once. (A per-slice seed is a 63-bit draw, but a CPU generator's state is set by its seed's low 32 bits: two
slices of one volume share noise with probability about n^2 / 2^33, under 1e-5 for 200 slices.)

>>> import torch
>>> def volume_noise(batch_size, n_slices=5, seed=0):  # as predict_volume cuts a volume into batches
...     run = torch.Generator().manual_seed(seed)
...     return torch.cat([randn(slice_generators(run, min(batch_size, n_slices - start)), (2, 3))
...                       for start in range(0, n_slices, batch_size)])
>>> torch.equal(volume_noise(1), volume_noise(3)), torch.equal(volume_noise(2), volume_noise(5))
(True, True)
>>> torch.equal(volume_noise(2, seed=0), volume_noise(2, seed=1))
False
>>> randn(slice_generators(torch.Generator().manual_seed(0), 4), (5, 1, 8, 8), dim=1).shape  # step-major
torch.Size([5, 4, 1, 8, 8])
"""

from __future__ import annotations

from typing import Sequence

import torch

SEED_HIGH = 2 ** 63 - 1  # per-slice seeds are drawn from [0, 2^63 - 1)


def slice_generators(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """``n`` independent CPU generators, one per slice of a batch, seeded with ``n`` sequential draws from
    ``generator`` (which advances by exactly one draw per slice)."""
    seeds = [int(torch.randint(0, SEED_HIGH, (1,), generator=generator)) for _ in range(n)]
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def randn(generators: Sequence[torch.Generator], shape: Sequence[int], dim: int = 0) -> torch.Tensor:
    """Standard normal noise of ``shape`` per slice, each from its own generator, stacked along ``dim``
    (0: (N, *shape); 1 with ``shape`` (steps, ...): (steps, N, ...), step-major), contiguous, on the CPU."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators], dim=dim).contiguous()


def rand(generators: Sequence[torch.Generator], shape: Sequence[int], dim: int = 0) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` per slice, stacked along ``dim`` as :func:`randn` stacks it."""
    return torch.stack([torch.rand(tuple(shape), generator=g) for g in generators], dim=dim).contiguous()
