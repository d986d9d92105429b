"""Training batches: random aligned LR/HR patches from slice pairs, with a checkpointable random stream."""

from __future__ import annotations

import torch

from . import distributed
from .method import SlicePairs


class PatchSampler:
    """Random aligned LR/HR patches ``(B, 1, P, P)`` from slice pairs, driven by a checkpointable generator.

    ``batch_size`` is the global batch. Under N > 1 processes each rank draws the positions of the whole batch
    from the shared stream and returns its own share ``[rank * B/N, (rank + 1) * B/N)``, so the ranks' shares
    together are the one-process batch and the generator state is the same on every rank.
    """

    def __init__(self, pairs: SlicePairs, patch: int, batch_size: int, seed: int, min_foreground: float = 0.1):
        self.lr = torch.from_numpy(pairs.lr).float()
        self.hr = torch.from_numpy(pairs.hr).float()
        self.patch, self.batch_size, self.min_foreground = patch, batch_size, min_foreground
        self.generator = torch.Generator().manual_seed(seed)

    def _position(self) -> tuple[int, int, int]:
        n, h, w = self.hr.shape
        p = self.patch
        for _ in range(20):  # prefer patches with tissue: background-only patches teach nothing
            k = int(torch.randint(n, (1,), generator=self.generator))
            i = int(torch.randint(max(1, h - p + 1), (1,), generator=self.generator))
            j = int(torch.randint(max(1, w - p + 1), (1,), generator=self.generator))
            if (self.hr[k, i:i + p, j:j + p] > 0).float().mean() >= self.min_foreground:
                break
        return k, i, j

    def _one(self) -> tuple[torch.Tensor, torch.Tensor]:
        k, i, j = self._position()
        p = self.patch
        return self.lr[k, i:i + p, j:j + p], self.hr[k, i:i + p, j:j + p]

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        world, rank = distributed.world_size(), distributed.rank()
        if self.batch_size % world:
            raise ValueError(f"batch size {self.batch_size} does not split evenly over {world} processes")
        share = self.batch_size // world
        positions = [self._position() for _ in range(self.batch_size)][rank * share:(rank + 1) * share]
        p = self.patch
        lr = torch.stack([self.lr[k, i:i + p, j:j + p] for k, i, j in positions])
        hr = torch.stack([self.hr[k, i:i + p, j:j + p] for k, i, j in positions])
        return lr[:, None], hr[:, None]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
