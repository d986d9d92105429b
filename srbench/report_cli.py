"""``srbench report``: the shareable HTML report (what ``leaderboard --format html`` writes), under its own name.

Added to the command-line group by :func:`register` (``srbench.cli`` calls it). :func:`leaderboard_data` and
:func:`stats_options` are shared with ``srbench leaderboard``.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import (CONTEXT, dataset_opt, degradation_opt, require_runs, require_selection, results_dir_opt,
                         results_dir_or_default)


def register(cli: click.Group) -> None:
    """Add the ``report`` command to ``cli``."""
    cli.add_command(report_command)


def stats_options(command):
    """--protocol, --unit and --alpha: the statistics behind the tables' marks; --plane: which plane's scores."""
    command = click.option("--plane", "-L", type=click.Choice(["axial", "coronal", "sagittal"]), default="axial",
                           show_default=True, help="Scores of the axial slices, or of the coronal or sagittal planes "
                           "of the stacked predictions (srbench.through_plane).")(command)
    command = click.option("--alpha", "-a", type=float, default=0.05, show_default=True,
                           help="Significance level.")(command)
    command = click.option("--unit", "-u", type=click.Choice(["slice", "volume"]), default="slice",
                           show_default=True, help="Unit of the statistics: slice (the paper's) or volume.")(command)
    return click.option("--protocol", "-P", type=click.Choice(["paper", "paired"]), default="paper",
                        show_default=True,
                        help="Statistics behind the asterisks: paper (Shapiro-Wilk -> ANOVA + Tukey HSD or "
                             "Kruskal-Wallis + Dunn-Bonferroni) or paired (Friedman + Wilcoxon signed-rank, Holm)."
                        )(command)


def reference_opts(command):
    """--reference, --scores and --direction: what the marks are relative to, and tables from a score file."""
    command = click.option("--direction", "-x", "directions", multiple=True,
                           help="With --scores: NAME=higher|lower for a metric the registry does not know "
                                "(repeatable).")(command)
    command = click.option("--scores", "-F", "scores_file", type=click.Path(path_type=Path), default=None,
                           help="Build the table from a long score CSV (method, case, slice, one column per metric, "
                                "optional seed and patient) instead of run records.")(command)
    return click.option("--reference", "-e", default="best", show_default=True,
                        help="What an asterisk is relative to: best (difference from the best not significant) or "
                             "a METHOD (difference from METHOD not significant: the paper's Table 1, with its "
                             "proposed method).")(command)


def leaderboard_data(results_dir, dataset, degradation, protocol, unit, alpha, reference="best", scores_file=None,
                     directions=(), warn=None, plane="axial"):
    """(table with marks, statistics, metric directions, results dir); a clear error when there is no run.

    Invalid run records are reported through ``warn`` and left out (see also :func:`table_warnings`)."""
    from . import leaderboard as lb

    if scores_file is not None:
        from .scores import parse_directions, read_scores
        from .stats import metric_columns

        table = read_scores(scores_file)
        metrics = [m for m in metric_columns(table) if m != "seed"]
        df = lb.table_from_scores(table, parse_directions(directions, metrics, scores_file),
                                  dataset or Path(scores_file).stem, degradation or "")
    else:
        results_dir = results_dir_or_default(results_dir)
        require_runs(results_dir)
        df = lb.load_table(results_dir, dataset, degradation, warn=warn, plane=plane)
        if not len(df):
            require_selection(df, results_dir, dataset, degradation, lb.load_table(results_dir))
    df, sig = lb.significance(df, protocol, unit, alpha, reference)
    sig.plane = plane
    return df, sig, {m: i.direction for m, i in lb.metric_infos(df).items()}, results_dir


def table_warnings(df, sig, warn=None) -> None:
    """Each block's warnings about its units (few subjects, unreachable significance) and rows whose training
    stopped early; said once the table is written (an error on the way is then the only line)."""
    for block in sig.blocks:
        for message in block.warnings:
            (warn or _log)(f"{block.dataset} / {block.degradation}: {message}")
    unfinished = df["training"].astype(str).str.startswith("unfinished") if "training" in df else []
    if any(unfinished):
        (warn or _log)("training stopped before its planned steps for " + ", ".join(df.loc[unfinished, "method"])
                       + " (marked †; rerun the run to resume it)")


def _log(message: str) -> None:
    import logging

    logging.getLogger("srbench.leaderboard").warning(message)


@click.command("report", context_settings=CONTEXT)
@results_dir_opt()
@dataset_opt(False, "Only this dataset's runs.")
@degradation_opt("Only this degradation's runs.")
@click.option("--case", "-c", default=None,
              help="Test case shown in the qualitative panels (default: the first test case).")
@stats_options
@click.option("--reference", "-e", default="best", show_default=True,
              help="What an asterisk is relative to: best, or a METHOD (the paper's Table 1).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True,
              help="HTML file to write (atomically); - prints the page on stdout.")
def report_command(results_dir, dataset, degradation, case, protocol, unit, alpha, plane, reference, output):
    """Write the HTML report: leaderboard with budgets, statistics, box plots, axial/coronal/sagittal panels,
    method cards and the hardware of every run, in one self-contained file readable on a phone."""
    from rich.console import Console
    from rich.markup import escape

    from .record import atomic_write_text
    from .report import to_report

    err = Console(stderr=True)
    df, sig, direction, results_dir = leaderboard_data(
        results_dir, dataset, degradation, protocol, unit, alpha, reference, plane=plane,
        warn=lambda m: err.print(f"[yellow]warning:[/] {escape(m)}", highlight=False))
    text = to_report(df, direction, sig, case=case)
    table_warnings(df, sig, lambda m: err.print(f"[yellow]warning:[/] {escape(m)}", highlight=False))
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    atomic_write_text(Path(output), text)
    Console(stderr=True).print(f"wrote {output} ({len(df)} runs from {results_dir}); open it in a browser",
                               highlight=False, markup=False)
