"""The ``folder`` dataset: bring your own volumes (``--dataset folder:PATH``).

Layouts understood (one volume per case):

* **BIDS**: ``PATH/sub-<label>[/ses-<label>]/anat/*_<suffix>.nii[.gz]`` (suffix ``T1w`` by default; ``T1map``,
  ``UNIT1``, ... with ``suffix=`` in a config file). Case id: ``sub-<label>`` (``sub-<label>_ses-<label>`` when
  there are sessions); patient: the subject. Several runs: the first in sorted order. Mask: a
  ``*_mask.nii[.gz]`` of the same subject (and session) in the same ``anat`` folder or under
  ``PATH/derivatives/*/sub-<label>/.../anat/`` (``desc-brain`` preferred).
* **Files**: ``PATH/<case>.nii.gz`` (also ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``); case id = file name
  without extension. Mask: ``PATH/<case>_mask.<ext>`` beside it, or ``PATH/masks/<case>.<ext>`` or
  ``PATH/masks/<case>_mask.<ext>``. Files whose name ends in ``mask`` are masks, never cases.
* **Folders**: ``PATH/<case>/`` holding one DICOM series (anywhere below it) or one volume file (plus an
  optional volume file whose name contains ``mask``); case id = folder name. ``PATH`` itself holding one DICOM
  series is one case. A case folder with several series (an MP2RAGE export: INV1, INV2, UNI, T1 map) is skipped
  with their descriptions, unless ``series=REGEX`` (config file) picks one by SeriesDescription.

Masks must be on the image's grid (same size; spacing, origin, direction within 1e-3); non-zero = inside.
Split: by patient, seeded (``srbench.file_dataset.split_by_patient``: the ProstateX paper's ratio, 66/334 of patients
to test, 5 % of the rest carved out as val). A ``PATH/srbench-splits.json`` (``{"train": [...], "val": [...],
"test": [...]}`` of case ids) overrides it. Cases that cannot be used are listed in ``dataset.skipped`` with
the reason (see ``FileBackedDataset``).

DICOM series are found and read (and validated: one series, no missing or duplicated slice, one orientation and
spacing) by ``srbench.dicom``; volume files by ``srbench.volume_files``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from srbench.dataset import SplitManifest
from srbench.dicom import dicom_files, dicom_series_dirs, read_dicom_series, walk
from srbench.errors import SRBenchError
from srbench.file_dataset import FileBackedDataset, check_volume, split_by_patient
from srbench.volume_files import attach_mask, companion_files, is_mask_name, read_checked, stem, volume_suffix

log = logging.getLogger("srbench.datasets")

SPLITS_FILE = "srbench-splits.json"
TEST_FRACTION, VAL_FRACTION = 66 / 334, 0.05


# ---------------------------------------------------------------------------------------------- the dataset

@dataclass
class Source:
    case_id: str
    patient_id: str
    kind: str                      # "file" or "dicom"
    path: Path                     # the volume file or the series folder
    mask: Path | None = None
    uid: str | None = None


class FolderDataset(FileBackedDataset):
    name = "folder"
    description = "your own volumes: NIfTI/NRRD/MHA files, DICOM series folders or a BIDS tree; one per case"
    default_degradation = "brain-t1map"

    def __init__(self, root: str | None = None, suffix: str = "T1w", seed: int = 0,
                 test_fraction: float = TEST_FRACTION, val_fraction: float = VAL_FRACTION, series: str | None = None):
        if root is None or not str(root).strip():
            raise SRBenchError("the folder dataset needs a path: --dataset folder:PATH (or --data-root PATH)")
        super().__init__(str(Path(root).expanduser().resolve()))
        self.suffix, self.seed = str(suffix), int(seed)
        if series is not None:
            try:
                re.compile(series)
            except re.error as exc:
                raise SRBenchError(f"folder: series={series!r} is not a regular expression ({exc})") from None
        self.series = series
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)
        self._sources: dict[str, Source] | None = None
        self.layout = None

    # scanning ---------------------------------------------------------------------------------------------
    def sources(self) -> dict[str, Source]:
        if self._sources is None:
            root = Path(self.root)
            if not root.exists():
                raise SRBenchError(f"{root}: no such directory (folder dataset)")
            if not root.is_dir():
                raise SRBenchError(f"{root}: not a directory (folder dataset: give a folder of volumes)")
            found: dict[str, Source] = {}
            children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
            if any(p.is_dir() and p.name.startswith("sub-") for p in children):
                self.layout = "bids"
                self._scan_bids(root, children, found)
            else:
                self.layout = "plain"
                self._scan_plain(root, children, found)
            if not found and not self.skipped:
                raise SRBenchError(f"{root}: no volumes found (expected NIfTI/NRRD/MHA files, folders of DICOM "
                                   f"series, or a BIDS tree sub-*/anat/*_{self.suffix}.nii.gz)")
            self._sources = found
        return self._sources

    def _add(self, found: dict, source: Source) -> None:
        if source.case_id in found:
            self.skip(source.case_id, f"two volumes give case id {source.case_id!r}: {found[source.case_id].path} "
                                      f"and {source.path}; rename one")
            found.pop(source.case_id)
            return
        found[source.case_id] = source

    def _scan_bids(self, root: Path, children: list[Path], found: dict) -> None:
        suffix = f"_{self.suffix}".lower()
        derivatives = root / "derivatives"
        for sub in (p for p in children if p.is_dir() and p.name.startswith("sub-")):
            anats = sorted(sub.glob("anat")) + sorted(sub.glob("ses-*/anat"))
            images = [f for a in anats for f in sorted(a.iterdir())
                      if f.is_file() and volume_suffix(f) and stem(f).lower().endswith(suffix)]
            if not images:
                self.skip(sub.name, f"no *_{self.suffix}.nii[.gz] under {sub.name}/[ses-*/]anat")
                continue
            by_session: dict[str, list[Path]] = {}
            for f in images:
                session = next((part for part in f.relative_to(sub).parts if part.startswith("ses-")), "")
                by_session.setdefault(session, []).append(f)
            for session, files in sorted(by_session.items()):
                case_id = f"{sub.name}_{session}" if session else sub.name
                image = files[0]
                masks = self._bids_masks(sub.name, session, image.parent, derivatives)
                self._add(found, Source(case_id, sub.name, "file", image, masks))

    def _bids_masks(self, subject: str, session: str, anat: Path, derivatives: Path) -> Path | None:
        places = [anat]
        if derivatives.is_dir():
            places += sorted(p for p in derivatives.glob(f"*/{subject}/**/anat") if p.is_dir())
        candidates = []
        for place in places:
            for f in sorted(place.iterdir()):
                name = f.name
                if not (f.is_file() and volume_suffix(f) and is_mask_name(f) and name.startswith(subject + "_")):
                    continue
                if session and f"_{session}_" not in f"_{name}" and session not in f.parts:
                    continue
                candidates.append(f)
        candidates.sort(key=lambda f: (0 if "desc-brain" in f.name else 1, str(f)))
        return candidates[0] if candidates else None

    def _scan_plain(self, root: Path, children: list[Path], found: dict) -> None:
        direct = [s for s in dicom_series_dirs(root, max_depth=0) if s.info]
        if direct:
            self._add(found, Source(root.name, root.name, "dicom", root))
        files = [p for p in children if p.is_file() and volume_suffix(p)]
        mask_dir = root / "masks"
        for f in files:
            if is_mask_name(f):
                continue
            case = stem(f)
            mask = next((m for m in files if is_mask_name(m) and stem(m) in (f"{case}_mask", f"{case}-mask")), None)
            if mask is None and mask_dir.is_dir():
                mask = next((m for m in sorted(mask_dir.iterdir()) if volume_suffix(m)
                             and stem(m) in (case, f"{case}_mask", f"{case}-mask")), None)
            self._add(found, Source(case, case, "file", f, mask))
        for d in (p for p in children if p.is_dir() and p.name not in ("masks", "derivatives")):
            series = dicom_series_dirs(d)
            volumes = [f for sub, _, names in walk(d) for f in (sub / n for n in names) if volume_suffix(f)]
            if len(series) > 1 and self.series is not None:
                series = [s for s in series if re.search(self.series, s.info.get("description", ""), re.I)]
                if not series:
                    self.skip(d.name, f"no DICOM series whose description matches series={self.series!r}")
                    continue
            if series:
                if len(series) > 1:
                    names = ", ".join(f"{s.directory.relative_to(d)}: {s.info.get('description', '?')!r}"
                                      for s in series[:5])
                    self.skip(d.name, f"holds {len(series)} DICOM series folders ({names}); the folder dataset "
                                      "takes one volume per case (pick one with series=REGEX in a config file)")
                    continue
                masks = [v for v in volumes if "mask" in v.name.lower()]
                self._add(found, Source(d.name, d.name, "dicom", series[0].directory, masks[0] if masks else None))
            elif volumes:
                images = [v for v in volumes if "mask" not in v.name.lower()]
                masks = [v for v in volumes if "mask" in v.name.lower()]
                if len(images) != 1:
                    self.skip(d.name, f"holds {len(images)} volume files; the folder dataset takes one per case")
                    continue
                self._add(found, Source(d.name, d.name, "file", images[0], masks[0] if masks else None))
            else:
                self.skip(d.name, "folder holds no volume file and no DICOM series")

    # the Dataset interface -------------------------------------------------------------------------------
    def build_manifest(self) -> SplitManifest:
        sources = self.sources()
        splits_file = Path(self.root) / SPLITS_FILE
        extra = {"layout": self.layout, "suffix": self.suffix if self.layout == "bids" else None,
                 "excluded": sorted(c for c, _ in self.skipped)}
        if splits_file.is_file():
            try:
                named = json.loads(splits_file.read_text(encoding="utf-8"))
                assert isinstance(named, dict) and all(isinstance(v, list) for v in named.values())
            except (OSError, ValueError, AssertionError):
                raise SRBenchError(f"{splits_file}: expected JSON {{\"train\": [case ids], \"test\": [...]}}") \
                    from None
            splits = {}
            for split, ids in named.items():
                for cid in ids:
                    if str(cid) not in sources:
                        self.skip(str(cid), f"named by {SPLITS_FILE} ({split}) but not found under {self.root}")
                splits[split] = sorted(str(c) for c in ids if str(c) in sources)
            owner = {}
            for split, ids in splits.items():
                for cid in ids:
                    if cid in owner:
                        raise SRBenchError(f"{splits_file}: case {cid!r} is in both {owner[cid]} and {split}")
                    owner[cid] = split
            return SplitManifest(self.name, {k: v for k, v in splits.items() if v}, rule=f"from {SPLITS_FILE}",
                                 extra={**extra, "missing": sorted(set().union(*map(set, named.values()))
                                                                    - set(sources))})
        by_patient: dict[str, list[str]] = {}
        for cid, src in sources.items():
            by_patient.setdefault(src.patient_id, []).append(cid)
        patient_splits = split_by_patient(by_patient, self.seed, self.test_fraction, self.val_fraction)
        splits = {k: sorted(c for p in v for c in by_patient[p]) for k, v in patient_splits.items()}
        rule = (f"by patient, seeded: order by sha256(f'{self.seed}:{{patient}}'); test {self.test_fraction:.4g} of "
                f"patients (the ProstateX paper's 66/334), val {self.val_fraction:g} of the rest, train the rest")
        return SplitManifest(self.name, splits, rule=rule, extra=extra)

    def patient_of(self, case_id: str) -> str:
        return self._source(case_id).patient_id

    def _source(self, case_id: str) -> Source:
        sources = self.sources()
        if case_id not in sources:
            raise SRBenchError(f"{self.name}: no case {case_id!r} under {self.root}")
        return sources[case_id]

    def case_files(self, case_id: str) -> list[Path]:
        src = self._source(case_id)
        files = dicom_files(src.path) if src.kind == "dicom" else companion_files(src.path)
        return files + ([src.mask] if src.mask is not None else [])

    def read_case(self, case_id: str) -> tuple[sitk.Image, sitk.Image | None]:
        src = self._source(case_id)
        label = f"case {case_id!r} ({src.path})"
        if src.kind == "dicom":
            image = read_dicom_series(src.path, label, uid=src.uid)
        else:
            image = read_checked(src.path, label)
        image = check_volume(image, label)
        return image, attach_mask(src.mask, image, label)

