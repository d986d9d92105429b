"""The file-dataset layer: datasets read from files (``prostatex``, ``folder``, third-party ones).

* ``LazyCase``: a case whose volume is read on first use, so a preprocessing-cache hit never reads it; its
  ``cache_identity`` (dataset, reader code, case id, files' size and mtime) keys the cache instead of its voxels.
* ``FileBackedDataset``: the base of file-reading datasets: lazy cases, files validated once per version (marked
  in the preprocessing cache), and bad cases skipped and recorded in ``dataset.skipped``.
* ``check_volume``: the checks every read volume passes (3-D, scalar, finite, not constant).
* ``split_by_patient``: the seeded, platform-stable patient split of datasets without a published one.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk

from .cache import PreprocessCache
from .dataset import Case, Dataset, SplitManifest
from .errors import SRBenchError

log = logging.getLogger("srbench.file_dataset")


class LazyCase(Case):
    """A ``Case`` whose ``hr`` and ``mask`` are read by ``loader() -> (hr, mask)`` on first use."""

    def __init__(self, case_id: str, patient_id: str, loader: Callable[[], tuple], slices=None,
                 identity: dict | None = None):
        self.case_id, self.patient_id, self.slices = case_id, patient_id, slices
        self.cache_identity = identity
        self._loader, self._hr, self._mask, self._loaded = loader, None, None, False

    def load(self) -> "LazyCase":
        if not self._loaded:
            self._hr, self._mask = self._loader()
            self._loaded = True
        return self

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def hr(self):
        return self.load()._hr

    @hr.setter
    def hr(self, value):
        self._hr, self._loaded = value, True

    @property
    def mask(self):
        return self.load()._mask

    @mask.setter
    def mask(self, value):
        self._mask = value

    def __repr__(self) -> str:
        return f"LazyCase({self.case_id!r}, patient={self.patient_id!r}, loaded={self._loaded})"

    def __eq__(self, other) -> bool:
        return isinstance(other, LazyCase) and (self.case_id, self.cache_identity) == (other.case_id,
                                                                                      other.cache_identity)

    __hash__ = object.__hash__


def check_volume(image: sitk.Image, label: str) -> sitk.Image:
    """A 3-D scalar float32 volume with finite, non-constant voxels, or a one-line error naming ``label``."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SRBenchError(f"{label}: expected a 3-D scalar volume, got {image.GetDimension()}-D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    if min(image.GetSize()) < 2:
        raise SRBenchError(f"{label}: volume of size {image.GetSize()} has fewer than 2 voxels along an axis")
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(image)
    bad = ~np.isfinite(array)
    if bad.any():
        raise SRBenchError(f"{label}: {int(bad.sum())} NaN or Inf voxel(s)")
    if float(array.max()) <= float(array.min()):
        raise SRBenchError(f"{label}: constant volume ({float(array.min())})")
    return image


def file_fingerprint(paths, root: Path | None) -> list:
    """(path relative to root, size, mtime in ns) of each file: changes when any file is replaced."""
    out = []
    for p in sorted(Path(p) for p in paths):
        st = p.stat()
        rel = os.path.relpath(p, root) if root is not None else str(p)
        out.append([rel, st.st_size, st.st_mtime_ns])
    return out


