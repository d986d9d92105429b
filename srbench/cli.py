"""The ``srbench`` command line: run, score, leaderboard, listings, plugins, infer."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import plugins
from .errors import SRBenchError

console = Console()
err = Console(stderr=True, soft_wrap=True)


class Group(click.Group):
    """Turns SRBenchError into a one-line message and a non-zero exit, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SRBenchError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Group)
@click.version_option(package_name="srbench")
def cli():
    """srbench: benchmark MRI super-resolution methods with calibrated metrics and paper-grade statistics."""


def _report_failures() -> None:
    for failure in plugins.get_registry().failures:
        err.print(f"[yellow]warning:[/] {failure.line()}", highlight=False)


def _print_table(title: str, columns: list[str], rows: list[list], as_json: bool, records: list[dict]) -> None:
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console.print(table)


@cli.command()
@click.option("--method", "-m", required=True, help="Method name (srbench methods lists them).")
@click.option("--dataset", "-d", required=True, help="Dataset name (srbench datasets lists them).")
@click.option("--degradation", "-g", default=None, help="Degradation or protocol; default: the dataset's.")
@click.option("--preset", default="tiny", show_default=True, help="Method preset: tiny (CPU) or paper.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--results-dir", type=click.Path(path_type=Path), default=None,
              help="Where run records go (default: $SRBENCH_RESULTS or ./leaderboards).")
@click.option("--data-root", default=None, help="Root folder of the dataset's local copy.")
@click.option("--train", is_flag=True, help="Train from scratch even when a shipped checkpoint exists.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Evaluate these weights.")
@click.option("--force", is_flag=True, help="Run again even if this run already finished.")
@click.option("--pretrained-only", is_flag=True,
              help="Skip a learned method that has no shipped checkpoint instead of training it.")
def run(method, dataset, degradation, preset, seed, device, results_dir, data_root, train, checkpoint, force,
        pretrained_only):
    """Fit METHOD on the train split (when it trains), predict the test split, score it, record the run."""
    from .runner import RunOptions, default_results_dir
    from .runner import run as do_run

    _report_failures()
    opts = RunOptions(method=method, dataset=dataset, degradation=degradation, preset=preset, seed=seed,
                      device=device, results_dir=results_dir or default_results_dir(), force=force, train=train,
                      checkpoint=checkpoint, data_root=data_root, pretrained_only=pretrained_only)
    out_dir, ran = do_run(opts, err)
    if out_dir is None:
        return
    if ran:
        record = json.loads((out_dir / "record.json").read_text(encoding="utf-8"))
        _print_run_summary(record)
    click.echo(str(out_dir))


