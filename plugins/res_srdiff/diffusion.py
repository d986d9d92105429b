r"""Residual-shifting diffusion of Res-SRDiff (Safari et al. 2025), a ResShift variant.

Mirrors the official mosaf/Res-SRDiff ``GaussianDiffusion`` / ``SpacedDiffusion`` (script/diffusion)
numerically.  x_0 is the high-resolution image, y the (upsampled) low-resolution one, e_0 = y - x_0
the residual, kappa a noise scale, and 0 < eta_1 < ... < eta_T <= 1 a shifting schedule.

Schedule (eq. 14): sqrt(eta_t) = sqrt(eta_1) * b^{beta_t}, beta_t = ((t-1)/(T-1))^p * (T-1),
    b = exp(ln(sqrt(eta_T)/sqrt(eta_1)) / (T-1)),  sqrt(eta_1) = min(min_noise/kappa, min_noise),
    sqrt(eta_T) = etas_end.
Transition (eq. 1):  q(x_t | x_{t-1}, y) = N(x_{t-1} + alpha_t e_0, kappa^2 alpha_t I),
    alpha_t = eta_t - eta_{t-1} (eta_0 = 0).
Marginal (eq. 2):    q(x_t | x_0, y) = N(x_0 + eta_t e_0, kappa^2 eta_t I), so
    x_t = eta_t (y - x_0) + x_0 + kappa sqrt(eta_t) noise           (``q_sample``);
    the prior is x_T ~ N(y, kappa^2 eta_T I)                          (``prior_sample``).
Posterior (eqs. 3-4): q(x_{t-1} | x_t, x_0, y) = N(mu, kappa^2 eta_{t-1}/eta_t alpha_t I),
    mu = eta_{t-1}/eta_t x_t + alpha_t/eta_t x_0.
Reverse step (eqs. 9-11): the network f_theta(x_t, y, t) predicts x_0 (clamped to [-1, 1]) and
    p(x_{t-1} | x_t, y) = N(eta_{t-1}/eta_t x_t + alpha_t/eta_t f_theta, kappa^2 eta_{t-1}/eta_t alpha_t I);
    training minimises ||f_theta(x_t, y, t) - x_0||^2.

Array index t = i is eta_{i+1} (index 0 is eta_1).  Precision follows the official code: arrays are
float64; a coefficient is gathered from its float64 array and cast to float32 before use
(kappa * sqrt_etas is formed in float64 first); the posterior log-variance at index 0 is clipped to
that of index 1.

Respacing (official ``space_timesteps`` + ``SpacedDiffusion``): for ``sample_steps`` S < T the kept
original indices are {int(T/S * k) : k < S}; the new process uses sqrt_etas of the kept indices
(etas, etas_prev, alpha, ... recomputed from that subset) and indices 0..S-1, while the network
receives the original index ``timestep_map[t]``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

PREDICT_TYPES = ("xstart", "residual", "epsilon", "epsilon_scale")
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def exponential_sqrt_etas(steps: int, min_noise_level: float, etas_end: float = 0.99,
                          kappa: float = 1.0, power: float = 0.3) -> np.ndarray:
    """Official ``get_named_eta_schedule('exponential', ...)``: float64 sqrt(eta_t), t = 1..T."""
    if steps < 2:
        raise ValueError("the exponential schedule needs at least 2 steps")
    etas_start = min(min_noise_level / kappa, min_noise_level)
    increaser = math.exp(1 / (steps - 1) * math.log(etas_end / etas_start))
    base = np.ones([steps]) * increaser
    power_timestep = np.linspace(0, 1, steps, endpoint=True) ** power
    power_timestep *= steps - 1
    return np.power(base, power_timestep) * etas_start


def space_timesteps(num_timesteps: int, sample_timesteps: int) -> list[int]:
    """Kept original indices for respaced sampling (official rule), ascending."""
    if not 0 < sample_timesteps <= num_timesteps:
        raise ValueError(f"cannot sample {sample_timesteps} of {num_timesteps} steps")
    return sorted({int((num_timesteps / sample_timesteps) * k) for k in range(sample_timesteps)})


def _gather(arr: np.ndarray, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """arr[t] taken in float64 and cast to float32, shaped (B, 1, ..., 1) to broadcast."""
    res = torch.from_numpy(arr).to(device=t.device)[t].float()
    return res.reshape(-1, *([1] * (ndim - 1)))


class ResShiftDiffusion:
    """Residual-shifting diffusion trained with ``steps`` and sampled with ``sample_steps``.

    ``sample_steps=None`` samples with all steps (identity ``timestep_map``).  The schedule arrays
    (``sqrt_etas``, ``etas``, ``etas_prev``, ``alpha``, ``posterior_*``, ``weight_loss_mse``) are
    float64 numpy arrays of length ``num_timesteps`` (the sampling steps); ``base_sqrt_etas`` holds
    the full training schedule.  ``sqrt_etas`` may be given to bypass the exponential schedule.
    """

    def __init__(self, steps: int = 4, kappa: float = 2.0, min_noise_level: float = 0.2,
                 etas_end: float = 0.99, power: float = 0.3, sample_steps: int | None = None,
                 predict_type: str = "xstart", normalize_input: bool = False,
                 latent_flag: bool = False, weighted_mse: bool = False,
                 sqrt_etas: np.ndarray | None = None):
        if predict_type not in PREDICT_TYPES:
            raise ValueError(f"predict_type must be one of {PREDICT_TYPES}, got {predict_type!r}")
        if sqrt_etas is None:
            sqrt_etas = exponential_sqrt_etas(steps, min_noise_level, etas_end, kappa, power)
        self.base_sqrt_etas = np.asarray(sqrt_etas, dtype=np.float64)
        self.original_num_steps = len(self.base_sqrt_etas)
        self.kappa, self.predict_type, self.weighted_mse = kappa, predict_type, weighted_mse
        self.normalize_input, self.latent_flag = normalize_input, latent_flag
        kept = space_timesteps(self.original_num_steps, sample_steps or self.original_num_steps)
        self.timestep_map = np.asarray(kept, dtype=np.int64)
        self._set_schedule(self.base_sqrt_etas[self.timestep_map])

    @classmethod
    def from_official_kwargs(cls, kwargs: dict) -> "ResShiftDiffusion":
        """From the official ``create_gaussian_diffusion`` kwargs (steps, kappa, schedule_kwargs, ...)."""
        if kwargs.get("schedule_name", "exponential") != "exponential":
            raise ValueError(f"unsupported schedule_name {kwargs['schedule_name']!r}")
        return cls(steps=kwargs.get("steps", 1000), kappa=kwargs.get("kappa", 1.0),
                   min_noise_level=kwargs.get("min_noise_level", 0.01),
                   etas_end=kwargs.get("etas_end", 0.99),
                   power=(kwargs.get("schedule_kwargs") or {}).get("power", 0.3),
                   sample_steps=kwargs.get("timestep_respacing"),
                   predict_type=kwargs.get("predict_type", "xstart"),
                   normalize_input=kwargs.get("normalize_input", True),
                   latent_flag=kwargs.get("latent_flag", True),
                   weighted_mse=kwargs.get("weighted_mse", False))

    def respaced(self, sample_steps: int) -> "ResShiftDiffusion":
        """The same training process sampled with ``sample_steps`` steps."""
        return ResShiftDiffusion(kappa=self.kappa, sample_steps=sample_steps,
                                 predict_type=self.predict_type, normalize_input=self.normalize_input,
                                 latent_flag=self.latent_flag, weighted_mse=self.weighted_mse,
                                 sqrt_etas=self.base_sqrt_etas)

    def _set_schedule(self, sqrt_etas: np.ndarray) -> None:
        kappa = self.kappa
        self.sqrt_etas = sqrt_etas
        self.etas = etas = sqrt_etas ** 2
        if not ((etas > 0).all() and (etas <= 1).all()):
            raise ValueError("etas must lie in (0, 1]")
        self.num_timesteps = len(etas)
        self.etas_prev = np.append(0.0, etas[:-1])
        self.alpha = etas - self.etas_prev
        self.posterior_variance = kappa ** 2 * self.etas_prev / etas * self.alpha
        # index 0 has zero variance; its log is clipped to that of index 1 (official)
        pv = self.posterior_variance
        self.posterior_variance_clipped = np.append(pv[1] if len(pv) > 1 else pv[0], pv[1:])
        with np.errstate(divide="ignore"):
            self.posterior_log_variance_clipped = np.log(self.posterior_variance_clipped)
        self.posterior_mean_coef1 = self.etas_prev / etas
        self.posterior_mean_coef2 = self.alpha / etas
        if self.predict_type in ("xstart", "residual"):
            w = 0.5 / self.posterior_variance_clipped * (self.alpha / etas) ** 2
        else:
            w = 0.5 / self.posterior_variance_clipped * (
                kappa * self.alpha / ((1 - etas) * sqrt_etas)) ** 2
        self.weight_loss_mse = w
        self.kappa_sqrt_etas = sqrt_etas * kappa  # formed in float64 (official)

    def schedule_arrays(self) -> dict[str, np.ndarray]:
        names = ("sqrt_etas", "etas", "etas_prev", "alpha", "posterior_mean_coef1",
                 "posterior_mean_coef2", "posterior_variance", "posterior_variance_clipped",
                 "posterior_log_variance_clipped", "weight_loss_mse", "timestep_map")
        return {n: getattr(self, n) for n in names}

    # ---------------------------------------------------------------- forward process
    def q_sample(self, x0, y, t, noise=None):
        """x_t = eta_t (y - x0) + x0 + kappa sqrt(eta_t) noise (official order of operations)."""
        noise = torch.randn_like(x0) if noise is None else noise
        return (_gather(self.etas, t, x0.dim()) * (y - x0) + x0
                + _gather(self.kappa_sqrt_etas, t, x0.dim()) * noise)

    def q_posterior_mean_variance(self, x0, x_t, t):
        mean = (_gather(self.posterior_mean_coef1, t, x_t.dim()) * x_t
                + _gather(self.posterior_mean_coef2, t, x_t.dim()) * x0)
        var = _gather(self.posterior_variance, t, x_t.dim()).expand_as(x_t)
        log_var = _gather(self.posterior_log_variance_clipped, t, x_t.dim()).expand_as(x_t)
        return mean, var, log_var

    def prior_sample(self, y, noise=None):
        """x_T = y + kappa sqrt(eta_T) noise."""
        noise = torch.randn_like(y) if noise is None else noise
        t = torch.full((y.shape[0],), self.num_timesteps - 1, dtype=torch.long, device=y.device)
        return y + _gather(self.kappa_sqrt_etas, t, y.dim()) * noise

    # ---------------------------------------------------------------- reverse process
    def map_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Respaced index -> original timestep number the network was trained with."""
        return torch.as_tensor(self.timestep_map, device=t.device, dtype=t.dtype)[t]

    def scale_input(self, x, t):
        """Official ``_scale_input`` (identity unless ``normalize_input``)."""
        if not self.normalize_input:
            return x
        if self.latent_flag:
            return x / torch.sqrt(_gather(self.etas, t, x.dim()) * self.kappa ** 2 + 1)
        return x / (_gather(self.sqrt_etas, t, x.dim()) * self.kappa * 3 + 1)

    def predict_xstart(self, model_output, x_t, y, t):
        """x0 from the network output according to ``predict_type`` (unclipped)."""
        nd = x_t.dim()
        if self.predict_type == "xstart":
            return model_output
        if self.predict_type == "residual":
            return y - model_output
        if self.predict_type == "epsilon":
            eps = _gather(self.sqrt_etas, t, nd) * self.kappa * model_output
        else:
            eps = model_output
        return (x_t - eps - _gather(self.etas, t, nd) * y) / _gather(1 - self.etas, t, nd)

    def p_mean_variance(self, model_fn: ModelFn, x_t, y, t, clip: bool = True, lq=None) -> dict:
        """Network call ``model_fn(x_t, original_t, lq)`` and the Gaussian p(x_{t-1} | x_t, y).

        ``lq`` is the network's condition; it defaults to ``y`` (they differ only when the network
        takes a larger low-quality image through its feature extractor).
        """
        out = model_fn(self.scale_input(x_t, t), self.map_timesteps(t), y if lq is None else lq)
        pred = self.predict_xstart(out, x_t, y, t)
        if clip:
            pred = pred.clamp(-1, 1)
        mean, var, log_var = self.q_posterior_mean_variance(pred, x_t, t)
        return {"mean": mean, "variance": var, "log_variance": log_var,
                "pred_xstart": pred, "model_output": out}

    def p_sample(self, model_fn: ModelFn, x, y, t, noise=None, clip: bool = True, lq=None) -> dict:
        """One reverse step; the noise is drawn (or used) at every step, and zeroed where t == 0."""
        out = self.p_mean_variance(model_fn, x, y, t, clip=clip, lq=lq)
        noise = torch.randn_like(x) if noise is None else noise
        nonzero = (t != 0).float().view(-1, *([1] * (x.dim() - 1)))
        out["sample"] = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return out

    @torch.no_grad()
    def p_sample_loop(self, model_fn: ModelFn, y, noises=None, generator: torch.Generator | None = None,
                      clip: bool = True, return_intermediates: bool = False, lq=None):
        """Sample x_0 from y: prior, then steps t = T-1 .. 0.

        ``noises`` (T+1 tensors shaped like y, or a stacked tensor): noises[0] for the prior,
        noises[k] for the k-th step.  Otherwise noise comes from ``generator`` or, without one,
        from the global RNG in the official order (prior, then one draw after each network call).
        With ``return_intermediates`` returns a dict: final, x_T, samples, pred_xstart, means
        (stacked over steps) and t_sequence.  ``lq``: network condition if not ``y``.
        """
        if noises is not None and len(noises) != self.num_timesteps + 1:
            raise ValueError(f"need {self.num_timesteps + 1} noises, got {len(noises)}")

        def draw(k):
            if noises is not None:
                return noises[k].to(y.device, y.dtype)
            if generator is not None:
                return torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            return None  # global RNG inside prior_sample / p_sample

        x = x_T = self.prior_sample(y, draw(0))
        steps = list(range(self.num_timesteps))[::-1]
        record = {"samples": [], "pred_xstart": [], "means": []}
        for k, i in enumerate(steps, start=1):
            t = torch.full((y.shape[0],), i, dtype=torch.long, device=y.device)
            out = self.p_sample(model_fn, x, y, t, noise=draw(k), clip=clip, lq=lq)
            x = out["sample"]
            if return_intermediates:
                for key, name in (("samples", "sample"), ("pred_xstart", "pred_xstart"), ("means", "mean")):
                    record[key].append(out[name])
        if not return_intermediates:
            return x
        result = {key: torch.stack(v) for key, v in record.items()}
        result.update(final=x, x_T=x_T, t_sequence=torch.tensor(steps, dtype=torch.long))
        return result

    # ---------------------------------------------------------------- training
    def training_losses(self, model_fn: ModelFn, x0, y, t, noise=None, lq=None) -> dict:
        """Per-sample MSE of the network output against its target (x0 for ``xstart``)."""
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, y, t, noise)
        out = model_fn(self.scale_input(x_t, t), self.map_timesteps(t), y if lq is None else lq)
        target = {"xstart": x0, "residual": y - x0, "epsilon": noise,
                  "epsilon_scale": noise * self.kappa * _gather(self.sqrt_etas, t, x0.dim())}[self.predict_type]
        mse = ((target - out) ** 2).mean(dim=list(range(1, x0.dim())))
        if self.predict_type == "epsilon_scale":
            mse = mse / (self.kappa ** 2 * _gather(self.etas, t, 1))
        if self.weighted_mse:
            mse = mse * _gather(self.weight_loss_mse, t, 1)
        return {"mse": mse, "x_t": x_t, "pred_xstart": self.predict_xstart(out, x_t, y, t)}
