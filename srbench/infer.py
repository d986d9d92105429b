"""``srbench infer``: super-resolve a whole LR volume with any method, keeping geometry.

The LR volume is normalised by its own [min, max] (the HR range is unknown at inference), super-resolved on
the target grid, and mapped back to the input's intensity range. The method is built, loaded and called through
``plugins.instantiate_method``, as in ``srbench run``: a plugin's failure is one line naming the method, its
plugin and the stage.

Defaults, as ``srbench run`` has them, each said through ``say``: a learned method uses the checkpoint shipped
for ``dataset`` and ``preset`` (``--checkpoint`` for others); the target grid is a reference image's
(``--like``), the LR extent sampled at ``--spacing``, or else the inverse of the dataset's degradation protocol:
the input spacing divided by the protocol's factors (``brain-t1map``: x3 on every axis). A protocol that sets
an LR spacing instead of factors (``prostate-t2w``) does not say what the HR spacing was: give --spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .method import Method
from .outputs import check_output_path
from .overrides import check_batch_size, set_batch_size, set_precision
from .plugins import instantiate_method, lookup
from .prediction import check_prediction
from .volume import (WRITABLE_SUFFIXES, from_array, minmax_range, normalise, read_volume, require_finite,
                     to_array, write_volume)
from .weights import require_checkpoint

MAX_VOXELS = 2 ** 30  # 4 GiB of float32: past any MRI volume; a typo such as 1e-6 mm must not exhaust memory


def grid_with_spacing(image: sitk.Image, spacing) -> sitk.Image:
    """An empty image covering ``image``'s physical extent at ``spacing`` (voxel centres re-centred)."""
    old, new = np.array(image.GetSpacing()), np.array(spacing, dtype=float)
    if new.shape != (3,) or (new <= 0).any():
        raise SRBenchError(f"--spacing needs three positive numbers, got {spacing}")
    size = [max(1, int(round(n))) for n in np.array(image.GetSize()) * old / new]
    if np.prod(size, dtype=float) > MAX_VOXELS:
        raise SRBenchError(f"--spacing {','.join(f'{v:g}' for v in new)} gives an output grid of "
                           f"{' x '.join(map(str, size))} voxels, more than {MAX_VOXELS:.3g}: choose a coarser spacing")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(new.tolist())
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin((np.array(image.GetOrigin()) + direction @ ((new - old) / 2.0)).tolist())
    return grid


def infer(method_name: str, input_path: Path, output_path: Path, checkpoint: Path | None = None,
          like: Path | None = None, spacing=None, preset: str = "tiny", seed: int = 0, device: str = "auto",
          progress=None, dataset: str = "demo", degradation: str | None = None, say=None,
          batch_size: int | None = None, precision: str | None = None) -> sitk.Image:
    """Super-resolve ``input_path`` into ``output_path``; ``say(text)`` hears the defaults chosen. ``batch_size``:
    slices per forward pass (None: the method's own); the output does not depend on it. ``precision``: ``fp32``
    or ``bf16`` for methods that offer it (None: the preset's)."""
    say = say or (lambda text: None)
    check_batch_size(batch_size)
    if like is not None and spacing is not None:
        raise SRBenchError("give at most one of --like or --spacing for the output grid")
    check_output_path(output_path, inputs=(input_path, like, checkpoint), suffixes=WRITABLE_SUFFIXES)
    method_cls = lookup("methods", method_name)
    if method_cls.trains and checkpoint is None:
        checkpoint = _shipped(method_cls, dataset, preset, say)
    lr = read_volume(input_path)
    lr_array = to_array(lr)
    require_finite(lr_array, str(input_path))
    if like is not None:
        grid = read_volume(like)
    else:
        grid = grid_with_spacing(lr, spacing if spacing is not None else _protocol_spacing(lr, dataset, degradation,
                                                                                            say))
    method: Method = instantiate_method(method_cls, preset=preset, device=device, seed=seed)
    set_batch_size(method, batch_size)
    set_precision(method, precision)
    if method.trains:
        method.load(require_checkpoint(checkpoint))
    lo, hi = minmax_range(lr_array, str(input_path))
    lr_norm = from_array(normalise(lr_array, lo, hi), lr)
    nx, ny, nz = grid.GetSize()
    sr = method.predict_volume(lr_norm, grid, range(nz), progress=progress)
    sr = check_prediction(sr, nz, (ny, nx), method.name, str(input_path))
    out = from_array(sr * (hi - lo) + lo, grid)
    write_volume(out, output_path)
    return out


def _shipped(method_cls, dataset: str, preset: str, say) -> Path:
    shipped = method_cls.shipped_checkpoint(dataset, preset)
    if shipped is None:
        raise SRBenchError(f"method {method_cls.name!r} is learned and ships no {dataset}-{preset} checkpoint: "
                           "give --checkpoint, or the --dataset/--preset of a shipped one")
    say(f"weights: the {dataset}-{preset} checkpoint shipped with {method_cls.name} ({shipped}); --checkpoint "
        "for others")
    return shipped


def _protocol_spacing(lr: sitk.Image, dataset: str, degradation: str | None, say) -> list[float]:
    """The input spacing divided by the factors of the dataset's (or the given) degradation protocol."""
    from .runner import make_degradation

    spec = degradation or lookup("datasets", dataset).default_degradation
    _, deg = make_degradation(spec)
    steps = getattr(deg, "steps", None) or [deg]  # a composition (protocol + noise): its resampling step
    factors = next((step.factors for step in steps if getattr(step, "factors", None) is not None), None)
    if factors is None:
        raise SRBenchError(f"degradation {spec!r} sets an LR spacing, not factors, so the HR spacing is unknown: "
                           "give --spacing (e.g. the HR spacing of the training data) or --like")
    out = [s / f for s, f in zip(lr.GetSpacing(), factors)]
    say(f"output grid: input spacing {_mm(lr.GetSpacing())} / {spec} factors {_mm(factors, '')} = {_mm(out)} "
        f"(the {dataset} protocol's inverse; --spacing or --like for another)")
    return out


def _mm(values, unit: str = " mm") -> str:
    return "x".join(f"{v:g}" for v in values) + unit
