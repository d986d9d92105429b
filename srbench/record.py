"""Run records: one typed, versioned JSON per run plus per-slice scores, written atomically, read through one
function (:func:`load_record`) that validates it and migrates older schema versions.

Layout: ``DIR/<dataset>/<degradation>/<method>/<run-id>/record.json`` and ``scores.csv``. ``record.json`` is
written last, so its presence means the run was scored; a crash leaves no half-written file behind (every write
goes to a temporary file in the same folder and is renamed into place, with the user's umask).

Schema versions: 1 (metrics with direction only; no identity, command line or training state), 2 (this one:
each metric's direction, range, digits and definition; the run's identity; command line, dirty-tree flag,
scoring-pipeline version; dataset root and fingerprint; subjects and cases scored). A version-1 record is
migrated when read; the file is left as it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from .errors import SRBenchError

RECORD = "record.json"
SCORES = "scores.csv"
SCHEMA = 2
SCORING_VERSION = 1  # bump by hand when a change to srbench's scoring changes scores: older runs become stale

log = logging.getLogger("srbench.record")


class RecordError(SRBenchError):
    """A run record that cannot be read or fails validation; the message names its path."""


# --- atomic writes ------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# --- the record ---------------------------------------------------------------------------------------------


@dataclass
class MetricInfo:
    """What every table needs to show a metric: taken from the metric's ``info`` when the run scored it."""

    name: str
    direction: str  # "higher" or "lower" is better
    value_range: tuple = (None, None)  # None: open end
    digits: int = 4
    definition: str = ""
    unavailable: str | None = None  # the one-line notice when the metric could not be computed

    @classmethod
    def of(cls, metric) -> "MetricInfo":
        info = metric.info
        lo, hi = (None if v is None or not math.isfinite(v) else float(v) for v in info.value_range)
        return cls(metric.name, info.direction, (lo, hi), int(getattr(info, "digits", 4)), info.definition,
                   metric.unavailable_reason())


@dataclass
class Stat:
    mean: float
    std: float
    n: int


@dataclass
class DatasetRef:
    name: str
    description: str = ""
    split_hash: str = ""
    split_rule: str = ""
    test_cases: list = field(default_factory=list)
    skipped_cases: list = field(default_factory=list)
    kind: str | None = None  # the registered dataset (``folder``) behind a display name
    root: str | None = None  # resolved path of a file dataset
    fingerprint: str | None = None  # content identity (file datasets: each file's path, size, mtime)


@dataclass
class TrainingState:
    """Whether the weights' training reached its planned steps (None: the method does not train)."""

    finished: bool | None = None
    steps: int | None = None
    target_steps: int | None = None

    @classmethod
    def of(cls, training: dict | None) -> "TrainingState":
        t = training or {}
        t = t.get("training") if isinstance(t.get("training"), dict) else t  # a shipped card nests the engine's
        if not t:
            return cls()
        steps, target = t.get("steps"), t.get("target_steps")
        finished = t.get("finished")
        if finished is None and steps is not None and target is not None:
            finished = steps >= target
        return cls(None if finished is None else bool(finished), steps, target)


