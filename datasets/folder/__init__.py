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

Also here, shared with ``prostatex``: DICOM series discovery, header index and checked series reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import srbench
from srbench.cache import cache_root, digest
from srbench.dataset import SplitManifest
from srbench.errors import SRBenchError
from srbench.file_dataset import FileBackedDataset, check_volume, split_by_patient
from srbench.volume import _native_stderr_silenced, read_volume

log = logging.getLogger("srbench.datasets")

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
SPLITS_FILE = "srbench-splits.json"
TEST_FRACTION, VAL_FRACTION = 66 / 334, 0.05
HEADER_TAGS = ["PatientID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality",
               "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns", "NumberOfFrames",
               "ProtocolName", "SOPClassUID", "PixelSpacing"]


# --------------------------------------------------------------------------------------------- file kinds

def volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def stem(path: Path) -> str:
    suffix = volume_suffix(path)
    return path.name[:-len(suffix)] if suffix else path.stem


_MASK = re.compile(r"(^|[_\-.])(brain)?mask$")


def is_mask_name(path: Path) -> bool:
    """``<anything>_mask``, ``-mask``, ``.mask``, ``mask``, ``brainmask``: a mask, not an image."""
    return bool(_MASK.search(stem(path).lower()))


def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(directory: Path, names=None) -> list[Path]:
    """DICOM files directly in ``directory``: ``.dcm``/``.ima``/``.dicom``, or extension-less with 'DICM'."""
    names = sorted(os.listdir(directory)) if names is None else sorted(names)
    out = []
    for name in names:
        if name.startswith(".") or name.upper().startswith("DICOMDIR"):  # an index of the media, no image
            continue
        path = directory / name
        suffix = Path(name).suffix.lower()
        if suffix in DICOM_SUFFIXES or (suffix == "" or suffix[1:].isdigit()) and _has_dicm_magic(path):
            if path.is_file():
                out.append(path)
    return out


def walk(root: Path):
    """os.walk in sorted order, hidden folders left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), dirnames, sorted(f for f in filenames if not f.startswith("."))


# ------------------------------------------------------------------------------------------ DICOM headers

@contextlib.contextmanager
def _pydicom_quiet():
    """pydicom warns (and logs) about damaged files; the reader reports them once, in one line."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_header(path: Path, tags=HEADER_TAGS, full: bool = False):
    """The header of one DICOM file; ``full``: the whole file, its pixel data as raw bytes (not decoded), so that
    its declared length and file offset can be checked; else only ``tags``, stopping before the pixels."""
    import pydicom

    with _pydicom_quiet():
        if full:
            ds = pydicom.dcmread(str(path))
        else:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=tags)
    if "SeriesInstanceUID" not in ds and "SOPClassUID" not in ds:
        raise ValueError("no DICOM image tags (SeriesInstanceUID, SOPClassUID)")
    return ds


def _floats(value, n: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def header_info(path: Path) -> dict:
    """The tags the readers use, from one file, as plain JSON values."""
    ds = read_header(path)
    return {"patient_id": str(ds.get("PatientID", "") or ""), "uid": str(ds.get("SeriesInstanceUID", "") or ""),
            "description": str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
            "series_number": int(ds.get("SeriesNumber", 0) or 0) if str(ds.get("SeriesNumber", "0")).strip()
            .lstrip("-").isdigit() else 0,
            "modality": str(ds.get("Modality", "") or ""),
            "orientation": _floats(ds.get("ImageOrientationPatient"), 6), "rows": int(ds.get("Rows", 0) or 0),
            "columns": int(ds.get("Columns", 0) or 0)}


def axial_cosine(orientation) -> float | None:
    """|z component| of the slice normal (1: axial, 0: sagittal/coronal), from ImageOrientationPatient."""
    if orientation is None:
        return None
    normal = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
    norm = np.linalg.norm(normal)
    return float(abs(normal[2]) / norm) if norm > 0 else None


@dataclass
class SeriesDir:
    directory: Path
    files: list[Path]
    info: dict = field(default_factory=dict)
    error: str | None = None


def dicom_series_dirs(root: Path, index_name: str | None = None, max_depth: int | None = None) -> list[SeriesDir]:
    """Every folder under ``root`` holding DICOM files, with the header of its first readable file.

    A TCIA download has one series per folder; headers are read from one file per folder and remembered in
    the cache (``index/``) per (folder, mtime, file count), so the next scan reads none.
    """
    index_path, old = None, {}
    base = cache_root()
    if base is not None and index_name:
        index_path = base / "index" / f"{digest({'root': str(root.resolve()), 'name': index_name})}.json"
        try:
            old = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    new, out = {}, []
    for directory, dirnames, names in walk(root):
        if max_depth is not None and len(directory.relative_to(root).parts) >= max_depth:
            dirnames[:] = []
        files = dicom_files(directory, names)
        if not files:
            continue
        rel = str(directory.relative_to(root))
        stamp = [directory.stat().st_mtime_ns, len(files)]
        entry = old.get(rel)
        if entry is None or entry.get("stamp") != stamp:
            entry = {"stamp": stamp, "info": None, "error": None}
            for f in files[:3]:
                try:
                    entry["info"] = header_info(f)
                    entry["error"] = None
                    break
                except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds; try the next file
                    entry["error"] = f"{f.name}: unreadable DICOM header ({type(exc).__name__}: {str(exc)[:120]})"
        new[rel] = entry
        out.append(SeriesDir(directory, files, entry["info"] or {}, entry["error"]))
    if index_path is not None and new != old:
        try:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(new))
            os.replace(tmp, index_path)
        except OSError:
            pass
    return out


