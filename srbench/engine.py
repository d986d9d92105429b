"""The shared training engine: devices, AMP, EMA, checkpoints, exact resume, progress.

A method plugin supplies a model, a loss function and a batch sampler; the engine does the rest, so that every
learned method trains the same way and records the same facts. Resuming restores model, EMA, optimizer,
LR-schedule and the sampler's random state, so an interrupted run reaches the same step count as an
uninterrupted one, on the same batches.

Two loops share the same machinery: ``Trainer`` (one network, one loss, one optimizer: regression and diffusion
models) and ``MultiTrainer`` (several networks and optimizers updated in turn within a step: GANs).

Under ``torchrun --nproc_per_node N`` (``srbench.distributed``) the same loops train data-parallel:

* batches: the preset's ``batch_size`` stays the *global* batch. Every rank's ``PatchSampler`` runs the same
  random stream (same seed) and draws the whole global batch's patch positions, then materialises only its
  own contiguous share, ``batch_size / N`` patches (``batch_size`` must divide by N). The union of the ranks'
  patches is exactly the one-process batch, so the averaged gradient equals the one-process gradient.
* gradients: ``Trainer`` wraps its network in ``DistributedDataParallel``; ``MultiTrainer`` (whose GAN steps
  back-propagate group by group with ``backward(inputs=...)``, which DDP's reducer does not support) averages
  each group's gradients with one flat all-reduce before clipping, and broadcasts rank 0's buffers each step
  (as DDP's ``broadcast_buffers`` does).
* randomness inside the loss (diffusion timesteps and noise, dropout) comes from the global torch RNG, seeded
  ``seed + rank``: ranks draw different noise; one process (rank 0) keeps the single-process seed.
* checkpoints and logging: rank 0 only. A checkpoint holds every rank's sampler and RNG state (gathered to rank
  0, ``"ranks"``); on resume each rank restores its own. All ranks decide together when to stop
  (``max_seconds`` is rank 0's clock) and wait at a barrier while rank 0 writes.
Without ``WORLD_SIZE`` in the environment none of this is active and the loops behave as in one process.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.progress import Progress, TextColumn
from torch.optim.swa_utils import AveragedModel

from . import distributed
from .patches import PatchSampler  # noqa: F401 - re-exported: plugins import it from here
from .progress import progress_columns
from .selection import ValidationSelection

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    optimizer: str = "radam"        # radam | adam | adamw
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0           # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    # "cosine": warm-up then cosine decay; "linear": warm-up, constant until decay_start (a fraction of the
    # steps), then linear decay to min_lr_ratio * lr (the pix2pix/CycleGAN "linear" policy)
    schedule: str = "cosine"
    decay_start: float = 0.5
    # Warm restarts: step counts at which an earlier schedule ended. Steps up to the first restart follow the
    # schedule as if training ended there, the next ones the schedule ending at the next restart, and so on up
    # to ``steps``. This is exactly what resuming a finished run with a larger ``steps`` does, so a run whose
    # schedule was extended twice is reproduced in one go by naming the two earlier ends here.
    restarts: tuple[int, ...] = ()
    ema_decay: float | None = 0.999  # None: no EMA
    checkpoint_every: int = 100
    grad_clip: float | None = 1.0
    amp_bf16: bool = True            # only on CUDA; CPU trains in float32
    seed: int = 0
    max_seconds: float | None = None  # stop (with a checkpoint) after this wall time; resume continues
    compile: bool = False             # torch.compile the training network (Trainer); off by default
    ddp_find_unused: bool = False     # DDP's find_unused_parameters, for networks with branches unused per step
    # Selection on the validation split (``srbench.validation``): every ``val_every`` steps and at the last step
    # the inference weights are scored; the best-scoring ones are kept (best.pt) and are the weights ``fit``
    # ends with. ``patience`` evaluations without improvement stop training early. Never the test split.
    val_every: int | None = None
    val_metric: str = "psnr"
    val_slices: int | None = None     # evenly spaced validation slices scored (None: all)
    patience: int | None = None


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    kinds = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return kinds[cfg.optimizer](params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    if cfg.schedule not in ("cosine", "linear"):
        raise ValueError(f"unknown LR schedule {cfg.schedule!r} (cosine | linear)")
    ends = sorted({*cfg.restarts, cfg.steps})
    if cfg.restarts and (min(cfg.restarts) <= cfg.warmup_steps or max(cfg.restarts) >= cfg.steps):
        raise ValueError(f"restarts {cfg.restarts} must lie between the warm-up ({cfg.warmup_steps}) and {cfg.steps}")

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        # The LR that runs step ``step + 1`` was set after step ``step``, when a resumed run still held its old
        # schedule: hence the first end at or after ``step``.
        steps = next((end for end in ends if end >= step), cfg.steps)
        if cfg.schedule == "linear":
            start = max(cfg.warmup_steps, int(round(cfg.decay_start * steps)))
            progress = min(1.0, max(0, step - start) / max(1, steps - start))
            return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
        span = max(1, steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class _Loop(ValidationSelection):
    """What every training loop shares: the step loop, progress, atomic checkpoints and exact resume.

    Subclasses implement ``train_step()`` (returns the step's loss, a float, or its named losses, a dict of
    floats), ``_networks_state()`` and ``_load_networks_state(state)``.
    """

    def _setup(self, sampler, cfg: TrainConfig, workdir: Path, device: torch.device, console: Console | None,
               description: str, validate=None) -> None:
        distributed.init()
        self.sampler, self.cfg, self.validate = sampler, cfg, validate
        self.val_curve, self.best, self.evals_since_best = [], None, 0
        self.workdir, self.device, self.description = Path(workdir), device, description
        # Rank 0 logs; the others stay quiet.
        self.console = (console or Console(stderr=True)) if distributed.is_main() else Console(stderr=True, quiet=True)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def _networks_state(self) -> dict:
        raise NotImplementedError

    def _load_networks_state(self, state: dict) -> None:
        raise NotImplementedError

    # --- checkpoints ---------------------------------------------------------------------------------
    def _rank_state(self) -> dict:
        """What differs between ranks: the sampler and the RNG that drives the loss's randomness."""
        state = {"sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "history": self.history, **self._networks_state(),
                **self._rank_state(), "config": asdict(self.cfg), "val_curve": self.val_curve, "best": self.best,
                "evals_since_best": self.evals_since_best}

    def save_checkpoint(self) -> Path:
        """Collective under torchrun: every rank hands its own state to rank 0, which writes one file."""
        path = self.workdir / CHECKPOINT
        ranks = distributed.gather_objects(self._rank_state()) if distributed.parallel() else None
        if distributed.is_main():
            self.workdir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            state = self.state_dict()
            if ranks is not None:
                state.update(ranks=ranks, world_size=len(ranks))
            torch.save(state, tmp)
            os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact
        distributed.barrier()
        return path

    def try_resume(self) -> bool:
        path = self.workdir / CHECKPOINT
        if not path.exists():
            return False
        # On the CPU first: RNG states must stay CPU tensors; networks and optimizers copy onto their devices.
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._load_networks_state(state)
        rank, world = distributed.rank(), distributed.world_size()
        ranks = state.get("ranks") or [{k: state[k] for k in ("sampler", "torch_rng", "cuda_rng") if k in state}]
        own = ranks[rank] if len(ranks) == world else ranks[0]
        # The patch sampler's stream is shared by all ranks, so rank 0's state serves any number of processes.
        self.sampler.load_state_dict(own["sampler"])
        if len(ranks) == world:
            torch.set_rng_state(own["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in own:
                torch.cuda.set_rng_state(own["cuda_rng"], self.device)
        else:  # resumed on another number of processes: fresh, rank-distinct loss noise
            self.console.print(f"[yellow]resuming a {len(ranks)}-process checkpoint on {world} process(es): "
                               "the loss's random draws are reseeded (batches stay exact)[/]")
            torch.manual_seed(self.cfg.seed + rank + 1_000_003 * state["step"])
        self.step, self.elapsed, self.history = state["step"], state["elapsed"], list(state["history"])
        self.val_curve = [tuple(v) for v in state.get("val_curve", [])]
        self.best = tuple(state["best"]) if state.get("best") else None
        self.evals_since_best = state.get("evals_since_best", 0)
        return True

    # --- the loop ------------------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.cfg.amp_bf16 and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self):
        raise NotImplementedError

    def fit(self) -> dict:
        resumed_from = self.step if self.try_resume() else None
        if resumed_from is None:
            torch.manual_seed(self.cfg.seed + distributed.rank())  # one process: the seed itself
        start = time.perf_counter() - self.elapsed
        columns = progress_columns("steps", TextColumn("{task.fields[losses]}"))
        stopped_early = False
        patience_stop = bool(self.cfg.patience and self.evals_since_best >= self.cfg.patience)  # resumed after it
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(self.description, total=self.cfg.steps, completed=self.step, losses="loss nan")
            running: dict[str, float] = {}
            while self.step < self.cfg.steps and not patience_stop:
                out = self.train_step()
                losses = out if isinstance(out, dict) else {"loss": out}
                if distributed.parallel():  # log the global batch's loss, as one process would
                    values = torch.tensor(list(losses.values()), dtype=torch.float64, device=self.device)
                    distributed.mean_([values])
                    losses = dict(zip(losses, values.tolist()))
                running = {k: v if k not in running else 0.98 * running[k] + 0.02 * v for k, v in losses.items()}
                shown = " ".join(f"{k} {v:.4g}" for k, v in running.items())
                progress.update(task, advance=1, losses=shown)
                if self.step % 10 == 0:
                    # one loss: (step, value), as before; several: (step, {name: value})
                    self.history.append((self.step, running["loss"]) if list(running) == ["loss"]
                                        else (self.step, dict(running)))
                if not self.console.is_terminal and self.step % 50 == 0:  # logs and CI: no live bar
                    self.console.print(f"{self.description}: step {self.step}/{self.cfg.steps} {shown} "
                                       f"({time.perf_counter() - start:.0f} s)", highlight=False)
                patience_stop = self._evaluate() if self._validation_due() else False
                self.elapsed = time.perf_counter() - start
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps or patience_stop:
                    self.save_checkpoint()
                stop = bool(self.cfg.max_seconds and self.elapsed >= self.cfg.max_seconds and self.step < self.cfg.steps)
                if self.cfg.max_seconds and distributed.parallel():
                    stop = distributed.broadcast_object(stop)  # rank 0's clock decides for all
                if stop:
                    self.save_checkpoint()
                    stopped_early = True
                    break
                if patience_stop:
                    break
        self._restore_best()
        return {"steps": self.step, "target_steps": self.cfg.steps, "seconds": round(self.elapsed, 1),
                "resumed_from_step": resumed_from, "finished": not stopped_early, "device": str(self.device),
                "validation": self._validation_record(patience_stop),
                "amp_bf16": self.cfg.amp_bf16 and self.device.type == "cuda", "config": asdict(self.cfg),
                "world_size": distributed.world_size(),
                "loss_history": self.history[-50:]}


def ema_decay_at(decay: float, updates: int) -> float:
    """EMA decay with warm-up, min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's num_updates rule).

    A fixed 0.999 would leave 37 % of the first step's weights in the average after 1,000 steps, which ruins
    the short CPU-sized trainings; the warm-up reaches the nominal decay after ~9,000 steps.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        d = ema_decay_at(decay, int(num_averaged))
        if ema_params[0].is_floating_point() or ema_params[0].is_complex():  # tensors come grouped by dtype
            torch._foreach_lerp_(ema_params, params, 1.0 - d)
        else:  # integer buffers (e.g. Swin's relative-position index) are copied, not averaged
            for ema_param, param in zip(ema_params, params):
                ema_param.copy_(param)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


class Trainer(_Loop):
    """Trains ``model`` with ``loss_fn(model, batch) -> (loss, logs)`` on batches from ``sampler()``."""

    def __init__(self, model: torch.nn.Module, loss_fn, sampler, cfg: TrainConfig, workdir: Path,
                 device: torch.device, console: Console | None = None, description: str = "training",
                 validate=None):
        self._setup(sampler, cfg, workdir, device, console, description, validate)
        self.model, self.loss_fn = model.to(device), loss_fn
        self.optimizer = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.ema = _ema(model, cfg.ema_decay) if cfg.ema_decay else None
        # What the loss calls: the network, wrapped in DDP under torchrun (rank 0's initial weights are broadcast;
        # gradients are averaged during backward), compiled on request. Checkpoints hold the bare network.
        self.train_model = self.model
        if distributed.parallel():
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index if device.index is not None else torch.cuda.current_device()] \
                if device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids,
                                                       find_unused_parameters=cfg.ddp_find_unused)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

    def _networks_state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def _load_networks_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def _inference_state(self) -> dict:
        return self.inference_model().state_dict()

    def _load_inference_state(self, state: dict) -> None:
        self.inference_model().load_state_dict(state)

    def train_step(self) -> float:
        self.model.train()
        lr, hr = (t.to(self.device, non_blocking=True) for t in self.sampler())
        with self._autocast():
            loss, logs = self.loss_fn(self.train_model, (lr, hr))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema:
            self.ema.update_parameters(self.model)
        self.step += 1
        return float(loss.detach())

    def inference_model(self) -> torch.nn.Module:
        """The EMA weights when EMA is on (what the paper uses for inference), else the raw model."""
        return self.ema.module if self.ema else self.model


class MultiTrainer(_Loop):
    """Several networks and optimizers updated in turn within each step: GANs.

    ``models`` names the networks (``{"G": gen, "D": disc}``); ``groups`` names the optimizers and the networks
    each one updates (``{"G": ["G"], "D": ["D"]}``; CycleGAN: ``{"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}``),
    all built from ``cfg`` (optimizer, LR, betas, schedule). Each step calls
    ``step_fn(models, batch, update) -> {name: float}``: the method computes its losses in the order its paper
    prescribes and calls ``update(group, loss)`` for each optimizer; the engine then zeroes that group's
    gradients, back-propagates into that group's parameters only (the other networks are left untouched, as
    ``set_requires_grad(net, False)`` does in the official GAN code), clips, and steps the optimizer and its LR
    schedule. ``ema`` lists networks that keep an EMA copy (none for the classic GANs). ``extra_state`` holds
    stateful helpers (image pools: anything with ``state_dict``/``load_state_dict``) saved in checkpoints so
    that resuming stays exact.
    """

    def __init__(self, models: dict[str, torch.nn.Module], groups: dict[str, list[str]], step_fn, sampler,
                 cfg: TrainConfig, workdir: Path, device: torch.device, ema: tuple[str, ...] | list[str] = (),
                 extra_state: dict | None = None, console: Console | None = None, description: str = "training",
                 validate=None):
        self._setup(sampler, cfg, workdir, device, console, description, validate)
        unknown = {n for names in groups.values() for n in names} - set(models)
        if unknown:
            raise ValueError(f"optimizer groups name unknown networks: {sorted(unknown)}")
        self.models = {name: m.to(device) for name, m in models.items()}
        self.step_fn, self.groups = step_fn, {g: list(names) for g, names in groups.items()}
        self.params = {g: [p for n in names for p in self.models[n].parameters() if p.requires_grad]
                       for g, names in self.groups.items()}
        self.optimizers = {g: _optimizer(cfg, params) for g, params in self.params.items()}
        self.schedulers = {g: torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
                           for g, opt in self.optimizers.items()}
        if ema and not cfg.ema_decay:
            raise ValueError("EMA networks given but cfg.ema_decay is None")
        self.emas = {name: _ema(self.models[name], cfg.ema_decay) for name in ema}
        self.extra_state = dict(extra_state or {})
        self._updated: list[str] = []
        if distributed.parallel():  # start every rank from rank 0's weights, as DDP does
            distributed.broadcast_([t.data for m in self.models.values() for t in (*m.parameters(), *m.buffers())])

    def _networks_state(self) -> dict:
        return {"models": {n: m.state_dict() for n, m in self.models.items()},
                "ema": {n: e.state_dict() for n, e in self.emas.items()},
                "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
                "schedulers": {g: s.state_dict() for g, s in self.schedulers.items()},
                "extra": {n: x.state_dict() for n, x in self.extra_state.items()}}

    def _load_networks_state(self, state: dict) -> None:
        for name, model in self.models.items():
            model.load_state_dict(state["models"][name])
        for name, ema in self.emas.items():
            ema.load_state_dict(state["ema"][name])
        for g in self.optimizers:
            self.optimizers[g].load_state_dict(state["optimizers"][g])
            self.schedulers[g].load_state_dict(state["schedulers"][g])
        for name, extra in self.extra_state.items():
            extra.load_state_dict(state["extra"][name])

    def _update(self, group: str, loss: torch.Tensor) -> None:
        if group not in self.optimizers:
            raise KeyError(f"no optimizer group {group!r}; groups: {', '.join(self.optimizers)}")
        optimizer, params = self.optimizers[group], self.params[group]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, enabled=False):  # backward outside autocast
            loss.backward(inputs=params)  # gradients for this group's networks only
        # Under torchrun: the gradient of the global batch's loss (every rank runs the same graph).
        distributed.mean_([p.grad for p in params if p.grad is not None])
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        optimizer.step()
        self._updated.append(group)

    def _inference_state(self) -> dict:
        return {name: self.inference_model(name).state_dict() for name in self.models}

    def _load_inference_state(self, state: dict) -> None:
        for name, weights in state.items():
            self.inference_model(name).load_state_dict(weights)

    def train_step(self) -> dict[str, float]:
        for model in self.models.values():
            model.train()
        if distributed.parallel():  # rank 0's buffers (BatchNorm statistics) everywhere, as DDP's broadcast_buffers
            distributed.broadcast_([b.data for m in self.models.values() for b in m.buffers()])
        batch = tuple(t.to(self.device, non_blocking=True) for t in self.sampler())
        self._updated = []
        with self._autocast():
            logs = self.step_fn(self.models, batch, self._update)
        missing = set(self.optimizers) - set(self._updated)
        if missing:
            raise RuntimeError(f"step_fn did not update optimizer group(s) {sorted(missing)}")
        for scheduler in self.schedulers.values():
            scheduler.step()
        for name, ema in self.emas.items():
            ema.update_parameters(self.models[name])
        self.step += 1
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()}

    def inference_model(self, name: str) -> torch.nn.Module:
        """Network ``name``: its EMA weights when it keeps an EMA, else the raw network."""
        return self.emas[name].module if name in self.emas else self.models[name]