@dataclass
class RunRecord:
    """One run. ``path`` is the run directory (set when read, never stored)."""

    run_id: str
    finished_at: str
    config: dict
    method_card: dict
    dataset: DatasetRef
    metrics: dict  # name -> MetricInfo, in the order the run scored them
    per_slice: dict  # name -> Stat or None (unavailable)
    per_volume: dict
    n_slices: int
    timings: dict
    schema: int = SCHEMA
    status: str = "finished"
    identity: dict = field(default_factory=dict)
    degradation: dict = field(default_factory=dict)
    lr_to_hr_interpolator: str | None = None
    normalisation: str | None = None
    weights: dict = field(default_factory=dict)
    training: dict | None = None
    through_plane: dict | None = None  # coronal/sagittal and slice-to-slice scores (srbench.through_plane)
    volumes: dict | None = None  # saved SR volumes: layout and case -> file (srbench.sr_volumes)
    n_cases: int | None = None
    n_subjects: int | None = None
    skipped_slices: int = 0
    peak_memory_mb: float | None = None
    versions: dict = field(default_factory=dict)
    git_sha: str | None = None
    git_dirty: bool | None = None
    command: list | None = None
    scoring_version: int | None = None
    hardware: dict = field(default_factory=dict)
    path: Path | None = None

    # --- what readers ask ---
    @property
    def method(self) -> str:
        return self.method_card.get("name") or self.config.get("method")

    @property
    def preset(self) -> str | None:
        return self.method_card.get("preset") or self.config.get("preset")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0) or 0)

    @property
    def batch_size(self) -> int | None:
        """Slices per forward pass at inference, as the run used them (None: a record from before srbench kept it).
        Not part of the run's identity: outputs do not depend on it."""
        value = self.config.get("batch_size")
        return None if value is None else int(value)

    @property
    def degradation_spec(self) -> str:
        return self.config.get("degradation") or (self.path.parts[-3] if self.path else "")

    @property
    def dataset_key(self) -> tuple:
        """What tells datasets apart on a leaderboard: name and root. Changed content under one root is a new
        configuration (the fingerprint is in the identity): its newest runs replace the older ones' row."""
        return (self.dataset.name, self.dataset.root)

    @property
    def training_state(self) -> TrainingState:
        return TrainingState.of(self.training)

    @property
    def unfinished_training(self) -> bool:
        return self.training_state.finished is False

    def scores(self) -> pd.DataFrame:
        """Per-slice scores: case, patient, slice and one lower-case column per metric."""
        try:
            df = pd.read_csv(self.path / SCORES)
        except FileNotFoundError:
            raise RecordError(f"{self.path / SCORES}: missing (the run is incomplete)") from None
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise RecordError(f"{self.path / SCORES}: unreadable ({exc})") from None
        df.columns = [str(c).lower() for c in df.columns]
        return df

    def to_dict(self) -> dict:
        """The JSON form (``path`` left out; summaries under ``summary`` as written since schema 1)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("path", "per_slice", "per_volume")}
        out["dataset"] = asdict(self.dataset)
        out["metrics"] = {k: {**asdict(v), "value_range": list(v.value_range)} for k, v in self.metrics.items()}
        out["summary"] = {"per_slice": _stats_json(self.per_slice), "per_volume": _stats_json(self.per_volume)}
        return out


def _stats_json(stats: dict) -> dict:
    return {k: None if v is None else asdict(v) for k, v in stats.items()}


# --- reading ------------------------------------------------------------------------------------------------

# The four metrics version-1 records could hold, as their info said then (range, digits, definition).
_V1_METRICS = {"psnr": ("higher", (0.0, 80.0), 2), "ssim": ("higher", (-1.0, 1.0), 4),
               "gmsd": ("lower", (0.0, 0.5), 4), "lpips": ("lower", (0.0, None), 4)}


def _migrate_v1(raw: dict, run_dir: Path) -> dict:
    """Schema 1 -> 2: lower-case metric names with their range and digits; identity, counts and provenance
    fields that version 1 did not keep are derived where the record allows it, else left empty."""
    raw = dict(raw)
    metrics = {}
    for name, meta in (raw.get("metrics") or {}).items():
        key = name.lower()
        direction, value_range, digits = _V1_METRICS.get(key, (meta.get("direction"), (None, None), 4))
        metrics[key] = {"name": key, "direction": meta.get("direction") or direction, "value_range": value_range,
                        "digits": digits, "definition": "", "unavailable": meta.get("unavailable")}
    raw["metrics"] = metrics
    summary = raw.get("summary") or {}
    raw["summary"] = {part: {k.lower(): v for k, v in (summary.get(part) or {}).items()}
                      for part in ("per_slice", "per_volume")}
    config = raw.get("config") or {}
    card, dataset = raw.get("method_card") or {}, raw.get("dataset") or {}
    raw["identity"] = {"method": card.get("name"), "method_version": card.get("version"),
                       "preset": card.get("preset"), "dataset": dataset.get("name"),
                       "split_hash": dataset.get("split_hash"), "degradation": raw.get("degradation"),
                       "seed": config.get("seed", 0), "weights_sha256": (raw.get("weights") or {}).get("sha256")}
    raw["n_cases"] = len(dataset.get("test_cases") or []) - len(dataset.get("skipped_cases") or []) or None
    try:  # the subjects scored: version 1 kept them only in scores.csv
        raw["n_subjects"] = int(pd.read_csv(run_dir / SCORES, usecols=["patient"])["patient"].nunique())
    except (OSError, ValueError):
        raw["n_subjects"] = None
    raw["schema"] = 2
    return raw


_MIGRATIONS = {1: _migrate_v1}
_REQUIRED = {"run_id": str, "finished_at": str, "config": dict, "method_card": dict, "dataset": dict,
             "metrics": dict, "summary": dict, "n_slices": int, "timings": dict}


def record_from_dict(raw: dict, run_dir: Path | None = None) -> RunRecord:
    """Validate and build a record from its JSON form (any known schema version)."""
    where = str(run_dir / RECORD) if run_dir else "record"
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: not a JSON object")
    version = raw.get("schema", 1)
    if version not in (*_MIGRATIONS, SCHEMA):
        raise RecordError(f"{where}: unknown schema version {version!r} (this srbench reads 1 to {SCHEMA})")
    while version != SCHEMA:
        raw, version = _MIGRATIONS[version](raw, Path(run_dir or ".")), version + 1
    for key, kind in _REQUIRED.items():
        if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
            got = "missing" if key not in raw else f"a {type(raw[key]).__name__}"
            raise RecordError(f"{where}: field {key!r} is {got}, expected a {kind.__name__} (partial record?)")
    try:
        metrics = {k: MetricInfo(**{**v, "value_range": tuple(v.get("value_range") or (None, None))})
                   for k, v in raw["metrics"].items()}
        summary = raw["summary"]
        per_slice, per_volume = (_stats(summary.get(part) or {}) for part in ("per_slice", "per_volume"))
        dataset = DatasetRef(**raw["dataset"])
        known = {f.name for f in fields(RunRecord)} - {"path", "per_slice", "per_volume"}
        rest = {k: v for k, v in raw.items() if k in known and k not in ("metrics", "dataset")}
        record = RunRecord(**rest, metrics=metrics, dataset=dataset, per_slice=per_slice, per_volume=per_volume,
                           path=run_dir)
    except (TypeError, KeyError, AttributeError) as exc:
        raise RecordError(f"{where}: malformed ({exc})") from None
    for name, info in record.metrics.items():
        if info.direction not in ("higher", "lower"):
            raise RecordError(f"{where}: metric {name!r} has direction {info.direction!r} (higher or lower)")
    return record


def _stats(part: dict) -> dict:
    return {k.lower(): None if v is None else Stat(float(v["mean"]), float(v["std"]), int(v["n"]))
            for k, v in part.items()}


def load_record(path: Path) -> RunRecord:
    """The record at ``path`` (a record.json or its run directory), validated and migrated to this schema.

    Raises :class:`RecordError` naming the path when it is unreadable, truncated, of an unknown schema or lacks
    a field, or when its scores.csv is missing."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    file = run_dir / RECORD
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{file}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{file}: unreadable or truncated JSON ({exc})") from None
    record = record_from_dict(raw, run_dir)
    if not (run_dir / SCORES).is_file():
        raise RecordError(f"{run_dir / SCORES}: missing (the run is incomplete)")
    return record


