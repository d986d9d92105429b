"""The demo dataset: the MNI152 2009 T1 template that ships inside nilearn's wheel (nothing downloaded).

One skull-stripped 1 mm volume (like the paper's skull-stripped brain T1 maps), brain mask from the template's
grey + white matter maps (closed, holes filled so ventricles count as brain). Axial slices are split into
disjoint slabs (train / val / test) with ``GAP`` slices between neighbours. Each slab is a case of its own,
cropped from the template with its geometry (origin, spacing, direction) BEFORE anything is degraded or
interpolated: the runner degrades and interpolates each slab on its own, so no test voxel can reach a training
input (a B-spline prefilter is global along an axis; `srbench check-splits --dataset demo` shows the isolation).
All slabs come from one subject: the demo shows the machinery, it is not a generalisation study.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from srbench.dataset import Case, Dataset, SplitManifest
from srbench.errors import SRBenchError

TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
GREY, WHITE = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz", "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
GAP = 6            # slices between slabs: twice the x3 protocol's through-plane factor
MIN_BRAIN = 2000   # voxels of brain an axial slice needs to be used (drops the thin caps)
VAL_SLICES, TEST_SLICES = 12, 32


def _data_dir() -> Path:
    try:
        import nilearn
    except ImportError:  # pragma: no cover - nilearn is a dependency
        raise SRBenchError("the demo dataset needs nilearn (pip install nilearn)") from None
    return Path(nilearn.__file__).parent / "datasets" / "data"


@lru_cache(maxsize=1)
def load_template() -> tuple[sitk.Image, sitk.Image]:
    """(skull-stripped T1 as float32, brain mask as uint8), both on the template's 1 mm grid."""
    data = _data_dir()
    for name in (TEMPLATE, GREY, WHITE):
        if not (data / name).exists():
            raise SRBenchError(f"{data / name}: missing from nilearn's wheel; reinstall nilearn")
    t1 = sitk.Cast(sitk.ReadImage(str(data / TEMPLATE)), sitk.sitkFloat32)
    tissue = sitk.Cast(sitk.ReadImage(str(data / GREY)), sitk.sitkFloat32) + \
        sitk.Cast(sitk.ReadImage(str(data / WHITE)), sitk.sitkFloat32)
    mask = sitk.BinaryThreshold(tissue, 0.2 * 255, 1e9, 1, 0)
    mask = sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(mask, [3, 3, 3]))
    return sitk.Mask(t1, mask), mask


def slabs(mask: np.ndarray) -> dict[str, list[int]]:
    """Disjoint axial slabs: train (inferior) | val | test | train (superior), GAP slices apart."""
    area = mask.reshape(len(mask), -1).sum(axis=1)
    brain = np.nonzero(area >= MIN_BRAIN)[0]
    lo, hi = int(brain.min()), int(brain.max()) + 1
    val0 = lo + int(0.45 * (hi - lo))
    test0 = val0 + VAL_SLICES + GAP
    test1 = test0 + TEST_SLICES
    return {"train-inferior": list(range(lo, val0 - GAP)), "val": list(range(val0, val0 + VAL_SLICES)),
            "test": list(range(test0, test1)), "train-superior": list(range(test1 + GAP, hi))}


class Demo(Dataset):
    name = "demo"
    description = "MNI152 2009c T1 template (nilearn wheel), skull-stripped, 1 mm, axial slabs"
    default_degradation = "brain-t1map"

    def _slabs(self) -> dict[str, list[int]]:
        return slabs(sitk.GetArrayViewFromImage(load_template()[1]))

    def __init__(self, root: str | None = None):
        super().__init__(root)
        self._source = None  # (T1, mask) in place of the template: the split-isolation check's perturbed copy

    def _template(self) -> tuple[sitk.Image, sitk.Image]:
        return self._source or load_template()

    def manifest(self) -> SplitManifest:
        s = self._slabs()
        return SplitManifest(
            dataset=self.name,
            splits={"train": ["train-inferior", "train-superior"], "val": ["val"], "test": ["test"]},
            rule=(f"axial slabs of one template, {GAP}-slice gaps, slices with >= {MIN_BRAIN} brain voxels; "
                  "each slab cropped with its geometry before degradation"),
            extra={"slices": {k: [v[0], v[-1]] for k, v in s.items()}, "template": TEMPLATE})

    def load_case(self, case_id: str) -> Case:
        s = self._slabs()
        if case_id not in s:
            raise SRBenchError(f"demo: no case {case_id!r}; cases: {', '.join(s)}")
        t1, mask = self._template()
        z0, z1 = s[case_id][0], s[case_id][-1] + 1
        # SimpleITK's slicing keeps the physical geometry: the slab's origin is the template's point at z0.
        return Case(case_id=case_id, patient_id="mni152-2009c", hr=t1[:, :, z0:z1], mask=mask[:, :, z0:z1])

    def perturbed(self, split: str, seed: int = 0) -> "Demo":
        """A copy whose ``split`` slabs hold noise IN THE TEMPLATE itself (the slabs' common source), so that a
        pipeline that degraded the template before cutting the slabs would carry it into the other splits."""
        t1, mask = load_template()
        array = sitk.GetArrayFromImage(t1)
        rng = np.random.default_rng(seed)
        for case_id in self.manifest().case_ids(split):
            rows = self._slabs()[case_id]
            array[rows] = rng.uniform(0, float(array.max()), array[rows].shape).astype(array.dtype)
        noisy = sitk.GetImageFromArray(array)
        noisy.CopyInformation(t1)
        copy = Demo(self.root)
        copy._source = (noisy, mask)
        return copy

