"""Run records: one JSON per run plus per-slice scores, written atomically, found by walking a results dir.

Layout: ``DIR/<dataset>/<degradation>/<method>/<run-id>/record.json`` and ``scores.csv``. ``record.json`` is
written last, so its presence means the run finished; a crash leaves no half-written file behind (every write
goes to a temporary file in the same folder and is renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

RECORD = "record.json"
SCORES = "scores.csv"
SCHEMA = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def run_id(identity: dict) -> str:
    """Stable id of a run: a hash of what makes it this run (method, preset and its settings, data, degradation,
    seed, weights)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"seed{identity.get('seed', 0)}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


def run_dir(results_dir: Path, dataset: str, degradation: str, method: str, rid: str) -> Path:
    return Path(results_dir) / dataset / degradation / method / rid


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("srbench", "torch", "numpy", "SimpleITK", "piq", "lpips", "scipy", "pandas"):
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


def find_records(results_dir: Path) -> list[Path]:
    return sorted(Path(results_dir).glob(f"*/*/*/*/{RECORD}"))


def load_record(path: Path) -> dict:
    with open(path) as fh:
        record = json.load(fh)
    record["_dir"] = str(Path(path).parent)
    return record


def load_scores(record: dict) -> pd.DataFrame:
    return pd.read_csv(Path(record["_dir"]) / SCORES)
