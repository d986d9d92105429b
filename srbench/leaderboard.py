"""The leaderboard, built from run records (never kept by hand): CSV, Markdown and HTML.

One row per method x preset x dataset x degradation: the most recently finished run. Tables show per-slice
mean ± SD (the paper's convention); the best value of each metric is bold and the second underlined, within
each dataset x degradation block.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from . import record as rec

METRICS = ("psnr", "ssim", "gmsd", "lpips")
KEY = ["dataset", "degradation", "method", "preset"]


def _row(r: dict) -> dict:
    card = r.get("method_card", {})
    row = {"method": card.get("name"), "preset": card.get("preset"), "dataset": r["dataset"]["name"],
           "degradation": r["config"]["degradation"], "n_slices": r["n_slices"]}
    summary = _lower_keys(r["summary"]["per_slice"])
    for m in METRICS:
        s = summary.get(m)
        row[f"{m}_mean"] = s["mean"] if s else np.nan
        row[f"{m}_std"] = s["std"] if s else np.nan
    row.update(sec_per_slice=r["timings"]["sec_per_slice"], parameters=card.get("parameters"),
               sampling_steps=card.get("sampling_steps"), weights=r.get("weights", {}).get("source"),
               run_id=r["run_id"], finished_at=r["finished_at"])
    return row


def _lower_keys(d: dict) -> dict:
    # Records name metrics as the metric does ("PSNR" in older records); the columns are lower case.
    return {k.lower(): v for k, v in d.items()}


def load_table(results_dir: Path, dataset: str | None = None, degradation: str | None = None) -> pd.DataFrame:
    """The leaderboard as a DataFrame (sorted by dataset, degradation, PSNR descending)."""
    rows = [_row(rec.load_record(p)) for p in rec.find_records(results_dir)]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=KEY + ["n_slices"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
                            + ["sec_per_slice"])
    if dataset:
        df = df[df.dataset == dataset]
    if degradation:
        df = df[df.degradation == degradation]
    # The newest run of each key, whole: groupby().last() would fill its missing values from older runs.
    df = df.sort_values("finished_at", kind="stable").drop_duplicates(KEY, keep="last")
    return df.sort_values(["dataset", "degradation", "psnr_mean"], ascending=[True, True, False]).reset_index(drop=True)


def directions(results_dir: Path) -> dict:
    """Metric name -> "higher"/"lower", as recorded by the runs (PSNR, SSIM higher; GMSD, LPIPS lower)."""
    out = {"psnr": "higher", "ssim": "higher", "gmsd": "lower", "lpips": "lower"}
    for p in rec.find_records(results_dir)[:1]:
        out.update({k: v["direction"] for k, v in _lower_keys(rec.load_record(p).get("metrics", {})).items()})
    return out


def ranks(df: pd.DataFrame, direction: dict) -> pd.DataFrame:
    """Per block and metric: 1 for the best mean, 2 for the second, 0 otherwise (NaN never ranks)."""
    out = pd.DataFrame(0, index=df.index, columns=list(METRICS))
    for _, block in df.groupby(["dataset", "degradation"]):
        for m in METRICS:
            values = block[f"{m}_mean"].dropna()
            order = values.sort_values(ascending=direction.get(m) == "lower").index
            for place, idx in enumerate(order[:2], start=1):
                out.loc[idx, m] = place
    return out


def _cell(mean, std, digits=4) -> str:
    return "—" if pd.isna(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


DIGITS = {"psnr": 2, "ssim": 4, "gmsd": 4, "lpips": 4}


def to_markdown(df: pd.DataFrame, direction: dict) -> str:
    rk = ranks(df, direction)
    arrows = {m: "↑" if direction.get(m) == "higher" else "↓" for m in METRICS}
    head = ["dataset", "degradation", "method", "preset", "n"] + [f"{m.upper()} {arrows[m]}" for m in METRICS] + ["s/slice"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, r in df.iterrows():
        cells = [r.dataset, r.degradation, r.method, r.preset, str(r.n_slices)]
        for m in METRICS:
            text = _cell(r[f"{m}_mean"], r[f"{m}_std"], DIGITS[m])
            text = {1: f"**{text}**", 2: f"<u>{text}</u>"}.get(rk.loc[idx, m], text)
            cells.append(text)
        cells.append(f"{r.sec_per_slice:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± SD over test slices; **best**, <u>second</u>; — = metric unavailable (see the run record).")
    return "\n".join(lines) + "\n"


_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = tr => { const c = tr.children[col]; const v = parseFloat(c.dataset.v ?? c.textContent);
                      return isNaN(v) ? c.textContent : v; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
"""


def to_html(df: pd.DataFrame, direction: dict, title: str = "srbench leaderboard", notes: list[str] = ()) -> str:
    rk = ranks(df, direction)
    arrows = {m: "↑" if direction.get(m) == "higher" else "↓" for m in METRICS}
    head = ["dataset", "degradation", "method", "preset", "n"] + [f"{m.upper()} {arrows[m]}" for m in METRICS] + ["s/slice"]
    rows = []
    for idx, r in df.iterrows():
        tds = [f"<td>{html.escape(str(v))}</td>" for v in (r.dataset, r.degradation, r.method, r.preset, r.n_slices)]
        for m in METRICS:
            mean = r[f"{m}_mean"]
            text = html.escape(_cell(mean, r[f"{m}_std"], DIGITS[m]))
            text = {1: f"<b>{text}</b>", 2: f"<u>{text}</u>"}.get(rk.loc[idx, m], text)
            tds.append(f'<td data-v="{"" if pd.isna(mean) else mean}">{text}</td>')
        tds.append(f'<td data-v="{r.sec_per_slice}">{r.sec_per_slice:.3g}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    notes_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
th,td{{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right}}th{{cursor:pointer;background:#f4f4f4}}
td:nth-child(-n+4){{text-align:left}}.note{{color:#555;font-size:.9em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table class="sortable"><thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p class="note">Mean ± SD over test slices; best in bold, second underlined; — = metric unavailable.
Click a column header to sort.</p>{notes_html}
<script>{_SORT_JS}</script></body></html>
"""
