"""The leaderboard, built from run records (never kept by hand) or from any long score table: rows, seeds,
statistics and marks. Rendering: CSV, JSON and Markdown in :mod:`srbench.leaderboard_export`, LaTeX in
:mod:`srbench.latex` (pandas Styler), HTML in :mod:`srbench.report` (Jinja2 template).

One row per dataset x degradation x method x preset: the newest configuration of that method (its run identity
without the seed), aggregated over all its seeds: per metric the mean over seeds of each run's per-slice mean,
the per-slice SD (mean of the seeds' SDs; one seed: that run's SD), the SD of the seeds' means (``seed_sd``) and
``n_seeds``. Different datasets (name and root; changed content is a new configuration) are different rows. Every metric a run has
appears, with the direction, range and digits its record carries (plugin metrics included).

Within each dataset x degradation block the statistics (:func:`srbench.stats.analyse`, on the seed-averaged
per-slice scores, or per-volume means) decide the marks: with reference ``best`` a method whose difference from
the best is NOT significant gets an asterisk; with reference ``METHOD`` (the paper's Table 1) a method whose
difference from METHOD is not significant. Bold (best) and underline (second) are chosen over the same units the
statistics tested. Every export states the unit, the protocol, n (subjects, volumes, slices, seeds) and the
reference, warns when the slices come from few subjects and when the protocol cannot reach significance at
that n (with the smallest attainable p).

CSV columns: ``method, preset, dataset, degradation, n_subjects, n_cases, n_slices, n_seeds, seeds``, per metric
``<m>_mean, <m>_std, <m>_seed_sd``, then ``sec_per_slice`` and ``device`` (the run's inference device), the training budget ``train_samples``
(steps x batch), ``train_steps, train_batch_size, train_seconds, train_device`` (empty for a method that does not
train; see :mod:`srbench.provenance`), ``parameters, sampling_steps, weights, training`` (finished, or
unfinished with steps done / planned), ``run_id, finished_at, reference`` and per metric ``<m>_not_sig_from_best`` (reference ``best``) or
``<m>_not_sig_from_reference``: True when the row carries the mark, False when not (the best/reference itself,
or a significant difference), empty when no statistics exist for that metric.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import provenance as pv
from . import record as rec
from . import scores as sc
from . import stats as st
from . import through_plane
from .errors import SRBenchError

KEY = ["dataset", "degradation", "method", "preset"]
BLOCK = ["dataset", "degradation"]
BUILTIN = ("psnr", "ssim", "gmsd", "lpips")  # the paper's four: always columns, even when no run has one
FIXED = ["method", "preset", "dataset", "degradation", "n_subjects", "n_cases", "n_slices", "n_seeds", "seeds"]
TAIL = ["sec_per_slice", "device", "train_samples", "train_steps", "train_batch_size", "train_seconds", "train_device",
        "parameters", "sampling_steps", "weights", "training", "run_id", "finished_at"]
FEW_SUBJECTS = 5  # fewer subjects than this behind slice-unit statistics earns a warning


def mark_column(metric: str, reference: str = "best") -> str:
    return f"{metric}_not_sig_from_best" if reference == "best" else f"{metric}_not_sig_from_reference"


NOT_SIG = "{}_not_sig_from_best"  # the column name with the default reference


# --- rows ---------------------------------------------------------------------------------------------------


def metrics_of(records) -> dict[str, rec.MetricInfo]:
    """Metric name -> info, over the records (first seen wins), the paper's four first."""
    out = {m: rec.MetricInfo(m, *_V1[m]) for m in BUILTIN}
    for r in records:
        for name, info in r.metrics.items():
            if name not in out or not out[name].definition:
                out[name] = info
    return out


_V1 = {"psnr": ("higher", (0.0, 80.0), 2), "ssim": ("higher", (-1.0, 1.0), 4), "gmsd": ("lower", (0.0, 0.5), 4),
       "lpips": ("lower", (0.0, None), 4)}


def _label_datasets(records: list) -> dict:
    """Dataset key (name, root) -> label: its name, made unique with its root when two roots share the name."""
    ids = {r.dataset_key for r in records}
    names = {}
    for key in ids:
        names.setdefault(key[0], []).append(key)
    return {key: key[0] if len(names[key[0]]) == 1 else f"{key[0]}:{key[1] or 'built-in'}" for key in ids}


