"""The runner: dataset -> degradation -> method (fit / load, predict) -> metrics -> run record.

A run is method@version x dataset@split-hash x degradation@params x seed (x weights). Re-running a finished
run is a no-op unless forced; the record is written last and atomically.

Under ``torchrun --nproc_per_node N`` (``srbench.distributed``): ``train`` trains data-parallel (the engine) and
rank 0 writes the weights and record; ``run`` shards the test split by case (case i on rank i mod N, each case
predicted whole, so a stochastic method sees the same per-case generator as in one process), gathers every
rank's per-slice scores and timings, and rank 0 writes one record whose rows are in the one-process order.
"""

from __future__ import annotations

import json
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import distributed
from . import record as rec
from .cache import PreprocessCache
from .compose import make_composed, split_spec
from .dataset import Case, Dataset
from .dataset_spec import make_dataset  # also reached as runner.make_dataset
from .degradation import Degradation, build, parse_spec
from .errors import SRBenchError
from .lock import run_lock
from .outputs import check_output_path, check_results_dir
from .method import Method, SlicePairs, sha256_file
from .noise import case_seed
from .plugins import get_registry, instantiate_method, lookup
from .prediction import check_prediction
from .scoring import score_arrays, summarise, usable_slices
from .volume import from_array, minmax_range, normalise, require_finite, resample_to, to_array
from .weights import require_checkpoint

NORMALISATION = "minmax-hr: each volume's HR [min, max] -> [0, 1], applied to HR before degradation"


def default_results_dir() -> Path:
    return Path(os.environ.get("SRBENCH_RESULTS", "leaderboards"))


@dataclass
class RunOptions:
    method: str
    dataset: str
    degradation: str | None = None
    preset: str = "tiny"
    seed: int = 0
    device: str = "auto"
    results_dir: Path = field(default_factory=default_results_dir)
    force: bool = False
    train: bool = False
    pretrained_only: bool = False  # skip, instead of training, a learned method without weights
    checkpoint: Path | None = None
    data_root: str | None = None


@dataclass
class Prepared:
    """One case ready for a method: normalised HR (image and array), LR on its own grid, mask, slices."""

    case: Case
    hr: sitk.Image
    hr_array: np.ndarray
    lr: sitk.Image
    mask: np.ndarray | None
    slices: list[int]
    skipped: list[int]


def make_degradation(spec: str) -> tuple[str, Degradation]:
    """``name[:key=value;...]``, or steps joined by ``+`` (``srbench.compose``), e.g. ``prostate-t2w+noise:snr=20``."""
    parts = split_spec(spec)
    if len(parts) > 1:
        return make_composed(parts, make_degradation)
    name, params = parse_spec(spec)
    return name, build(spec, name, lookup("degradations", name), params)


def prepare(case: Case, degradation: Degradation, seed: int) -> Prepared:
    """Normalise, degrade (seeded per case: ``noise.case_seed``) and find usable slices, through the on-disk
    cache (``srbench.cache``): a hit reads neither the case's files nor degrades again; a new degradation of a
    cached case re-degrades without reading the files."""
    cache = PreprocessCache()
    hr_key, key = cache.keys(case, degradation, seed, NORMALISATION) if cache.enabled else (None, None)
    cached_hr = cache.load_hr(hr_key)
    if cached_hr is not None:
        hr, hr_array, mask = cached_hr
    else:
        hr_raw = to_array(case.hr)
        require_finite(hr_raw, f"case {case.case_id!r} HR volume")
        lo, hi = minmax_range(hr_raw)
        hr = from_array(normalise(hr_raw, lo, hi), case.hr)
        mask = sitk.GetArrayFromImage(case.mask) > 0 if case.mask is not None else None
        hr_array = to_array(hr)
        cache.store_hr(hr_key, hr, hr_array, mask)
    cached_lr = cache.load_lr(key)
    if cached_lr is not None:
        lr, slices, skipped = cached_lr
    else:
        slices, skipped = usable_slices(hr_array, mask, case.slices)
        lr = degradation.apply(hr, case_seed(seed, case.case_id))
        cache.store_lr(key, lr, slices, skipped)
    p = Prepared(case, hr, hr_array, lr, mask, slices, skipped)
    p.cache_key = key  # training_pairs caches its LR-on-HR-grid slices under it
    return p


