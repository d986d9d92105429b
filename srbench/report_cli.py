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
    """--protocol, --unit and --alpha: the statistics behind the tables' marks."""
    command = click.option("--alpha", "-a", type=float, default=0.05, show_default=True,
                           help="Significance level.")(command)
    command = click.option("--unit", "-u", type=click.Choice(["slice", "volume"]), default="slice",
                           show_default=True, help="Unit of the statistics: slice (the paper's) or volume.")(command)
    return click.option("--protocol", "-P", type=click.Choice(["paper", "paired"]), default="paper",
                        show_default=True,
                        help="Statistics behind the asterisks: paper (Shapiro-Wilk -> ANOVA + Tukey HSD or "
                             "Kruskal-Wallis + Dunn-Bonferroni) or paired (Friedman + Wilcoxon signed-rank, Holm)."
                        )(command)


def leaderboard_data(results_dir, dataset, degradation, protocol, unit, alpha):
    """(table with marks, statistics, metric directions, results dir); a clear error when there is no run."""
    from . import leaderboard as lb

    results_dir = results_dir_or_default(results_dir)
    require_runs(results_dir)
    df = lb.load_table(results_dir, dataset, degradation)
    if not len(df):
        require_selection(df, results_dir, dataset, degradation, lb.load_table(results_dir))
    df, sig = lb.significance(df, protocol, unit, alpha)
    return df, sig, lb.directions(results_dir), results_dir


@click.command("report", context_settings=CONTEXT)
@results_dir_opt()
@dataset_opt(False, "Only this dataset's runs.")
@degradation_opt("Only this degradation's runs.")
@click.option("--case", "-c", default=None,
              help="Test case shown in the qualitative panels (default: the first test case).")
@stats_options
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True,
              help="HTML file to write (atomically); - prints the page on stdout.")
def report_command(results_dir, dataset, degradation, case, protocol, unit, alpha, output):
    """Write the HTML report: leaderboard with budgets, statistics, box plots, axial/coronal/sagittal panels,
    method cards and the hardware of every run, in one self-contained file readable on a phone."""
    from rich.console import Console

    from .record import atomic_write_text
    from .report import to_report

    df, sig, direction, results_dir = leaderboard_data(results_dir, dataset, degradation, protocol, unit, alpha)
    text = to_report(df, direction, sig, case=case)
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    atomic_write_text(Path(output), text)
    Console(stderr=True).print(f"wrote {output} ({len(df)} runs from {results_dir}); open it in a browser",
                               highlight=False, markup=False)