def _row(runs: list, dataset_label: str, metrics: dict) -> dict:
    newest = max(runs, key=lambda r: r.finished_at)
    card = newest.method_card
    row = {"method": newest.method, "preset": newest.preset, "dataset": dataset_label,
           "degradation": newest.degradation_spec, "n_subjects": newest.n_subjects, "n_cases": newest.n_cases,
           "n_slices": newest.n_slices, "n_seeds": len(runs), "seeds": " ".join(str(r.seed) for r in runs)}
    for m in metrics:
        stats = [r.per_slice.get(m) for r in runs]
        means = [s.mean for s in stats if s is not None]
        ok = len(means) == len(runs)  # a metric some seed lacks is not averaged over the others
        row[f"{m}_mean"] = float(np.mean(means)) if ok else np.nan
        row[f"{m}_std"] = float(np.mean([s.std for s in stats])) if ok else np.nan
        row[f"{m}_seed_sd"] = float(np.std(means, ddof=1)) if ok and len(means) > 1 else np.nan
    state = [r.training_state for r in runs]
    unfinished = [s for s in state if s.finished is False]
    view = {"training": newest.training, "hardware": newest.hardware}  # what srbench.provenance reads
    budget = pv.training_budget(view) or {}
    row.update(sec_per_slice=float(np.mean([r.timings.get("sec_per_slice", np.nan) for r in runs])),
               device=pv.run_device(view),
               **{f"train_{k}": budget.get(k) for k in ("samples", "steps", "batch_size", "seconds", "device")},
               parameters=card.get("parameters"), sampling_steps=card.get("sampling_steps"),
               weights=newest.weights.get("source"),
               training=("unfinished " + ", ".join(f"{s.steps}/{s.target_steps}" for s in unfinished)) if unfinished
               else ("finished" if any(s.finished for s in state) else None),
               run_id=" ".join(r.run_id for r in runs), finished_at=newest.finished_at, _dir=str(newest.path),
               _runs=runs)
    row.update(through_plane.columns(newest))  # coronal/sagittal scores and consistency (the newest seed's)
    return row


def load_table(results_dir: Path, dataset: str | None = None, degradation: str | None = None,
               warn=None, plane: str = "axial") -> pd.DataFrame:
    """The leaderboard as a DataFrame (sorted by dataset, degradation, first metric's mean, best first).

    Invalid records are reported through ``warn`` (default: the ``srbench.record`` logger) and left out.
    Columns starting with ``_`` (``_dir``: the newest run's directory; ``_runs``: the records) are internal."""
    records = [through_plane.plane_view(r, plane) for r in rec.load_records(results_dir, warn)]  # plane: its scores
    return table_from_records(records, dataset, degradation)


def table_from_records(records: list, dataset: str | None = None, degradation: str | None = None) -> pd.DataFrame:
    metrics = metrics_of(records)
    labels = _label_datasets(records)
    rows = [_row(runs, labels[runs[0].dataset_key], metrics) for runs in rec.group_runs(records)]
    planes = list(dict.fromkeys(k for row in rows for k in row if k.startswith(through_plane.COLUMN_PREFIXES)))
    columns = FIXED + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "seed_sd")] + TAIL + planes
    df = pd.DataFrame(rows, columns=columns + ["_dir", "_runs"])
    for c in ("train_samples", "train_steps", "train_batch_size"):  # counts, empty for methods that do not train
        df[c] = pd.to_numeric(df[c]).round().astype("Int64")
    df.attrs["metrics"] = metrics
    if dataset:
        df = df[(df.dataset == dataset) | df["_runs"].map(lambda rs: rs[0].dataset.name == dataset)]
    if degradation:
        df = df[df.degradation == degradation]
    first = next(iter(metrics))
    df = df.sort_values(["dataset", "degradation", f"{first}_mean"], ascending=[True, True,
                                                                                 metrics[first].direction == "lower"])
    df = df.reset_index(drop=True)
    df.attrs["metrics"] = metrics
    return df


