"""The HTML report: ONE self-contained file (every image a base64 ``data:`` URI, no external request),
rendered from the Jinja2 template ``srbench/templates/report.html.j2`` (autoescaped).

Contents, for the runs the leaderboard selected:

0. a header: srbench version, the report's date (``$SOURCE_DATE_EPOCH`` when set, for reproducible builds;
   else today, UTC), the runs' span and the hardware each ran on (device, processor, platform);
1. the sortable leaderboard table (``srbench.leaderboard.table_cells``: best bold, second underlined, asterisk =
   difference from the best not significant), each learned row with its training budget (samples seen, wall
   time, device) and every row with the device its s/slice was measured on; the statistics used, under it;
2. per dataset x degradation block: box plots of each available metric per method (one figure per metric, so
   that each stays legible on a phone), over the same units the statistics tested;
3. per block: qualitative panels (:mod:`srbench.panels`) in the axial, coronal and sagittal planes of one test
   case (``case``, default the first kept): ground truth, the LR input and every method side by side, two zoomed
   regions, and |SR - HR| maps with one shared colour bar; the rules are stated in the captions;
4. the method card of each run, as recorded (what ran: losses, input interpolator, head, settings), with the
   fields where the weights' training record says otherwise;
5. the runs behind the table (run id, device, weights, budget, versions, finish time).

Figures are drawn with matplotlib's Agg backend and saved without a timestamp, so the same records (and date)
give the same file. The page sets ``<meta name=viewport>``; wide tables and panels scroll inside their own box.
"""

from __future__ import annotations

import base64
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import leaderboard as lb
from . import leaderboard_export as lx
from . import panels as pn
from . import provenance as pv
from . import stats as st
from .errors import SRBenchError, did_you_mean

TEMPLATES = Path(__file__).with_name("templates")
RUN_COLUMNS = ["dataset", "degradation", "method", "preset", "run id", "device", "s/slice", "weights",
               "samples seen", "train time", "train device", "srbench", "git", "finished"]


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


# --- box plots ------------------------------------------------------------------------------------------------


