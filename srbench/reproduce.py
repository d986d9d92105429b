"""``srbench reproduce RUN_DIR``: run a recorded run again from its record alone and compare the scores.

The run's options (method, dataset spec, degradation, preset, seed, inference batch size: a record without one
reruns with the method's default) come from the record; its weights are the same file, checked by sha256: the
plugin's shipped checkpoint, the ``--checkpoint`` file, or, for a run that trained, the weights it saved (so
this reproduces the evaluation; retraining is ``srbench run --train``).
The new run goes to a temporary results folder (``--keep`` keeps it). Package versions, the git commit and a
dirty tree that differ from the record are warned about. Scores are compared slice by slice (matched on case
and slice); the maximum absolute deviation per metric is printed and the exit status is 1 when one exceeds
``--tolerance``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import SRBenchError

if TYPE_CHECKING:  # the command is listed by --help without loading pandas or torch
    import pandas as pd

    from .record import RunRecord


def register(cli: click.Group) -> None:
    """Add the ``reproduce`` command to ``cli``."""
    cli.add_command(reproduce_command)


def differences(record: RunRecord) -> list[str]:
    """What differs between the record's environment and this one: package versions, commit, dirty tree."""
    from . import environment

    out = []
    now = environment.versions()
    for name, then in sorted(record.versions.items()):
        if name in now and now[name] != then:
            out.append(f"{name} {then} recorded, {now[name]} here")
    sha = environment.git_sha()
    if record.git_sha and sha and sha != record.git_sha:
        out.append(f"git commit {record.git_sha[:10]} recorded, {sha[:10]} here")
    if record.git_dirty:
        out.append("the recorded run came from a checkout with uncommitted changes")
    if environment.git_dirty():
        out.append("this checkout has uncommitted changes")
    return out


def weights_file(record: RunRecord) -> Path | None:
    """The weights the run used, checked against the recorded sha256 (None: the method has no weights)."""
    from . import record as rec
    from .method import sha256_file
    from .plugins import lookup

    source = record.weights.get("source", "none")
    if source == "none":
        return None
    if source == "shipped":
        path = lookup("methods", record.method).shipped_checkpoint(record.dataset.name, record.preset)
    elif source == "trained-in-run":
        path = record.path / "weights.safetensors"
    else:
        path = Path(record.weights.get("path", ""))
    if path is None or not Path(path).is_file():
        raise SRBenchError(f"{record.path}: the run's weights ({source}) are not found here ({path})")
    want = record.weights.get("sha256")
    if want and sha256_file(Path(path)) != want:
        raise SRBenchError(f"{path}: sha256 differs from the one recorded in {record.path / rec.RECORD}")
    return Path(path)


def deviations(old: pd.DataFrame, new: pd.DataFrame, metrics) -> dict:
    """Metric -> max |new - old| over the slices both scored (NaN where the metric has no score in either);
    raises when the two runs did not score the same slices."""
    keys = ["case", "slice"]
    merged = old.merge(new, on=keys, how="outer", suffixes=("_old", "_new"), indicator=True)
    if (merged["_merge"] != "both").any():
        raise SRBenchError(f"the new run scored other slices ({int((merged['_merge'] != 'both').sum())} differ)")
    out = {}
    for m in metrics:
        if f"{m}_old" in merged and f"{m}_new" in merged:
            out[m] = float((merged[f"{m}_new"].astype(float) - merged[f"{m}_old"].astype(float)).abs().max())
    return out


def recorded_precision(record) -> str | None:
    """The inference precision a run recorded in its method's settings (None: the method has no choice)."""
    inference = (record.method_card.get("settings") or {}).get("inference")
    return inference.get("precision") if isinstance(inference, dict) else None


def reproduce(run_dir: Path, results_dir: Path, device: str = "auto", console=None) -> tuple[RunRecord, dict]:
    """Re-run ``run_dir``'s run into ``results_dir``; returns (the new record, metric -> max deviation)."""
    from . import record as rec
    from .runner import RunOptions, run

    record = rec.load_record(run_dir)
    c = record.config
    opts = RunOptions(method=record.method, dataset=c.get("dataset") or record.dataset.name,
                      degradation=record.degradation_spec, preset=record.preset or "tiny", seed=record.seed,
                      device=device, results_dir=Path(results_dir), force=True, checkpoint=weights_file(record),
                      data_root=c.get("data_root"), steps=c.get("steps"), batch_size=record.batch_size,
                      precision=recorded_precision(record))
    out_dir, _ = run(opts, console)
    new = rec.load_record(out_dir)
    return new, deviations(record.scores(), new.scores(), record.metrics)


@click.command("reproduce", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--tolerance", "-t", type=float, default=1e-3, show_default=True,
              help="Largest absolute deviation of any slice's score that still counts as reproduced.")
@click.option("--device", "-D", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--keep", "-k", type=click.Path(path_type=Path), default=None,
              help="Write the new run under this results folder (default: a temporary one, removed).")
def reproduce_command(run_dir, tolerance, device, keep):
    """Re-run RUN_DIR's run from its record alone and compare the scores slice by slice."""
    from rich.console import Console

    from . import record as rec

    err = Console(stderr=True, soft_wrap=True)
    record = rec.load_record(run_dir)
    for line in differences(record):
        err.print(f"[yellow]warning:[/] {line}", highlight=False)
    if keep is not None:
        _, dev = reproduce(run_dir, keep, device, err)
    else:
        with tempfile.TemporaryDirectory(prefix="srbench-reproduce-") as tmp:
            _, dev = reproduce(run_dir, Path(tmp), device, err)
    worst = {m: d for m, d in dev.items() if d == d and d > tolerance}  # d == d: not NaN
    for m, d in dev.items():
        click.echo(f"{m}: max |deviation| = {'—' if d != d else f'{d:.3g}'}"
                   + (f"  (over the tolerance {tolerance:g})" if m in worst else ""))
    if worst:
        raise SRBenchError(f"{run_dir}: not reproduced within {tolerance:g} ({', '.join(worst)})")
    err.print(f"reproduced within {tolerance:g}: {len(record.scores())} slices", highlight=False)
