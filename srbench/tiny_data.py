"""Tiny synthetic data for tests of methods and of srbench itself: a small head-like phantom with rotated axes,
its LR, a four-case dataset (``srbench-tiny``) and its training slices, as the runner would prepare them.

Part of the conformance kit (``srbench.testing`` re-exports every name here). Imports only numpy at the top;
SimpleITK and srbench's data modules load on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TINY_SIZE = (46, 39, 12)            # x, y, z voxels: in-plane sizes that are not multiples of 8
TINY_SPACING = (0.9, 1.1, 2.0)      # mm
TINY_ORIGIN = (-20.5, 14.25, 3.0)
TINY_DEGRADATION = "resample:factors=2,2,2;antialias=true"


def _direction() -> tuple[float, ...]:
    cz, sz = math.cos(math.radians(15)), math.sin(math.radians(15))
    cx, sx = math.cos(math.radians(8)), math.sin(math.radians(8))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return tuple(float(v) for v in (rx @ rz).ravel())


def tiny_hr(seed: int = 0, size: tuple[int, int, int] = TINY_SIZE):
    """A small asymmetric head-like phantom (SimpleITK image, raw intensities 0..~1000) with rotated axes.

    A left-right ramp and off-centre structures that move from slice to slice, so that a flipped output or
    the wrong slices are told apart from the right ones.
    """
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    z, y, x = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    shift = rng.uniform(-0.08, 0.08, size=4)

    def soft(inside: np.ndarray) -> np.ndarray:  # a smooth edge: 1 inside, 0 outside
        return 1.0 / (1.0 + np.exp(-inside / 0.04))

    head = soft(1.0 - np.sqrt((x / 0.88) ** 2 + (y / 0.92) ** 2))
    blob = soft(1.0 - np.sqrt(((x + 0.35 - 0.3 * z - shift[0]) / 0.28) ** 2 + ((y + 0.3 - shift[1]) / 0.16) ** 2))
    disk = soft(1.0 - np.sqrt((x - 0.4 - shift[2]) ** 2 + (y - 0.45 + 0.5 * z - shift[3]) ** 2) / 0.16)
    texture = rng.standard_normal(x.shape)
    texture = (texture + np.roll(texture, 1, 2) + np.roll(texture, 1, 1)) / 3.0
    volume = head * (0.35 + 0.2 * (x + 1) / 2 + 0.03 * texture) + 0.35 * blob * head + 0.25 * disk * head
    image = sitk.GetImageFromArray((1000.0 * volume).astype(np.float32))
    image.SetSpacing(TINY_SPACING)
    image.SetOrigin(TINY_ORIGIN)
    image.SetDirection(_direction())
    return image


@dataclass
class TinyVolume:
    """An HR volume normalised to [0, 1] (as the runner normalises), its LR on its own coarser grid, and the
    degradation that made it."""

    hr: object            # SimpleITK.Image, [0, 1]
    lr: object            # SimpleITK.Image, LR grid
    degradation: object   # srbench.degradation.Degradation

    @property
    def hr_array(self) -> np.ndarray:
        from .volume import to_array

        return to_array(self.hr)


def _degradation():
    from .degradation import Resample

    return Resample(factors=(2, 2, 2), antialias=True)


def tiny_volume(seed: int = 0, degradation=None, size: tuple[int, int, int] = TINY_SIZE) -> TinyVolume:
    from .volume import from_array, minmax_range, normalise, to_array

    raw = tiny_hr(seed, size)
    array = to_array(raw)
    hr = from_array(normalise(array, *minmax_range(array)), raw)
    degradation = degradation or _degradation()
    return TinyVolume(hr=hr, lr=degradation.apply(hr, seed), degradation=degradation)


_TINY_CASES = {"train": ["tiny-0", "tiny-1"], "val": ["tiny-2"], "test": ["tiny-3"]}


def _tiny_dataset_class():
    from .dataset import Case, Dataset, SplitManifest
    from .errors import SRBenchError

    class TinyDataset(Dataset):
        """Four synthetic cases (one per patient): two train, one val, one test; 46 x 39 x 12 voxels each
        unless ``size`` says otherwise. Raw intensities: the runner normalises them like any dataset's."""

        name = "srbench-tiny"
        description = "srbench.testing: synthetic phantoms with rotated axes (conformance tests)"
        default_degradation = TINY_DEGRADATION

        def __init__(self, root: str | None = None, size: tuple[int, int, int] = TINY_SIZE):
            super().__init__(root)
            self.size = tuple(size)

        def manifest(self) -> SplitManifest:
            return SplitManifest(dataset=self.name, splits={k: list(v) for k, v in _TINY_CASES.items()},
                                 rule="synthetic, one case per patient", extra={"size": list(self.size)})

        def load_case(self, case_id: str) -> Case:
            ids = [c for ids in _TINY_CASES.values() for c in ids]
            if case_id not in ids:
                raise SRBenchError(f"srbench-tiny: no case {case_id!r}; cases: {', '.join(ids)}")
            return Case(case_id=case_id, patient_id=case_id, hr=tiny_hr(ids.index(case_id), self.size))

    return TinyDataset


def __getattr__(name: str):
    if name == "TinyDataset":  # built on first use: srbench.dataset loads only when needed
        if "TinyDataset" not in globals():
            globals()["TinyDataset"] = _tiny_dataset_class()
        return globals()["TinyDataset"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TinyDatasetPlugin:
    """Registers the tiny dataset as ``srbench-tiny``:
    ``srbench.plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")``, then run any method on it with
    ``srbench.runner.run(RunOptions(method=..., dataset="srbench-tiny", results_dir=...))``."""

    def __init__(self):
        from .hookspecs import hookimpl

        @hookimpl
        def register_datasets(register):
            register(__getattr__("TinyDataset"))

        self.register_datasets = register_datasets


def slice_pairs(dataset, split: str, interpolator: str, degradation=None):
    """Aligned (LR on the HR grid, HR) slices of ``split``, prepared as the runner prepares them."""
    from .method import SlicePairs
    from .volume import from_array, minmax_range, normalise, resample_to, to_array

    degradation = degradation or _degradation()
    lrs, hrs, ids = [], [], []
    for case in dataset.cases(split):
        array = to_array(case.hr)
        hr = from_array(normalise(array, *minmax_range(array)), case.hr)
        lr = degradation.apply(hr, 0)
        lrs.append(to_array(resample_to(lr, hr, interpolator)))
        hrs.append(to_array(hr))
        ids += [case.case_id] * len(hrs[-1])
    return SlicePairs(lr=np.concatenate(lrs), hr=np.concatenate(hrs), case_ids=ids)