def table_from_scores(scores: pd.DataFrame, directions: dict, dataset: str = "scores",
                      degradation: str = "") -> pd.DataFrame:
    """The leaderboard of a long score table (``srbench.stats.read_scores``): one row per method (seeds
    aggregated as for runs); the rows carry their scores for :func:`significance`."""
    metrics = {m: rec.MetricInfo(m, directions[m]) for m in st.metric_columns(scores) if m != "seed"}
    rows = []
    for method, own in scores.groupby("method", sort=False):
        seeds = sorted(own["seed"].unique()) if "seed" in own else [0]
        row = {"method": method, "preset": "", "dataset": dataset, "degradation": degradation,
               "n_subjects": own["patient"].nunique() if "patient" in own else None,
               "n_cases": own["case"].nunique(), "n_slices": len(own.drop_duplicates(["case", "slice"])),
               "n_seeds": len(seeds), "seeds": " ".join(str(s) for s in seeds)}
        for m in metrics:
            per_seed = [own[own["seed"] == s][m] if "seed" in own else own[m] for s in seeds]
            means = [v.mean() for v in per_seed]
            row[f"{m}_mean"] = float(np.mean(means)) if own[m].notna().any() else np.nan
            row[f"{m}_std"] = float(np.mean([v.std(ddof=1) for v in per_seed])) if own[m].notna().any() else np.nan
            row[f"{m}_seed_sd"] = float(np.std(means, ddof=1)) if len(means) > 1 else np.nan
        rows.append({**row, "_scores": own})
    df = pd.DataFrame(rows)
    for c in TAIL:
        df[c] = None
    df.attrs["metrics"] = metrics
    return df


def metric_infos(df: pd.DataFrame) -> dict:
    return df.attrs.get("metrics") or metrics_of([])


# --- significance ---------------------------------------------------------------------------------------------


@dataclass
class BlockStats:
    """The statistics of one dataset x degradation block."""

    dataset: str
    degradation: str
    labels: dict  # table row index -> the method's label in the statistics (name, or "name (preset)")
    runs: dict = field(default_factory=dict)  # label -> the newest run record (for its directions and files)
    scores: pd.DataFrame | None = None  # long format, seed-averaged, as stats.scores_of gives it
    report: st.StatsReport | None = None
    error: str | None = None  # why there are no statistics for this block
    n: dict = field(default_factory=dict)  # subjects, cases, slices, seeds behind the statistics
    warnings: list = field(default_factory=list)


@dataclass
class Significance:
    protocol: str = "paper"
    unit: str = "slice"
    alpha: float = st.ALPHA
    reference: str = "best"
    blocks: list[BlockStats] = field(default_factory=list)
    plane: str = "axial"  # whose scores the table shows (srbench.through_plane)


def _labels(block: pd.DataFrame) -> dict:
    counts = block["method"].value_counts()
    return {i: r.method if counts[r.method] == 1 else f"{r.method} ({r.preset})" for i, r in block.iterrows()}


def _block_scores(block: pd.DataFrame, labels: dict) -> pd.DataFrame:
    parts = []
    for i, r in block.iterrows():
        runs = r.get("_runs")
        if isinstance(runs, list):
            parts.append(sc.scores_of({labels[i]: runs}))
        else:
            own = sc.seed_average(r["_scores"])
            parts.append(own.assign(method=labels[i]))
    return pd.concat(parts, ignore_index=True)


def significance(df: pd.DataFrame, protocol: str = "paper", unit: str = "slice", alpha: float = st.ALPHA,
                 reference: str = "best") -> tuple[pd.DataFrame, Significance]:
    """``df`` with the mark columns (see the module docstring), internal ``_rank_<m>`` (1 best, 2 second) and
    ``_mark_<m>`` columns, and the statistics behind them, per block.

    A block whose scores cannot be read or tested (e.g. a missing scores.csv) gets no marks and an ``error``,
    not a crash; bold and underline then follow the table's means."""
    if protocol not in st.PROTOCOLS:
        raise SRBenchError(f"unknown protocol {protocol!r}; expected one of {', '.join(st.PROTOCOLS)}")
    if unit not in st.UNITS:
        raise SRBenchError(f"unknown unit {unit!r}; expected one of {', '.join(st.UNITS)}")
    if not 0 < alpha < 1:
        raise SRBenchError(f"alpha must be between 0 and 1, got {alpha}")
    if reference != "best" and not df.empty and reference not in set(df["method"]):
        raise SRBenchError(f"--reference {reference!r}: no such method in the table "
                           f"(methods: {', '.join(sorted(set(df['method'])))})")
    out, metrics = df.copy(), metric_infos(df)
    out.attrs["metrics"] = metrics
    for m in metrics:
        out[mark_column(m, reference)] = pd.Series([None] * len(out), index=out.index, dtype=object)
        out[f"_mark_{m}"] = False
    out["reference"] = reference
    result = Significance(protocol, unit, alpha, reference)
    for (dataset, degradation), block in out.groupby(BLOCK, sort=False):
        labels = _labels(block)
        bs = BlockStats(str(dataset), str(degradation), labels)
        result.blocks.append(bs)
        _block_significance(out, block, bs, metrics, result)
    _rank(out, metrics, result)
    return out, result


