"""The leaderboard, built from run records (never kept by hand): its rows, marks and notes; CSV, JSON and
Markdown here, LaTeX in :mod:`srbench.latex` (pandas Styler), HTML in :mod:`srbench.report` (Jinja2 template).

One row per method x preset x dataset x degradation: the most recently finished run. Tables show per-slice
mean ± SD (the paper's convention); within each dataset x degradation block the best value of each metric is
bold and the second underlined, and a method whose difference from the best is NOT significant gets an asterisk
(the paper's Table 1). The asterisks come from :mod:`srbench.stats` (``analyse`` on the block's per-slice scores):
protocol ``paper`` (Shapiro-Wilk on residuals -> ANOVA + Tukey HSD, or Kruskal-Wallis + Dunn with Bonferroni) or
``paired`` (Friedman + Wilcoxon signed-rank with Holm), unit ``slice`` or ``volume``, alpha 0.05 unless told;
every export states which were used and, per metric, which omnibus and post-hoc tests ran.

CSV columns: ``method, preset, dataset, degradation, n_slices, <metric>_mean, <metric>_std`` (psnr, ssim, gmsd,
lpips; empty when unavailable), ``sec_per_slice`` and ``device`` (the run's inference device), the training
budget ``train_samples`` (steps x batch), ``train_steps, train_batch_size, train_seconds, train_device`` (empty
for a method that does not train; see :mod:`srbench.provenance`), ``parameters, sampling_steps, weights, run_id,
finished_at`` and
``<metric>_not_sig_from_best``: True when the row is not its block's best for that metric and its difference from
the best is not significant (the asterisk), False otherwise (the best itself, or significantly different), empty
when no statistics exist for that metric (unavailable metric, or the block's statistics failed: see the notes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import provenance as pv
from . import record as rec
from . import stats as st
from .errors import SRBenchError

METRICS = ("psnr", "ssim", "gmsd", "lpips")
KEY = ["dataset", "degradation", "method", "preset"]
BLOCK = ["dataset", "degradation"]
NOT_SIG = "{}_not_sig_from_best"
COLUMNS = (["method", "preset", "dataset", "degradation", "n_slices"]
           + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
           + ["sec_per_slice", "device", "train_samples", "train_steps", "train_batch_size", "train_seconds",
              "train_device", "parameters", "sampling_steps", "weights", "run_id", "finished_at"]
           + [NOT_SIG.format(m) for m in METRICS])


def _row(r: dict) -> dict:
    card = r.get("method_card", {})
    row = {"method": card.get("name"), "preset": card.get("preset"), "dataset": r["dataset"]["name"],
           "degradation": r["config"]["degradation"], "n_slices": r["n_slices"]}
    summary = _lower_keys(r["summary"]["per_slice"])
    for m in METRICS:
        s = summary.get(m)
        row[f"{m}_mean"] = s["mean"] if s else np.nan
        row[f"{m}_std"] = s["std"] if s else np.nan
    budget = pv.training_budget(r) or {}
    row.update(sec_per_slice=r["timings"]["sec_per_slice"], device=pv.run_device(r),
               **{f"train_{k}": budget.get(k) for k in ("samples", "steps", "batch_size", "seconds", "device")})
    row.update(parameters=card.get("parameters"),
               sampling_steps=card.get("sampling_steps"), weights=r.get("weights", {}).get("source"),
               run_id=r["run_id"], finished_at=r["finished_at"], _dir=r["_dir"])
    return row


def _lower_keys(d: dict) -> dict:
    # Records name metrics as the metric does ("PSNR" in older records); the columns are lower case.
    return {k.lower(): v for k, v in d.items()}


def load_table(results_dir: Path, dataset: str | None = None, degradation: str | None = None) -> pd.DataFrame:
    """The leaderboard as a DataFrame (sorted by dataset, degradation, PSNR descending).

    Columns starting with ``_`` (``_dir``: the run directory) are internal and not exported."""
    rows = [_row(rec.load_record(p)) for p in rec.find_records(results_dir)]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[c for c in COLUMNS if not c.endswith("_not_sig_from_best")] + ["_dir"])
    if dataset:
        df = df[df.dataset == dataset]
    if degradation:
        df = df[df.degradation == degradation]
    for c in ("train_samples", "train_steps", "train_batch_size"):  # counts, empty for methods that do not train
        df[c] = pd.to_numeric(df[c]).round().astype("Int64")
    # The newest run of each key, whole: groupby().last() would fill its missing values from older runs.
    df = df.sort_values("finished_at", kind="stable").drop_duplicates(KEY, keep="last")
    return df.sort_values(["dataset", "degradation", "psnr_mean"], ascending=[True, True, False]).reset_index(drop=True)


def to_csv(df: pd.DataFrame) -> str:
    """The public columns (internal ``_`` columns dropped); unavailable values are empty cells."""
    return df[[c for c in df.columns if not str(c).startswith("_")]].to_csv(index=False)


def to_json(df: pd.DataFrame) -> str:
    """The CSV's rows as a JSON list of objects (unavailable values are null)."""
    public = df[[c for c in df.columns if not str(c).startswith("_")]]
    return public.to_json(orient="records", indent=2, force_ascii=False) + "\n"


