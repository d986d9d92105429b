r"""The leaderboard as a booktabs LaTeX table, rendered by pandas' ``Styler.to_latex``.

One row per run, grouped by dataset x degradation (the group's name on its first row); best ``\textbf``, second ``\underline``, ``$^{*}$`` where the difference from the
best is not significant; budget columns (device, samples seen, train time, train device) beside the scores; the
caption states the statistics. Text cells (names, devices) are escaped by pandas (``escape="latex"``); the
caption is prose with Unicode signs (α, ±, arrows) that pandas leaves as they are, so :func:`tex_escape` writes
those as LaTeX too.
"""

from __future__ import annotations

import pandas as pd

from . import leaderboard as lb
from . import leaderboard_export as lx

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}"}
_TEX_TEXT = {"α": r"$\alpha$", "±": r"$\pm$", "–": "--", "—": "---", "~": r"$\sim$", "≥": r"$\geq$",
             "↑": r"$\uparrow$", "↓": r"$\downarrow$", "×": r"$\times$"}
TEXT_COLUMNS = ["Dataset / degradation", "Method", "s/slice", "Device", "Samples", "Train time", "Train device", "Params", "Steps"]


def tex_escape(text) -> str:
    """``text`` safe in LaTeX text mode: the ten special characters (and < > |) escaped, a few Unicode signs
    written as LaTeX."""
    return "".join(_TEX.get(ch) or _TEX_TEXT.get(ch) or ch for ch in str(text))


def _signs(text: str) -> str:
    """After pandas' escaping: the dashes and the times sign of our own cells, as LaTeX."""
    return str(text).replace("—", "--").replace("×", r"$\times$").replace("†", r"$^{\dagger}$")


def _score(mean, std, digits: int, rank: int, marked: bool) -> str:
    text = "--" if pd.isna(mean) else f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"
    text = {1: f"\\textbf{{{text}}}", 2: f"\\underline{{{text}}}"}.get(rank, text)
    return text + ("$^{*}$" if marked else "")


def _caption(sig) -> str:
    text = (r"Per-slice mean $\pm$ SD on the test split (several seeds: the mean of the seeds' means and SDs); "
            r"best in \textbf{bold}, second \underline{underlined}; "
            "-- = unavailable; " + tex_escape(lx.BUDGET_NOTE).replace("---", "--"))
    notes = lb.stats_notes(sig)
    if not notes:
        return text
    notes = [notes[0].removeprefix("* = ")] + notes[1:]
    return " ".join([text, "$^{*}$:"] + [tex_escape(n).replace(r" \textasciitilde{} ", r" $\sim$ ") for n in notes])


def table_frame(df: pd.DataFrame, direction: dict | None) -> pd.DataFrame:
    """The cells (scores already in LaTeX, text raw); a block's name and n on its first row only."""
    infos = lx._infos(df, direction)
    rk, marked = lx.ranks(df, direction), lx._marked(df)
    arrows = {m: r"$\uparrow$" if i.direction == "higher" else r"$\downarrow$" for m, i in infos.items()}
    rows = []
    for (dataset, degradation), block in df.groupby(lb.BLOCK, sort=False):
        labels = lb._labels(block)
        n = ", ".join(f"{v} {k}" for k, v in zip(("subjects", "volumes", "slices", "seeds"), lx._units(block.iloc[0])))
        for i, (idx, r) in enumerate(block.iterrows()):
            cells = {"Dataset / degradation": f"{dataset} / {degradation} ({n})" if i == 0 else "",
                     "Method": labels[idx] + (" †" if lx._method(r).endswith("†") else "")}
            for m, info in infos.items():
                cells[f"{m.upper()} {arrows[m]}"] = _score(r[f"{m}_mean"], r[f"{m}_std"], info.digits,
                                                           rk.loc[idx, m], bool(marked.loc[idx, m]))
            device, samples, train_time, train_device = lx._budget_cells(r)
            cells.update({"s/slice": lx._sec(r.sec_per_slice), "Device": device, "Samples": samples,
                          "Train time": train_time, "Train device": train_device,
                          "Params": lx._count(r.get("parameters")), "Steps": lx._steps(r.get("sampling_steps"))})
            rows.append(cells)
    return pd.DataFrame(rows)


def to_latex(df: pd.DataFrame, direction: dict | None = None, sig=None, label: str = "tab:srbench") -> str:
    r"""A booktabs ``table`` ready to paste (needs ``\usepackage{booktabs}``)."""
    frame = table_frame(df, direction)
    styler = frame.style
    styler = styler.format(_signs, escape="latex", subset=[c for c in TEXT_COLUMNS if c in frame.columns])
    styler = styler.hide(axis="index")
    styler.set_table_styles([{"selector": "small", "props": ":;"}], overwrite=False)
    body = styler.to_latex(column_format="ll" + "r" * (len(frame.columns) - 2), position="tbp",
                           position_float="centering", hrules=True, label=label, caption=_caption(sig) + (" " + tex_escape(lx.UNFINISHED_NOTE) if lx._has_unfinished(df) else ""),
                           multirow_align="naive-l", environment="table")
    return "% srbench leaderboard; needs \\usepackage{booktabs}\n" + body
