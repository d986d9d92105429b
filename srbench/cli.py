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
from .cli_common import (CONTEXT, batch_size_opt, precision_opt, seed_list, check_preset, data_root_opt, dataset_opt,
                         degradation_opt, device_opt, experiment_opts, json_opt, results_dir_opt)
from .errors import SRBenchError
from .report_cli import leaderboard_data, reference_opts, stats_options, table_warnings

console = Console()
err = Console(stderr=True, soft_wrap=True)


class Group(click.Group):
    """Turns SRBenchError into a one-line message and a non-zero exit, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SRBenchError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(None, "--version", "-V", package_name="srbench", help="Print srbench's version and exit.")
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
@experiment_opts
@results_dir_opt("Where run records go (default: $SRBENCH_RESULTS or ./leaderboards).")
@data_root_opt()
@click.option("--train", "-t", is_flag=True, help="Train from scratch even when a shipped checkpoint exists.")
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path), default=None, help="Evaluate these weights.")
@click.option("--seeds", "-S", default=None,
              help="Several seeds, e.g. 0,1,2: one run each (the leaderboard aggregates them); replaces --seed.")
@click.option("--steps", "-n", type=int, default=None, help="Training steps instead of the preset's (a new run).")
@click.option("--max-minutes", "-M", type=float, default=None,
              help="Stop training after this long: the run is recorded as unfinished; the same command resumes it.")
@click.option("--force", "-f", is_flag=True, help="Run again even if this run already finished.")
@click.option("--pretrained-only", "-P", is_flag=True,
              help="Skip a learned method that has no shipped checkpoint instead of training it.")
@click.option("--save-volumes/--no-save-volumes", "-V/-N", default=None,
              help="Write each test case's SR volume (NIfTI) under volumes/; default: for up to 4 test cases.")
@batch_size_opt()
@precision_opt()
@json_opt("Print the run directory and its summary as JSON on stdout (one line per seed).")
def run(method, dataset, degradation, preset, seed, device, results_dir, data_root, train, checkpoint, seeds, steps,
        max_minutes, force, pretrained_only, save_volumes, batch_size, precision, as_json):
    """Fit METHOD on the train split (when it trains), predict the test split, score it, record the run."""
    from .overrides import check_batch_size
    from .record import load_record
    from .runner import RunOptions, default_results_dir
    from .runner import run as do_run

    _report_failures()
    check_preset(method, preset)
    check_batch_size(batch_size)
    for one in seed_list(seeds, seed):
        opts = RunOptions(method=method, dataset=dataset, degradation=degradation, preset=preset, seed=one,
                          device=device, results_dir=results_dir or default_results_dir(), force=force, train=train,
                          checkpoint=checkpoint, data_root=data_root, pretrained_only=pretrained_only, steps=steps,
                          max_minutes=max_minutes, save_volumes=save_volumes, batch_size=batch_size,
                          precision=precision)
        _check_names(opts)
        notice = _weights_notice(opts)
        if notice:
            err.print(notice, highlight=False, markup=False)
        out_dir, ran = do_run(opts, err)
        if out_dir is None:
            if as_json:
                click.echo(json.dumps({"run_dir": None, "ran": False, "skipped": True}))
            return
        record = load_record(out_dir)
        if ran:
            _print_run_summary(record)
        if as_json:
            click.echo(json.dumps({"run_dir": str(out_dir), "ran": ran, "run_id": record.run_id, "seed": record.seed,
                                   "n_slices": record.n_slices, "summary": record.to_dict()["summary"],
                                   "training": record.training_state.__dict__, "timings": record.timings},
                                  default=str))
        else:
            click.echo(str(out_dir))
    err.print(f"next: srbench report -r {opts.results_dir} -o report.html   (figures and method cards; "
              f"srbench leaderboard -r {opts.results_dir} for the table alone)", highlight=False, markup=False)


def _warn(message: str) -> None:
    from rich.markup import escape  # a path or label may hold [brackets]

    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _check_names(opts) -> None:
    """Unknown dataset or degradation names fail here, before anything is said or loaded."""
    from .dataset_spec import _named_datasets
    from .runner import make_degradation

    name = opts.dataset.partition("?")[0].partition(":")[0].strip()
    if name not in plugins.get_registry().datasets and name not in _named_datasets()[1]:
        plugins.lookup("datasets", name)  # raises, with "did you mean"
    if opts.degradation:
        make_degradation(opts.degradation)


def _weights_notice(opts) -> str | None:
    """Where the run's weights come from, said before any progress bar (None: the runner says it skips)."""
    cls = plugins.lookup("methods", opts.method)
    if not cls.trains:
        return None  # nothing is loaded: nothing to say
    if opts.checkpoint is not None:
        return f"weights: {opts.checkpoint} (--checkpoint)"
    name = opts.dataset.partition("?")[0].partition(":")[0].strip()
    shipped = None if opts.train else cls.shipped_checkpoint(name, opts.preset)
    if shipped is not None:
        return f"weights: the {name}-{opts.preset} checkpoint shipped with {opts.method} ({shipped}); --train retrains"
    if opts.pretrained_only:
        return None
    why = "--train" if opts.train else f"no {name}-{opts.preset} checkpoint ships with {opts.method}"
    return f"weights: training {opts.method} now ({why}; preset {opts.preset}, device {opts.device})"