def _block_significance(out, block, bs: BlockStats, metrics: dict, sig: Significance) -> None:
    labels = bs.labels
    try:
        bs.runs = {labels[i]: r["_runs"][-1] for i, r in block.iterrows() if isinstance(r.get("_runs"), list)}
        bs.scores = _block_scores(block, labels)
        bs.n = units_of(bs.scores, block)
        names = [m for m in metrics if m in bs.scores.columns]
        with warnings.catch_warnings():  # scipy's Wilcoxon on all-zero differences (identical methods):
            warnings.simplefilter("ignore", RuntimeWarning)  # p is NaN, which stats reads as "no difference"
            bs.report = st.analyse(bs.scores, {m: metrics[m].direction for m in names}, sig.protocol, sig.unit,
                                   sig.alpha, names)
    except (SRBenchError, OSError, KeyError, ValueError) as exc:
        bs.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SRBenchError) else str(exc)
        return
    bs.warnings = unit_warnings(bs, sig)
    for m, res in bs.report.metrics.items():
        ref = sig.reference
        if ref != "best" and ref not in [labels[i] for i in labels]:
            ref = next((labels[i] for i in labels if block.loc[i, "method"] == ref), None)
        marked = st.not_different_from(res, res.best if ref == "best" else ref)
        anchor = res.best if ref == "best" else ref
        for i, label in labels.items():
            if label in res.means and anchor is not None:
                out.at[i, mark_column(m, sig.reference)] = label in marked
                out.at[i, f"_mark_{m}"] = label in marked


def _rank(out: pd.DataFrame, metrics: dict, sig: Significance) -> None:
    """Best (1) and second (2) per block and metric: over the statistics' units when tested, else the table."""
    for m in metrics:
        out[f"_rank_{m}"] = 0
    stats_of = {(b.dataset, b.degradation): b for b in sig.blocks}
    for key, block in out.groupby(BLOCK, sort=False):
        bs = stats_of.get(tuple(str(k) for k in key))
        for m, info in metrics.items():
            res = bs.report.metrics.get(m) if bs is not None and bs.report is not None else None
            if res is not None and res.means:
                values = pd.Series({i: res.means.get(bs.labels[i], np.nan) for i in block.index}).dropna()
            else:
                values = block[f"{m}_mean"].dropna() if f"{m}_mean" in block else pd.Series(dtype=float)
            order = values.astype(float).sort_values(ascending=info.direction == "lower", kind="stable").index
            for place, idx in enumerate(order[:2], start=1):
                out.loc[idx, f"_rank_{m}"] = place


def units_of(scores: pd.DataFrame, block: pd.DataFrame) -> dict:
    """Subjects, volumes (cases), slices and seeds behind a block's statistics."""
    one = scores.drop_duplicates(["case", "slice"]) if "slice" in scores else scores
    subjects = pd.to_numeric(block["n_subjects"], errors="coerce").max()
    return {"subjects": None if pd.isna(subjects) else int(subjects), "cases": int(one["case"].nunique()), "slices": int(len(one)),
            "seeds": sorted({int(n) for n in block["n_seeds"]})}


