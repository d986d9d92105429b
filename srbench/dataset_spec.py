"""Dataset specs: ``NAME``, ``NAME:ROOT`` or a dataset named in ``srbench.toml``, resolved to a dataset."""

from __future__ import annotations

import os
from pathlib import Path

from .dataset import Dataset
from .errors import SRBenchError
from .plugins import get_registry, lookup


def make_dataset(spec: str, data_root: str | None = None) -> Dataset:
    """``NAME``, ``NAME:ROOT`` (e.g. ``folder:/data/brains``), or a dataset named in the config file
    (``$SRBENCH_CONFIG``, default ``./srbench.toml``)::

        [datasets.mybrain]
        type = "folder"            # a registered dataset
        root = "/data/7T/T1maps"   # relative paths: from the config file's folder
        # any other key is passed to the dataset's constructor (folder: suffix, seed, ...)

    A registered name always wins over a config entry of the same name.
    """
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
            dataset.name = name
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
