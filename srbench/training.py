"""Training a method outside a run: ``srbench train`` writes weights and their training record.

Interrupted training resumes from ``workdir``'s checkpoint when the same command is run again. Under torchrun every
rank trains (DDP) and rank 0 writes the weights and the record.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from . import distributed, environment
from . import record as rec
from .errors import SRBenchError
from .method import Method, sha256_file
from .outputs import check_output_path
from .plugins import instantiate_method, lookup
from .overrides import set_steps, set_time_limit, train_settings
from .runner import RunOptions, make_dataset, make_degradation, training_pairs


def train(opts: RunOptions, output: Path, workdir: Path | None = None, steps: int | None = None,
          max_minutes: float | None = None, console: Console | None = None,
          checkpoint_every: int | None = None) -> dict:
    """Train a method on a dataset's train split; write ``output`` (weights) and ``output.json`` (record).

    Interrupted training resumes from ``workdir``'s checkpoint when the same command is run again. Under
    torchrun every rank trains (DDP) and rank 0 writes ``output`` and its record.
    """
    distributed.init()
    console = (console or Console(stderr=True)) if distributed.is_main() else Console(stderr=True, quiet=True)
    check_output_path(output)  # before hours of training, not after
    method_cls = lookup("methods", opts.method)
    if not method_cls.trains:
        raise SRBenchError(f"method {opts.method!r} does not train")
    dataset = make_dataset(opts.dataset, opts.data_root)
    deg_spec = opts.degradation or dataset.default_degradation
    _, degradation = make_degradation(deg_spec)
    method: Method = instantiate_method(method_cls, preset=opts.preset, device=opts.device, seed=opts.seed)
    if steps is not None:
        set_steps(method, steps)
    if max_minutes is not None:
        set_time_limit(method, max_minutes)
    if checkpoint_every is not None:
        train_settings(method)["checkpoint_every"] = checkpoint_every
    workdir = Path(workdir or Path("runs") / "train" / f"{method.name}-{dataset.name}-{opts.preset}-seed{opts.seed}")
    manifest = dataset.manifest()
    train_pairs = training_pairs(dataset, "train", degradation, method, opts.seed)
    val = training_pairs(dataset, "val", degradation, method, opts.seed) if "val" in manifest.splits else None
    record = method.fit(train_pairs, val, workdir)
    method.training_facts = record
    if distributed.is_main():
        method.save(Path(output))
    distributed.barrier()
    record = {"method": method.name, "preset": opts.preset, "dataset": dataset.name, "split_hash": manifest.hash,
              "degradation": degradation.params(), "seed": opts.seed, "method_card": method.card(),
              "weights_sha256": sha256_file(output), "versions": environment.versions(),
              "git_sha": environment.git_sha(), "git_dirty": environment.git_dirty(),
              "command": environment.command_line(), "hardware": environment.hardware(method.device), "training": record,
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if distributed.is_main():
        rec.atomic_write_json(Path(output).with_suffix(".json"), record)
    distributed.barrier()
    return record
