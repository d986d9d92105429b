"""The shared training engine: devices, AMP, EMA, checkpoints, exact resume, progress.

A method plugin supplies a model, a loss function and a batch sampler; the engine does the rest, so that every
learned method trains the same way and records the same facts. Resuming restores model, EMA, optimizer,
LR-schedule and the sampler's random state, so an interrupted run reaches the same step count as an
uninterrupted one, on the same batches.

Two loops share the same machinery: ``Trainer`` (one network, one loss, one optimizer: regression and diffusion
models) and ``MultiTrainer`` (several networks and optimizers updated in turn within a step: GANs).
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel

from .method import SlicePairs

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
    ema_decay: float | None = 0.999  # None: no EMA
    checkpoint_every: int = 100
    grad_clip: float | None = 1.0
    amp_bf16: bool = True            # only on CUDA; CPU trains in float32
    seed: int = 0
    max_seconds: float | None = None  # stop (with a checkpoint) after this wall time; resume continues


class PatchSampler:
    """Random aligned LR/HR patches ``(B, 1, P, P)`` from slice pairs, driven by a checkpointable generator."""

    def __init__(self, pairs: SlicePairs, patch: int, batch_size: int, seed: int, min_foreground: float = 0.1):
        self.lr = torch.from_numpy(pairs.lr).float()
        self.hr = torch.from_numpy(pairs.hr).float()
        self.patch, self.batch_size, self.min_foreground = patch, batch_size, min_foreground
        self.generator = torch.Generator().manual_seed(seed)

    def _one(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, h, w = self.hr.shape
        p = self.patch
        for _ in range(20):  # prefer patches with tissue: background-only patches teach nothing
            k = int(torch.randint(n, (1,), generator=self.generator))
            i = int(torch.randint(max(1, h - p + 1), (1,), generator=self.generator))
            j = int(torch.randint(max(1, w - p + 1), (1,), generator=self.generator))
            hr = self.hr[k, i:i + p, j:j + p]
            if (hr > 0).float().mean() >= self.min_foreground:
                break
        return self.lr[k, i:i + p, j:j + p], hr

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = zip(*(self._one() for _ in range(self.batch_size)))
        return torch.stack(lr)[:, None], torch.stack(hr)[:, None]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    kinds = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return kinds[cfg.optimizer](params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    if cfg.schedule not in ("cosine", "linear"):
        raise ValueError(f"unknown LR schedule {cfg.schedule!r} (cosine | linear)")

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "linear":
            start = max(cfg.warmup_steps, int(round(cfg.decay_start * cfg.steps)))
            progress = min(1.0, max(0, step - start) / max(1, cfg.steps - start))
            return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class _Loop:
    """What every training loop shares: the step loop, progress, atomic checkpoints and exact resume.

    Subclasses implement ``train_step()`` (returns the step's loss, a float, or its named losses, a dict of
    floats), ``_networks_state()`` and ``_load_networks_state(state)``.
    """

    def _setup(self, sampler, cfg: TrainConfig, workdir: Path, device: torch.device, console: Console | None,
               description: str) -> None:
        self.sampler, self.cfg = sampler, cfg
        self.workdir, self.device, self.description = Path(workdir), device, description
        self.console = console or Console(stderr=True)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def _networks_state(self) -> dict:
        raise NotImplementedError

    def _load_networks_state(self, state: dict) -> None:
        raise NotImplementedError

    # --- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "history": self.history, **self._networks_state(),
                "sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state(), "config": asdict(self.cfg)}

    def save_checkpoint(self) -> Path:
        path = self.workdir / CHECKPOINT
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact
        return path

    def try_resume(self) -> bool:
        path = self.workdir / CHECKPOINT
        if not path.exists():
            return False
        # On the CPU first: RNG states must stay CPU tensors; networks and optimizers copy onto their devices.
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._load_networks_state(state)
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed, self.history = state["step"], state["elapsed"], list(state["history"])
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
            torch.manual_seed(self.cfg.seed)
        start = time.perf_counter() - self.elapsed
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[losses]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        stopped_early = False
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(self.description, total=self.cfg.steps, completed=self.step, losses="loss nan")
            running: dict[str, float] = {}
            while self.step < self.cfg.steps:
                out = self.train_step()
                losses = out if isinstance(out, dict) else {"loss": out}
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
                self.elapsed = time.perf_counter() - start
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_checkpoint()
                if self.cfg.max_seconds and self.elapsed >= self.cfg.max_seconds and self.step < self.cfg.steps:
                    self.save_checkpoint()
                    stopped_early = True
                    break
        return {"steps": self.step, "target_steps": self.cfg.steps, "seconds": round(self.elapsed, 1),
                "resumed_from_step": resumed_from, "finished": not stopped_early, "device": str(self.device),
                "amp_bf16": self.cfg.amp_bf16 and self.device.type == "cuda", "config": asdict(self.cfg),
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
                 device: torch.device, console: Console | None = None, description: str = "training"):
        self._setup(sampler, cfg, workdir, device, console, description)
        self.model, self.loss_fn = model.to(device), loss_fn
        self.optimizer = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.ema = _ema(model, cfg.ema_decay) if cfg.ema_decay else None

    def _networks_state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def _load_networks_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def train_step(self) -> float:
        self.model.train()
        lr, hr = (t.to(self.device, non_blocking=True) for t in self.sampler())
        with self._autocast():
            loss, logs = self.loss_fn(self.model, (lr, hr))
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
                 extra_state: dict | None = None, console: Console | None = None, description: str = "training"):
        self._setup(sampler, cfg, workdir, device, console, description)
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
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        optimizer.step()
        self._updated.append(group)

    def train_step(self) -> dict[str, float]:
        for model in self.models.values():
            model.train()
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