def directions(results_dir: Path) -> dict:
    """Metric name -> "higher"/"lower", as recorded by the runs (PSNR, SSIM higher; GMSD, LPIPS lower)."""
    out = {"psnr": "higher", "ssim": "higher", "gmsd": "lower", "lpips": "lower"}
    for p in rec.find_records(results_dir)[:1]:
        out.update({k: v["direction"] for k, v in _lower_keys(rec.load_record(p).get("metrics", {})).items()})
    return out


def ranks(df: pd.DataFrame, direction: dict) -> pd.DataFrame:
    """Per block and metric: 1 for the best mean, 2 for the second, 0 otherwise (NaN never ranks)."""
    out = pd.DataFrame(0, index=df.index, columns=list(METRICS))
    for _, block in df.groupby(BLOCK):
        for m in METRICS:
            values = block[f"{m}_mean"].dropna()
            order = values.sort_values(ascending=direction.get(m) == "lower", kind="stable").index
            for place, idx in enumerate(order[:2], start=1):
                out.loc[idx, m] = place
    return out


# --- significance ---------------------------------------------------------------------------------------------


@dataclass
class BlockStats:
    """The statistics of one dataset x degradation block."""

    dataset: str
    degradation: str
    labels: dict  # table row index -> the method's label in the statistics (name, or "name (preset)")
    runs: dict = field(default_factory=dict)  # label -> run record
    scores: pd.DataFrame | None = None  # long format, as stats.scores_of gives it
    report: st.StatsReport | None = None
    error: str | None = None  # why there are no statistics for this block


@dataclass
class Significance:
    protocol: str = "paper"
    unit: str = "slice"
    alpha: float = st.ALPHA
    blocks: list[BlockStats] = field(default_factory=list)


def _labels(block: pd.DataFrame) -> dict:
    counts = block["method"].value_counts()
    return {i: r.method if counts[r.method] == 1 else f"{r.method} ({r.preset})" for i, r in block.iterrows()}


