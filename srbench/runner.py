"""The runner: dataset -> degradation -> method (fit / load, predict) -> metrics -> run record.

A run is method@version+settings x dataset@content+split-hash x degradation@params x seed x weights x scoring
pipeline version (``_identity``); not the inference batch size, on which outputs do not depend (the record keeps
the one used; ``srbench.overrides``). Re-running a finished run is a no-op unless forced; a run whose record is
corrupt, or whose training stopped early (``--max-minutes``), is done again (training resumes). The record
(``srbench.record.RunRecord``) is written last and atomically.

Under ``torchrun --nproc_per_node N`` (``srbench.distributed``): ``run`` shards the test split by case (case i on rank i mod N, each case
predicted whole, so a stochastic method sees the same per-case generator as in one process), gathers every
rank's per-slice scores and timings, and rank 0 writes one record whose rows are in the one-process order.
"""

from __future__ import annotations

import inspect
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
from rich.progress import Progress

from . import distributed, environment, sr_volumes, through_plane
from . import record as rec
from .cache import PreprocessCache
from .compose import make_composed, split_spec
from .dataset import Case, Dataset
from .dataset_spec import dataset_folder, dataset_identity, make_dataset  # make_dataset: also runner's
from .degradation import Degradation, build, parse_spec
from .errors import SRBenchError
from .lock import run_lock
from .outputs import check_results_dir
from .method import Method, SlicePairs, sha256_file
from .noise import case_seed
from .overrides import check_batch_size, set_batch_size, set_precision, set_steps, set_time_limit
from .plugins import get_registry, instantiate_method, lookup
from .progress import progress_columns
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
    steps: int | None = None  # training steps instead of the preset's (a different run)
    max_minutes: float | None = None  # stop training after this long; the run is recorded unfinished and resumes
    save_volumes: bool | None = None  # SR NIfTI per test case; None: when the test split is small (sr_volumes)
    batch_size: int | None = None  # slices per forward pass at inference; None: the method's own (not identity)
    precision: str | None = None  # fp32 or bf16 inference, for methods that offer it; None: the preset's


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
    return Progress(*progress_columns("slices"), console=console, transient=False)


def _weights(method_cls, opts: RunOptions, dataset_name: str) -> dict:
    """Where the weights come from: a user checkpoint, the plugin's shipped checkpoint, or training now."""
    if not method_cls.trains:
        return {"source": "none"}
    if opts.checkpoint is not None:
        path = require_checkpoint(opts.checkpoint)
        return {"source": "checkpoint", "name": path.name, "path": str(path.resolve()), "sha256": sha256_file(path)}
    shipped = None if opts.train else method_cls.shipped_checkpoint(dataset_name, opts.preset)
    if shipped is not None:  # recorded relative to the plugin's folder: the record holds no machine's paths
        info = {"source": "shipped", "name": shipped.name, "sha256": sha256_file(shipped), "_file": str(shipped),
                "path": os.path.relpath(shipped, Path(inspect.getfile(method_cls)).parent)}
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
    through_plane: list = field(default_factory=list)  # through_plane.CaseResult per case
    volumes: dict = field(default_factory=dict)  # case id -> saved SR volume, relative to the run folder


def run(opts: RunOptions, console: Console | None = None) -> tuple[Path | None, bool]:
    """Execute (or skip, when already finished) one run; returns (run directory or None if skipped, ran).

    Phases: set up, identity, weights (load or fit), predict and score the test split, record. Under torchrun
    every rank returns the run directory once rank 0 has written the record; ``ran`` is true on rank 0 only
    (the rank that reports).
    """
    distributed.init()
    console = (console or Console(stderr=True)) if distributed.is_main() else Console(stderr=True, quiet=True)
    check_results_dir(opts.results_dir)  # before any work, not when the record is written
    check_batch_size(opts.batch_size)
    setup = _setup(opts)
    if setup.weights["source"] == "trained-in-run" and opts.pretrained_only:
        console.print(f"[yellow]skipped {setup.method.name}:[/] no shipped {setup.dataset.name}-{opts.preset} "
                      f"checkpoint (train one with --train, or give --checkpoint)", highlight=False)
        return None, False
    metrics = list(get_registry().metrics.values())
    identity = _identity(setup)
    rid = rec.run_id(identity)
    out_dir = rec.run_dir(opts.results_dir, dataset_folder(identity["dataset"]), setup.deg_spec.replace("/", "_"),
                          setup.method.name, rid)
    # One process per run folder (rank 0 holds the lock for the ranks): a second waits, then finds it finished.
    waiting = _announce_wait(console, rid)
    with run_lock(opts.results_dir, out_dir, waiting) if distributed.is_main() else nullcontext():
        return _run_once(setup, identity, out_dir, metrics, console)