def read_dicom_series(directory: Path, label: str, uid: str | None = None,
                      files: list[Path] | None = None) -> sitk.Image:
    """One DICOM series as a float32 volume, checked; a one-line ``SRBenchError`` starting with ``label``.

    Checks: every header readable; one series (``uid`` picks one when the folder holds several); single-frame
    files; one orientation; one image size; no two files at one slice position (that is a 4-D series: time
    points, echoes, b-values); at least 2 slices; uniform slice spacing (a gap means a missing file); pixel data
    readable (a truncated file fails here).
    """
    files = dicom_files(directory) if files is None else files
    if not files:
        raise SRBenchError(f"{label}: no DICOM files in {directory}")
    headers = []
    for f in files:
        try:
            headers.append((f, read_header(f, full=True)))
        except Exception as exc:  # noqa: BLE001
            raise SRBenchError(f"{label}: {f.name}: unreadable DICOM ({type(exc).__name__}: {str(exc)[:120]})") \
                from None
    uids = sorted({str(h.get("SeriesInstanceUID", "")) for _, h in headers})
    if uid is not None:
        headers = [(f, h) for f, h in headers if str(h.get("SeriesInstanceUID", "")) == uid]
        if not headers:
            raise SRBenchError(f"{label}: series {uid} not found in {directory}")
    elif len(uids) > 1:
        raise SRBenchError(f"{label}: {directory.name} holds {len(uids)} DICOM series; one volume per case")
    frames = max(int(h.get("NumberOfFrames", 1) or 1) for _, h in headers)
    if frames > 1:
        raise SRBenchError(f"{label}: multi-frame DICOM ({frames} frames per file) is not supported; "
                           "convert it to NIfTI (e.g. dcm2niix)")
    orientations = [_floats(h.get("ImageOrientationPatient"), 6) for _, h in headers]
    positions = [_floats(h.get("ImagePositionPatient"), 3) for _, h in headers]
    if any(o is None for o in orientations) or any(p is None for p in positions):
        raise SRBenchError(f"{label}: a file lacks ImageOrientationPatient or ImagePositionPatient")
    o = np.array(orientations)
    if np.abs(o - o[0]).max() > 1e-3:
        distinct = len({tuple(np.round(r, 3)) for r in o})
        raise SRBenchError(f"{label}: mixed orientations: {distinct} different ImageOrientationPatient values "
                           "in one series")
    sizes = {(int(h.get("Rows", 0) or 0), int(h.get("Columns", 0) or 0)) for _, h in headers}
    if len(sizes) > 1:
        raise SRBenchError(f"{label}: mixed image sizes in one series: {sorted(sizes)}")
    normal = np.cross(o[0, :3], o[0, 3:])
    depth = np.array(positions) @ normal
    order = np.argsort(depth, kind="stable")
    depth = depth[order]
    if len(depth) < 2:
        raise SRBenchError(f"{label}: the series has a single slice; a 3-D volume is needed")
    gaps = np.diff(depth)
    spacing = float(np.median(gaps))
    if (gaps < 1e-3 * max(spacing, 1e-3)).any() or spacing <= 0:
        n_pos = len(np.unique(np.round(depth, 3)))
        raise SRBenchError(f"{label}: {len(depth)} files at {n_pos} slice positions: a 4-D series (time points, "
                           "echoes or b-values) or duplicated files; a 3-D volume is needed")
    if np.abs(gaps - spacing).max() > 0.05 * spacing:
        worst = float(gaps[np.argmax(np.abs(gaps - spacing))])
        raise SRBenchError(f"{label}: non-uniform slice spacing (a gap of {worst:.3g} mm where {spacing:.3g} mm "
                           "is usual): a slice file is missing?")
    _check_pixel_data(headers, order, label)
    ordered = [str(headers[i][0]) for i in order]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(ordered)
    try:
        with _native_stderr_silenced():
            image = reader.Execute()
    except RuntimeError as exc:
        raise SRBenchError(f"{label}: cannot read the DICOM pixel data of {_first_unreadable(ordered)} "
                           f"({_itk_reason(exc)}): a truncated or damaged file?") from None
    return image


