"""The demo dataset: the MNI152 2009 T1 template that ships inside nilearn's wheel (nothing downloaded).

One skull-stripped 1 mm volume (like the paper's skull-stripped brain T1 maps), brain mask from the template's
grey + white matter maps (closed, holes filled so ventricles count as brain). Axial slices are split into
disjoint slabs (train / val / test) with ``GAP`` slices between neighbours, so that the through-plane reach of
a x3 degradation cannot leak test content into training. All slabs come from one subject: the demo shows the
machinery, it is not a generalisation study.
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

    def manifest(self) -> SplitManifest:
        s = self._slabs()
        return SplitManifest(
            dataset=self.name,
            splits={"train": ["train-inferior", "train-superior"], "val": ["val"], "test": ["test"]},
            rule=f"axial slabs of one template, {GAP}-slice gaps, slices with >= {MIN_BRAIN} brain voxels",
            extra={"slices": {k: [v[0], v[-1]] for k, v in s.items()}, "template": TEMPLATE})

    def load_case(self, case_id: str) -> Case:
        s = self._slabs()
        if case_id not in s:
            raise SRBenchError(f"demo: no case {case_id!r}; cases: {', '.join(s)}")
        t1, mask = load_template()
        return Case(case_id=case_id, patient_id="mni152-2009c", hr=t1, mask=mask, slices=s[case_id])