def unit_warnings(bs: BlockStats, sig: Significance) -> list[str]:
    """Few subjects behind slice statistics; a protocol that cannot reach alpha at this n; volume means over
    different slices."""
    out, n = [], bs.n
    if sig.unit == "slice" and n.get("subjects") is not None and n["subjects"] < FEW_SUBJECTS:
        out.append(f"the {n['slices']} slices come from {n['subjects']} subject(s): slices of one subject are "
                   "correlated, so slice-level p-values overstate the evidence")
    k = len(bs.labels)
    units = n["cases"] if sig.unit == "volume" else n["slices"]
    smallest = st.smallest_attainable_p(sig.protocol, k, units, sig.unit)
    if smallest is not None and smallest >= sig.alpha:
        out.append(f"with {k} methods and {units} {sig.unit}s the {sig.protocol} protocol cannot reach "
                   f"significance (smallest attainable adjusted p = {smallest:.3g} ≥ α = {sig.alpha:g})")
    if sig.unit == "volume" and bs.scores is not None and "slice" in bs.scores:
        sets = {m: frozenset(zip(g["case"], g["slice"])) for m, g in bs.scores.groupby("method")}
        if len(set(sets.values())) > 1:
            out.append("volume means are over different slices for some methods (slices not scored by all)")
    return out


# --- notes ----------------------------------------------------------------------------------------------------

PROTOCOL_TEXT = {
    "paper": ("paper protocol: per metric, Shapiro–Wilk on the residuals of score ~ method (normal when "
              "p > α); normal: one-way ANOVA + Tukey HSD, otherwise Kruskal–Wallis + Dunn's test with "
              "Bonferroni adjustment"),
    "paired": ("paired protocol: per metric, Friedman (the Wilcoxon signed-rank test itself with two methods) + "
               "pairwise Wilcoxon signed-rank with Holm adjustment, on the units every method scored"),
}
UNIT_TEXT = {"slice": "unit: test slice (the paper's)", "volume": "unit: test volume (mean over its slices)"}


def _p(p) -> str:
    return "—" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def stats_notes(sig: Significance | None) -> list[str]:
    """Plain-text lines for under a table: the marks' meaning and reference, the protocol and unit, and per
    block n (subjects, volumes, slices, seeds), the tests run and any warning about the units."""
    if sig is None:
        return []
    anchor = "the best (bold)" if sig.reference == "best" else f"the reference method {sig.reference}"
    lines = [f"* = difference from {anchor} NOT significant at α = {sig.alpha:g} "
             f"({PROTOCOL_TEXT[sig.protocol]}; {UNIT_TEXT[sig.unit]}; several seeds: per-slice scores averaged "
             "over seeds first). Best = best mean in the metric's direction over the units tested; with no test "
             "possible, every method counts as not different."]
    if sig.plane != "axial":
        lines.append(f"Plane: {sig.plane} planes of the stacked axial predictions (srbench.through_plane); every "
                     "score, n and test is over those planes, not over axial slices.")
    for b in sig.blocks:
        n = b.n
        count = (f"n = {n.get('subjects', '?')} subject(s), {n.get('cases', '?')} volume(s), "
                 f"{n.get('slices', '?')} slice(s), seeds per method {'/'.join(map(str, n.get('seeds', []))) or '?'}"
                 if n else "")
        text = f"{b.dataset} / {b.degradation}: " + (f"{count}; " if count else "") + _block_text(b)
        lines.append(text + "".join(f" Warning: {w}." for w in b.warnings))
    return lines


def _block_text(b: BlockStats) -> str:
    if b.error:
        return f"no statistics ({b.error})"
    parts = []
    for m in list(b.report.metrics) + list(b.report.skipped):
        res = b.report.metrics.get(m)
        if res is None:
            if m in b.report.skipped:
                parts.append(f"{m.upper()} {b.report.skipped[m]}")
            continue
        if not res.tested:
            parts.append(f"{m.upper()} {res.note}")
            continue
        text = f"{m.upper()} {res.omnibus} p = {_p(res.pvalue)} + {res.posthoc}"
        if res.normality is not None and res.normality.pvalue is not None:
            text += f" (Shapiro–Wilk p = {_p(res.normality.pvalue)})"
        if res.dropped:
            text += f", {res.dropped} {res.unit}(s) not scored by every method dropped"
        parts.append(text)
    return "; ".join(parts) + "."


from .callable_module import make_callable  # noqa: E402 - srbench.leaderboard(...) calls srbench.api.leaderboard

make_callable(__name__, "srbench.api:leaderboard")
