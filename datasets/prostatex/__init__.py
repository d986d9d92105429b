"""ProstateX (TCIA): axial T2-weighted prostate MRI, the paper's first dataset.

**Data.** A local copy of the TCIA ProstateX collection (https://www.cancerimagingarchive.net/collection/prostatex/),
downloaded with the NBIA Data Retriever. Root: ``--data-root`` (or ``--dataset prostatex:ROOT``), else
``$SRBENCH_DATA/prostatex``. Layouts: TCIA's ``<patient>/<study>/<series>/*.dcm`` anywhere below the root (the
retriever's ``manifest-*/PROSTATEx/`` nesting is fine), and NIfTI (``.nii``/``.nii.gz``, e.g. dcm2niix output
with its JSON sidecars, or ``<patient>*.nii.gz``), in any folders whose path names the patient.

**Which series.** Per patient, the axial T2w series, from DICOM tags read with pydicom (one header per series
folder, remembered in the cache's index): SeriesDescription (0008,103E) (or ProtocolName) must name T2
(a token starting ``t2``) and no other contrast or plane (``dwi``, ``adc``, ``ep2d``, ``diff``, ``ktrans``,
``tfl``, ``dce``, ``loc``, ``sag``, ``cor``, ``pd``, ...); the slice normal from ImageOrientationPatient
(0020,0037) must lie within 45 degrees of the scanner z axis. Rank: ``t2 ... tse ... tra`` (ProstateX's
``t2_tse_tra``) > T2 with ``tra``/``ax`` > T2 that is axial by its tags only; ties: more files, then the later
series number (a repeat is usually the better one). DICOM is preferred to NIfTI. For NIfTI the description comes
from the sidecar JSON's ``SeriesDescription`` or the file name, the orientation from the image header; a
patient with a single non-mask NIfTI and no hint against T2w uses it. A NIfTI whose name ends in ``mask`` is that
patient's mask (it must be on the T2w grid). The patient is ProstateX-NNNN as found in PatientID (0010,0020) or
in the path, else the top folder under the root.

**Split.** By patient, committed in ``manifest.json`` beside this file: the 346 patients ProstateX-0000 ...
ProstateX-0345, ordered by sha256(f"0:{patient}"), 66/334 of them to test (the paper: 268 train / 66 test of 334
patients), 5 % of the rest carved from train as val. A local copy with all of them, each with a usable T2w
series, gets exactly that manifest (and its hash). Otherwise the manifest is the committed one restricted to the
patients present (so no patient ever changes sides and a checkpoint trained on the full split never saw a test
patient), patients the committed list does not know are assigned by the same hash (test if
sha256(f"{seed}:{patient}") / 2**256 < 66/334, else val if the rescaled remainder < 0.05, else train), and the
manifest records ``committed_hash`` and the count left out. ``split="local"`` (config file) re-splits the
patients present instead. Left-out patients (missing, no T2w series, unreadable, ...) are in
``dataset.skipped`` with reasons.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from srbench.cache import cache_root, digest
from srbench.dataset import SplitManifest
from srbench.dicom import axial_cosine, dicom_files, dicom_series_dirs, read_dicom_series, walk
from srbench.errors import SRBenchError
from srbench.file_dataset import FileBackedDataset, check_volume, split_by_patient
from srbench.volume_files import attach_mask, is_mask_name, read_checked, stem, volume_suffix

log = logging.getLogger("srbench.datasets")

URL = "https://www.cancerimagingarchive.net/collection/prostatex/"
COMMITTED = Path(__file__).with_name("manifest.json")
PATIENT_RE = re.compile(r"prostatex[-_ ]?(\d{1,4})(?!\d)", re.IGNORECASE)
TEST_FRACTION, VAL_FRACTION = 66 / 334, 0.05
AXIAL_MIN = float(np.cos(np.radians(45)))
NOT_T2W = {"dwi", "adc", "diff", "ep2d", "ktrans", "tfl", "dyn", "dce", "perf", "calc", "bval", "loc", "localizer",
           "scout", "survey", "sag", "cor", "pd", "t1", "flair", "mask", "seg", "label", "lesion", "fa", "b0"}


def canonical_patient(text: str) -> str | None:
    match = PATIENT_RE.search(text or "")
    return f"ProstateX-{int(match.group(1)):04d}" if match else None


def tokens(description: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", (description or "").lower()) if t]


def t2w_score(description: str, axial_cos: float | None) -> int | None:
    """3: t2 + tse + tra; 2: t2 + tra/ax; 1: t2, axial by orientation; None: not an axial T2w series."""
    words = tokens(description)
    if any(w in NOT_T2W or w.startswith(("ep2d", "diff", "dwi", "adc")) for w in words):
        return None
    if axial_cos is not None and axial_cos < AXIAL_MIN:
        return None
    if not any(w.startswith("t2") for w in words):
        return None
    axial_word = any(w.startswith(("tra", "ax")) for w in words)
    if axial_word and any("tse" in w for w in words):
        return 3
    if axial_word:
        return 2
    return 1 if axial_cos is not None else None


def missing_data_message(root: Path | None) -> str:
    where = (f"under {root}" if root is not None
             else "(no --data-root given and $SRBENCH_DATA is not set)")
    target = root if root is not None else "$SRBENCH_DATA/prostatex"
    return (f"prostatex: no ProstateX data {where}: download the ProstateX collection (DICOM) from {URL} with the "
            f"NBIA Data Retriever and put its patient folders (ProstateX-0000/<study>/<series>/*.dcm) under "
            f"{target}, or pass --data-root PATH")


@dataclass
class Candidate:
    score: int
    n_files: int
    series_number: int
    kind: str            # "dicom" or "nifti"
    path: Path           # series folder or NIfTI file
    uid: str | None
    description: str

    def rank(self) -> tuple:
        return (self.kind == "dicom", self.score, self.n_files, self.series_number)


class ProstateX(FileBackedDataset):
    name = "prostatex"
    description = "ProstateX (TCIA) axial T2w prostate MRI, local copy; split by patient (committed manifest)"
    default_degradation = "prostate-t2w"

    def __init__(self, root: str | None = None, split: str = "committed", seed: int = 0):
        if root is None and os.environ.get("SRBENCH_DATA"):
            root = str(Path(os.environ["SRBENCH_DATA"]).expanduser() / "prostatex")
        super().__init__(str(Path(root).expanduser().resolve()) if root else None)
        if split not in ("committed", "local"):
            raise SRBenchError(f"prostatex: split must be 'committed' or 'local', got {split!r}")
        self.split, self.seed = split, int(seed)
        self._chosen: dict[str, Candidate] | None = None
        self._masks: dict[str, Path] = {}

    # scanning ---------------------------------------------------------------------------------------------
    def chosen(self) -> dict[str, Candidate]:
        """Patient -> its axial T2w series (scanned once)."""
        if self._chosen is None:
            self._chosen = self._scan()
        return self._chosen

    def _scan(self) -> dict[str, Candidate]:
        if self.root is None:
            raise SRBenchError(missing_data_message(None))
        root = Path(self.root)
        if not root.is_dir():
            raise SRBenchError(missing_data_message(root))
        candidates: dict[str, list[Candidate]] = {}
        seen: dict[str, list[str]] = {}          # patient -> descriptions of series that are not T2w
        errors: dict[str, list[str]] = {}
        base = cache_root()  # the header index lives in the cache: one header read per series folder, once
        index = base / "index" / f"{digest({'root': str(root), 'name': 'prostatex'})}.json" if base else None
        for sd in dicom_series_dirs(root, index_path=index):
            rel = sd.directory.relative_to(root)
            pid = self._patient(sd.info.get("patient_id", ""), rel)
            seen.setdefault(pid, [])
            if sd.error:
                errors.setdefault(pid, []).append(f"{rel}: {sd.error}")
                continue
            description = sd.info.get("description", "")
            score = t2w_score(description, axial_cosine(sd.info.get("orientation")))
            if score is None:
                seen[pid].append(description or "?")
                continue
            candidates.setdefault(pid, []).append(Candidate(score, len(sd.files), sd.info.get("series_number", 0),
                                                            "dicom", sd.directory, sd.info.get("uid"), description))
        self._scan_nifti(root, candidates, seen)
        chosen = {}
        for pid in sorted(seen):
            options = sorted(candidates.get(pid, []), key=Candidate.rank, reverse=True)
            if options:
                chosen[pid] = options[0]
            elif errors.get(pid):
                self.skip(pid, f"no readable axial T2w series ({'; '.join(errors[pid])[:200]})")
            else:
                descriptions = ", ".join(sorted(set(seen[pid])))[:200] or "none"
                self.skip(pid, f"no axial T2w series among its {len(seen[pid])} series (descriptions: {descriptions})")
        if not seen:
            raise SRBenchError(missing_data_message(root))
        return chosen

    def _patient(self, tag: str, rel: Path) -> str:
        """ProstateX-NNNN from PatientID or the path; else the top folder under the root (a PatientID such as
        'ANONYMOUS' may be shared by everyone); else the PatientID or the root's name."""
        if canonical_patient(tag) or canonical_patient(str(rel)):
            return canonical_patient(tag) or canonical_patient(str(rel))
        return rel.parts[0] if rel.parts else (tag.strip() or Path(self.root).name)

    def _scan_nifti(self, root: Path, candidates: dict, seen: dict) -> None:
        files: dict[str, list[Path]] = {}
        for directory, _, names in walk(root):
            for name in names:
                path = directory / name
                if volume_suffix(path) not in (".nii", ".nii.gz"):
                    continue
                rel = path.relative_to(root)
                pid = canonical_patient(str(rel)) or (rel.parts[0] if len(rel.parts) > 1 else stem(path))
                seen.setdefault(pid, [])
                if is_mask_name(path):
                    self._masks.setdefault(pid, path)
                else:
                    files.setdefault(pid, []).append(path)
        for pid, paths in files.items():
            found = []
            for path in paths:
                description, orientation = self._nifti_description(path)
                score = t2w_score(description, orientation)
                if score is None and len(paths) == 1 and not any(w in NOT_T2W for w in tokens(description)):
                    score = 0  # the only image of this patient, nothing says it is not T2w
                if score is None:
                    seen[pid].append(description)
                else:
                    found.append(Candidate(score, 1, 0, "nifti", path, None, description))
            candidates.setdefault(pid, []).extend(found)

    @staticmethod
    def _nifti_description(path: Path) -> tuple[str, float | None]:
        description = stem(path)
        sidecar = path.with_name(stem(path) + ".json")
        if sidecar.is_file():
            try:
                description = json.loads(sidecar.read_text(encoding="utf-8")).get("SeriesDescription") or description
            except (OSError, ValueError, AttributeError):
                pass
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            direction = np.array(reader.GetDirection()).reshape(reader.GetDimension(), -1)
            normal = direction[:3, 2] if direction.shape[0] >= 3 else None
            cosine = float(abs(normal[2]) / np.linalg.norm(normal)) if normal is not None else None
        except (RuntimeError, ValueError, IndexError):
            cosine = None  # unreadable: the read of the case reports it
        return description, cosine

    # the Dataset interface -------------------------------------------------------------------------------
    @staticmethod
    def committed() -> SplitManifest:
        data = json.loads(COMMITTED.read_text(encoding="utf-8"))
        return SplitManifest(data["dataset"], data["splits"], data.get("rule", ""), data.get("extra", {}))

    def build_manifest(self) -> SplitManifest:
        present = set(self.chosen())
        unusable = {c for c, _ in self.skipped}
        if not present:
            first = "; ".join(f"{c}: {r}" for c, r in self.skipped[:2])[:300]
            raise SRBenchError(f"prostatex: none of the {len(unusable)} patient folder(s) under {self.root} has a "
                               f"usable axial T2w series ({first})")
        if self.split == "local":
            splits = split_by_patient(present, self.seed, TEST_FRACTION, VAL_FRACTION)
            rule = (f"ProstateX patients present under the data root, by patient: order by "
                    f"sha256(f'{self.seed}:{{patient}}'), test 66/334, val 5% of the rest (split='local')")
            return SplitManifest(self.name, splits, rule, {"split": "local", "excluded": sorted(unusable)})
        committed = self.committed()
        known = {p for ids in committed.splits.values() for p in ids}
        if present == known:
            return committed
        missing = sorted(known - present - unusable)
        for pid in missing:
            self.skip(pid, f"named by the committed split manifest but not under {self.root}", quiet=True)
        if missing:
            log.warning("prostatex: %d of the %d patients of the committed split are not under %s (%s ...)",
                        len(missing), len(known), self.root, ", ".join(missing[:3]))
        splits = {k: [p for p in v if p in present] for k, v in committed.splits.items()}
        for pid in sorted(present - known):
            splits[self._hash_split(pid)].append(pid)
        rule = (f"{committed.rule}; restricted to the {len(present)} patients with an axial T2w series under the "
                f"data root; patients not in the committed list assigned by the same hash")
        extra = {**committed.extra, "committed_hash": committed.hash, "left_out": len(known - present),
                 "not_in_committed": sorted(present - known)}
        return SplitManifest(self.name, {k: sorted(v) for k, v in splits.items() if v}, rule, extra)

    def _hash_split(self, pid: str) -> str:
        u = int(hashlib.sha256(f"{self.seed}:{pid}".encode()).hexdigest(), 16) / 2 ** 256
        if u < TEST_FRACTION:
            return "test"
        return "val" if (u - TEST_FRACTION) / (1 - TEST_FRACTION) < VAL_FRACTION else "train"

    def empty_split_message(self, split: str) -> str:
        if self.split == "committed":
            present = set(self.chosen())
            wanted = [p for p in self.committed().splits.get(split, []) if p not in present][:5]
            return (f"prostatex: none of the {len(present)} patients under {self.root} is in the committed {split} "
                    f"split; add some of them (e.g. {', '.join(wanted)}) from {URL}, or re-split the patients "
                    f"present with split = \"local\" in a config file dataset")
        return super().empty_split_message(split)

    def _candidate(self, case_id: str) -> Candidate:
        chosen = self.chosen()
        if case_id not in chosen:
            reason = dict(self.skipped).get(case_id, "not found")
            raise SRBenchError(f"prostatex: case {case_id!r}: {reason}")
        return chosen[case_id]

    def case_files(self, case_id: str) -> list[Path]:
        c = self._candidate(case_id)
        files = dicom_files(c.path) if c.kind == "dicom" else [c.path]
        mask = self._masks.get(case_id)
        return files + ([mask] if mask is not None else [])

    def read_case(self, case_id: str) -> tuple[sitk.Image, sitk.Image | None]:
        c = self._candidate(case_id)
        where = c.path.relative_to(self.root) if c.path.is_relative_to(self.root) else c.path
        label = f"case {case_id!r} ({where}, {c.description!r})"
        if c.kind == "dicom":
            image = read_dicom_series(c.path, label, uid=c.uid or None)
        else:
            image = read_checked(c.path, label)
        image = check_volume(image, label)
        return image, attach_mask(self._masks.get(case_id), image, label)