def _print_run_summary(record: dict) -> None:
    summary = record["summary"]["per_slice"]
    parts = [f"{k.upper()} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.items() if v]
    err.print(f"{record['method_card']['name']} on {record['dataset']['name']} ({record['n_slices']} slices, "
              f"{record['timings']['sec_per_slice']:.3g} s/slice): " + ", ".join(parts), highlight=False)
    skipped = record["dataset"].get("skipped_cases") or []
    if skipped:
        err.print(f"[yellow]{len(skipped)} case(s) skipped[/] (reasons in the run record), e.g. {skipped[0][1]}",
                  highlight=False)
    for meta in record["metrics"].values():
        if meta.get("unavailable"):
            err.print(f"[yellow]{meta['unavailable']}[/]", highlight=False)  # the notice names the metric


@cli.command("train")
@click.option("--method", "-m", required=True)
@click.option("--dataset", "-d", required=True)
@click.option("--degradation", "-g", default=None)
@click.option("--preset", default="tiny", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", default=None)
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Weights file to write (safetensors); its training record goes beside it as .json.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Checkpoints (resume from here).")
@click.option("--steps", type=int, default=None,
              help="Override the preset's number of training steps (its LR restarts past them are dropped).")
@click.option("--max-minutes", type=float, default=None, help="Stop with a checkpoint after this long; rerun resumes.")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints (preset default).")
def train_cmd(method, dataset, degradation, preset, seed, device, data_root, output, workdir, steps, max_minutes,
              checkpoint_every):
    """Train METHOD on a dataset's train split and write its weights and training record."""
    from .runner import RunOptions
    from .runner import train as do_train

    opts = RunOptions(method=method, dataset=dataset, degradation=degradation, preset=preset, seed=seed,
                      device=device, data_root=data_root)
    record = do_train(opts, output, workdir, steps, max_minutes, err, checkpoint_every)
    t = record["training"]
    err.print(f"{t['steps']}/{t['target_steps']} steps in {t['seconds']:.0f} s; weights: {output}", highlight=False)


@cli.command()
@click.option("--method", "-m", required=True)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path), help="LR volume.")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path), help="SR volume to write.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights of a learned method.")
@click.option("--like", type=click.Path(path_type=Path), default=None, help="Take the output grid from this image.")
@click.option("--spacing", default=None, help="Output spacing x,y,z in mm (the LR extent is kept).")
@click.option("--preset", default="tiny", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
def infer(method, input_path, output_path, checkpoint, like, spacing, preset, seed, device):
    """Super-resolve a whole volume with any method; the output keeps correct geometry."""
    from .infer import infer as do_infer

    values = None
    if spacing is not None:
        try:
            values = [float(v) for v in spacing.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected x,y,z in mm, got {spacing!r}", param_hint="--spacing") from None
    do_infer(method, input_path, output_path, checkpoint, like, values, preset, seed, device)
    err.print(f"wrote {output_path}")


@cli.command()
@click.option("--pred", required=True, type=click.Path(path_type=Path), help="Predicted volume.")
@click.option("--ref", required=True, type=click.Path(path_type=Path), help="Reference (HR) volume.")
@click.option("--mask", type=click.Path(path_type=Path), default=None, help="Mask volume (non-zero = inside).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score(pred, ref, mask, device, as_json):
    """Score any two volumes on one grid, slice by slice (axial = first NumPy axis)."""
    from .score_volumes import score_volumes

    result = score_volumes(pred, ref, mask, device=device)
    if as_json:
        click.echo(json.dumps(result))
        return
    table = Table(title=f"{pred} vs {ref}")
    for c in ("metric", "mean", "std"):
        table.add_column(c)
    for name, s in result["metrics"].items():
        table.add_row(name, *(("unavailable", "") if s is None else (f"{s['mean']:.4f}", f"{s['std']:.4f}")))
    console.print(table)
    for notice in result.get("unavailable", {}).values():
        err.print(f"[yellow]{notice}[/]", highlight=False)  # the notice names the metric


@cli.command()
@click.option("--results-dir", type=click.Path(path_type=Path), default=None)
@click.option("--dataset", default=None)
@click.option("--degradation", default=None)
@click.option("--format", "fmt", type=click.Choice(["csv", "html", "md", "latex"]), default="md", show_default=True,
              help="html: the full report (sortable table, box plots, qualitative panels; one self-contained file).")
@click.option("--protocol", type=click.Choice(["paper", "paired"]), default="paper", show_default=True,
              help="Statistics behind the asterisks: paper (Shapiro-Wilk -> ANOVA + Tukey HSD or Kruskal-Wallis + "
                   "Dunn-Bonferroni) or paired (Friedman + Wilcoxon signed-rank, Holm).")
@click.option("--unit", type=click.Choice(["slice", "volume"]), default="slice", show_default=True,
              help="Unit of the statistics: slice (the paper's) or volume.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@click.option("--table-only", is_flag=True, help="html: the sortable table alone, without figures.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write to FILE (atomically).")
def leaderboard(results_dir, dataset, degradation, fmt, protocol, unit, alpha, table_only, output):
    """Build the leaderboard from run records (asterisk: difference from the best not significant)."""
    from . import leaderboard as lb
    from .record import atomic_write_text
    from .runner import default_results_dir

    results_dir = results_dir or default_results_dir()
    df, sig = lb.significance(lb.load_table(results_dir, dataset, degradation), protocol, unit, alpha)
    direction = lb.directions(results_dir)
    if fmt == "csv":
        text = lb.to_csv(df)
    elif fmt == "html" and not table_only:
        from .report import to_report

        text = to_report(df, direction, sig)
    elif fmt == "html":
        text = lb.to_html(df, direction, sig=sig)
    elif fmt == "latex":
        text = lb.to_latex(df, direction, sig)
    else:
        text = lb.to_markdown(df, direction, sig)
    if output:
        atomic_write_text(Path(output), text)
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def methods(as_json):
    """List installed SR methods."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("methods", n)], "version": c.version, "trains": c.trains,
             "presets": list(c.presets), "summary": c.summary} for n, c in sorted(reg.methods.items())]
    _report_failures()
    _print_table("methods", ["name", "plugin", "version", "trains", "presets", "summary"],
                 [[r["name"], r["plugin"], r["version"], r["trains"], ", ".join(r["presets"]), r["summary"]] for r in recs],
                 as_json, recs)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def datasets(as_json):
    """List installed datasets."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("datasets", n)], "default_degradation": c.default_degradation,
             "description": c.description} for n, c in sorted(reg.datasets.items())]
    _report_failures()
    _print_table("datasets", ["name", "plugin", "default degradation", "description"],
                 [list(r.values())[:2] + [r["default_degradation"], r["description"]] for r in recs], as_json, recs)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def degradations(as_json):
    """List degradations and named protocols."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("degradations", n)],
             "description": (f.__doc__ or "").strip().splitlines()[0] if f.__doc__ else ""}
            for n, f in sorted(reg.degradations.items())]
    _report_failures()
    _print_table("degradations", ["name", "plugin", "description"], [list(r.values()) for r in recs], as_json, recs)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def metrics(as_json):
    """List metrics with their direction, range and definition."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("metrics", n)], "direction": m.direction,
             # JSON has no Infinity: an open end of the range is null.
             "range": [v if math.isfinite(v) else None for v in m.info.value_range], "definition": m.info.definition,
             "unavailable": m.unavailable_reason()} for n, m in sorted(reg.metrics.items())]
    _report_failures()
    _print_table("metrics", ["name", "plugin", "better", "range", "definition", "available"],
                 [[r["name"], r["plugin"], r["direction"], r["range"], r["definition"],
                   "yes" if r["unavailable"] is None else "no: " + r["unavailable"]] for r in recs], as_json, recs)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def list_plugins(as_json):
    """List installed plugins: distribution, version, hooks and what each registered."""
    recs = plugins.describe_plugins()
    failures = [f.__dict__ for f in plugins.get_registry().failures]
    if as_json:
        click.echo(json.dumps({"plugins": recs, "failures": failures}, indent=2))
        return
    _print_table("plugins", ["name", "distribution", "version", "hooks", "registers"],
                 [[r["name"], r["distribution"], r["version"], ", ".join(r["hooks"]),
                   "; ".join(f"{k}: {', '.join(v)}" for k, v in r["registers"].items())] for r in recs], False, recs)
    _report_failures()


