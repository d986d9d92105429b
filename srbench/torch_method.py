"""The base of learned methods built around one PyTorch network, and the helpers such methods share.

A ``TorchMethod`` subclass writes ``build_network()`` (the network used for SR, from ``self.settings``), its
``fit`` (a loss and a sampler handed to ``srbench.engine``) and ``predict_slices``; the base provides the rest
of the ``Method`` interface the same way for every learned method, first-party or third-party:

* the network built once per instance with the initial weights drawn from the run's seed, moved to the device;
* the input interpolator from the preset (``settings["input_interpolator"]``) when the preset names one;
* ``parameter_count()`` of the network, ``sampling_steps()`` = 1 (one network evaluation; samplers override);
* ``train_config()``: the preset's ``train`` table as a ``TrainConfig`` seeded by the run, and
  ``training_record(...)``: the engine's record completed with what every learned method states (the loss used,
  the patch, the number of training slices, the budget actually spent);
* ``save`` / ``load`` through ``srbench.weights`` (safetensors with the method, preset and ``weights_metadata()``
  written beside the tensors; a shape-checked, one-line-error load).

Helpers for networks that work in [-1, 1] on padded canvases: ``to_net`` / ``from_net`` (intensity mapping),
``pad_center`` / ``crop`` and ``on_canvas`` (pad to a size multiple with background, run, crop back), and
``canvas_pairs`` / ``canvas_size`` (training slices padded to a canvas, for methods trained on whole slices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import budget
from .engine import TrainConfig
from .method import Method, SlicePairs
from .weights import load_network, save_weights


def count_parameters(net: torch.nn.Module) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in net.parameters())


class TorchMethod(Method):
    """A learned method around ``self.net``, the network that super-resolves; see the module docstring."""

    trains = True
    # The initial weights are drawn after ``torch.manual_seed(seed)``, so they depend on the run's seed only.
    seeded_init = True

    def __init__(self, preset: str = "tiny", device: str = "cpu", seed: int = 0):
        super().__init__(preset=preset, device=device, seed=seed)
        self.input_interpolator = self.settings.get("input_interpolator", self.input_interpolator)
        if self.seeded_init:
            torch.manual_seed(seed)
        self.net = self.build_network().to(self.device)

    def build_network(self) -> torch.nn.Module:
        """The SR network of this preset (``self.settings``), freshly initialised."""
        raise NotImplementedError

    # --- description -------------------------------------------------------------------------------
    def sampling_steps(self) -> int:
        return 1

    def parameter_count(self) -> int:
        return count_parameters(self.net)

    # --- training ----------------------------------------------------------------------------------
    def train_config(self) -> TrainConfig:
        """The preset's ``train`` settings, seeded by the run."""
        return TrainConfig(**{**self.settings["train"], "seed": self.seed})

    def training_record(self, record: dict, cfg: TrainConfig, train: SlicePairs, patch: int, **facts) -> dict:
        """``record`` (the engine's) completed with the loss actually used (``facts["loss"]``, else the preset's
        ``configured_loss()``), the patch, the training slices, the budget spent (``srbench.budget.record``,
        named by the preset's ``budget``) and any other ``facts``."""
        loss = facts.pop("loss", None) or self.configured_loss()
        spent = budget.record(cfg, patch, record["seconds"], record["steps"], record["device"],
                              self.settings.get("budget"))
        record.update(loss=loss, patch=patch, train_slices=len(train), budget=spent, **facts)
        return record

    # --- weights -----------------------------------------------------------------------------------
    def weights_metadata(self) -> dict:
        """What ``save`` writes beside the tensors, besides the method and preset (JSON-encoded when not text)."""
        return {}

    def save(self, path: Path) -> None:
        save_weights(path, self.net.state_dict(), {"method": self.name, "preset": self.preset,
                                                    **self.weights_metadata()})

    def load(self, path: Path) -> None:
        load_network(self.net, path, self.name, self.preset, self.device)


# --- networks working in [-1, 1] on padded canvases --------------------------------------------------------
def to_net(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] (srbench) -> [-1, 1] (the tanh range most image networks are trained in)."""
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


def on_canvas(lr: torch.Tensor, multiple: int, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``run`` on ``lr`` slices ([0, 1]) mapped to [-1, 1] and padded, centred, to multiples of ``multiple`` with
    the background value (0 -> -1); its output is cropped back and mapped to [0, 1]."""
    x, box = pad_center(to_net(lr), multiple, value=-1.0)
    return from_net(crop(run(x), box))


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
