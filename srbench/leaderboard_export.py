"""Leaderboard exports: CSV, JSON, Markdown and the HTML table's cells, from the table that
:mod:`srbench.leaderboard` builds (rows, marks, ranks and the statistics' notes are decided there); LaTeX is
:mod:`srbench.latex`, the HTML page :mod:`srbench.report`.

Every export states n (subjects, volumes, slices, seeds), the statistical unit, the protocol and what the marks
are relative to; a row whose training stopped before its planned steps carries a dagger and a note.
"""

from __future__ import annotations

import pandas as pd

from . import provenance as pv
from .leaderboard import Significance, _labels, metric_infos, stats_notes  # noqa: F401 - _labels: for latex

def to_csv(df: pd.DataFrame) -> str:
    """The public columns (internal ``_`` columns dropped); unavailable values are empty cells."""
    return df[[c for c in df.columns if not str(c).startswith("_")]].to_csv(index=False)


def to_json(df: pd.DataFrame) -> str:
    """The CSV's rows as a JSON list of objects (unavailable values are null)."""
    public = df[[c for c in df.columns if not str(c).startswith("_")]]
    return public.to_json(orient="records", indent=2, force_ascii=False) + "\n"


def _infos(df: pd.DataFrame, direction: dict | None) -> dict:
    """The table's metrics (name -> MetricInfo); ``direction`` (name -> higher/lower) overrides directions."""
    infos = dict(metric_infos(df))
    for m, d in (direction or {}).items():
        if m in infos and isinstance(d, str):
            infos[m] = type(infos[m])(**{**infos[m].__dict__, "direction": d})
    return infos


def ranks(df: pd.DataFrame, direction: dict | None = None) -> pd.DataFrame:
    """Per block and metric: 1 for the best, 2 for the second, 0 otherwise (as ``significance`` chose them)."""
    infos = _infos(df, direction)
    return pd.DataFrame({m: df[f"_rank_{m}"] if f"_rank_{m}" in df else 0 for m in infos}, index=df.index)


def _marked(df: pd.DataFrame) -> pd.DataFrame:
    """Row x metric: True where the asterisk goes."""
    infos = metric_infos(df)
    return pd.DataFrame({m: df[f"_mark_{m}"].astype(bool) if f"_mark_{m}" in df else False for m in infos},
                        index=df.index).astype(bool)


def _units(r) -> list[str]:
    def n(v):
        return "—" if v is None or pd.isna(v) else str(int(v))
    return [n(r.get("n_subjects")), n(r.get("n_cases")), n(r.get("n_slices")), n(r.get("n_seeds"))]


def _method(r) -> str:
    """The method's name, with a dagger when its training stopped before the planned steps."""
    return f"{r.method} †" if str(r.get("training") or "").startswith("unfinished") else str(r.method)


UNFINISHED_NOTE = "† = training stopped before its planned steps (see the training column / run record)."


MEAN_NOTE = ("Mean ± SD over test slices (several seeds: the mean of the seeds' means and of their SDs; the seed "
             "SD is in the CSV); subjects / volumes / slices / seeds = what each row was scored on")
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


def _head(infos: dict) -> list[str]:
    return (["dataset", "degradation", "method", "preset", "subjects", "volumes", "slices", "seeds"]
            + [f"{m.upper()} {'↑' if i.direction == 'higher' else '↓'}" for m, i in infos.items()]
            + ["s/slice", "device", "samples seen", "train time", "train device", "params", "steps"])


def _has_unfinished(df: pd.DataFrame) -> bool:
    return "training" in df and df["training"].astype(str).str.startswith("unfinished").any()


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
    infos = _infos(df, direction)
    rk, marked = ranks(df, direction), _marked(df)
    head = _head(infos)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, r in df.iterrows():
        cells = [r.dataset, r.degradation, _method(r), r.preset, *_units(r)]
        for m, info in infos.items():
            text = _cell(r[f"{m}_mean"], r[f"{m}_std"], info.digits)
            text = {1: f"**{text}**", 2: f"<u>{text}</u>"}.get(rk.loc[idx, m], text)
            cells.append(text + ("<sup>\\*</sup>" if marked.loc[idx, m] else ""))
        cells += [_sec(r.sec_per_slice), *_budget_cells(r), _count(r.get("parameters")),
                  _steps(r.get("sampling_steps"))]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append(f"{MEAN_NOTE}; **best**, <u>second</u>; — = metric unavailable (see the run record); {BUDGET_NOTE}")
    if _has_unfinished(df):
        lines += ["", UNFINISHED_NOTE]
    for note in stats_notes(sig):
        lines += ["", note.replace("*", "\\*", 1) if note.startswith("*") else note]
    return "\n".join(lines) + "\n"


# --- HTML -----------------------------------------------------------------------------------------------------






def table_cells(df: pd.DataFrame, direction: dict) -> tuple[list[str], list[dict]]:
    """(header, rows) of the HTML table, for the report's template: each row ``{"run": run id, "cells": [...]}``,
    each cell ``{"text", "sort"}`` (the number sorted on, "" when none) plus ``rank`` (1 best, 2 second) and
    ``marked`` (difference from the best not significant) on score cells."""
    infos = _infos(df, direction)
    rk, marked = ranks(df, direction), _marked(df)
    rows = []
    for idx, r in df.iterrows():
        cells = [{"text": str(v)} for v in (r.dataset, r.degradation, _method(r), r.preset)]
        cells += [{"text": v, "sort": "" if v == "—" else v} for v in _units(r)]
        for m, info in infos.items():
            mean = r[f"{m}_mean"]
            cells.append({"text": _cell(mean, r[f"{m}_std"], info.digits), "sort": "" if pd.isna(mean) else repr(float(mean)),
                          "rank": int(rk.loc[idx, m]), "marked": bool(marked.loc[idx, m]),
                          "mark_title": _mark_title(r)})
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
    return _head(infos), rows


def _mark_title(r) -> str:
    reference = r.get("reference", "best")
    return f"difference from {'the best' if reference in (None, 'best') else reference} not significant"


def table_notes(sig: Significance | None, notes=(), df: pd.DataFrame | None = None) -> list[str]:
    base = (f"{MEAN_NOTE}; best in bold, second underlined; — = metric unavailable; "
            f"{BUDGET_NOTE} Click a column header to sort.")
    unfinished = [UNFINISHED_NOTE] if df is not None and _has_unfinished(df) else []
    return [base, *unfinished, *stats_notes(sig), *notes]
