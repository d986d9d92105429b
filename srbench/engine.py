"""The shared training engine: devices, AMP, EMA, checkpoints, exact resume, progress.

A method plugin supplies a model, a loss function and a batch sampler; the engine does the rest, so that every
learned method trains the same way and records the same facts. Resuming restores model, EMA, optimizer,
LR-schedule and the sampler's random state, so an interrupted run reaches the same step count as an
uninterrupted one, on the same batches.
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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

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
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class Trainer:
    """Trains ``model`` with ``loss_fn(model, batch) -> (loss, logs)`` on batches from ``sampler()``."""

    def __init__(self, model: torch.nn.Module, loss_fn, sampler, cfg: TrainConfig, workdir: Path,
                 device: torch.device, console: Console | None = None, description: str = "training"):
        self.model, self.loss_fn, self.sampler, self.cfg = model.to(device), loss_fn, sampler, cfg
        self.workdir, self.device, self.description = Path(workdir), device, description
        self.console = console or Console(stderr=True)
        self.optimizer = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay else None)
        self.step, self.elapsed, self.history = 0, 0.0, []

    # --- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "history": self.history,
                "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                "config": asdict(self.cfg)}

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
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed, self.history = state["step"], state["elapsed"], list(state["history"])
        return True

    # --- the loop ------------------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.cfg.amp_bf16 and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

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

    def fit(self) -> dict:
        resumed_from = self.step if self.try_resume() else None
        if resumed_from is None:
            torch.manual_seed(self.cfg.seed)
        start = time.perf_counter() - self.elapsed
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4g}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        stopped_early = False
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(self.description, total=self.cfg.steps, completed=self.step, loss=float("nan"))
            running = None
            while self.step < self.cfg.steps:
                loss = self.train_step()
                running = loss if running is None else 0.98 * running + 0.02 * loss
                progress.update(task, advance=1, loss=running)
                if self.step % 10 == 0:
                    self.history.append((self.step, running))
                if not self.console.is_terminal and self.step % 50 == 0:  # logs and CI: no live bar
                    self.console.print(f"{self.description}: step {self.step}/{self.cfg.steps} loss {running:.4g} "
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

    def inference_model(self) -> torch.nn.Module:
        """The EMA weights when EMA is on (what the paper uses for inference), else the raw model."""
        return self.ema.module if self.ema else self.model
