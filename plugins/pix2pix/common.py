"""Small pieces the image-to-image plugins share: intensity mapping, padding, training canvases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srbench.method import SlicePairs


def to_net(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] (srbench) -> [-1, 1] (the networks' tanh range, as the official code normalises)."""
    return 2 * x - 1


def from_net(y: torch.Tensor) -> torch.Tensor:
    return ((y + 1) / 2).clamp(0, 1).float()


def pad_center(x: torch.Tensor, multiple: int, value: float) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``(N, C, H, W)`` to multiples of ``multiple``, centred; returns the tensor and the crop (top, left, H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    top, left = ph // 2, pw // 2
    return F.pad(x, (left, pw - left, top, ph - top), value=value), (top, left, h, w)


def crop(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, h, w = box
    return x[..., top:top + h, left:left + w]


def canvas_pairs(pairs: SlicePairs, size: int, jitter: int) -> SlicePairs:
    """Slices padded (with background, 0), centred, to ``size + jitter`` square, so that ``size`` crops are
    whole slices at random offsets: the official pix2pix/CycleGAN jitter (resize to 286, crop 256) without
    resampling the MRI. ``size`` is the canvas the network sees at inference (padded to its size multiple)."""
    n, h, w = pairs.hr.shape
    height, width = max(h, size) + jitter, max(w, size) + jitter
    top, left = (height - h) // 2, (width - w) // 2

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (top, height - h - top), (left, width - w - left)))

    return SlicePairs(lr=pad(pairs.lr), hr=pad(pairs.hr), case_ids=list(pairs.case_ids))


def canvas_size(shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    h, w = shape
    return h + (-h) % multiple, w + (-w) % multiple
