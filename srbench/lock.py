"""One process at a time per run: an exclusive lock of a run folder, kept in the results dir.

Two processes given the same configuration compute the same run folder; without a lock both would compute and
the last write would win. :func:`run_lock` takes an OS lock (``fcntl.flock``, released by the kernel when its
holder dies, so a killed run never leaves a stale lock) on ``<results dir>/.locks/<hash of the run folder>.lock``.
A second process waits for the first (saying so, with the holder's pid and host), then finds the run finished
and does nothing. Runs of different configurations lock different files and proceed in parallel.

The lock file is removed by its holder before the lock is released; a waiter that then locks the removed file
notices (its inode is no longer the one at the path) and locks the new file instead.

While holding the lock, the holder owns the run folder, so every temporary file there (``.<name>.<random>.tmp``,
what an atomic write leaves when its process is killed before the rename) is debris and is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

LOCKS = ".locks"
HOST = socket.gethostname()
# Temporaries of atomic writes: .<name>.<random>.tmp (srbench.record, tempfile.mkstemp) and .<name>.tmp[<suffix>].
TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9.]+)?$")


def lock_path(results_dir: Path, run_folder: Path) -> Path:
    key = hashlib.sha256(str(Path(run_folder).resolve()).encode()).hexdigest()[:20]
    return Path(results_dir) / LOCKS / f"{key}.lock"


@contextlib.contextmanager
def run_lock(results_dir: Path, run_folder: Path, waiting=None):
    """Hold the lock of ``run_folder`` for the ``with`` block. ``waiting(holder: str)`` is called once when
    another process holds it (``holder``: "pid N on HOST since HH:MM:SS"), before waiting for it."""
    path = lock_path(results_dir, run_folder)
    fd = _acquire(path, waiting)
    try:
        remove_temps(Path(run_folder))
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the release: see the module docstring
        os.close(fd)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty: no other run holds a lock


def _acquire(path: Path, waiting) -> int:
    told = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # made by one process and removed by another between mkdir and its own check
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue  # the folder was removed by a holder that just finished: make it again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None and not told:
                waiting(_holder(fd))
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder finishes (or dies)
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": HOST, "since": time.time()}).encode())
            return fd
        os.close(fd)  # we locked a file its holder had already removed: try the one at the path now


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']} since {time.strftime('%H:%M:%S', time.localtime(info['since']))}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def remove_temps(folder: Path) -> list[Path]:
    """Remove the temporaries of interrupted writes in ``folder`` (call it only while owning the folder); returns
    what was removed. Never raises: clean-up must not stop the run it precedes."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        path = Path(folder) / name
        if TEMP.match(name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
