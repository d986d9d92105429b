"""The HTML report: ONE self-contained file (every image a base64 ``data:`` URI, no external request).

Contents, for the runs the leaderboard selected:

1. the sortable leaderboard table (``srbench.leaderboard.table_html``: best bold, second underlined, asterisk =
   difference from the best not significant) and the statistics used, stated under it;
2. per dataset x degradation block: box plots of each available metric per method, over the same units the
   statistics tested (test slices, or per-volume means with ``--unit volume``);
3. per block: the qualitative panel of the paper's Figures 3-4 (:mod:`srbench.panels`): ground truth, the LR
   input and every method side by side on one test slice, two zoomed regions, and |SR - HR| difference maps with
   one shared colour bar; the slice and the zoom windows are chosen by the rules stated in the caption;
4. the runs behind the table (run id, weights, finish time).

Figures are drawn with matplotlib's Agg backend and saved without a timestamp, so the same records give the same
file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from . import leaderboard as lb
from . import panels as pn
from . import stats as st


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def data_uri(fig) -> str:
    """The figure as a PNG ``data:`` URI (no metadata: same figure, same bytes); the figure is closed."""
    plt = _plt()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(uri: str, alt: str, kind: str) -> str:
    return f'<img class="{kind}" alt="{html.escape(alt)}" src="{uri}">'


# --- box plots ------------------------------------------------------------------------------------------------


def box_plot_figure(scores: pd.DataFrame, metrics: list[str], directions: dict, unit: str, title: str):
    """One panel per metric: a box per method (median, IQR, 1.5 IQR whiskers, outliers; triangle = mean)."""
    plt = _plt()
    data = st.per_volume(scores) if unit == "volume" else scores
    methods = [str(m) for m in pd.unique(data["method"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2, 0.6 * len(methods) + 1.6) * len(metrics), 3.4),
                             squeeze=False, dpi=80)
    for ax, m in zip(axes[0], metrics):
        values = [data.loc[data["method"] == name, m].dropna().to_numpy(float) for name in methods]
        shown = [(name, v) for name, v in zip(methods, values) if len(v)]
        if shown:
            ax.boxplot([v for _, v in shown], showmeans=True, widths=0.6)
            ax.set_xticks(range(1, len(shown) + 1))
            ax.set_xticklabels([n for n, _ in shown], rotation=30, ha="right", fontsize=8)
        arrow = "↑ higher is better" if directions.get(m) == "higher" else "↓ lower is better"
        ax.set_title(f"{m.upper()} ({arrow})", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title} — per {unit}", fontsize=10)
    fig.tight_layout()
    return fig


# --- panels ---------------------------------------------------------------------------------------------------


def _panel(block: lb.BlockStats, df: pd.DataFrame) -> tuple[str | None, str]:
    """(data URI or None, caption / reason) of the block's qualitative panel."""
    examples, left_out = {}, []
    for idx, label in block.labels.items():
        ex = pn.load_examples(Path(df.loc[idx, "_dir"]))
        if ex is None:
            left_out.append(f"{label} (no {pn.EXAMPLES}: run recorded before panels were kept)")
            continue
        if examples:
            ref = next(iter(examples.values()))
            if (ex.case, ex.slices, ex.hr.shape, ex.origin) != (ref.case, ref.slices, ref.hr.shape, ref.origin):
                left_out.append(f"{label} (kept other slices: {ex.case} {ex.slices})")
                continue
        examples[label] = ex
    if not examples:
        return None, "No qualitative panel: no run of this block kept example slices. " + "; ".join(left_out)
    first = next(iter(examples.values()))
    rows = df.loc[[i for i, lab in block.labels.items() if lab in examples]]
    best = None
    if rows["psnr_mean"].notna().any():
        best = block.labels[rows["psnr_mean"].astype(float).idxmax()]
    slice_psnr = {}
    if block.scores is not None and "psnr" in block.scores.columns and "case" in block.scores.columns:
        s = block.scores[block.scores["case"].astype(str) == first.case]
        for label in examples:
            own = s[s["method"] == label]
            slice_psnr[label] = dict(zip(own["slice"].astype(int), own["psnr"].astype(float)))
    index = pn.panel_slice(examples, slice_psnr, best)
    k = first.slices[index]
    psnr_of = {label: slice_psnr.get(label, {}).get(k) for label in examples}
    title = f"{block.dataset} / {block.degradation}: case {first.case}, axial slice {k}"
    fig, regions = pn.panel_figure(title, examples, index, psnr_of)
    dr, dc = first.origin  # the kept window's place in the full slice
    zooms = ", ".join(f"zoom {i} rows {r + dr}–{r + dr + s - 1}, columns {c + dc}–{c + dc + s - 1}"
                      for i, (r, c, s) in enumerate(regions, start=1))
    caption = (f"{title}. Columns: ground truth (HR), the LR input put back on the HR grid "
               f"({first.interpolator} interpolation, from {next(iter(examples))}'s run), then every method with "
               f"its PSNR on this slice. Kept slices ({pn.RULE}): {first.slices}; shown: the one on which "
               f"{best or 'the first method'} (best mean PSNR) scores its median PSNR over the kept slices. "
               f"Zoom windows: the {regions[0][2] if regions else '?'}-pixel squares of highest HR gradient energy "
               f"inside the mask, non-overlapping ({zooms}). Last row: |SR − HR| on one colour scale "
               "(0 to the 99.5th percentile of all methods' differences) with a shared colour bar. Images are "
               "stored as float16 in each run's examples.npz.")
    if left_out:
        caption += " Left out: " + "; ".join(left_out) + "."
    return data_uri(fig), caption