def significance(df: pd.DataFrame, protocol: str = "paper", unit: str = "slice", alpha: float = st.ALPHA,
                 ) -> tuple[pd.DataFrame, Significance]:
    """``df`` with ``<metric>_not_sig_from_best`` columns, and the statistics behind them, per block.

    The rows of a block are compared with :func:`srbench.stats.analyse` on their runs' scores. A block whose
    scores cannot be read or tested (e.g. a missing scores.csv) gets no marks and an ``error``, not a crash."""
    if protocol not in st.PROTOCOLS:
        raise SRBenchError(f"unknown protocol {protocol!r}; expected one of {', '.join(st.PROTOCOLS)}")
    if unit not in st.UNITS:
        raise SRBenchError(f"unknown unit {unit!r}; expected one of {', '.join(st.UNITS)}")
    if not 0 < alpha < 1:
        raise SRBenchError(f"alpha must be between 0 and 1, got {alpha}")
    out = df.copy()
    for m in METRICS:
        out[NOT_SIG.format(m)] = pd.Series([None] * len(out), index=out.index, dtype=object)
    result = Significance(protocol, unit, alpha)
    if out.empty:
        return out, result
    for (dataset, degradation), block in out.groupby(BLOCK, sort=False):
        labels = _labels(block)
        bs = BlockStats(str(dataset), str(degradation), labels)
        result.blocks.append(bs)
        try:
            bs.runs = {labels[i]: rec.load_record(Path(r["_dir"]) / rec.RECORD) for i, r in block.iterrows()}
            bs.scores = st.scores_of(bs.runs)
            metrics = [m for m in METRICS if m in bs.scores.columns]
            with warnings.catch_warnings():  # scipy's Wilcoxon on all-zero differences (identical methods):
                warnings.simplefilter("ignore", RuntimeWarning)  # p is NaN, which stats reads as "no difference"
                bs.report = st.analyse(bs.scores, st.directions_of(bs.runs), protocol, unit, alpha, metrics)
        except (SRBenchError, OSError, KeyError, ValueError) as exc:
            bs.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SRBenchError) else str(exc)
            continue
        for m, res in bs.report.metrics.items():
            for i, label in labels.items():
                if label in res.means:
                    out.at[i, NOT_SIG.format(m)] = label in res.not_different_from_best
    return out, result


def _marked(df: pd.DataFrame) -> pd.DataFrame:
    """Row x metric: True where the asterisk goes."""
    cols = {m: (df[NOT_SIG.format(m)] == True) if NOT_SIG.format(m) in df else False  # noqa: E712 - None-safe
            for m in METRICS}
    return pd.DataFrame(cols, index=df.index).astype(bool)


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
    """Plain-text lines for under a table: the marks' meaning, the protocol, and per block the tests run."""
    if sig is None:
        return []
    lines = [f"* = difference from the best (bold) NOT significant at α = {sig.alpha:g} "
             f"({PROTOCOL_TEXT[sig.protocol]}; {UNIT_TEXT[sig.unit]}). Best = best mean in the metric's direction "
             "over the units tested; with no test possible, every method counts as not different."]
    for b in sig.blocks:
        lines.append(f"{b.dataset} / {b.degradation}: " + _block_text(b))
    return lines


def _block_text(b: BlockStats) -> str:
    if b.error:
        return f"no statistics ({b.error})"
    parts = []
    for m in METRICS:
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


# --- formatting -----------------------------------------------------------------------------------------------

DIGITS = {"psnr": 2, "ssim": 4, "gmsd": 4, "lpips": 4}
BUDGET_NOTE = ("s/slice = inference seconds per slice on the run's device; samples seen = training steps × batch "
               "(the training budget of a learned method, — when it does not train), train time = its wall time, "
               "train device = where it trained; params = trainable parameters; steps = sampling steps.")


def _cell(mean, std, digits=4) -> str:
    return "—" if pd.isna(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _count(n) -> str:
    """Parameter count, short: 1.23 M, 45.6 k; — when not applicable."""
    if n is None or pd.isna(n):
        return "—"
    n = float(n)
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)}"


def _steps(n) -> str:
    return "—" if n is None or pd.isna(n) else str(int(n))


def _sec(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.3g}"


def _head(direction: dict) -> list[str]:
    arrows = {m: "↑" if direction.get(m) == "higher" else "↓" for m in METRICS}
    return (["dataset", "degradation", "method", "preset", "n"] + [f"{m.upper()} {arrows[m]}" for m in METRICS]
            + ["s/slice", "device", "samples seen", "train time", "train device", "params", "steps"])