def _print_run_summary(record) -> None:
    parts = [f"{k.upper()} {v.mean:.4f} ± {v.std:.4f}" for k, v in record.per_slice.items() if v]
    err.print(f"{record.method} on {record.dataset.name} (seed {record.seed}; {record.n_subjects} subject(s), "
              f"{record.n_slices} slices, {record.timings['sec_per_slice']:.3g} s/slice): " + ", ".join(parts),
              highlight=False)
    skipped = record.dataset.skipped_cases or []
    if skipped:
        err.print(f"[yellow]{len(skipped)} case(s) skipped[/] (reasons in the run record), e.g. {skipped[0][1]}",
                  highlight=False)
    for meta in record.metrics.values():
        if meta.unavailable:
            err.print(f"[yellow]{meta.unavailable}[/]", highlight=False)  # the notice names the metric
    state = record.training_state
    if state.finished is False:
        err.print(f"[yellow]training unfinished:[/] {state.steps} of {state.target_steps} steps (the same command "
                  "resumes it)", highlight=False)


@cli.command("train")
@experiment_opts
@data_root_opt()
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Weights file to write (safetensors); its training record goes beside it as .json.")
@click.option("--workdir", "-w", type=click.Path(path_type=Path), default=None,
              help="Checkpoints (resume from here).")
@click.option("--steps", "-n", type=int, default=None,
              help="Override the preset's number of training steps (its LR restarts past them are dropped).")
@click.option("--max-minutes", "-M", type=float, default=None,
              help="Stop with a checkpoint after this long; rerun resumes.")
@click.option("--checkpoint-every", "-k", type=int, default=None, help="Steps between checkpoints (preset default).")
@json_opt("Print the training summary (steps, seconds, device, weights) as JSON on stdout.")
def train_cmd(method, dataset, degradation, preset, seed, device, data_root, output, workdir, steps, max_minutes,
              checkpoint_every, as_json):
    """Train METHOD on a dataset's train split and write its weights and training record."""
    from .runner import RunOptions
    from .training import train as do_train

    check_preset(method, preset)
    opts = RunOptions(method=method, dataset=dataset, degradation=degradation, preset=preset, seed=seed,
                      device=device, data_root=data_root)
    record = do_train(opts, output, workdir, steps, max_minutes, err, checkpoint_every)
    t = record["training"]
    if as_json:
        click.echo(json.dumps({"weights": str(output), "record": str(Path(output).with_suffix(".json")),
                               **{k: t.get(k) for k in ("steps", "target_steps", "seconds", "device", "finished")}}))
    err.print(f"{t['steps']}/{t['target_steps']} steps in {t['seconds']:.0f} s; weights: {output}", highlight=False)
    err.print(f"next: srbench run -m {method} -d {dataset} -p {preset} -c {output}", highlight=False, markup=False)


