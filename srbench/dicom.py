"""DICOM series: finding them on disk, reading their headers, and reading one series as a checked 3-D volume.

Every reader of DICOM in srbench goes through :func:`read_dicom_series` (``srbench score``, ``srbench infer``,
the ``folder`` and ``prostatex`` datasets), so a series is validated the same way wherever it is read:

* one series per folder: a folder holding several SeriesInstanceUIDs is refused with their descriptions (the
  datasets choose one by a rule of their own and pass its ``uid``; ``score`` and ``infer`` take a folder of one);
* single-frame files, every header readable, one image size, one orientation, one pixel spacing;
* slice positions on one line along the slice normal, no two files at one position (a 4-D series or a duplicate),
  uniform slice spacing (a gap means a missing file), at least two slices;
* every uncompressed file holds all the pixel data its header declares (GDCM zero-fills a short one silently).

A failure is one ``SRBenchError`` line that starts with the caller's label (which names the folder).
pydicom reads the headers; it is a core dependency, and its absence is reported as one line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .quiet import native_stderr_silenced, pydicom_quiet

DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
HEADER_TAGS = ["PatientID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality",
               "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns", "NumberOfFrames",
               "ProtocolName", "SOPClassUID", "PixelSpacing"]
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "")
ORIENTATION_TOL = 1e-3     # direction cosines
SPACING_RTOL = 1e-3        # pixel spacing, relative
GAP_RTOL = 0.05            # slice spacing, relative to the usual (median) one


# ------------------------------------------------------------------------------------------- finding files

def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(directory: Path, names=None) -> list[Path]:
    """DICOM files directly in ``directory``: ``.dcm``/``.ima``/``.dicom``, or extension-less with 'DICM'."""
    directory = Path(directory)
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


# ------------------------------------------------------------------------------------------------ headers

def require_pydicom(label: str | None = None):
    """pydicom, or a one-line error (starting with ``label``) saying how to install it, never an ImportError."""
    try:
        import pydicom
    except ImportError as exc:
        where = f"{label}: " if label else ""
        raise SRBenchError(f"{where}reading DICOM needs pydicom, which is not importable here ({exc.msg}): "
                           "pip install pydicom") from None
    return pydicom


def read_header(path: Path, tags=HEADER_TAGS, full: bool = False):
    """The header of one DICOM file; ``full``: the whole file, its pixel data as raw bytes (not decoded), so that
    its declared length and file offset can be checked; else only ``tags``, stopping before the pixels."""
    pydicom = require_pydicom()
    with pydicom_quiet():
        if full:
            ds = pydicom.dcmread(str(path))
        else:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=tags)
    if "SeriesInstanceUID" not in ds and "SOPClassUID" not in ds:
        raise ValueError("no DICOM image tags (SeriesInstanceUID, SOPClassUID)")
    return ds


def floats(value, n: int) -> list[float] | None:
    """``n`` finite floats from a DICOM multi-value, or None."""
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def header_info(path: Path) -> dict:
    """The tags the readers use, from one file, as plain JSON values."""
    ds = read_header(path)
    number = str(ds.get("SeriesNumber", "0")).strip()
    return {"patient_id": str(ds.get("PatientID", "") or ""), "uid": str(ds.get("SeriesInstanceUID", "") or ""),
            "description": str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
            "series_number": int(ds.get("SeriesNumber", 0) or 0) if number.lstrip("-").isdigit() else 0,
            "modality": str(ds.get("Modality", "") or ""),
            "orientation": floats(ds.get("ImageOrientationPatient"), 6), "rows": int(ds.get("Rows", 0) or 0),
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


def dicom_series_dirs(root: Path, index_path: Path | None = None, max_depth: int | None = None) -> list[SeriesDir]:
    """Every folder under ``root`` holding DICOM files, with the header of its first readable file.

    A TCIA download has one series per folder; headers are read from one file per folder and, with
    ``index_path``, remembered there per (folder, mtime, file count), so the next scan reads none.
    """
    root = Path(root)
    old = {}
    if index_path is not None:
        try:
            old = json.loads(Path(index_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    new, out = {}, []
    for directory, dirnames, names in walk(root):
        if max_depth is not None and len(directory.relative_to(root).parts) >= max_depth:
            dirnames[:] = []
        files = dicom_files(directory, names)
        if not files:
            continue
        require_pydicom(str(directory))  # one clear line for the whole scan, not one truncated ImportError per folder
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
        _write_index(Path(index_path), new)
    return out


def _write_index(path: Path, index: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, path)
    except OSError:
        pass  # the index only saves time; the next scan reads the headers again


# ------------------------------------------------------------------------------------------ one series

def read_dicom_series(directory: Path, label: str | None = None, uid: str | None = None,
                      files: list[Path] | None = None) -> sitk.Image:
    """One DICOM series as a float32 volume, checked (see the module's list); a one-line ``SRBenchError``
    starting with ``label`` (default: the folder). ``uid`` picks one series of a folder that holds several."""
    directory = Path(directory)
    label = label or str(directory)
    files = dicom_files(directory) if files is None else files
    if not files:
        below = [str(s.directory.relative_to(directory)) for s in dicom_series_dirs(directory)] \
            if directory.is_dir() else []
        hint = f"; its subfolders hold DICOM files ({', '.join(below[:3])}): give one of them" if below else ""
        raise SRBenchError(f"{label}: no DICOM series (no .dcm/.ima file or file marked DICM in the folder){hint}")
    require_pydicom(label)
    headers = []
    for f in files:
        try:
            headers.append((f, read_header(f, full=True)))
        except Exception as exc:  # noqa: BLE001
            raise SRBenchError(f"{label}: {f.name}: unreadable DICOM ({type(exc).__name__}: {str(exc)[:120]})") \
                from None
    images = [(f, h) for f, h in headers if "PixelData" in h]
    headers = images or headers  # a report or presentation state beside the images is not part of the volume
    headers = _one_series(headers, directory, label, uid)
    order = slice_order(headers, label)
    _check_pixel_data(headers, order, label)
    ordered = [str(headers[i][0]) for i in order]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(ordered)
    # float out: ITK takes the pixel type of the first file, so a later file's fractional RescaleSlope would be
    # truncated to integers without a word
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        with native_stderr_silenced():
            image = reader.Execute()
    except RuntimeError as exc:
        raise SRBenchError(f"{label}: cannot read the DICOM pixel data of {_first_unreadable(ordered)} "
                           f"({_itk_reason(exc)}): a truncated or damaged file?") from None
    return sitk.Cast(image, sitk.sitkFloat32)


def _one_series(headers: list, directory: Path, label: str, uid: str | None) -> list:
    """The files of series ``uid``, or of the only series in the folder; several without ``uid`` is an error."""
    by_uid: dict[str, list] = {}
    for f, h in headers:
        by_uid.setdefault(str(h.get("SeriesInstanceUID", "")), []).append((f, h))
    if uid is not None:
        if uid not in by_uid:
            raise SRBenchError(f"{label}: series {uid} not found in {directory}")
        return by_uid[uid]
    if len(by_uid) > 1:
        described = "; ".join(f"{str(h[0][1].get('SeriesDescription', '') or '?')!r} ({len(h)} files, "
                              f"SeriesInstanceUID {u or '?'})" for u, h in sorted(by_uid.items())[:4])
        where = "the folder" if label == str(directory) else str(directory)
        raise SRBenchError(f"{label}: {where} holds {len(by_uid)} DICOM series ({described}); a volume is one "
                           "series: put each series in its own folder")
    return headers


def slice_order(headers: list, label: str) -> np.ndarray:
    """Indices of ``headers`` in slice order, once the series is checked to be one regular 3-D stack."""
    frames = max(int(h.get("NumberOfFrames", 1) or 1) for _, h in headers)
    if frames > 1:
        raise SRBenchError(f"{label}: multi-frame DICOM ({frames} frames per file) is not supported; "
                           "convert it to NIfTI (e.g. dcm2niix)")
    orientations = [floats(h.get("ImageOrientationPatient"), 6) for _, h in headers]
    positions = [floats(h.get("ImagePositionPatient"), 3) for _, h in headers]
    missing = next((f.name for (f, _), o, p in zip(headers, orientations, positions) if o is None or p is None), None)
    if missing is not None:
        raise SRBenchError(f"{label}: {missing} lacks ImageOrientationPatient or ImagePositionPatient")
    o = np.array(orientations)
    row, col = o[0, :3], o[0, 3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise SRBenchError(f"{label}: ImageOrientationPatient {orientations[0]} is not two perpendicular unit "
                           "vectors: a damaged header")
    if np.abs(o - o[0]).max() > ORIENTATION_TOL:
        distinct = len({tuple(np.round(r, 3)) for r in o})
        raise SRBenchError(f"{label}: mixed orientations: {distinct} different ImageOrientationPatient values "
                           "in one series")
    sizes = {(int(h.get("Rows", 0) or 0), int(h.get("Columns", 0) or 0)) for _, h in headers}
    if len(sizes) > 1:
        raise SRBenchError(f"{label}: mixed image sizes in one series: {sorted(sizes)}")
    _check_pixel_spacing(headers, label)
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
    if np.abs(gaps - spacing).max() > GAP_RTOL * spacing:
        worst = int(np.argmax(np.abs(gaps - spacing)))
        after = headers[order[worst]][0].name
        raise SRBenchError(f"{label}: non-uniform slice spacing (a gap of {gaps[worst]:.3g} mm after {after} where "
                           f"{spacing:.3g} mm is usual): a slice file is missing?")
    _check_one_line(np.array(positions)[order], normal, headers, label)
    return order


def _check_pixel_spacing(headers: list, label: str) -> None:
    spacings = [floats(h.get("PixelSpacing"), 2) for _, h in headers]
    given = [s for s in spacings if s is not None]
    if given and (len(given) < len(spacings) or np.abs(np.array(given) - given[0]).max()
                  > SPACING_RTOL * max(given[0])):
        distinct = sorted({tuple(np.round(s, 4)) if s is not None else ("missing",) for s in spacings})
        raise SRBenchError(f"{label}: mixed PixelSpacing in one series: {distinct[:4]}")


def _check_one_line(positions: np.ndarray, normal: np.ndarray, headers: list, label: str) -> None:
    """Consecutive slices must follow the slice normal. Slices shifted sideways are two stacks in one series, or a
    sheared (gantry-tilted) stack: ITK would read either as a box of slices, silently wrong."""
    steps = np.diff(positions, axis=0)
    in_plane = steps - np.outer(steps @ normal, normal)
    pixel = min(floats(headers[0][1].get("PixelSpacing"), 2) or [1.0, 1.0])
    if np.abs(in_plane - np.median(in_plane, axis=0)).max() > 0.1 * pixel:
        raise SRBenchError(f"{label}: slice positions do not lie on one line (slices shifted sideways): two stacks "
                           "in one series?")
    shear = float(np.linalg.norm(np.median(in_plane, axis=0)))
    if shear > 0.05 * pixel:
        raise SRBenchError(f"{label}: each slice is shifted {shear:.3g} mm sideways from the last (a gantry tilt or "
                           "sheared stack); resample it to a regular grid first (e.g. dcm2niix)")


def _itk_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "ERROR" in ln or "Unable" in ln or "Cannot" in ln),
                  lines[-1] if lines else "unreadable")
    return re.sub(r"ITK ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", reason)[:160]


def _first_unreadable(files: list[str]) -> str:
    """The name of the first file ITK cannot read on its own (the series reader does not say which)."""
    with native_stderr_silenced():
        for f in files:
            try:
                sitk.ReadImage(f)
            except RuntimeError:
                return Path(f).name
    return "the series"


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
