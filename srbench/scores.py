"""Per-slice score tables in long format, from run records or from any file, for :mod:`srbench.stats`.

Long format: one row per method x case x slice (x seed), columns ``method, case, slice``, optionally ``patient``
and ``seed``, and one numeric column per metric (lower-case names). Several seeds of one method are averaged per
(case, slice) before any statistic (:func:`seed_average`): the unit stays the slice (or volume), the seed
spread is reported beside the means, not counted as more units.

Public functions: :func:`read_scores` (a CSV file from any pipeline), :func:`seed_average`, :func:`select_runs`,
:func:`scores_of`, :func:`directions_of`, :func:`load_scores`, :func:`parse_directions`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import record as rec
from .errors import SRBenchError, did_you_mean
from .stats import DEFAULT_DIRECTIONS, metric_columns

KEYS = ("method", "case", "slice")


def read_scores(path: Path) -> pd.DataFrame:
    """A long score table from a CSV file: ``method, case, slice``, one column per metric, optional ``seed``
    and ``patient``; column names are lower-cased. Raises a one-line ``SRBenchError`` naming the file."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise SRBenchError(f"{path}: score table not found") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise SRBenchError(f"{path}: unreadable score table ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in KEYS if c not in df.columns]
    if missing:
        raise SRBenchError(f"{path}: lacks column(s) {', '.join(missing)} (need method, case, slice and one "
                           "column per metric)")
    df["method"], df["case"] = df["method"].astype(str), df["case"].astype(str)
    if "patient" in df:
        df["patient"] = df["patient"].astype(str)
    metrics = [c for c in df.columns if c not in (*KEYS, "seed", "patient")]
    bad = [c for c in metrics if not pd.api.types.is_numeric_dtype(df[c])]
    if bad or not metrics:
        raise SRBenchError(f"{path}: " + (f"column(s) {', '.join(bad)} are not numeric" if bad
                                          else "no metric column"))
    keys = [*KEYS, "seed"] if "seed" in df else list(KEYS)
    dup = df.duplicated(keys)
    if dup.any():
        first = df.loc[dup.idxmax(), keys].to_dict()
        raise SRBenchError(f"{path}: {first} appears more than once")
    return df


def parse_directions(items, metrics, path="scores") -> dict[str, str]:
    """``name=higher|lower`` items over the registry's directions (then the paper's four); every metric of the
    table must end up with one."""
    out = dict(DEFAULT_DIRECTIONS)
    try:
        from .plugins import get_registry

        out.update({n.lower(): m.direction for n, m in get_registry().metrics.items()})
    except SRBenchError:
        pass  # a broken plugin set: the table's directions can still be given
    for item in items or ():
        name, eq, value = str(item).partition("=")
        if not eq or value.strip() not in ("higher", "lower"):
            raise SRBenchError(f"--direction {item!r}: expected NAME=higher or NAME=lower")
        out[name.strip().lower()] = value.strip()
    unknown = [m for m in metrics if m not in out]
    if unknown:
        raise SRBenchError(f"{path}: direction of {', '.join(unknown)} unknown; give --direction "
                           f"{unknown[0]}=higher|lower")
    return {m: out[m] for m in metrics}


def seed_average(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per method x case x slice: each metric averaged over the seeds (no ``seed`` column: unchanged)."""
    if "seed" not in scores.columns:
        return scores
    keys = [c for c in ("method", "case", "slice") if c in scores.columns]
    metrics = [c for c in metric_columns(scores) if c != "seed"]
    return scores.groupby(keys, sort=False)[metrics].mean().reset_index()


# --- from run records -----------------------------------------------------------------------------------------


def select_runs(results_dir: Path, dataset: str, degradation: str | None = None, warn=None,
                ) -> dict[str, list[rec.RunRecord]]:
    """Label -> the runs (one per seed) of the newest configuration per method + preset for ``dataset`` (and
    ``degradation``). The label is the method name, or ``name (preset)`` when two presets of it are present.
    Without ``degradation``, the dataset's runs must share one degradation."""
    found = [r for r in rec.load_records(results_dir, warn) if r.status == "finished"]
    runs = [r for r in found if r.dataset.name == dataset]
    if not runs:
        names = sorted({r.dataset.name for r in found})
        raise SRBenchError(f"no runs for dataset {dataset!r}{did_you_mean(dataset, names)} under {results_dir}"
                           + (f" (datasets with runs: {', '.join(names)})" if names else ""))
    runs = _one_degradation(runs, dataset, degradation)
    groups = rec.group_runs(runs)
    presets: dict[str, set] = {}
    for g in groups:
        presets.setdefault(g[0].method, set()).add(g[0].preset)
    label = {id(g): g[0].method if len(presets[g[0].method]) == 1 else f"{g[0].method} ({g[0].preset})"
             for g in groups}
    return {label[id(g)]: g for g in sorted(groups, key=lambda g: label[id(g)])}


def _one_degradation(runs: list, dataset: str, degradation: str | None) -> list:
    present = sorted({r.degradation_spec for r in runs})
    if degradation is None:
        if len(present) > 1:
            raise SRBenchError(f"dataset {dataset!r} has runs for several degradations ({', '.join(present)}); "
                               "choose one with --degradation")
        return runs
    chosen = [r for r in runs if degradation in (r.degradation_spec, r.path.parts[-3])]
    if not chosen:
        raise SRBenchError(f"no runs for dataset {dataset!r} with degradation {degradation!r} "
                           f"(present: {', '.join(present)})")
    return chosen


def scores_of(runs: dict) -> pd.DataFrame:
    """The runs' scores in long format: method (the label), case, slice, one column per metric; a label's
    several runs (seeds) averaged per slice."""
    return pd.concat([_label_scores(label, rs if isinstance(rs, list) else [rs]) for label, rs in runs.items()],
                     ignore_index=True)


def _label_scores(label: str, runs: list) -> pd.DataFrame:
    parts = []
    for r in runs:
        df = r.scores()
        metrics = [m for m in r.metrics if m in df.columns] if r.metrics else metric_columns(df)
        keep = [c for c in ("case", "slice") if c in df.columns]
        parts.append(df[keep + metrics].astype({m: float for m in metrics}).assign(seed=r.seed))
    out = seed_average(pd.concat(parts, ignore_index=True).assign(method=label))
    return out[["method"] + [c for c in out.columns if c != "method"]]


def directions_of(runs: dict) -> dict[str, str]:
    """Metric -> "higher"/"lower" as the runs recorded it, over the defaults."""
    out = dict(DEFAULT_DIRECTIONS)
    for rs in runs.values():
        for r in rs if isinstance(rs, list) else [rs]:
            out.update({k: v.direction for k, v in r.metrics.items()})
    return out


def load_scores(results_dir: Path, dataset: str, degradation: str | None = None) -> pd.DataFrame:
    """Every method's per-slice scores for ``dataset`` (newest configuration per method + preset, seeds
    averaged), long format."""
    return scores_of(select_runs(results_dir, dataset, degradation))