@cli.command()
@click.option("--pred", "-i", required=True, type=click.Path(path_type=Path), help="Predicted volume.")
@click.option("--ref", "-f", required=True, type=click.Path(path_type=Path), help="Reference (HR) volume.")
@click.option("--mask", "-k", type=click.Path(path_type=Path), default=None, help="Mask volume (non-zero = inside).")
@device_opt()
@json_opt("Print one JSON object.")
def score(pred, ref, mask, device, as_json):
    """Score any two volumes on one grid, slice by slice (axial = first NumPy axis)."""
    from .method import resolve_device
    from .score_volumes import score_volumes

    result = score_volumes(pred, ref, mask, device=str(resolve_device(device)))
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
@results_dir_opt()
@dataset_opt(False, "Only this dataset's runs.")
@degradation_opt("Only this degradation's runs.")
@click.option("--format", "-f", "fmt", type=click.Choice(["csv", "html", "md", "latex", "json"]), default="md",
              show_default=True, help="html: the full report, as `srbench report` writes it (sortable table, "
              "box plots, qualitative panels, method cards; one self-contained file); json: the CSV's rows.")
@stats_options
@reference_opts
@click.option("--table-only", "-t", is_flag=True, help="html: the sortable table alone, without figures.")
@click.option("--case", "-c", default=None, help="html: the test case of the qualitative panels (default: the "
              "first test case).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Write to FILE (atomically).")
@json_opt("Same as --format json: the leaderboard's rows as a JSON list.")
def leaderboard(results_dir, dataset, degradation, fmt, protocol, unit, alpha, reference, scores_file, directions,
                table_only, case, output, as_json, plane):
    """Build the leaderboard from run records or a score table (--scores); see --reference for the marks."""
    from . import leaderboard_export as lx
    from .outputs import check_output_path
    from .record import atomic_write_text

    if output:
        check_output_path(output)  # before the statistics, not after
    df, sig, direction, results_dir = leaderboard_data(results_dir, dataset, degradation, protocol, unit, alpha,
                                                       reference, scores_file, directions, warn=_warn, plane=plane)
    fmt = "json" if as_json else fmt
    if fmt == "csv":
        text = lx.to_csv(df)
    elif fmt == "json":
        text = lx.to_json(df)
    elif fmt == "html" and not table_only and scores_file is None:
        from .report import to_report

        text = to_report(df, direction, sig, case=case)
    elif fmt == "html":
        from .report import to_report

        text = to_report(df, direction, sig, figures=False)
    elif fmt == "latex":
        from .latex import to_latex

        text = to_latex(df, direction, sig)
    else:
        text = lx.to_markdown(df, direction, sig)
    table_warnings(df, sig, _warn)
    if output:
        atomic_write_text(Path(output), text)
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.command()
@json_opt()
def methods(as_json):
    """List installed SR methods."""
    from .registration import card_value

    reg = plugins.get_registry()
    # From each method's card as registered: a method registered by import path is not imported to be listed.
    cards = {n: reg.methods.peek(n) for n in sorted(reg.methods)}
    recs = [{"name": n, "plugin": reg.owners[("methods", n)], "version": card_value(c, "version"),
             "trains": card_value(c, "trains", False), "presets": list(card_value(c, "presets", ())),
             "summary": card_value(c, "summary", "")} for n, c in cards.items()]
    _report_failures()
    _print_table("methods", ["name", "plugin", "version", "trains", "presets", "summary"],
                 [[r["name"], r["plugin"], r["version"], r["trains"], ", ".join(r["presets"]), r["summary"]] for r in recs],
                 as_json, recs)


