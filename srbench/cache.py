"""The preprocessing cache: normalised HR and degraded LR volumes on disk, so a second run starts at once.

Where: ``$SRBENCH_CACHE`` (``off``, ``0``, ``none`` or ``false`` disables it), default ``~/.cache/srbench``.
``srbench cache info`` / ``srbench cache clear`` inspect and empty it.

What and how it is keyed (every key is the SHA-256 of a canonical JSON of its parts):

* ``hr/<key>``: the normalised HR volume (float32), its geometry and its mask (bit-packed). Key: cache format,
  srbench version, ``PIPELINE_VERSION`` (the version of the normalisation and slice-choice steps, bumped by hand
  when they change), the case's *source identity* and the normalisation rule. For cases of file-backed datasets
  (``srbench.file_dataset.LazyCase``) the source identity is the dataset name, a hash of the dataset module's
  source, the case id and the (relative path, size, mtime) of every file the case is read from; for any other
  case it is the SHA-256 of the HR voxels and geometry (and mask), so a stale entry is impossible, at the price
  of reading the case.
* ``prepared/<key>``: the LR volume (on its own grid) and the usable / skipped slices. Key: the HR key's parts
  plus the dataset's split-manifest hash (file-backed datasets), the case id and its slices, the degradation's
  class, a hash of its source code, its ``params()``, and the run seed.
* ``ongrid/<key>``: the training slices of the LR put back on the HR grid; key: the prepared key, the
  interpolator and the slices.
* ``validated/<key>`` (file-backed datasets): the case's files were read and checked once, at this version.
* ``index/``: DICOM header index of a data root (one header per series folder, per folder mtime).

A changed parameter, seed, normalisation rule, file, pipeline version or srbench version gives a new key (old
entries are just not used again; ``srbench cache clear`` removes them). A new degradation of a cached case reuses its HR entry, so
the files are not read again.

File format: ``SRBC1\\n`` + SHA-256 of the body (32 bytes) + body, where body = 8-byte header length + JSON
header (arrays' dtype, shape, offset; metadata, including the entry's own key) + raw array bytes. A file that is
truncated, garbled or otherwise unreadable fails the checksum, is deleted and rebuilt (``STATS["rebuilt"]``);
it never raises. Writes are atomic (a temporary file in the same folder, then ``os.replace``), so concurrent runs
at worst both compute an entry, and a crash leaves no half file under an entry's name (a torn write after a
power loss fails the checksum). Failing to write (read-only or full disk) is one warning, never an error.

The file-reading datasets built on this cache (lazy cases, files validated once) are in
``srbench.file_dataset``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from . import __version__
from .dataset import Case

FORMAT = 1
# The version of the steps between a case and its cache entries: the runner's ``prepare`` (HR normalisation with
# ``volume.minmax_range`` / ``volume.normalise``, the per-case degradation seed) and ``scoring.usable_slices``.
# Bump it by hand whenever their output changes: old entries then stop matching. ``tests/test_cache.py`` keeps a
# digest of ``prepare``'s output on a fixed case per version, so a change without a bump fails there.
PIPELINE_VERSION = 1
MAGIC = b"SRBC1\n"
OFF = ("off", "0", "none", "false", "no")
log = logging.getLogger("srbench.cache")

KINDS = ("hr", "prepared", "ongrid", "validated")
# hits / misses: LR entries (prepared and on-grid); hr_hits / hr_misses: normalised HR entries
STATS = {"hits": 0, "misses": 0, "hr_hits": 0, "hr_misses": 0, "rebuilt": 0, "write_errors": 0}


def cache_root() -> Path | None:
    """The cache folder, or None when ``$SRBENCH_CACHE`` turns the cache off."""
    value = os.environ.get("SRBENCH_CACHE", "").strip()
    if value.lower() in OFF:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "srbench"


def digest(parts) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple, set)):
        return list(obj)
    return repr(obj)


# ----------------------------------------------------------------------------------------------- file format

def write_entry(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Atomically write arrays + JSON metadata with a checksum (raises OSError on failure)."""
    header, chunks, offset = {"format": FORMAT, "meta": meta, "arrays": {}}, [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        header["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                                  "nbytes": array.nbytes}
        chunks.append(array)
        offset += array.nbytes
    head = json.dumps(header, default=_jsonable).encode()
    h = hashlib.sha256()
    prefix = struct.pack("<Q", len(head)) + head
    h.update(prefix)
    for chunk in chunks:
        h.update(memoryview(chunk).cast("B"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC)
            fh.write(h.digest())
            fh.write(prefix)
            for chunk in chunks:
                fh.write(memoryview(chunk).cast("B"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_entry(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta), or None when the file is absent; raises ValueError when it is corrupt."""
    try:
        with open(path, "rb") as fh:  # into a writable buffer: the arrays returned are writable, no copy
            data = bytearray(os.fstat(fh.fileno()).st_size)
            got = fh.readinto(data)
    except FileNotFoundError:
        return None
    if got != len(data):
        raise ValueError("short read")
    if len(data) < len(MAGIC) + 40 or not data.startswith(MAGIC):  # noqa: PLR2004
        raise ValueError("bad magic or too short")
    body = memoryview(data)[len(MAGIC) + 32:]
    if hashlib.sha256(body).digest() != bytes(data[len(MAGIC):len(MAGIC) + 32]):
        raise ValueError("checksum mismatch")
    (n,) = struct.unpack("<Q", body[:8])
    header = json.loads(bytes(body[8:8 + n]))
    if header.get("format") != FORMAT:
        raise ValueError(f"format {header.get('format')}")
    payload = body[8 + n:]
    arrays = {}
    for name, spec in header["arrays"].items():
        raw = payload[spec["offset"]:spec["offset"] + spec["nbytes"]]
        arrays[name] = np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])
    return arrays, header["meta"]


# ------------------------------------------------------------------------------------------------ the cache

def _geometry(image: sitk.Image) -> dict:
    return {"spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection())}


def _image(array: np.ndarray, geometry: dict) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image


_code_hashes: dict[type, str] = {}


def code_hash(degradation) -> str:
    """Hash of the source files of the degradation's classes (a composition's steps included)."""
    classes, todo = [], [degradation]
    while todo:
        d = todo.pop()
        classes.append(type(d))
        todo.extend(getattr(d, "steps", []) or [])
    h = hashlib.sha256()
    for cls in classes:
        if cls not in _code_hashes:
            try:
                source = Path(inspect.getsourcefile(cls)).read_bytes()
            except (TypeError, OSError):
                source = f"{cls.__module__}.{cls.__qualname__}".encode()
            _code_hashes[cls] = hashlib.sha256(source).hexdigest()
        h.update(f"{cls.__module__}.{cls.__qualname__}:{_code_hashes[cls]};".encode())
    return h.hexdigest()[:16]


def source_identity(case: Case) -> dict:
    """What the case's HR comes from: the dataset's file identity, or (otherwise) a hash of its voxels."""
    identity = getattr(case, "cache_identity", None)
    if identity is not None:
        return dict(identity)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(case.hr)).tobytes())
    h.update(json.dumps(_geometry(case.hr)).encode())
    if case.mask is not None:
        h.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(case.mask) > 0).tobytes())
        h.update(json.dumps(_geometry(case.mask)).encode())
    return {"content_sha256": h.hexdigest(), "pixel_type": case.hr.GetPixelIDTypeAsString()}


class PreprocessCache:
    """Normalised HR + degraded LR per (case, degradation, normalisation, seed); see the module docstring."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_root()

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.srbc"

    def keys(self, case: Case, degradation, seed: int, normalisation: str) -> tuple[str, str]:
        """(HR key, prepared key) of one case under one degradation, normalisation rule and seed."""
        source = source_identity(case)
        manifest_hash = source.pop("manifest_hash", None)
        hr_parts = {"format": FORMAT, "srbench": __version__, "pipeline": PIPELINE_VERSION, "source": source,
                    "normalisation": normalisation}
        hr_key = digest(hr_parts)
        slices = None if case.slices is None else [int(k) for k in case.slices]
        prepared_parts = {**hr_parts, "manifest_hash": manifest_hash, "case_id": case.case_id, "slices": slices,
                          "degradation": {"class": f"{type(degradation).__module__}.{type(degradation).__qualname__}",
                                          "code": code_hash(degradation), "params": degradation.params()},
                          "seed": int(seed)}
        return hr_key, digest(prepared_parts)

    def _read(self, kind: str, key: str):
        path = self._path(kind, key)
        try:
            entry = read_entry(path)
        except Exception as exc:  # noqa: BLE001 - any damage: drop it and rebuild
            log.warning("cache entry %s is corrupt (%s); rebuilding it", path, exc)
            STATS["rebuilt"] += 1
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return None
        if entry is not None and entry[1].get("key") != key:
            log.warning("cache entry %s holds another key; rebuilding it", path)
            STATS["rebuilt"] += 1
            return None
        return entry

    def _write(self, kind: str, key: str, arrays: dict, meta: dict) -> None:
        try:
            write_entry(self._path(kind, key), arrays, {**meta, "key": key})
        except OSError as exc:
            STATS["write_errors"] += 1
            if STATS["write_errors"] == 1:
                log.warning("cannot write the preprocessing cache under %s (%s); continuing without it",
                            self.root, exc)

    def load_hr(self, hr_key: str | None):
        """(normalised HR image, its array, mask as bool array or None), or None on a miss."""
        if not self.enabled or hr_key is None:
            return None
        entry = self._read("hr", hr_key)
        try:
            if entry is not None:
                arrays, meta = entry
                hr_array = arrays["hr"]
                mask = None
                if "mask" in arrays:
                    mask = np.unpackbits(arrays["mask"], count=hr_array.size).astype(bool).reshape(hr_array.shape)
                STATS["hr_hits"] += 1
                return _image(hr_array, meta["geometry"]), hr_array, mask
        except Exception as exc:  # noqa: BLE001 - a well-formed file with the wrong content: rebuild
            log.warning("cache entry hr/%s is unusable (%s); rebuilding it", hr_key, exc)
            STATS["rebuilt"] += 1
        STATS["hr_misses"] += 1
        return None

    def store_hr(self, hr_key: str | None, hr: sitk.Image, hr_array: np.ndarray, mask: np.ndarray | None) -> None:
        if not self.enabled or hr_key is None:
            return
        arrays = {"hr": np.asarray(hr_array, dtype=np.float32)}
        if mask is not None:
            arrays["mask"] = np.packbits(np.asarray(mask, dtype=bool).ravel())
        self._write("hr", hr_key, arrays, {"geometry": _geometry(hr)})

    def load_lr(self, key: str | None):
        """(LR image on its own grid, usable slices, skipped slices), or None on a miss."""
        if not self.enabled or key is None:
            return None
        entry = self._read("prepared", key)
        try:
            if entry is not None:
                arrays, meta = entry
                result = (_image(arrays["lr"], meta["geometry"]), [int(k) for k in meta["slices"]],
                          [int(k) for k in meta["skipped"]])
                STATS["hits"] += 1
                return result
        except Exception as exc:  # noqa: BLE001
            log.warning("cache entry prepared/%s is unusable (%s); rebuilding it", key, exc)
            STATS["rebuilt"] += 1
        STATS["misses"] += 1
        return None

    def store_lr(self, key: str | None, lr: sitk.Image, slices, skipped) -> None:
        if not self.enabled or key is None:
            return
        self._write("prepared", key, {"lr": sitk.GetArrayFromImage(lr).astype(np.float32)},
                    {"geometry": _geometry(lr), "slices": [int(k) for k in slices],
                     "skipped": [int(k) for k in skipped]})

    def slices_on_grid(self, key: str | None, interpolator: str, slices, compute: Callable[[], np.ndarray]):
        """LR slices put back on the HR grid with ``interpolator`` (training pairs), cached under ``key``."""
        if not self.enabled or key is None:
            return compute()
        k = digest({"prepared": key, "interpolator": interpolator, "slices": [int(s) for s in slices]})
        entry = self._read("ongrid", k)
        if entry is not None and "slices" in entry[0]:
            STATS["hits"] += 1
            return entry[0]["slices"]
        STATS["misses"] += 1
        out = np.asarray(compute(), dtype=np.float32)
        self._write("ongrid", k, {"slices": out}, {})
        return out

    # validated sources (file-backed datasets read a case once per file version to check it)
    def is_validated(self, identity: dict) -> bool:
        return self.enabled and self._path("validated", digest(identity)).exists()

    def mark_validated(self, identity: dict) -> None:
        if self.enabled:
            self._write("validated", digest(identity), {}, {"identity": identity})

    def info(self) -> dict:
        out = {"root": str(self.root) if self.root else None, "enabled": self.enabled}
        if self.enabled and self.root.exists():
            for kind in KINDS:
                files = list((self.root / kind).glob("*/*.srbc"))
                out[kind] = {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}
        return out

    def clear(self) -> None:
        if self.enabled:
            for kind in (*KINDS, "index"):
                shutil.rmtree(self.root / kind, ignore_errors=True)
