"""Volume files on disk as datasets find them: file kinds and names, masks beside images, checked reading.

Shared by the file-reading datasets (``folder``, ``prostatex``) and usable by third-party ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .volume import read_volume

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_MASK = re.compile(r"(^|[_\-.])(brain)?mask$")


def volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def stem(path: Path) -> str:
    suffix = volume_suffix(path)
    return path.name[:-len(suffix)] if suffix else path.stem


def is_mask_name(path: Path) -> bool:
    """``<anything>_mask``, ``-mask``, ``.mask``, ``mask``, ``brainmask``: a mask, not an image."""
    return bool(_MASK.search(stem(path).lower()))


def companion_files(path: Path) -> list[Path]:
    """The files a volume is read from: .mhd/.nhdr headers name a data file beside them (same stem)."""
    if volume_suffix(path) in (".mhd", ".nhdr"):
        prefix = stem(path) + "."
        return sorted(p for p in path.parent.iterdir() if p.is_file() and p.name.startswith(prefix))
    return [path]


def read_checked(path: Path, label: str) -> sitk.Image:
    """``srbench.volume.read_volume`` (3-D, truncation checked, DICOM series validated); errors as one line
    starting with ``label`` instead of the path."""
    try:
        return read_volume(path)
    except SRBenchError as exc:
        message = str(exc)
        message = message[len(f"{path}: "):] if message.startswith(f"{path}: ") else message
        raise SRBenchError(f"{label}: {message}") from None


def attach_mask(mask_path: Path | None, image: sitk.Image, label: str) -> sitk.Image | None:
    """The mask at ``mask_path`` as a binary image on ``image``'s grid, or a one-line error naming it."""
    if mask_path is None:
        return None
    mask = read_checked(mask_path, f"{label} mask")
    if mask.GetSize() != image.GetSize():
        raise SRBenchError(f"{label}: mask {mask_path.name} has size {mask.GetSize()} but the image has "
                           f"{image.GetSize()}")
    for what, a, b in (("spacing", mask.GetSpacing(), image.GetSpacing()),
                       ("origin", mask.GetOrigin(), image.GetOrigin()),
                       ("direction", mask.GetDirection(), image.GetDirection())):
        if not np.allclose(a, b, atol=1e-3):
            raise SRBenchError(f"{label}: mask {mask_path.name} has another {what} than the image")
    array = sitk.GetArrayViewFromImage(mask)
    if not np.isfinite(array).all():
        raise SRBenchError(f"{label}: mask {mask_path.name} has NaN voxels")
    binary = sitk.GetImageFromArray((array > 0).astype(np.uint8))
    if not sitk.GetArrayViewFromImage(binary).any():
        raise SRBenchError(f"{label}: mask {mask_path.name} is empty")
    binary.CopyInformation(image)
    return binary
