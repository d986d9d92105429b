"""Small pieces the image-to-image plugins share: intensity mapping, padding, training canvases, safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from srbench.errors import SRBenchError
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


def save_weights(path: Path, state: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomic safetensors write with JSON-encoded metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp.replace(path)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise SRBenchError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise SRBenchError(f"{path}: cannot read safetensors weights ({type(exc).__name__}: {str(exc)[:120]})") from None


def load_into(net: torch.nn.Module, state: dict, path: Path, method: str, preset: str) -> None:
    """Strict load with a one-line user error when the weights belong to another architecture."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        example = (missing or unexpected or mismatched)[0]
        raise SRBenchError(f"{path}: weights do not fit {method} preset {preset!r} ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped tensors, e.g. {example})")
    net.load_state_dict(state)
