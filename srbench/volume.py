"""Volume I/O and intensity conventions, through SimpleITK (geometry survives every step).

Axial slices are the first NumPy axis of ``SimpleITK.GetArrayFromImage`` (z, y, x).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError

INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,  # cubic B-spline
    "lanczos": sitk.sitkLanczosWindowedSinc,
}


def interpolator(name: str) -> int:
    if name not in INTERPOLATORS:
        raise SRBenchError(f"unknown interpolator {name!r}; available: {', '.join(INTERPOLATORS)}")
    return INTERPOLATORS[name]


def read_volume(path: str | os.PathLike) -> sitk.Image:
    """Read a 3-D volume (NIfTI, NRRD, MHA, ... or a DICOM series directory) as float32."""
    path = Path(path)
    if not path.exists():
        raise SRBenchError(f"{path}: no such file or directory")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise SRBenchError(f"{path}: directory holds no DICOM series")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        reason = next((ln for ln in first if "ERROR" in ln or "Unable" in ln), first[-1] if first else "unreadable")
        raise SRBenchError(f"{path}: cannot read volume ({reason.strip()[:160]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SRBenchError(f"{path}: expected a 3-D scalar volume, got {image.GetDimension()}-D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    return sitk.Cast(image, sitk.sitkFloat32)


def write_volume(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".nii.gz"
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    sitk.WriteImage(image, str(tmp))
    os.replace(tmp, path)


def to_array(image: sitk.Image) -> np.ndarray:
    """(z, y, x) float32 copy of the voxels."""
    return sitk.GetArrayFromImage(image).astype(np.float32)


def from_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    """An image with ``array``'s voxels and ``like``'s geometry."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.CopyInformation(like)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def require_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str) -> None:
    if a.GetSize() != b.GetSize():
        raise SRBenchError(f"{name_a} has size {a.GetSize()} but {name_b} has size {b.GetSize()}: not on one grid")
    if not same_grid(a, b):
        raise SRBenchError(f"{name_a} and {name_b} have the same size but different spacing, origin or direction")


def require_finite(array: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        raise SRBenchError(f"{what} contains {int(bad.sum())} NaN or Inf voxel(s)")


def minmax_range(reference: np.ndarray) -> tuple[float, float]:
    """The normalisation rule ``minmax-hr``: the HR reference's [min, max] maps to [0, 1]."""
    lo, hi = float(reference.min()), float(reference.max())
    if hi <= lo:
        raise SRBenchError(f"reference volume is constant ({lo}); cannot normalise to [0, 1]")
    return lo, hi


def normalise(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((array - lo) / (hi - lo)).astype(np.float32)


def resample_to(image: sitk.Image, reference: sitk.Image, interp: str) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid; points beyond the source take the nearest edge value."""
    return sitk.Resample(image, reference, sitk.Transform(), interpolator(interp), 0.0, sitk.sitkFloat32,
                         True)
