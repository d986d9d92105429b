"""What every ``srbench`` command shares: its options (one name, one short flag, one help text each), name
checks with "did you mean", and the message for a results folder without runs.

The short flags are the same on every command that has the option: ``-m`` method, ``-d`` dataset, ``-g``
degradation, ``-p`` preset, ``-s`` seed, ``-D`` device, ``-b`` batch size, ``-x`` precision, ``-r`` results dir,
``-R`` data root, ``-o`` output, ``-j`` JSON. ``tests/test_cli_options.py`` walks the command tree and fails on an
option without help.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .errors import SRBenchError, did_you_mean
from .overrides import PRECISIONS

CONTEXT = {"help_option_names": ["-h", "--help"]}


def method_opt(required: bool = True):
    return click.option("--method", "-m", required=required, help="Method name (`srbench methods` lists them).")


def dataset_opt(required: bool = True, help: str = "Dataset name, or NAME:ROOT (`srbench datasets` lists them)."):
    return click.option("--dataset", "-d", required=required, default=None, help=help)


def degradation_opt(help: str = "Degradation or named protocol (`srbench degradations`); default: the dataset's."):
    return click.option("--degradation", "-g", default=None, help=help)


def preset_opt():
    return click.option("--preset", "-p", default="tiny", show_default=True,
                        help="Method preset (`srbench methods` lists each method's): tiny (CPU-sized) or paper.")


def seed_opt():
    return click.option("--seed", "-s", default=0, show_default=True, type=int,
                        help="Random seed (training, stochastic sampling, noise).")


def device_opt():
    return click.option("--device", "-D", default="auto", show_default=True,
                        help="auto (CUDA when present, else CPU), cpu or cuda[:N].")


def batch_size_opt():
    return click.option("--batch-size", "-b", type=int, default=None,
                        help="Slices per forward pass at inference (default: the method's own, per device). Outputs "
                             "do not depend on it, so it is not part of a run's identity; the record keeps it.")


def precision_opt():
    return click.option("--precision", "-x", type=click.Choice(PRECISIONS), default=None,
                        help="Inference arithmetic for methods that offer a choice (Res-SRDiff): fp32 (exact) or "
                             "bf16 (where the hardware has it); default: the preset's. Part of a run's identity.")


def results_dir_opt(help: str = "Folder of run records (default: $SRBENCH_RESULTS or ./leaderboards)."):
    return click.option("--results-dir", "-r", type=click.Path(path_type=Path), default=None, help=help)


def data_root_opt():
    return click.option("--data-root", "-R", default=None, help="Root folder of the dataset's local copy.")


def json_opt(help: str = "Print the result as JSON on stdout (messages stay on stderr)."):
    return click.option("--json", "-j", "as_json", is_flag=True, help=help)


def experiment_opts(command):
    """--method, --dataset, --degradation, --preset, --seed and --device: what `run` and `train` share."""
    for option in (device_opt(), seed_opt(), preset_opt(), degradation_opt(), dataset_opt(), method_opt()):
        command = option(command)
    return command


def check_preset(method: str, preset: str) -> None:
    """A one-line error, before any work, when ``method`` has no preset ``preset`` (or no such method)."""
    from .plugins import lookup

    presets = list(getattr(lookup("methods", method), "presets", {}) or {})
    if presets and preset not in presets:
        raise SRBenchError(f"method {method!r} has no preset {preset!r}{did_you_mean(preset, presets)}; "
                           f"presets: {', '.join(presets)}")


def results_dir_or_default(results_dir: Path | None) -> Path:
    return Path(results_dir) if results_dir is not None else Path(os.environ.get("SRBENCH_RESULTS", "leaderboards"))


def require_runs(results_dir: Path) -> None:
    """A clear error (exit 1) when ``results_dir`` holds no run record, instead of an empty table."""
    from .record import find_records

    if not Path(results_dir).is_dir():
        raise SRBenchError(f"{results_dir}: no runs: folder not found (give --results-dir, or set $SRBENCH_RESULTS)")
    if not find_records(results_dir):
        raise SRBenchError(f"{results_dir}: no runs here (no */*/*/*/record.json); record one with "
                           "`srbench run -m bicubic -d demo`, or give the folder that holds them with --results-dir")


def require_selection(df, results_dir: Path, dataset: str | None, degradation: str | None, all_df) -> None:
    """A clear error when the ``--dataset`` / ``--degradation`` filters left no run, naming what exists."""
    if len(df):
        return
    for column, value in (("dataset", dataset), ("degradation", degradation)):
        present = sorted({str(v) for v in all_df[column]}) if len(all_df) else []
        if value is not None and value not in present:
            raise SRBenchError(f"{results_dir}: no runs for {column} {value!r}{did_you_mean(value, present)}; "
                               f"{column}s with runs: {', '.join(present) or 'none'}")
    raise SRBenchError(f"{results_dir}: no runs for dataset {dataset!r} with degradation {degradation!r}")


def seed_list(seeds: str | None, seed: int) -> list[int]:
    """``--seeds 0,1,2`` as a list of distinct integers; ``[seed]`` without it."""
    if seeds is None:
        return [seed]
    try:
        out = [int(v) for v in seeds.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, got {seeds!r}", param_hint="--seeds") \
            from None
    if not out or len(set(out)) != len(out):
        raise click.BadParameter(f"expected distinct integers, got {seeds!r}", param_hint="--seeds")
    return out
