"""Quiet native readers: ITK prints to C++ stderr and pydicom warns and logs before they fail; srbench reports
each problem once, in one line, so their own chatter is silenced while they run."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 points at /dev/null for the duration (ITK writes there from C++, below Python)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def pydicom_quiet():
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
