"""The preprocessing cache: normalised HR and degraded LR volumes on disk, so a second run starts at once.

Where: ``$SRBENCH_CACHE`` (``off``, ``0``, ``none`` or ``false`` disables it), default ``~/.cache/srbench``.
``srbench cache info`` / ``srbench cache clear`` inspect and empty it.

What and how it is keyed (every key is the SHA-256 of a canonical JSON of its parts):

* ``hr/<key>``: the normalised HR volume (float32), its geometry and its mask (bit-packed). Key: cache format,
  srbench version, a hash of the normalisation and slice-choice code (``pipeline_hash``), the case's *source
  identity* and the normalisation rule. For cases of file-backed datasets (``LazyCase``) the source identity is
  the dataset name, a hash of the dataset module's source, the case id and the (relative path, size, mtime) of
  every file the case is read from; for any other case it is the SHA-256 of the HR voxels and geometry (and
  mask), so a stale entry is impossible, at the price of reading the case.
* ``prepared/<key>``: the LR volume (on its own grid) and the usable / skipped slices. Key: the HR key's parts
  plus the dataset's split-manifest hash (file-backed datasets), the case id and its slices, the degradation's
  class, a hash of its source code, its ``params()``, and the run seed.
* ``ongrid/<key>``: the training slices of the LR put back on the HR grid; key: the prepared key, the
  interpolator and the slices.
* ``validated/<key>`` (file-backed datasets): the case's files were read and checked once, at this version.
* ``index/``: DICOM header index of a data root (one header per series folder, per folder mtime).

A changed parameter, seed, normalisation rule, file or srbench version gives a new key (old entries are just not
used again; ``srbench cache clear`` removes them). A new degradation of a cached case reuses its HR entry, so
the files are not read again.

File format: ``SRBC1\\n`` + SHA-256 of the body (32 bytes) + body, where body = 8-byte header length + JSON
header (arrays' dtype, shape, offset; metadata, including the entry's own key) + raw array bytes. A file that is
truncated, garbled or otherwise unreadable fails the checksum, is deleted and rebuilt (``STATS["rebuilt"]``);
it never raises. Writes are atomic (a temporary file in the same folder, then ``os.replace``), so concurrent runs
at worst both compute an entry, and a crash leaves no half file under an entry's name (a torn write after a
power loss fails the checksum). Failing to write (read-only or full disk) is one warning, never an error.

Also here: ``LazyCase`` (a case whose volume is read on first use, so a cache hit never reads it) and
``FileBackedDataset``, the base of the file-reading datasets (``prostatex``, ``folder``): lazy cases, files
validated once per version, and bad cases skipped and recorded in ``dataset.skipped``.
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
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk

from . import __version__
from .dataset import Case, Dataset, SplitManifest
from .errors import SRBenchError

FORMAT = 1
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


_pipeline: list[str] = []


def pipeline_hash() -> str:
    """Hash of the source of the steps between a case and its cache entries (normalisation, slice choice), so
    that editing them invalidates old entries even when the recorded rule text stays the same."""
    if not _pipeline:
        from . import runner, scoring, volume

        h = hashlib.sha256()
        for fn in (volume.to_array, volume.from_array, volume.minmax_range, volume.normalise, scoring.usable_slices,
                   runner.prepare):
            try:
                h.update(inspect.getsource(fn).encode())
            except (OSError, TypeError):
                h.update(fn.__qualname__.encode())
        _pipeline.append(h.hexdigest()[:16])
    return _pipeline[0]


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
        hr_parts = {"format": FORMAT, "srbench": __version__, "pipeline": pipeline_hash(), "source": source,
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


# ------------------------------------------------------------------------------------ lazily loaded cases

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


def main(argv=None) -> None:  # python -m srbench.cache [info|clear]
    import sys

    args = sys.argv[1:] if argv is None else argv
    cache = PreprocessCache()
    if args[:1] == ["clear"]:
        cache.clear()
    print(json.dumps(cache.info(), indent=2))


if __name__ == "__main__":
    main()