class FileBackedDataset(Dataset):
    """Base of datasets read from files: lazy cases, one validation per file version, recorded skips.

    Subclasses implement ``build_manifest()``, ``case_files(case_id)`` (the files the case is read from),
    ``read_case(case_id) -> (hr, mask)`` (raising a one-line ``SRBenchError`` that names the case) and may
    override ``patient_of(case_id)``.

    **Skips.** ``dataset.skipped`` is a list of ``(case_id, reason)``: cases that the manifest names but that are
    missing or unusable (found while building the manifest), and cases whose volume fails to read or validate
    (found while iterating ``cases(split)``). A skipped case is left out of the split and never stops a run; if
    every case of a split is skipped, that is a one-line error.
    """

    def __init__(self, root: str | None = None):
        super().__init__(root)
        self.skipped: list[tuple[str, str]] = []
        self._manifest: SplitManifest | None = None

    # to implement ------------------------------------------------------------------------------------------
    def build_manifest(self) -> SplitManifest:
        raise NotImplementedError

    def case_files(self, case_id: str) -> list[Path]:
        raise NotImplementedError

    def read_case(self, case_id: str) -> tuple[sitk.Image, sitk.Image | None]:
        raise NotImplementedError

    def patient_of(self, case_id: str) -> str:
        return case_id

    # provided ----------------------------------------------------------------------------------------------
    def skip(self, case_id: str, reason: str, quiet: bool = False) -> None:
        """Record a case left out, with a one-line reason (logged as a warning unless ``quiet``)."""
        reason = " ".join(str(reason).split())
        if all(c != case_id for c, _ in self.skipped):
            self.skipped.append((case_id, reason))
            (log.debug if quiet else log.warning)("%s: skipping case %s: %s", self.name, case_id, reason)

    def empty_split_message(self, split: str) -> str:
        manifest = self.manifest()
        counts = ", ".join(f"{k} {len(v)}" for k, v in manifest.splits.items()) or "none"
        return (f"dataset {self.name!r} ({self.root}): no usable case in the {split} split (cases per split: "
                f"{counts}; skipped: {len(self.skipped)})")

    def manifest(self) -> SplitManifest:
        if self._manifest is None:
            self._manifest = self.build_manifest()
        return self._manifest

    def _reader_hash(self) -> str:
        try:
            return hashlib.sha256(Path(inspect.getsourcefile(type(self))).read_bytes()).hexdigest()[:16]
        except (TypeError, OSError):
            return type(self).__qualname__

    def identity(self, case_id: str) -> dict:
        root = Path(self.root) if self.root else None
        return {"dataset": self.name, "reader": self._reader_hash(), "case_id": case_id,
                "files": file_fingerprint(self.case_files(case_id), root)}

    def load_case(self, case_id: str) -> LazyCase:
        identity = self.identity(case_id)
        identity["manifest_hash"] = self.manifest().hash
        return LazyCase(case_id, self.patient_of(case_id), lambda: self.read_case(case_id), identity=identity)

    def cases(self, split: str) -> Iterator[Case]:
        if split not in self.manifest().splits:
            raise SRBenchError(self.empty_split_message(split))
        ids = self.manifest().case_ids(split)
        cache = PreprocessCache()
        yielded = 0
        for case_id in ids:
            if any(c == case_id for c, _ in self.skipped):
                continue
            try:
                case = self.load_case(case_id)
                fingerprint = {k: v for k, v in case.cache_identity.items() if k != "manifest_hash"}
                if not cache.is_validated(fingerprint):
                    case.load()  # read and check now, so that a bad case is skipped, not a crash mid-run
                    cache.mark_validated(fingerprint)
            except SRBenchError as exc:
                self.skip(case_id, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a reader's surprise must skip the case, not end the run
                self.skip(case_id, f"case {case_id!r}: {type(exc).__name__}: {exc}")
                continue
            yielded += 1
            yield case
        if ids and not yielded:
            reasons = "; ".join(f"{c}: {r}" for c, r in self.skipped if c in ids)[:400]
            raise SRBenchError(f"dataset {self.name!r}: all {len(ids)} {split} case(s) were skipped ({reasons})")


def split_by_patient(patients, seed: int = 0, test_fraction: float = 66 / 334,
                     val_fraction: float = 0.05) -> dict[str, list[str]]:
    """Seeded split of patient ids: order by sha256(f"{seed}:{id}"); the first round(n * test_fraction)
    (at least 1 when n >= 2) are test, the next round(n_rest * val_fraction) are val (carved from train),
    the rest train. Stable across platforms and library versions; each list sorted; empty splits omitted."""
    ids = sorted(set(patients))
    order = sorted(ids, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n = len(ids)
    n_test = int(round(n * test_fraction))
    if n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    elif n == 1:
        n_test = 1
    n_val = int(round((n - n_test) * val_fraction))
    splits = {"train": sorted(order[n_test + n_val:]), "val": sorted(order[n_test:n_test + n_val]),
              "test": sorted(order[:n_test])}
    return {k: v for k, v in splits.items() if v}