def _announce_wait(console: Console, rid: str):
    return lambda holder: console.print(f"run {rid} is being computed by {holder}; waiting for it to finish",
                                        highlight=False)


def _run_once(setup: Setup, identity: dict, out_dir: Path, metrics: list, console: Console,
              ) -> tuple[Path | None, bool]:
    """The run itself, once it owns its folder: skip it when finished, else weights, test split, record."""
    opts, rid = setup.opts, out_dir.name
    if distributed.broadcast_object(_finished(out_dir, console) and not opts.force):  # rank 0 decides
        console.print(f"[dim]run {rid} already finished ({out_dir}); use --force to run it again[/]")
        return out_dir, False
    if opts.max_minutes is not None:  # a stopping rule, not part of the identity: a rerun resumes the run
        set_time_limit(setup.method, opts.max_minutes)
    timings, training = _obtain_weights(setup, out_dir, console)
    evaluation = _gather(_evaluate(setup, metrics, console, out_dir), setup.dataset.name)
    evaluation.timings.update(timings)
    record = _record(setup, rid, identity, metrics, evaluation, training)
    if record.unfinished_training:
        state = record.training_state
        console.print(f"[yellow]warning:[/] {setup.method.name}'s training stopped at step {state.steps} of "
                      f"{state.target_steps}: recorded as unfinished; run the same command again to resume it",
                      highlight=False)
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
    if opts.steps is not None:
        if not method_cls.trains:
            raise SRBenchError(f"method {opts.method!r} does not train; --steps applies to learned methods")
        set_steps(method, opts.steps)
    set_batch_size(method, opts.batch_size)
    set_precision(method, opts.precision)
    return Setup(opts, method, dataset, deg_spec, degradation, dataset.manifest(),
                 _weights(method_cls, opts, dataset.name))


def _identity(s: Setup) -> dict:
    """Everything that determines a run's scores: the data (name, root, content fingerprint, split), the
    degradation, the method (version, preset and its settings: an edited preset is a new run), the seed, the
    weights, and the scoring pipeline (its version, the normalisation, the LR-to-HR interpolator). Not the
    inference batch size: outputs do not depend on it."""
    train = {k: v for k, v in s.method.settings.get("train", {}).items() if k not in ("max_seconds", "checkpoint_every")}
    settings = {**s.method.settings, "train": train} if "train" in s.method.settings else s.method.settings
    return {"method": s.method.name, "method_version": s.method.version, "preset": s.opts.preset,
            "settings": settings, "dataset": dataset_identity(s.dataset), "split_hash": s.manifest.hash,
            "degradation": s.degradation.params(), "seed": s.opts.seed,
            "weights": {k: s.weights.get(k) for k in ("source", "sha256")},
            "scoring": {"version": rec.SCORING_VERSION, "normalisation": NORMALISATION,
                        "interpolator": s.method.input_interpolator}}


def _finished(out_dir: Path, console: Console) -> bool:
    """A valid record whose training reached its planned steps; a corrupt or partial record, or unfinished
    training, means the run is done again (training resumes from the run's checkpoint)."""
    if not (out_dir / rec.RECORD).exists():
        return False
    try:
        record = rec.load_record(out_dir)
    except rec.RecordError as exc:
        console.print(f"warning: {exc}; running it again", highlight=False, markup=False)
        return False
    if record.unfinished_training and record.weights.get("source") == "trained-in-run":
        console.print(f"resuming {record.method}'s unfinished training ({out_dir})", highlight=False)
        return False
    return True


def _obtain_weights(s: Setup, out_dir: Path, console: Console) -> tuple[dict, dict | None]:
    """Load the weights, or fit the method on the train split now; returns (timings, training record)."""
    if s.weights["source"] in ("checkpoint", "shipped"):
        s.method.load(Path(s.weights.get("_file") or s.weights["path"]))
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


def _evaluate(s: Setup, metrics: list, console: Console, out_dir: Path) -> Evaluation:
    """Predict and score this rank's test cases; rows carry their case index so ranks merge in order."""
    from . import panels  # a few predicted slices kept for the report's qualitative panels

    rows, timings = [], {"predict_s": 0.0, "score_s": 0.0}
    n_slices, skipped, examples, planes, volumes = 0, 0, [], [], {}
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
            rows += [(index, row) for row in _score(index, s.method, p, sr, metrics, timings, planes)]
            if p.slices and sr_volumes.wanted(s.opts.save_volumes, len(s.manifest.case_ids("test"))):
                volumes[case.case_id] = sr_volumes.save(out_dir, case.case_id, sr, p.hr, p.slices)
            n_slices += len(p.slices)
    return Evaluation(rows, timings, n_slices, skipped, examples, planes, volumes)