def training_pairs(dataset: Dataset, split: str, degradation: Degradation, method: Method, seed: int) -> SlicePairs:
    lrs, hrs, masks, ids = [], [], [], []
    for case in dataset.cases(split):
        p = prepare(case, degradation, seed)
        lrs.append(PreprocessCache().slices_on_grid(
            p.cache_key, method.input_interpolator, p.slices,
            lambda: to_array(resample_to(p.lr, p.hr, method.input_interpolator))[p.slices]))
        hrs.append(p.hr_array[p.slices])
        masks.append(p.mask[p.slices] if p.mask is not None else np.ones_like(hrs[-1], dtype=bool))
        ids += [case.case_id] * len(p.slices)
    if not hrs:
        raise SRBenchError(f"dataset {dataset.name!r} has no {split} slices")
    return SlicePairs(lr=np.concatenate(lrs), hr=np.concatenate(hrs), case_ids=ids, mask=np.concatenate(masks))


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _weights(method_cls, opts: RunOptions, dataset_name: str) -> dict:
    """Where the weights come from: a user checkpoint, the plugin's shipped checkpoint, or training now."""
    if not method_cls.trains:
        return {"source": "none"}
    if opts.checkpoint is not None:
        path = require_checkpoint(opts.checkpoint)
        return {"source": "checkpoint", "path": str(path), "sha256": sha256_file(path)}
    shipped = None if opts.train else method_cls.shipped_checkpoint(dataset_name, opts.preset)
    if shipped is not None:
        info = {"source": "shipped", "path": str(shipped), "sha256": sha256_file(shipped)}
        card = shipped.with_suffix(".json")
        if card.exists():
            info["training_record"] = json.loads(card.read_text(encoding="utf-8"))
        return info
    return {"source": "trained-in-run"}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


@dataclass
class Setup:
    """What a run is made of, resolved from its options: the method, data, degradation and weights source."""

    opts: RunOptions
    method: Method
    dataset: Dataset
    deg_spec: str
    degradation: Degradation
    manifest: object
    weights: dict


@dataclass
class Evaluation:
    """The test split predicted and scored: per-slice rows in case order, timings and the panels' examples."""

    rows: list[dict]
    timings: dict
    n_slices: int
    skipped: int
    examples: object = None


def run(opts: RunOptions, console: Console | None = None) -> tuple[Path | None, bool]:
    """Execute (or skip, when already finished) one run; returns (run directory or None if skipped, ran).

    Phases: set up, identity, weights (load or fit), predict and score the test split, record. Under torchrun
    every rank returns the run directory once rank 0 has written the record; ``ran`` is true on rank 0 only
    (the rank that reports).
    """
    distributed.init()
    console = (console or Console(stderr=True)) if distributed.is_main() else Console(stderr=True, quiet=True)
    check_results_dir(opts.results_dir)  # before any work, not when the record is written
    setup = _setup(opts)
    if setup.weights["source"] == "trained-in-run" and opts.pretrained_only:
        console.print(f"[yellow]skipped {setup.method.name}:[/] no shipped {setup.dataset.name}-{opts.preset} "
                      f"checkpoint (train one with --train, or give --checkpoint)", highlight=False)
        return None, False
    rid, out_dir = _identity(setup)
    # One process per run folder (rank 0 holds the lock for the ranks): a second waits, then finds it finished.
    waiting = _announce_wait(console, rid)
    with run_lock(opts.results_dir, out_dir, waiting) if distributed.is_main() else nullcontext():
        return _run_once(setup, rid, out_dir, console)


def _announce_wait(console: Console, rid: str):
    return lambda holder: console.print(f"run {rid} is being computed by {holder}; waiting for it to finish",
                                        highlight=False)


def _run_once(setup: Setup, rid: str, out_dir: Path, console: Console) -> tuple[Path | None, bool]:
    """The run itself, once it owns its folder: skip it when finished, else weights, test split, record."""
    opts = setup.opts
    if distributed.broadcast_object((out_dir / rec.RECORD).exists() and not opts.force):  # rank 0 decides
        console.print(f"[dim]run {rid} already finished ({out_dir}); use --force to run it again[/]")
        return out_dir, False
    timings, training = _obtain_weights(setup, out_dir, console)
    metrics = list(get_registry().metrics.values())
    evaluation = _gather(_evaluate(setup, metrics, console), setup.dataset.name)
    evaluation.timings.update(timings)
    record = _record(setup, rid, metrics, evaluation, training)
    if distributed.is_main():
        _write(out_dir, record, evaluation)
    distributed.barrier()
    return out_dir, distributed.is_main()


