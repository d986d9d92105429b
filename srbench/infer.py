"""``srbench infer``: super-resolve a whole LR volume with any method, keeping geometry.

The LR volume is normalised by its own [min, max] (the HR range is unknown at inference), super-resolved on
the target grid, and mapped back to the input's intensity range. The method is built, loaded and called through
``plugins.instantiate_method``, as in ``srbench run``: a plugin's failure is one line naming the method, its
plugin and the stage. The target grid is a reference image's (``--like``) or the LR extent sampled at
``--spacing``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .method import Method
from .outputs import check_output_path
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
          progress=None) -> sitk.Image:
    if (like is None) == (spacing is None):
        raise SRBenchError("give exactly one of --like or --spacing for the output grid")
    check_output_path(output_path, inputs=(input_path, like, checkpoint), suffixes=WRITABLE_SUFFIXES)
    lr = read_volume(input_path)
    lr_array = to_array(lr)
    require_finite(lr_array, str(input_path))
    grid = read_volume(like) if like is not None else grid_with_spacing(lr, spacing)
    method: Method = instantiate_method(lookup("methods", method_name), preset=preset, device=device, seed=seed)
    if method.trains:
        if checkpoint is None:
            raise SRBenchError(f"method {method_name!r} is learned: give --checkpoint")
        method.load(require_checkpoint(checkpoint))
    lo, hi = minmax_range(lr_array, str(input_path))
    lr_norm = from_array(normalise(lr_array, lo, hi), lr)
    nx, ny, nz = grid.GetSize()
    sr = method.predict_volume(lr_norm, grid, range(nz), progress=progress)
    sr = check_prediction(sr, nz, (ny, nx), method.name, str(input_path))
    out = from_array(sr * (hi - lo) + lo, grid)
    write_volume(out, output_path)
    return out
