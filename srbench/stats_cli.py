"""``srbench stats``: per metric, the normality decision, the omnibus test and the pairwise p-value matrix.

Added to the command-line group by :func:`register` (``srbench.cli`` calls it).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import SRBenchError
from .stats_options import ALPHA, PROTOCOLS, UNITS


def register(cli: click.Group) -> None:
    """Add the ``stats`` command to ``cli``."""
    cli.add_command(stats_command)


@click.command("stats", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--results-dir", "-r", type=click.Path(path_type=Path), default=None,
              help="Where run records are (default: $SRBENCH_RESULTS or ./leaderboards).")
@click.option("--dataset", "-d", default=None, help="Dataset whose runs to compare (required without --scores).")
@click.option("--degradation", "-g", default=None, help="Degradation (needed when the dataset has several).")
@click.option("--scores", "-F", "scores_file", type=click.Path(path_type=Path), default=None,
              help="A long score CSV from any pipeline (method, case, slice, one column per metric, optional seed "
                   "and patient) instead of run records.")
@click.option("--direction", "-x", "directions", multiple=True,
              help="With --scores: NAME=higher|lower for a metric the registry does not know (repeatable).")
@click.option("--protocol", "-P", type=click.Choice(PROTOCOLS), default="paper", show_default=True,
              help="paper: Shapiro-Wilk on residuals -> ANOVA + Tukey HSD or Kruskal-Wallis + Dunn (Bonferroni); "
                   "paired: Friedman + Wilcoxon signed-rank (Holm).")
@click.option("--unit", "-u", type=click.Choice(UNITS), default="slice", show_default=True,
              help="slice (the paper's unit) or volume (mean per case first).")
@click.option("--alpha", "-a", type=float, default=ALPHA, show_default=True, help="Significance level.")
@click.option("--json", "-j", "as_json", is_flag=True, help="Print one JSON object.")
def stats_command(results_dir, dataset, degradation, scores_file, directions, protocol, unit, alpha, as_json):
    """Test whether the methods' scores differ, per metric, and which methods are as good as the best.

    Several seeds of a method are averaged per slice first (the unit stays the slice or volume)."""
    from . import scores as sc
    from . import stats as st  # SciPy and scikit-posthocs load only when the statistics run
    from .cli_common import require_runs, results_dir_or_default

    if scores_file is not None:
        table = sc.read_scores(scores_file)
        metrics = [m for m in st.metric_columns(table) if m != "seed"]
        direction = sc.parse_directions(directions, metrics, scores_file)
        scores = sc.seed_average(table)[["method", "case", "slice", *metrics]]
        header = {"scores": str(scores_file), "seeds": _seeds(table)}
        label = str(scores_file)
    else:
        if dataset is None:
            raise SRBenchError("give --dataset (the runs to compare) or --scores FILE.csv")
        results_dir = results_dir_or_default(results_dir)
        require_runs(results_dir)
        from rich.markup import escape

        err = Console(stderr=True, soft_wrap=True)
        runs = sc.select_runs(results_dir, dataset, degradation,
                              warn=lambda m: err.print(f"[yellow]warning:[/] {escape(m)}", highlight=False))
        scores, direction = sc.scores_of(runs), sc.directions_of(runs)
        metrics = None
        first = next(iter(runs.values()))[0]
        header = {"dataset": dataset, "degradation": first.degradation_spec, "results_dir": str(results_dir),
                  "runs": {k: [r.run_id for r in rs] for k, rs in runs.items()},
                  "seeds": {k: [r.seed for r in rs] for k, rs in runs.items()}}
        label = f"dataset {dataset!r}"
    methods = list(dict.fromkeys(scores["method"]))
    if len(methods) < 2:
        raise SRBenchError(f"only one method ({methods[0] if methods else 'none'}) has scores for {label}; "
                           "statistics need two or more")
    report = st.analyse(scores, direction, protocol, unit, alpha, metrics)
    if as_json:
        click.echo(json.dumps({**header, **report.to_dict()}, indent=2))
    else:
        _print(report, header)


def _seeds(table) -> dict:
    if "seed" not in table:
        return {}
    return {m: sorted(int(s) for s in g["seed"].unique()) for m, g in table.groupby("method", sort=False)}


def _p(p) -> str:
    if p is None:
        return "—"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _print(report, header: dict) -> None:
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    from rich.markup import escape

    where = header.get("scores") or f"{header['dataset']} / {header['degradation']}"
    seeds = {m: s for m, s in (header.get("seeds") or {}).items() if len(s) > 1}
    averaged = ("; per-slice scores averaged over seeds " + ", ".join(f"{m} {s}" for m, s in seeds.items())
                if seeds else "")
    out.print(f"[bold]{escape(where)}[/]: {report.protocol} protocol, unit {report.unit}, alpha {report.alpha}"
              + escape(averaged), highlight=False)
    for res in report.metrics.values():
        _print_metric(out, res)
    for metric, why in report.skipped.items():
        err.print(f"[yellow]{metric}:[/] {why}", highlight=False)


def _print_metric(out: Console, res) -> None:
    arrow = "higher" if res.direction == "higher" else "lower"
    out.print(f"\n[bold]{res.metric.upper()}[/] ({arrow} is better); n: "
              + ", ".join(f"{m} {n}" for m, n in res.n.items()), highlight=False)
    if res.excluded:
        out.print(f"  left out (no scores): {', '.join(res.excluded)}", highlight=False)
    if res.dropped:
        out.print(f"  dropped {res.dropped} {res.unit}(s) not scored by every method", highlight=False)
    if res.normality is not None:
        nm = res.normality
        verdict = {True: "normal", False: "not normal", None: "not testable"}[nm.normal]
        stat = f"W = {nm.statistic:.4f}, p = {_p(nm.pvalue)}, " if nm.statistic is not None else ""
        out.print(f"  {nm.test}: {stat}N = {nm.n} -> {verdict}" + (f" ({nm.note})" if nm.note else ""),
                  highlight=False)
    if not res.tested:
        out.print(f"  {res.note}", highlight=False)
    else:
        sig = "significant" if res.significant else "not significant"
        out.print(f"  {res.omnibus}: statistic = {res.statistic:.4g}, p = {_p(res.pvalue)} ({sig}); "
                  f"pairwise: {res.posthoc}", highlight=False)
        out.print(_matrix_table(res))
    others = ", ".join(res.not_different_from_best) or "none"
    out.print(f"  best: {res.best}; not significantly different from the best: {others}", highlight=False)


def _matrix_table(res) -> Table:
    table = Table(title=f"{res.metric.upper()}: adjusted p-values ({res.posthoc})", title_justify="left",
                  caption=f"bold: p < {res.alpha}", caption_justify="left")
    table.add_column("")
    for m in res.pairwise.columns:
        table.add_column(m, justify="right")
    for row in res.pairwise.index:
        cells = ["" if row == col else _cell(res.pairwise.loc[row, col], res.alpha) for col in res.pairwise.columns]
        table.add_row(f"{row} (best)" if row == res.best else row, *cells)
    return table


def _cell(p: float, alpha: float) -> str:
    return f"[bold]{_p(p)}[/]" if p < alpha else _p(p)
