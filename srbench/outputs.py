"""Where a command writes: an output path is checked before any work, so a long job never fails at its last
step (or worse, replaces a folder or one of its own inputs)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SRBenchError


def check_output_path(path: str | os.PathLike, inputs=(), suffixes: tuple[str, ...] | None = None) -> Path:
    """``path`` can take a new file: it is not a folder, ends in one of ``suffixes`` (when given), is none of
    ``inputs``, and its folder exists or can be made, writable. Returns it as a Path; else a one-line error."""
    path = Path(path)
    if path.is_dir():
        example = path / ("out" + (suffixes[0] if suffixes else ""))
        raise SRBenchError(f"{path}: is a directory; give a file name, e.g. {example}")
    if suffixes and not path.name.lower().endswith(suffixes):
        raise SRBenchError(f"{path}: cannot tell the format from the name; end it in one of {', '.join(suffixes)}")
    for source in inputs:
        if source is not None and Path(source).exists() and path.resolve() == Path(source).resolve():
            raise SRBenchError(f"{path}: is also an input; write the result to another file")
    _check_writable_folder(path.parent, path)
    return path


def check_results_dir(path: str | os.PathLike) -> Path:
    """A results dir that is (or can be made) a writable folder; else a one-line error, before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SRBenchError(f"{path}: the results dir is a file, not a folder (give another --results-dir)")
    _check_writable_folder(path, path)
    return path


def _check_writable_folder(folder: Path, what: Path) -> None:
    """``folder`` exists as a writable folder, or its nearest existing ancestor does (so it can be made)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SRBenchError(f"{what}: cannot create its folder: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SRBenchError(f"{what}: cannot write into {folder} (permission denied)")