def _setup(opts: RunOptions) -> Setup:
    method_cls = lookup("methods", opts.method)
    dataset = make_dataset(opts.dataset, opts.data_root)
    deg_spec = opts.degradation or dataset.default_degradation
    _, degradation = make_degradation(deg_spec)
    method: Method = instantiate_method(method_cls, preset=opts.preset, device=opts.device, seed=opts.seed)
    return Setup(opts, method, dataset, deg_spec, degradation, dataset.manifest(),
                 _weights(method_cls, opts, dataset.name))


def _identity(s: Setup) -> tuple[str, Path]:
    """The run id and folder. The preset's settings are part of a run's identity: an edited preset is a new run,
    not a finished one."""
    identity = {"method": s.method.name, "method_version": s.method.version, "preset": s.opts.preset,
                "settings": s.method.settings,
                "dataset": s.dataset.name, "split_hash": s.manifest.hash, "degradation": s.degradation.params(),
                "seed": s.opts.seed, "weights": {k: s.weights.get(k) for k in ("source", "sha256")}}
    rid = rec.run_id(identity)
    return rid, rec.run_dir(s.opts.results_dir, s.dataset.name, s.deg_spec.replace("/", "_"), s.method.name, rid)


def _obtain_weights(s: Setup, out_dir: Path, console: Console) -> tuple[dict, dict | None]:
    """Load the weights, or fit the method on the train split now; returns (timings, training record)."""
    if s.weights["source"] in ("checkpoint", "shipped"):
        s.method.load(Path(s.weights["path"]))
        s.method.training_facts = (s.weights.get("training_record") or {}).get("training")
        return {}, s.weights.get("training_record")
    if s.weights["source"] != "trained-in-run":
        return {}, None
    return _fit(s, out_dir, console)


def _fit(s: Setup, out_dir: Path, console: Console) -> tuple[dict, dict]:
    console.print(f"training {s.method.name} ({s.opts.preset}) on {s.dataset.name} train split")
    train = training_pairs(s.dataset, "train", s.degradation, s.method, s.opts.seed)
    val = (training_pairs(s.dataset, "val", s.degradation, s.method, s.opts.seed)
           if "val" in s.manifest.splits else None)
    t0 = time.perf_counter()
    training = s.method.fit(train, val, out_dir / "work")
    s.method.training_facts = training  # the card states what ran
    fit_s = time.perf_counter() - t0
    if distributed.is_main():
        s.method.save(out_dir / "weights.safetensors")
    distributed.barrier()
    s.weights["sha256"] = sha256_file(out_dir / "weights.safetensors")
    return {"fit_s": fit_s}, training


def _evaluate(s: Setup, metrics: list, console: Console) -> Evaluation:
    """Predict and score this rank's test cases; rows carry their case index so ranks merge in order."""
    from . import panels  # a few predicted slices kept for the report's qualitative panels

    rows, timings = [], {"predict_s": 0.0, "score_s": 0.0}
    n_slices, skipped, examples = 0, 0, []
    rank, world = distributed.rank(), distributed.world_size()
    with _progress(console) as progress:
        for index, case in enumerate(s.dataset.cases("test")):
            if index % world != rank:  # this case is another rank's
                continue
            p = prepare(case, s.degradation, s.opts.seed)
            skipped += len(p.skipped)
            sr = _predict(s.method, p, progress, timings)
            if len(examples) < panels.MAX_CASES and p.slices:  # first test cases with slices: panels.example_slices
                examples.append((index, panels.take_examples(case.case_id, p, sr, s.method.input_interpolator)))
            rows += [(index, row) for row in _score(s.method, p, sr, metrics, timings)]
            n_slices += len(p.slices)
    return Evaluation(rows, timings, n_slices, skipped, examples)


def _predict(method: Method, p: Prepared, progress: Progress, timings: dict) -> np.ndarray:
    task = progress.add_task(f"{method.name} on {p.case.case_id}", total=len(p.slices))
    t0 = time.perf_counter()
    sr = method.predict_volume(p.lr, p.hr, p.slices, progress=lambda n: progress.advance(task, n))
    timings["predict_s"] += time.perf_counter() - t0
    return check_prediction(sr, len(p.slices), p.hr_array.shape[1:], method.name, f"case {p.case.case_id!r}")