@cli.command()
@json_opt()
def datasets(as_json):
    """List installed datasets."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("datasets", n)], "default_degradation": c.default_degradation,
             "description": c.description} for n, c in sorted(reg.datasets.items())]
    _report_failures()
    _print_table("datasets", ["name", "plugin", "default degradation", "description"],
                 [list(r.values())[:2] + [r["default_degradation"], r["description"]] for r in recs], as_json, recs)


@cli.command()
@json_opt()
def degradations(as_json):
    """List degradations and named protocols."""
    reg = plugins.get_registry()
    recs = [{"name": n, "plugin": reg.owners[("degradations", n)],
             "description": (f.__doc__ or "").strip().splitlines()[0] if f.__doc__ else ""}
            for n, f in sorted(reg.degradations.items())]
    _report_failures()
    _print_table("degradations", ["name", "plugin", "description"], [list(r.values()) for r in recs], as_json, recs)


@cli.command()
@json_opt()
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
@json_opt()
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
@click.option("--force", "-f", is_flag=True, help="Overwrite the files of an existing srbench-NAME folder.")
@json_opt("Print the written files as a JSON list.")
def new_method_cmd(name, directory, force, as_json):
    """Write srbench-NAME/, a method plugin package (pyproject with entry point, method, conformance test)."""
    from .scaffold import new_method

    try:
        taken = name in plugins.get_registry().methods
    except SRBenchError:
        taken = False  # a broken installation must not stop anyone from starting a plugin
    root, files = new_method(name, directory, force)
    if as_json:
        click.echo(json.dumps([str(p) for p in files]))
    for path in files if not as_json else ():
        click.echo(str(path))
    if taken:
        err.print(f"[yellow]warning:[/] a method called {name!r} is already installed; rename yours before "
                  "installing it (two plugins registering one name is an error)", highlight=False)
    err.print(f"next: pip install -e \"{root}[test]\" && pytest {root} && srbench run --method {name} "
              "--dataset demo", highlight=False, soft_wrap=True, markup=False)


from .infer_cli import register as _register_infer  # noqa: E402 - the command lives beside its module
from .report_cli import register as _register_report  # noqa: E402 - the command lives beside its module
from .reproduce import register as _register_reproduce  # noqa: E402 - the command lives beside its module
from .stats_cli import register as _register_stats  # noqa: E402 - the command lives beside its module

_register_stats(cli)
_register_reproduce(cli)
_register_report(cli)
_register_infer(cli)


def _add_plugin_commands() -> None:
    """Let each plugin add its commands. A plugin command that would replace an existing one (click's
    ``add_command`` replaces silently) is an error naming both; that plugin's commands are all left out and
    every other command keeps working."""
    pm = plugins.get_plugin_manager()
    owners = {name: "srbench" for name in cli.commands}
    for impl in pm.hook.register_commands.get_hookimpls():
        before = dict(cli.commands)
        try:
            impl.function(cli)
        except Exception as exc:  # noqa: BLE001 - one plugin's command must not break the CLI
            err.print(f"[yellow]warning:[/] plugin {impl.plugin_name!r} failed to add commands: {exc}", highlight=False)
            _restore_commands(before)
            continue
        replaced = sorted(n for n, command in before.items() if cli.commands.get(n) is not command)
        if replaced:
            taken = ", ".join(f"{n!r} (from {_owner_text(owners[n])})" for n in replaced)
            err.print(f"[red]error:[/] plugin {impl.plugin_name!r} adds command {taken}, which already exists; "
                      f"plugin {impl.plugin_name!r}'s commands are left out", highlight=False)
            _restore_commands(before)
            continue
        owners.update({n: impl.plugin_name for n in cli.commands if n not in before})


def _owner_text(owner: str) -> str:
    return "srbench itself" if owner == "srbench" else f"plugin {owner!r}"


def _restore_commands(before: dict) -> None:
    cli.commands.clear()
    cli.commands.update(before)


def main() -> None:
    try:
        _add_plugin_commands()
    except SRBenchError as exc:
        err.print(f"Error: {exc}", highlight=False)
        sys.exit(1)
    cli()
