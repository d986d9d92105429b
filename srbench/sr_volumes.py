"""SR volumes of a run's test cases, as NIfTI files to open in a viewer (ITK-SNAP, 3D Slicer, FSLeyes).

Each file is the case's HR grid **cropped to the axial range of its predicted slices** (first to last
predicted slice): spacing, direction and the physical position of every voxel are the HR volume's, so it
overlays the HR reference exactly. Slices inside that range that were not predicted (an empty mask) are 0.
Intensities are the prediction as the method returned it, on the run's normalised scale (the HR volume's
[min, max] -> [0, 1], ``minmax-hr``), not clipped.

Saved by default when the test split is small (at most ``AUTO_MAX_CASES`` cases, e.g. the demo's one slab);
``--save-volumes`` / ``--no-save-volumes`` decide otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .volume import from_array, write_volume

DIR = "volumes"
AUTO_MAX_CASES = 4
LAYOUT = ("HR grid cropped to the predicted axial range (geometry kept); unpredicted slices inside it are 0; "
          "normalised intensities (minmax-hr) as predicted, not clipped")


def wanted(option: bool | None, n_test_cases: int) -> bool:
    """``--save-volumes`` / ``--no-save-volumes``, or (unset) whether the test split is small enough."""
    return option if option is not None else n_test_cases <= AUTO_MAX_CASES


def sr_image(sr: np.ndarray, hr: sitk.Image, slices: list[int]) -> sitk.Image:
    """``sr`` ((len(slices), H, W), slice order) on ``hr``'s grid cropped to slices[0]..slices[-1]."""
    z0, z1 = min(slices), max(slices)
    crop = hr[:, :, z0:z1 + 1]  # SimpleITK slicing keeps the physical position (origin moved to slice z0)
    data = np.zeros((z1 - z0 + 1, *sr.shape[1:]), np.float32)
    data[np.asarray(slices) - z0] = sr
    return from_array(data, crop)


def file_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id) + "_sr.nii.gz"


def save(out_dir: Path, case_id: str, sr: np.ndarray, hr: sitk.Image, slices: list[int]) -> str:
    """Write the case's SR volume under ``out_dir/volumes``; returns its path relative to ``out_dir``."""
    relative = Path(DIR) / file_name(case_id)
    write_volume(sr_image(sr, hr, slices), Path(out_dir) / relative)
    return relative.as_posix()
