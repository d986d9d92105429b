"""The Method interface: a method card, ``fit``, ``predict``, ``save`` and ``load``.

Most methods work on 2-D axial slices: they implement ``predict_slices`` on ``(N, 1, H, W)`` tensors holding
the LR volume already put back on the HR grid (with the method's declared ``input_interpolator``), intensities
normalised to [0, 1]. Methods that need the LR grid itself (interpolators) override ``predict_volume``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .errors import SRBenchError
from .volume import resample_to, to_array


@dataclass
class SlicePairs:
    """Aligned training slices: LR on the HR grid and HR, (N, H, W) float32 in [0, 1], with their origin."""

    lr: np.ndarray
    hr: np.ndarray
    case_ids: list[str]
    mask: np.ndarray | None = None  # (N, H, W) bool: scored region (validation scores as the test split is)

    def __len__(self) -> int:
        return len(self.hr)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SRBenchError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(device)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Method:
    """Base class of SR methods. Subclasses set the class attributes and implement what they need."""

    name: str = ""
    version: str = "0.1.0"
    summary: str = ""
    citation: str = ""
    license: str = ""
    trains: bool = False
    stochastic: bool = False
    input_interpolator: str = "nearest"  # how the harness puts LR on the HR grid for this method
    presets: dict[str, dict] = {"tiny": {}, "paper": {}}
    batch_size: int = 8
    # The training record of the weights in use (set by ``fit``'s caller, or from a shipped checkpoint's record):
    # the card reports what actually ran from it, not what the preset asked for.
    training_facts: dict | None = None

    def __init__(self, preset: str = "tiny", device: str = "cpu", seed: int = 0):
        if preset not in self.presets:
            raise SRBenchError(f"method {self.name!r} has no preset {preset!r}; presets: {', '.join(self.presets)}")
        self.preset = preset
        self.settings = copy.deepcopy(self.presets[preset])  # overrides must not leak into the class presets
        self.device = resolve_device(device)
        self.seed = seed

    # --- description -------------------------------------------------------------------------------
    def sampling_steps(self) -> int | None:
        return None

    def parameter_count(self) -> int | None:
        return None

    def configured_loss(self) -> str | None:
        """The training loss the preset asks for, in words (learned methods override)."""
        return None

    def card(self) -> dict:
        """Everything a reader of the results needs to know about this method as configured and as trained."""
        card = {"name": self.name, "version": self.version, "summary": self.summary, "citation": self.citation,
                "license": self.license, "trains": self.trains, "stochastic": self.stochastic,
                "input_interpolator": self.input_interpolator, "preset": self.preset, "settings": self.settings,
                "sampling_steps": self.sampling_steps(), "parameters": self.parameter_count()}
        if self.trains:
            facts = self.training_facts or {}
            card["loss"] = facts.get("loss") or self.configured_loss()
            card["loss_source"] = ("the training record of the weights used" if facts.get("loss")
                                   else "the preset (these weights have no training record)")
            if facts.get("budget"):
                card["budget"] = facts["budget"]
        return card

    # --- training and weights ----------------------------------------------------------------------
    def validation(self, val: SlicePairs | None, network):
        """The engine's ``validate``: the preset's validation metric of this method's predictions on ``val``
        with ``network(loop)`` (the loop's inference weights) as ``self.net``; None without a validation split
        or when the preset's ``train`` settings set no ``val_every``."""
        from .validation import NetworkValidation, Validator

        train = self.settings.get("train", {})
        if val is None or not len(val) or not train.get("val_every"):
            return None
        validator = Validator(val, train.get("val_metric", "psnr"), train.get("val_slices"))
        return NetworkValidation(self, validator, network)

    def fit(self, train: SlicePairs, val: SlicePairs | None, workdir: Path) -> dict:
        """Train on ``train`` (checkpointing into ``workdir``, resuming from it); return a training record."""
        return {}

    def save(self, path: Path) -> None:
        """Write the weights to ``path`` (safetensors for learned methods)."""

    def load(self, path: Path) -> None:
        """Read weights written by ``save`` (or an official checkpoint the plugin can map)."""

    @classmethod
    def shipped_checkpoint(cls, dataset: str, preset: str) -> Path | None:
        """Pretrained weights shipped with the plugin for ``dataset`` and ``preset``, if any.

        Convention: ``<plugin folder>/weights/<dataset>-<preset>.safetensors``, with its training record beside
        it as ``<dataset>-<preset>.json``.
        """
        path = Path(inspect.getfile(cls)).parent / "weights" / f"{dataset}-{preset}.safetensors"
        return path if path.exists() else None

    # --- inference ---------------------------------------------------------------------------------
    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """SR of a batch ``(N, 1, H, W)`` of LR-on-HR-grid slices in [0, 1]; same shape out."""
        raise NotImplementedError

    def predict_volume(self, lr: sitk.Image, grid: sitk.Image, slices: Sequence[int],
                       progress=None) -> np.ndarray:
        """SR of the axial ``slices`` of ``lr`` on ``grid``'s geometry: (len(slices), H, W) float32."""
        on_grid = to_array(resample_to(lr, grid, self.input_interpolator))[list(slices)]
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        out = []
        with torch.no_grad():
            for start in range(0, len(on_grid), self.batch_size):
                batch = torch.from_numpy(on_grid[start:start + self.batch_size][:, None]).to(self.device)
                out.append(self.predict_slices(batch, generator).float().cpu().numpy()[:, 0])
                if progress is not None:
                    progress(len(batch))
        return np.concatenate(out) if out else np.zeros((0,) + on_grid.shape[1:], np.float32)