def find_records(results_dir: Path) -> list[Path]:
    return sorted(Path(results_dir).glob(f"*/*/*/*/{RECORD}"))


def load_records(results_dir: Path, warn=None) -> list[RunRecord]:
    """Every valid record under ``results_dir``; each invalid one is reported (``warn(message)``, default: the
    ``srbench.record`` logger) and left out."""
    out = []
    for path in find_records(results_dir):
        try:
            out.append(load_record(path))
        except RecordError as exc:
            (warn or log.warning)(f"ignoring {exc}")
    return out


def run_id(identity: dict) -> str:
    """Stable id of a run: a hash of what makes it this run (``RunRecord.identity``)."""
    import hashlib

    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"seed{identity.get('seed', 0)}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


def run_dir(results_dir: Path, dataset: str, degradation: str, method: str, rid: str) -> Path:
    return Path(results_dir) / dataset / degradation / method / rid


def config_id(r: RunRecord) -> str:
    """The run's identity without its seed: runs of one configuration differ only by seed."""
    identity = {k: v for k, v in r.identity.items() if k != "seed"}
    return run_id({**identity, "seed": "*"})


def group_runs(records: list) -> list[list[RunRecord]]:
    """Per dataset x degradation x method x preset: the newest configuration's runs, the newest per seed."""
    by_key: dict[tuple, list] = {}
    for r in sorted(records, key=lambda r: r.finished_at):
        by_key.setdefault((r.dataset_key, r.degradation_spec, r.method, r.preset), []).append(r)
    groups = []
    for runs in by_key.values():
        config = config_id(runs[-1])
        per_seed = {r.seed: r for r in runs if config_id(r) == config}
        groups.append([per_seed[s] for s in sorted(per_seed)])
    return groups
