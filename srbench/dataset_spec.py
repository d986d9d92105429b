"""Dataset specs: ``NAME``, ``NAME:ROOT[?name=DISPLAY]`` or a dataset named in ``srbench.toml``, resolved to a
dataset; and a dataset's identity (what makes two datasets the same data) for run ids and leaderboard rows."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from pathlib import Path

from .dataset import Dataset
from .errors import SRBenchError
from .plugins import get_registry, lookup


def make_dataset(spec: str, data_root: str | None = None) -> Dataset:
    """``NAME``, ``NAME:ROOT`` (e.g. ``folder:/data/brains``; ``folder:/data/brains?name=brains`` names it on the
    leaderboard), or a dataset named in the config file
    (``$SRBENCH_CONFIG``, default ``./srbench.toml``)::

        [datasets.mybrain]
        type = "folder"            # a registered dataset
        root = "/data/7T/T1maps"   # relative paths: from the config file's folder
        # any other key is passed to the dataset's constructor (folder: suffix, seed, ...)

    A registered name always wins over a config entry of the same name. The registered kind is kept as
    ``dataset.kind``.
    """
    spec, display = _display_name(spec)
    dataset = _make(spec, data_root)
    dataset.kind = getattr(dataset, "kind", None) or spec.partition(":")[0].strip()
    if display:
        dataset.name = display
    return dataset


def _display_name(spec: str) -> tuple[str, str | None]:
    base, sep, query = spec.partition("?")
    if not sep:
        return spec, None
    key, eq, value = query.partition("=")
    if key.strip() != "name" or not eq or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value.strip()):
        raise SRBenchError(f"dataset {spec!r}: expected ?name=NAME after the path (letters, digits, . _ -)")
    return base, value.strip()


def _make(spec: str, data_root: str | None) -> Dataset:
    name, sep, root = (part.strip() for part in spec.partition(":"))
    if sep and not root:
        raise SRBenchError(f"dataset {spec!r}: no path after ':' (use NAME:PATH)")
    if sep and data_root and Path(root).resolve() != Path(data_root).resolve():
        raise SRBenchError(f"dataset {spec!r} names a root and --data-root names another ({data_root}); give one")
    root = root or data_root
    if name not in get_registry().datasets:
        config_path, named = _named_datasets()
        if name in named:
            entry = dict(named[name])
            kind = entry.pop("type", None)
            if not kind:
                raise SRBenchError(f"{config_path}: [datasets.{name}] needs type = \"<registered dataset>\"")
            cfg_root = entry.pop("root", None)
            if root is None and cfg_root is not None:
                root = str((config_path.parent / Path(cfg_root).expanduser()).resolve())
            try:
                dataset = lookup("datasets", kind)(root=root, **entry)
            except TypeError as exc:
                raise SRBenchError(f"{config_path}: [datasets.{name}]: {exc}") from None
            dataset.name, dataset.kind = name, kind
            return dataset
    return lookup("datasets", name)(root=root)


def _named_datasets() -> tuple[Path, dict]:
    path = Path(os.environ.get("SRBENCH_CONFIG", "srbench.toml")).expanduser()
    if not path.is_file():
        if "SRBENCH_CONFIG" in os.environ:
            raise SRBenchError(f"{path}: config file not found ($SRBENCH_CONFIG)")
        return path, {}
    from .compat import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SRBenchError(f"{path}: cannot read config ({exc})") from None
    named = data.get("datasets", {})
    if not isinstance(named, dict) or not all(isinstance(v, dict) for v in named.values()):
        raise SRBenchError(f"{path}: [datasets] must hold tables, e.g. [datasets.mybrain]")
    return path, named


def dataset_identity(dataset: Dataset) -> dict:
    """What makes a dataset this data: display name, registered kind, resolved root and a content fingerprint.

    File-backed datasets fingerprint every case's files (path relative to the root, size, mtime: cheap on a
    large tree, and any replaced file changes it); other datasets are defined by their code, so the fingerprint
    is a hash of the dataset class's source (a dataset may instead give its own ``fingerprint()``)."""
    root = str(Path(dataset.root).expanduser().resolve()) if getattr(dataset, "root", None) else None
    return {"name": dataset.name, "kind": getattr(dataset, "kind", None) or dataset.name, "root": root,
            "fingerprint": _fingerprint(dataset)}


def _fingerprint(dataset: Dataset) -> str:
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        parts = own()
    elif callable(getattr(dataset, "identity", None)) and callable(getattr(dataset, "case_files", None)):
        parts = []
        for split, ids in sorted(dataset.manifest().splits.items()):
            for case_id in ids:
                try:
                    parts.append([split, dataset.identity(case_id)])
                except (SRBenchError, OSError) as exc:  # an unreadable case: its problem is part of the identity
                    parts.append([split, case_id, str(exc)])
    else:
        try:
            parts = hashlib.sha256(Path(inspect.getsourcefile(type(dataset))).read_bytes()).hexdigest()
        except (TypeError, OSError):
            parts = f"{type(dataset).__module__}.{type(dataset).__qualname__}"
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dataset_folder(identity: dict) -> str:
    """The results-dir folder of a dataset: its name, plus a short hash of its root when it has one (two
    folders read as ``folder`` never share a folder)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity["name"]).strip("_") or "dataset"
    if identity.get("root"):
        slug += "-" + hashlib.sha256(identity["root"].encode()).hexdigest()[:8]
    return slug