def _predict(method: Method, p: Prepared, progress: Progress, timings: dict) -> np.ndarray:
    task = progress.add_task(f"{method.name} on {p.case.case_id}", total=len(p.slices))
    t0 = time.perf_counter()
    sr = method.predict_volume(p.lr, p.hr, p.slices, progress=lambda n: progress.advance(task, n))
    timings["predict_s"] += time.perf_counter() - t0
    return check_prediction(sr, len(p.slices), p.hr_array.shape[1:], method.name, f"case {p.case.case_id!r}")


def _score(index: int, method: Method, p: Prepared, sr: np.ndarray, metrics: list, timings: dict, planes: list):
    """One row per scored slice (case, patient, slice, metrics; None: unavailable); through-plane scores to planes."""
    t0 = time.perf_counter()
    mask = p.mask[p.slices] if p.mask is not None else None
    scores = score_arrays(sr, p.hr_array[p.slices], metrics, mask=mask, device=str(method.device))
    planes.append(through_plane.score_case(index, p.case.case_id, p.case.patient_id, sr, p.hr_array, p.mask,
                                           p.slices, metrics, device=str(method.device)))
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
                        examples=[e for part in parts for e in part.examples],
                        through_plane=[c for part in parts for c in part.through_plane],
                        volumes={k: v for part in parts for k, v in part.volumes.items()})
        ev.timings["processes"] = distributed.world_size()
    ev.rows = [row for _, row in sorted(ev.rows, key=lambda r: r[0])]  # stable: case order, then slice order
    from .panels import MAX_CASES

    ev.examples = [e for _, e in sorted(ev.examples, key=lambda e: e[0])][:MAX_CASES]  # the first test cases
    if not ev.rows:
        raise SRBenchError(f"dataset {dataset_name!r}: no test slices to score")
    ev.timings["sec_per_slice"] = ev.timings["predict_s"] / ev.n_slices
    return ev


def _record(s: Setup, rid: str, identity: dict, metrics: list, ev: Evaluation, training: dict | None,
            ) -> rec.RunRecord:
    table = pd.DataFrame(ev.rows)
    names = [m.name for m in metrics]
    per_slice = summarise({n: (None if table[n].isna().all() else table[n].to_numpy(float)) for n in names})
    per_case = table.groupby("case")[names].mean()
    per_volume = summarise({n: (None if per_case[n].isna().all() else per_case[n].to_numpy(float)) for n in names})
    ds = identity["dataset"]
    return rec.record_from_dict({
        "schema": rec.SCHEMA, "run_id": rid, "status": "finished", "identity": identity,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**asdict(s.opts), "degradation": s.deg_spec, "results_dir": str(s.opts.results_dir),
                   "batch_size": s.method.batch_size},  # the one used: the option's, or the method's default
        "command": environment.command_line(),
        "method_card": s.method.card(),
        "dataset": {"name": s.dataset.name, "description": s.dataset.description, "split_hash": s.manifest.hash,
                    "split_rule": s.manifest.rule, "test_cases": s.manifest.case_ids("test"),
                    "skipped_cases": [list(item) for item in getattr(s.dataset, "skipped", [])],
                    "kind": ds["kind"], "root": ds["root"], "fingerprint": ds["fingerprint"]},
        "degradation": s.degradation.params(),
        "lr_to_hr_interpolator": s.method.input_interpolator,
        "normalisation": NORMALISATION,
        "weights": {k: v for k, v in s.weights.items() if k not in ("training_record", "_file")},
        "training": training,
        "metrics": {m.name: asdict(rec.MetricInfo.of(m)) for m in metrics},
        "summary": {"per_slice": per_slice, "per_volume": per_volume},
        "n_slices": ev.n_slices, "n_cases": int(table["case"].nunique()),
        "n_subjects": int(table["patient"].nunique()), "skipped_slices": ev.skipped,
        "through_plane": through_plane.summary(ev.through_plane, names),
        "volumes": {"layout": sr_volumes.LAYOUT, "files": ev.volumes} if ev.volumes else None,
        "timings": ev.timings, "peak_memory_mb": _peak_memory_mb(s.method.device),
        "versions": environment.versions(), "git_sha": environment.git_sha(), "git_dirty": environment.git_dirty(),
        "scoring_version": rec.SCORING_VERSION, "hardware": environment.hardware(s.method.device),
    })


def _write(out_dir: Path, record: rec.RunRecord, ev: Evaluation) -> None:
    """Examples and scores first, the record last: its presence means the run finished."""
    from . import panels

    panels.save_examples(out_dir / panels.EXAMPLES, ev.examples)
    rec.atomic_write_text(out_dir / rec.SCORES, pd.DataFrame(ev.rows).to_csv(index=False))
    rec.atomic_write_text(out_dir / through_plane.FILE, through_plane.table(ev.through_plane).to_csv(index=False))
    rec.atomic_write_json(out_dir / rec.RECORD, record.to_dict())