@cli.command("new-method")
@click.argument("name")
@click.option("--directory", "-C", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the package folder srbench-NAME.")
@click.option("--force", is_flag=True, help="Overwrite the files of an existing srbench-NAME folder.")
def new_method_cmd(name, directory, force):
    """Write srbench-NAME/, a method plugin package (pyproject with entry point, method, conformance test)."""
    from .scaffold import new_method

    try:
        taken = name in plugins.get_registry().methods
    except SRBenchError:
        taken = False  # a broken installation must not stop anyone from starting a plugin
    root, files = new_method(name, directory, force)
    for path in files:
        click.echo(str(path))
    if taken:
        err.print(f"[yellow]warning:[/] a method called {name!r} is already installed; rename yours before "
                  "installing it (two plugins registering one name is an error)", highlight=False)
    err.print(f"next: pip install -e \"{root}[test]\" && pytest {root} && srbench run --method {name} "
              "--dataset demo", highlight=False, soft_wrap=True, markup=False)


from .stats_cli import register as _register_stats  # noqa: E402 - the command lives beside its module

_register_stats(cli)


def _add_plugin_commands() -> None:
    pm = plugins.get_plugin_manager()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli)
        except Exception as exc:  # noqa: BLE001 - one plugin's command must not break the CLI
            err.print(f"[yellow]warning:[/] plugin {impl.plugin_name!r} failed to add commands: {exc}")


def main() -> None:
    try:
        _add_plugin_commands()
    except SRBenchError as exc:
        err.print(f"Error: {exc}", highlight=False)
        sys.exit(1)
    cli()