def _itk_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "ERROR" in ln or "Unable" in ln or "Cannot" in ln),
                  lines[-1] if lines else "unreadable")
    return re.sub(r"ITK ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", reason)[:160]


def _first_unreadable(files: list[str]) -> str:
    """The name of the first file ITK cannot read on its own (the series reader does not say which)."""
    with _native_stderr_silenced():
        for f in files:
            try:
                sitk.ReadImage(f)
            except RuntimeError:
                return Path(f).name
    return "the series"


UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "")


def _check_pixel_data(headers, order, label: str) -> None:
    """GDCM zero-fills a short pixel data element without a word: check each uncompressed file holds all the
    pixel data its header declares (rows x columns x samples x bits) and that the file really contains it."""
    for i in order:
        f, h = headers[i]
        transfer = str(getattr(getattr(h, "file_meta", None), "TransferSyntaxUID", "") or "")
        if transfer not in UNCOMPRESSED or "PixelData" not in h:
            continue  # compressed: GDCM's decoder has checked the stream
        element = h.get_item("PixelData")
        length, offset = getattr(element, "length", None), getattr(element, "value_tell", None)
        if length is None or length == 0xFFFFFFFF:
            continue
        rows, cols = int(h.get("Rows", 0) or 0), int(h.get("Columns", 0) or 0)
        needed = rows * cols * int(h.get("SamplesPerPixel", 1) or 1) * int(h.get("BitsAllocated", 16) or 16) // 8
        size = f.stat().st_size
        if length < needed or (offset is not None and offset + length > size):
            have = min(length, size - offset) if offset is not None else length
            raise SRBenchError(f"{label}: {f.name} is truncated: {have} bytes of pixel data where "
                               f"{rows} x {cols} pixels need {needed}")


# ----------------------------------------------------------------------------------------------- volumes

def read_checked(path: Path, label: str) -> sitk.Image:
    """``srbench.volume.read_volume`` (3-D, truncation checked), with nibabel for the NIfTI-2 files that
    SimpleITK cannot open; errors as one line starting with ``label``."""
    try:
        image = read_volume(path)
    except SRBenchError as exc:
        message = str(exc)
        message = message[len(f"{path}: "):] if message.startswith(f"{path}: ") else message
        if "Unable to determine ImageIO" in message and volume_suffix(path) in (".nii", ".nii.gz"):
            try:
                image = _read_with_nibabel(path)
            except SRBenchError as again:
                message = str(again)[len(f"{path}: "):]
                image = None
            if image is not None:
                return image
        raise SRBenchError(f"{label}: {message}") from None
    return image


def _read_with_nibabel(path: Path) -> sitk.Image | None:
    """A 3-D NIfTI (e.g. NIfTI-2) through nibabel, its RAS affine turned into ITK's LPS geometry."""
    try:
        import nibabel

        nii = nibabel.load(str(path))
        if not isinstance(nii, (nibabel.Nifti1Image, nibabel.Nifti2Image)):
            return None
        data = np.asarray(nii.dataobj, dtype=np.float32)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise SRBenchError(f"{path}: expected a 3-D scalar volume, got {data.ndim}-D")
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nii.affine
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        image.SetSpacing(spacing.tolist())
        image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
        image.SetOrigin(lps[:3, 3].tolist())
        return image
    except SRBenchError:
        raise
    except Exception:  # noqa: BLE001 - nibabel cannot read it either: report SimpleITK's reason
        return None


def attach_mask(mask_path: Path | None, image: sitk.Image, label: str) -> sitk.Image | None:
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


def companion_files(path: Path) -> list[Path]:
    """The files a volume is read from: .mhd/.nhdr headers name a data file beside them (same stem)."""
    if volume_suffix(path) in (".mhd", ".nhdr"):
        prefix = stem(path) + "."
        return sorted(p for p in path.parent.iterdir() if p.is_file() and p.name.startswith(prefix))
    return [path]


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


@srbench.hookimpl
def register_datasets(register):
    register(FolderDataset)