def box_plot_figure(scores: pd.DataFrame, metric: str, direction: str | None, unit: str, title: str):
    """One metric: a box per method (median, IQR, 1.5 IQR whiskers, outliers; triangle = mean). About 420 px
    wide at 100 dpi with 10-point text, so that it is read at full size on a phone."""
    plt = _plt()
    data = st.per_volume(scores) if unit == "volume" else scores
    methods = [str(m) for m in pd.unique(data["method"])]
    fig, ax = plt.subplots(figsize=(max(4.2, 0.55 * len(methods) + 1.5), 3.6), dpi=100)
    values = [data.loc[data["method"] == name, metric].dropna().to_numpy(float) for name in methods]
    shown = [(name, v) for name, v in zip(methods, values) if len(v)]
    if shown:
        ax.boxplot([v for _, v in shown], showmeans=True, widths=0.6)
        ax.set_xticks(range(1, len(shown) + 1))
        ax.set_xticklabels([n for n, _ in shown], rotation=30, ha="right", fontsize=10)
    arrow = "↑ higher is better" if direction == "higher" else "↓ lower is better"
    ax.set_title(f"{metric.upper()} ({arrow})\n{title}, per {unit}", fontsize=11)
    ax.tick_params(axis="y", labelsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _boxplots(block: lb.BlockStats, unit: str, name: str, infos: dict) -> tuple[list[dict], str]:
    directions = {m: i.direction for m, i in infos.items()}
    metrics = [m for m in infos if m in block.scores.columns and block.scores[m].notna().any()]
    plots = [{"metric": m.upper(), "uri": data_uri(box_plot_figure(block.scores, m, directions.get(m), unit, name))}
             for m in metrics]
    caption = (f"Distribution of each metric per method over test {unit}s "
               f"(box: quartiles, line: median, triangle: mean, whiskers: 1.5 IQR).")
    unavailable = [m.upper() for m in infos if m not in metrics]
    if unavailable:
        caption += f" Not shown (unavailable): {', '.join(unavailable)}."
    return plots, caption


# --- panels ---------------------------------------------------------------------------------------------------


def _examples(block: lb.BlockStats, df: pd.DataFrame, case: str | None) -> tuple[dict, list[str]]:
    """label -> Examples of ``case`` (default: each run's first kept case, which must agree), and who was left out."""
    examples, left_out = {}, []
    for idx, label in block.labels.items():
        run_dir = Path(df.loc[idx, "_dir"])
        ex = pn.load_examples(run_dir, case)
        if ex is None:
            kept = pn.kept_cases(run_dir)
            left_out.append(f"{label} (kept no examples of case {case}; kept: {', '.join(kept)})" if kept and case
                            else f"{label} (no {pn.EXAMPLES}: run recorded before panels were kept)")
            continue
        if examples:
            ref = next(iter(examples.values()))
            if (ex.case, ex.slices, ex.hr.shape, ex.origin) != (ref.case, ref.slices, ref.hr.shape, ref.origin):
                left_out.append(f"{label} (kept other slices: {ex.case} {ex.slices})")
                continue
        examples[label] = ex
    return examples, left_out


def _panels(block: lb.BlockStats, df: pd.DataFrame, case: str | None) -> list[dict]:
    """The block's panels, one per plane: ``{"plane", "uri" (None: not drawn), "caption"}``."""
    examples, left_out = _examples(block, df, case)
    if not examples:
        return [{"plane": "axial", "uri": None, "caption": "No qualitative panel: no run of this block kept example "
                 "slices" + (f" of case {case}" if case else "") + ". " + "; ".join(left_out)}]
    first = next(iter(examples.values()))
    rows = df.loc[[i for i, lab in block.labels.items() if lab in examples]]
    best = block.labels[rows["psnr_mean"].astype(float).idxmax()] if rows["psnr_mean"].notna().any() else None
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
    caption = (f"{title}. Columns: ground truth (HR), the LR input put back on the HR grid "
               f"({first.interpolator} interpolation, from {next(iter(examples))}'s run), then every method with "
               f"its PSNR on this slice. Kept slices ({pn.RULE}): {first.slices}; shown: the one on which "
               f"{best or 'the first method'} (best mean PSNR) scores its median PSNR over the kept slices. "
               f"Zoom windows: the {regions[0][2] if regions else '?'}-pixel squares of highest HR gradient energy "
               f"inside the mask, non-overlapping ({_zooms(regions, dr, dc)}). Last row: |SR − HR| on one colour "
               "scale (0 to the 99.5th percentile of all methods' differences) with a shared colour bar. Images "
               "are stored as float16 in each run's examples.npz.")
    if left_out:
        caption += " Left out: " + "; ".join(left_out) + "."
    return [{"plane": "axial", "uri": data_uri(fig), "caption": caption}] + [
        _through_panel(block, examples, plane) for plane in ("coronal", "sagittal")]


def _zooms(regions, dr: int = 0, dc: int = 0) -> str:
    return ", ".join(f"zoom {i} rows {r + dr}–{r + dr + s - 1}, columns {c + dc}–{c + dc + s - 1}"
                     for i, (r, c, s) in enumerate(regions, start=1))


def _through_panel(block: lb.BlockStats, examples: dict, plane: str) -> dict:
    shown, aspect = pn.plane_examples(examples, plane)
    if not shown:
        return {"plane": plane, "uri": None, "caption": f"No {plane} panel: the runs were recorded before "
                "through-plane images were kept (rerun them with --force)."}
    first = next(iter(shown.values()))
    axis = "row" if plane == "coronal" else "column"
    title = f"{block.dataset} / {block.degradation}: case {first.case}, {plane} image ({axis} {first.slices[0]})"
    fig, _ = pn.panel_figure(title, shown, 0, aspect=aspect, origin="lower", zooms=0)
    caption = (f"{title}: the predicted axial slices stacked, cut along the volume's {axis} {first.slices[0]} "
               f"(the middle of the mask's bounding box), first slice at the bottom, drawn with the voxel spacing's "
               f"aspect ({aspect:.3g}). This is where slice-wise methods show slice-to-slice inconsistency. "
               "Second row: |SR − HR| on one shared scale (its own, not the axial panel's).")
    missing = [label for label in examples if label not in shown]
    if missing:
        caption += f" Left out (no {plane} image kept): {', '.join(missing)}."
    return {"plane": plane, "uri": data_uri(fig), "caption": caption}


# --- method cards, runs, header -------------------------------------------------------------------------------


def _card(label: str, record: dict) -> dict:
    """The card recorded by the run, plus the fields the weights' training record holds otherwise."""
    card = record.get("method_card") or {}
    items = pv.card_items(card)
    trained = (record.get("training") or {}).get("method_card") or {}
    items += [(f"{key} (at training)", text) for key, text in pv.card_items(
        {k: v for k, v in trained.items() if k not in ("version", "settings") and card.get(k) != v})]
    return {"label": label, "items": items}


def _run_row(row: pd.Series, record: dict) -> dict:
    budget = pv.training_budget(record)
    return {"dataset": row.dataset, "degradation": row.degradation, "method": row.method, "preset": row.preset,
            "run id": row.run_id, "device": pv.hardware_text(record), "s/slice": lx._sec(row.sec_per_slice),
            "weights": row.get("weights") or "—", "samples seen": pv.samples_text(budget),
            "train time": pv.duration((budget or {}).get("seconds")),
            "train device": (budget or {}).get("device") or "—",
            "srbench": (record.get("versions") or {}).get("srbench", "?"),
            "git": str(record.get("git_sha") or "?")[:10], "finished": row.finished_at}


def report_date() -> str:
    """``$SOURCE_DATE_EPOCH`` (reproducible builds) as a UTC date, else today's (UTC)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%d")


def _records(df: pd.DataFrame, sig: lb.Significance) -> dict:
    """Table row index -> the newest run record's JSON form (what the display helpers read)."""
    from .record import load_record

    out = {}
    for idx in df.index:
        runs = df.loc[idx, "_runs"] if "_runs" in df else None
        record = runs[-1] if isinstance(runs, list) else load_record(Path(df.loc[idx, "_dir"]))
        out[idx] = record.to_dict()
    return out


def _hardware(df: pd.DataFrame, records: dict) -> list[str]:
    by_text: dict[str, list[str]] = {}
    for idx in df.index:
        by_text.setdefault(pv.hardware_text(records[idx]), []).append(str(df.loc[idx, "method"]))
    return [f"{text}: {', '.join(dict.fromkeys(methods))}" for text, methods in by_text.items()]


# --- the page -------------------------------------------------------------------------------------------------


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def to_report(df: pd.DataFrame, direction: dict, sig: lb.Significance, title: str = "srbench leaderboard",
              notes=(), case: str | None = None, figures: bool = True) -> str:
    """The whole report as one HTML string. ``df`` and ``sig`` come from ``leaderboard.significance``;
    ``case``: the test case of the qualitative panels (default: the first the runs kept); ``figures=False``:
    the header, the table and the runs only."""
    from . import __version__

    records = _records(df, sig) if len(df) else {}
    blocks = []
    for block in sig.blocks if figures else ():
        name = f"{block.dataset} / {block.degradation}"
        entry = {"name": name, "error": None, "boxplots": [], "boxplot_caption": "", "panels": []}
        if block.scores is None:
            entry["error"] = block.error or "no scores"
        else:
            entry["boxplots"], entry["boxplot_caption"] = _boxplots(block, sig.unit, name, lb.metric_infos(df))
            entry["panels"] = _panels(block, df, case)
        blocks.append(entry)
    if case is not None and figures and blocks and not any(p["uri"] for b in blocks for p in b["panels"]):
        kept = sorted({c for d in df["_dir"] for c in pn.kept_cases(Path(d))})
        raise SRBenchError(f"--case {case!r}: no run kept examples of this case{did_you_mean(case, kept)}; "
                           f"kept: {', '.join(kept) or 'none'}")
    header, rows = lx.table_cells(df, direction)
    finished = sorted(str(v) for v in df["finished_at"]) if len(df) else ["—"]
    page = _environment().get_template("report.html.j2").render(
        title=title, version=__version__, date=report_date(), results_dir=_results_dir(df),
        first_finished=finished[0], last_finished=finished[-1], hardware=_hardware(df, records),
        header=header, rows=rows, notes=lx.table_notes(sig if sig.blocks else None, notes, df), figures=figures,
        blocks=blocks, cards=[_card(f"{r.method} ({r.preset})", records[i]) for i, r in df.iterrows()],
        runs=[_run_row(r, records[i]) for i, r in df.iterrows()], run_columns=RUN_COLUMNS,
        sort_js=(TEMPLATES / "sort.js").read_text(encoding="utf-8"))
    return page


def _results_dir(df: pd.DataFrame) -> str:
    """The results folder the runs came from (run dirs are DIR/dataset/degradation/method/run)."""
    if not len(df):
        return "—"
    return str(os.path.commonpath([str(Path(d).parents[3]) for d in df["_dir"]]))