# --- the page -------------------------------------------------------------------------------------------------


def to_report(df: pd.DataFrame, direction: dict, sig: lb.Significance, title: str = "srbench leaderboard",
              notes=(), case: str | None = None) -> str:
    """The whole report as one HTML string. ``df`` and ``sig`` come from ``leaderboard.significance``;
    ``case``: the test case of the qualitative panels (default: the one the runs kept)."""
    parts = ["<h2>Leaderboard</h2>", lb.table_html(df, direction), lb.table_notes_html(sig, notes)]
    for block in sig.blocks:
        name = f"{block.dataset} / {block.degradation}"
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if block.scores is None:
            parts.append(f"<p class='note'>No box plots or panel: {html.escape(block.error or 'no scores')}</p>")
            continue
        directions = st.directions_of(block.runs)
        metrics = [m for m in lb.METRICS if m in block.scores.columns and block.scores[m].notna().any()]
        if metrics:
            fig = box_plot_figure(block.scores, metrics, directions, sig.unit, name)
            caption = (f"Distribution of each metric per method over test {sig.unit}s "
                       f"(box: quartiles, line: median, triangle: mean, whiskers: 1.5 IQR).")
            unavailable = [m.upper() for m in lb.METRICS if m not in metrics]
            if unavailable:
                caption += f" Not shown (unavailable): {', '.join(unavailable)}."
            parts.append(f"<figure>{_img(data_uri(fig), f'box plots, {name}', 'boxplot')}"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        uri, caption = _panel(block, df)
        if uri is None:
            parts.append(f"<p class='note'>{html.escape(caption)}</p>")
        else:
            parts.append(f"<figure>{_img(uri, f'qualitative panel, {name}', 'panel')}"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Runs</h2>" + _runs_table(df))
    return lb.page(title, "\n".join(parts))


def _runs_table(df: pd.DataFrame) -> str:
    cols = ["dataset", "degradation", "method", "preset", "run_id", "weights", "finished_at"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape('' if pd.isna(r[c]) else str(r[c]))}</td>" for c in cols)
                   + "</tr>" for _, r in df.iterrows())
    return f'<table class="sortable runs"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'