def _budget_cells(r) -> list[str]:
    """device, samples seen, train time, train device: the run's inference device and training budget."""
    if pd.isna(r.get("train_samples")) and pd.isna(r.get("train_seconds")):
        budget = None
    else:
        budget = {"samples": None if pd.isna(r.get("train_samples")) else r.get("train_samples"),
                  "steps": None if pd.isna(r.get("train_steps")) else r.get("train_steps"),
                  "batch_size": None if pd.isna(r.get("train_batch_size")) else r.get("train_batch_size")}
    seconds = r.get("train_seconds")
    return [_text(r.get("device")), pv.samples_text(budget),
            pv.duration(None if seconds is None or pd.isna(seconds) else float(seconds)), _text(r.get("train_device"))]


def _text(value) -> str:
    return "—" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def to_markdown(df: pd.DataFrame, direction: dict, sig: Significance | None = None) -> str:
    """A pipe table (GitHub Markdown) with the notes under it. Written here: pandas' ``to_markdown`` needs
    ``tabulate``, which is not a dependency, and a pipe table is one line per row; cells escape ``|``."""
    rk, marked = ranks(df, direction), _marked(df)
    head = _head(direction)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, r in df.iterrows():
        cells = [r.dataset, r.degradation, r.method, r.preset, str(r.n_slices)]
        for m in METRICS:
            text = _cell(r[f"{m}_mean"], r[f"{m}_std"], DIGITS[m])
            text = {1: f"**{text}**", 2: f"<u>{text}</u>"}.get(rk.loc[idx, m], text)
            cells.append(text + ("<sup>\\*</sup>" if marked.loc[idx, m] else ""))
        cells += [_sec(r.sec_per_slice), *_budget_cells(r), _count(r.get("parameters")),
                  _steps(r.get("sampling_steps"))]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append("Mean ± SD over test slices; **best**, <u>second</u>; — = metric unavailable (see the run record); "
                 f"{BUDGET_NOTE}")
    for note in stats_notes(sig):
        lines += ["", note.replace("*", "\\*", 1) if note.startswith("*") else note]
    return "\n".join(lines) + "\n"


# --- HTML -----------------------------------------------------------------------------------------------------






def table_cells(df: pd.DataFrame, direction: dict) -> tuple[list[str], list[dict]]:
    """(header, rows) of the HTML table, for the report's template: each row ``{"run": run id, "cells": [...]}``,
    each cell ``{"text", "sort"}`` (the number sorted on, "" when none) plus ``rank`` (1 best, 2 second) and
    ``marked`` (difference from the best not significant) on score cells."""
    rk, marked = ranks(df, direction), _marked(df)
    rows = []
    for idx, r in df.iterrows():
        cells = [{"text": str(v)} for v in (r.dataset, r.degradation, r.method, r.preset)]
        cells.append({"text": str(int(r.n_slices)), "sort": repr(float(r.n_slices))})
        for m in METRICS:
            mean = r[f"{m}_mean"]
            cells.append({"text": _cell(mean, r[f"{m}_std"], DIGITS[m]), "sort": "" if pd.isna(mean) else repr(float(mean)),
                          "rank": int(rk.loc[idx, m]), "marked": bool(marked.loc[idx, m])})
        device, samples, train_time, train_device = _budget_cells(r)
        params, steps = r.get("parameters"), r.get("sampling_steps")
        for value, text in ((r.sec_per_slice, _sec(r.sec_per_slice)), (None, device), (r.get("train_samples"), samples),
                            (r.get("train_seconds"), train_time), (None, train_device), (params, _count(params)),
                            (steps, _steps(steps))):
            if value is None and text != "—":  # a text column: sorted alphabetically
                cells.append({"text": text})
            else:
                cells.append({"text": text, "sort": "" if value is None or pd.isna(value) else repr(float(value))})
        rows.append({"run": str(r.run_id), "cells": cells})
    return _head(direction), rows


def table_notes(sig: Significance | None, notes=()) -> list[str]:
    base = ("Mean ± SD over test slices; best in bold, second underlined; — = metric unavailable; "
            f"{BUDGET_NOTE} Click a column header to sort.")
    return [base, *stats_notes(sig), *notes]
