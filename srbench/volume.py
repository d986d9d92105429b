"""Volume I/O and intensity conventions, through SimpleITK (geometry survives every step).

Axial slices are the first NumPy axis of ``SimpleITK.GetArrayFromImage`` (z, y, x).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom import read_dicom_series
from .errors import SRBenchError
from .quiet import native_stderr_silenced

INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,  # cubic B-spline
    "lanczos": sitk.sitkLanczosWindowedSinc,
}
# Names ``resample_to`` accepts: SimpleITK's, and Keys cubic convolution (``srbench.cubic``), which ITK lacks.
RESAMPLERS = (*INTERPOLATORS, "cubic")


def interpolator(name: str) -> int:
    if name not in INTERPOLATORS:
        raise SRBenchError(f"unknown interpolator {name!r}; available: {', '.join(INTERPOLATORS)}")
    return INTERPOLATORS[name]


def read_volume(path: str | os.PathLike) -> sitk.Image:
    """Read a 3-D volume (NIfTI, NRRD, MHA, ... or a folder holding one DICOM series) as float32.

    A DICOM folder is validated by ``srbench.dicom.read_dicom_series`` (one series, no missing or duplicated
    slice, one orientation and spacing); NIfTI files SimpleITK cannot open (NIfTI-2) are read with nibabel.
    """
    path = Path(path)
    if not path.exists():
        raise SRBenchError(f"{path}: no such file or directory")
    if path.is_dir():
        image = read_dicom_series(path)
    else:
        try:
            with native_stderr_silenced():
                image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            reason = next((ln for ln in first if "ERROR" in ln or "Unable" in ln), first[-1] if first else "unreadable")
            image = _read_with_nibabel(path) if "Unable to determine ImageIO" in reason else None
            if image is None:
                raise SRBenchError(f"{path}: cannot read volume ({reason.strip()[:160]})") from None
    nonfinite = _nifti_scan(path) if path.name.lower().endswith((".nii", ".nii.gz")) else None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SRBenchError(f"{path}: expected a 3-D scalar volume, got {image.GetDimension()}-D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise SRBenchError(f"{path}: {image.GetPixelIDTypeAsString()} voxels are not magnitudes; save the magnitude "
                           "image (abs) instead")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if nonfinite is not None and nonfinite.size:
        array = sitk.GetArrayFromImage(image)
        array.flat[nonfinite] = np.nan  # ITK reads NIfTI NaN as 0; put them back so callers can refuse them
        image = from_array(array, image)
    return image


def _read_with_nibabel(path: Path) -> sitk.Image | None:
    """A 3-D NIfTI (e.g. NIfTI-2) through nibabel, its RAS affine turned into ITK's LPS geometry; None when
    nibabel cannot read it either (the caller reports SimpleITK's reason)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        import nibabel

        nii = nibabel.load(str(path))
        if not isinstance(nii, (nibabel.Nifti1Image, nibabel.Nifti2Image)):
            return None
        data = np.asarray(nii.dataobj, dtype=np.float32)
        affine = nii.affine
    except Exception:  # noqa: BLE001 - nibabel cannot read it either (or is not installed)
        return None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise SRBenchError(f"{path}: expected a 3-D scalar volume, got {data.ndim}-D")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def _nifti_scan(path: Path) -> np.ndarray | None:
    """Flat indices of a NIfTI file's non-finite voxels (None: not a header we know); error if it is cut short.

    ITK reads a truncated NIfTI as zeros, and NaN as 0, without a word: both are checked on the raw data.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            header = _nifti_header(fh.read(540))
            if header is None:
                return None
            offset, count, dtype, floating = header
            fh.seek(offset)
            done, bad = 0, []
            while chunk := fh.read(dtype.itemsize << 20):
                if floating:
                    values = np.frombuffer(chunk, dtype, count=min(len(chunk) // dtype.itemsize, count - done))
                    bad.append(np.flatnonzero(~np.isfinite(values)) + done)
                done += len(chunk) // dtype.itemsize
    except (OSError, EOFError, zlib.error) as exc:  # a cut or damaged gzip stream
        raise SRBenchError(f"{path}: cannot read volume ({type(exc).__name__}: {exc})") from None
    if done < count:
        raise SRBenchError(f"{path}: cannot read volume (truncated: {done} of the {count} voxels in its header)")
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def _nifti_header(head: bytes):
    """(data offset, voxel count, dtype, is float) from a NIfTI-1 or NIfTI-2 header, or None."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            code, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            code, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7 or bitpix <= 0 or bitpix % 8:
            return None
        count = int(np.prod(dims[1:dims[0] + 1], dtype=np.int64))
        floating = {16: "f4", 64: "f8"}.get(code)  # NIfTI datatype codes of float32 and float64
        dtype = np.dtype(endian + floating) if floating else np.dtype(f"V{bitpix // 8}")
        return offset, count, dtype, floating is not None
    return None


WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def write_volume(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".nii.gz"
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        sitk.WriteImage(image, str(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a half file nor a stray temporary
        if isinstance(exc, RuntimeError):
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "write failed"
            raise SRBenchError(f"{path}: cannot write volume ({reason.strip()[:160]})") from None
        raise


def to_array(image: sitk.Image) -> np.ndarray:
    """(z, y, x) float32 copy of the voxels."""
    return sitk.GetArrayFromImage(image).astype(np.float32)


def from_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    """An image with ``array``'s voxels and ``like``'s geometry."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.CopyInformation(like)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def require_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str) -> None:
    if a.GetSize() != b.GetSize():
        raise SRBenchError(f"{name_a} has size {a.GetSize()} but {name_b} has size {b.GetSize()}: not on one grid")
    if not same_grid(a, b):
        raise SRBenchError(f"{name_a} and {name_b} have the same size but different spacing, origin or direction")


def require_finite(array: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        raise SRBenchError(f"{what} contains {int(bad.sum())} NaN or Inf voxel(s)")


def minmax_range(reference: np.ndarray, what: str = "reference volume") -> tuple[float, float]:
    """The normalisation rule ``minmax-hr``: the HR reference's [min, max] maps to [0, 1]; ``what`` names the
    volume in the error."""
    lo, hi = float(reference.min()), float(reference.max())
    if hi <= lo:
        raise SRBenchError(f"{what}: the volume is constant ({lo:g} everywhere); cannot normalise it to [0, 1]")
    return lo, hi


def normalise(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((array - lo) / (hi - lo)).astype(np.float32)


def resample_to(image: sitk.Image, reference: sitk.Image, interp: str) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid; points beyond the source take the nearest edge value."""
    if interp == "cubic":
        from .cubic import resample_cubic

        return from_array(resample_cubic(image, reference), reference)
    return sitk.Resample(image, reference, sitk.Transform(), interpolator(interp), 0.0, sitk.sitkFloat32,
                         True)
