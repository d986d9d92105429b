"""What a run record keeps about where it ran: package versions, git state, hardware and command line
(read back for display by :mod:`srbench.provenance`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

# Every distribution whose version can change a score, a statistic or the data read (and the harness itself).
RESULT_SHAPING = ("srbench", "torch", "torchvision", "timm", "numpy", "scipy", "pandas", "SimpleITK", "nibabel",
                  "pydicom", "nilearn", "piq", "lpips", "scikit-posthocs", "statsmodels", "safetensors")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_sha() -> str | None:
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """True when srbench's checkout has uncommitted changes to tracked files; None outside a git checkout."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in RESULT_SHAPING:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def hardware(device) -> dict:
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def command_line() -> list[str]:
    """The command as typed: ``srbench`` and its arguments (a Python caller's argv otherwise)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("srbench", "__main__.py"):
        argv[0] = "srbench"
    return argv
