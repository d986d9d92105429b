"""A conventional conditional DDPM (Ho et al. 2020): linear beta schedule, epsilon prediction, the simple loss,
ancestral sampling from x_T ~ N(0, I), and DDIM (Song et al. 2021) on a subsequence of the steps.

The schedule is kept in float64 (as the official code keeps it in NumPy float64) and cast per step.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from srbench.slice_noise import randn, slice_generators

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t, cond) -> epsilon


class GaussianDiffusion:
    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.num_timesteps = steps
        self.betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
        alphas = 1.0 - self.betas
        self.alphas = alphas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta_tilde_t)
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    @staticmethod
    def _at(values: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast over ``like`` (N, C, H, W)."""
        out = torch.from_numpy(values).to(like.device)[t.to(like.device)].float()
        return out.reshape(-1, *([1] * (like.dim() - 1)))

    # --- forward process and loss -------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alphas_cumprod, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def training_losses(self, model: ModelFn, x0: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                        noise: torch.Tensor | None = None) -> dict:
        """L_simple: || eps - eps_theta(sqrt(ab) x0 + sqrt(1 - ab) eps, t, cond) ||^2, per sample."""
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, t, noise)
        eps = model(x_t, t, cond)
        return {"mse": (eps.float() - noise).pow(2).mean(dim=tuple(range(1, x0.dim()))), "eps": eps}

    # --- the reverse process ------------------------------------------------------------------------
    def predict_xstart(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alphas_cumprod, t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alphas_cumprod, t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def _xstart(self, model: ModelFn, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, clip: bool):
        eps = model(x, t, cond).float()
        x0 = self.predict_xstart(x, t, eps)
        return x0.clamp(-1, 1) if clip else x0

    def p_sample_step(self, model: ModelFn, x: torch.Tensor, step: int, cond: torch.Tensor, noise: torch.Tensor | None,
                      clip: bool = True) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1}: the posterior mean given the predicted x_0, plus sqrt(beta_tilde) z."""
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x0 = self._xstart(model, x, t, cond, clip)
        mean = self._at(self.posterior_mean_coef1, t, x) * x0 + self._at(self.posterior_mean_coef2, t, x) * x
        if step == 0:
            return mean
        return mean + (0.5 * self._at(self.posterior_log_variance_clipped, t, x)).exp() * noise

    def p_sample_loop(self, model: ModelFn, cond: torch.Tensor, generator: torch.Generator, clip: bool = True,
                      progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Full ancestral sampling over all T steps. Noise is drawn on the CPU, per slice, from generators split
        off ``generator`` (``srbench.slice_noise``; x_T first, then one draw per step but the last), so one seed
        gives one output on any device and at any batch size."""
        gens, shape = slice_generators(generator, cond.shape[0]), (1, *cond.shape[2:])
        x = randn(gens, shape).to(cond.device)
        for step in reversed(range(self.num_timesteps)):
            noise = randn(gens, shape).to(cond.device) if step > 0 else None
            x = self.p_sample_step(model, x, step, cond, noise, clip)
            if progress is not None:
                progress(step)
        return x

    @staticmethod
    def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
        """The DDIM paper's "uniform" subsequence: 0, k, 2k, ... with k = T // steps (all T when steps = T)."""
        if not 1 <= steps <= num_timesteps:
            raise ValueError(f"DDIM steps must be in 1..{num_timesteps}, got {steps}")
        return list(range(0, num_timesteps, num_timesteps // steps))[:steps]

    def ddim_sample_loop(self, model: ModelFn, cond: torch.Tensor, generator: torch.Generator, steps: int = 50,
                         eta: float = 0.0, clip: bool = True,
                         progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """DDIM: x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + sigma z on the subsequence, with
        sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab'); eps is re-derived from the clipped x0.
        With all T steps and eta = 1, sigma^2 is beta_tilde and each step is the ancestral step (the same noise
        draws, per slice, as ``p_sample_loop``'s)."""
        seq = self.ddim_timesteps(self.num_timesteps, steps)
        gens, shape = slice_generators(generator, cond.shape[0]), (1, *cond.shape[2:])
        x = randn(gens, shape).to(cond.device)
        for i in reversed(range(len(seq))):
            step, prev = seq[i], (seq[i - 1] if i > 0 else -1)
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x0 = self._xstart(model, x, t, cond, clip)
            eps = self.eps_from_xstart(x, t, x0)
            ab = float(self.alphas_cumprod[step])
            ab_prev = float(self.alphas_cumprod[prev]) if prev >= 0 else 1.0
            sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma ** 2)) * eps
            if prev >= 0 and eta > 0:
                x = x + sigma * randn(gens, shape).to(cond.device)
            if progress is not None:
                progress(step)
        return x