def _score(method: Method, p: Prepared, sr: np.ndarray, metrics: list, timings: dict) -> list[dict]:
    """One row per scored slice: case, patient, slice and one column per metric (None: unavailable)."""
    t0 = time.perf_counter()
    mask = p.mask[p.slices] if p.mask is not None else None
    scores = score_arrays(sr, p.hr_array[p.slices], metrics, mask=mask, device=str(method.device))
    timings["score_s"] += time.perf_counter() - t0
    rows = []
    for i, k in enumerate(p.slices):
        row = {"case": p.case.case_id, "patient": p.case.patient_id, "slice": k}
        row.update({name: (None if v is None else float(v[i])) for name, v in scores.values.items()})
        rows.append(row)
    return rows


def _gather(ev: Evaluation, dataset_name: str) -> Evaluation:
    """Every rank's rows, timings and examples merged (on every rank), rows in the one-process order."""
    if distributed.parallel():
        parts = distributed.all_gather_objects(ev)
        ev = Evaluation(rows=[r for part in parts for r in part.rows],
                        timings={k: sum(part.timings[k] for part in parts) for k in ev.timings},  # summed compute
                        n_slices=sum(part.n_slices for part in parts), skipped=sum(part.skipped for part in parts),
                        examples=[e for part in parts for e in part.examples])
        ev.timings["processes"] = distributed.world_size()
    ev.rows = [row for _, row in sorted(ev.rows, key=lambda r: r[0])]  # stable: case order, then slice order
    from .panels import MAX_CASES

    ev.examples = [e for _, e in sorted(ev.examples, key=lambda e: e[0])][:MAX_CASES]  # the first test cases
    if not ev.rows:
        raise SRBenchError(f"dataset {dataset_name!r}: no test slices to score")
    ev.timings["sec_per_slice"] = ev.timings["predict_s"] / ev.n_slices
    return ev


def _record(s: Setup, rid: str, metrics: list, ev: Evaluation, training: dict | None) -> dict:
    table = pd.DataFrame(ev.rows)
    names = [m.name for m in metrics]
    per_slice = summarise({n: (None if table[n].isna().all() else table[n].to_numpy(float)) for n in names})
    per_case = table.groupby("case")[names].mean()
    per_volume = summarise({n: (None if per_case[n].isna().all() else per_case[n].to_numpy(float)) for n in names})
    return {
        "schema": rec.SCHEMA, "run_id": rid, "status": "finished",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**asdict(s.opts), "degradation": s.deg_spec, "results_dir": str(s.opts.results_dir)},
        "method_card": s.method.card(),
        "dataset": {"name": s.dataset.name, "description": s.dataset.description, "split_hash": s.manifest.hash,
                    "split_rule": s.manifest.rule, "test_cases": s.manifest.case_ids("test"),
                    "skipped_cases": [list(item) for item in getattr(s.dataset, "skipped", [])]},
        "degradation": s.degradation.params(),
        "lr_to_hr_interpolator": s.method.input_interpolator,
        "normalisation": NORMALISATION,
        "weights": {k: v for k, v in s.weights.items() if k != "training_record"},
        "training": training,
        "metrics": {m.name: {"direction": m.direction, "unavailable": m.unavailable_reason()} for m in metrics},
        "summary": {"per_slice": per_slice, "per_volume": per_volume},
        "n_slices": ev.n_slices, "skipped_slices": ev.skipped,
        "timings": ev.timings, "peak_memory_mb": _peak_memory_mb(s.method.device),
        "versions": rec.versions(), "git_sha": rec.git_sha(), "hardware": rec.hardware(s.method.device),
    }


def _write(out_dir: Path, record: dict, ev: Evaluation) -> None:
    """Examples and scores first, the record last: its presence means the run finished."""
    from . import panels

    panels.save_examples(out_dir / panels.EXAMPLES, ev.examples)
    rec.atomic_write_text(out_dir / rec.SCORES, pd.DataFrame(ev.rows).to_csv(index=False))
    rec.atomic_write_json(out_dir / rec.RECORD, record)


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
    if steps is not None:  # a shorter run keeps the preset's restarts that fall inside it
        method.settings["train"]["steps"] = steps
        restarts = method.settings["train"].get("restarts", ())
        method.settings["train"]["restarts"] = tuple(r for r in restarts if r < steps)
    if max_minutes is not None:
        method.settings["train"]["max_seconds"] = max_minutes * 60
    if checkpoint_every is not None:
        method.settings["train"]["checkpoint_every"] = checkpoint_every
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
              "weights_sha256": sha256_file(output), "versions": rec.versions(), "git_sha": rec.git_sha(),
              "hardware": rec.hardware(method.device), "training": record,
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if distributed.is_main():
        rec.atomic_write_json(Path(output).with_suffix(".json"), record)
    distributed.barrier()
    return record
