"""Res-SRDiff's 4-step sampler as inference runs it: the arithmetic of ``ResShiftDiffusion.p_sample_loop``,
with the network in channels-last memory, optionally in bfloat16 and compiled.

``precision="fp32"`` is the exact mode (``srbench conformance`` checks the same network and diffusion in float32).
``"bf16"`` runs the network on a bfloat16 copy of its U-Net body (``network.to_bf16``: GroupNorm, the timestep
MLP, the output head and the update arithmetic stay float32) on CUDA and on CPUs with native bfloat16 (AVX-512
BF16); elsewhere it falls back to float32, since emulated bfloat16 is slower than float32. Its effect on the demo
scores is bounded and tested (tests/test_res_srdiff_inference.py).

Noise is drawn on the CPU, per slice (``srbench.slice_noise``): each slice of a batch draws its prior and step
noises from its own generator, split off the run's generator, so a seed gives the same output on any device and
at any batch size. ``sample`` takes the noise step-major, (steps + 1, N, C, H, W), whatever drew it.
"""

from __future__ import annotations

import contextlib

import torch

from srbench.slice_noise import randn

from .diffusion import ResShiftDiffusion

PRECISIONS = ("fp32", "bf16")


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision that will run: ``bf16`` only where the hardware computes in bfloat16 natively."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "fp32"
        # torch.cpu has no public query for this; the private one reads the CPU's feature flags.
        if device.type == "cpu" and not torch.cpu._is_avx512_bf16_supported():
            return "fp32"
    return requested


def exact(device: torch.device):
    """Exact float32 arithmetic: on CUDA cuDNN would otherwise use TF32 for float32 convolutions."""
    if device.type == "cuda":
        cudnn = torch.backends.cudnn
        return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                           allow_tf32=False)
    return contextlib.nullcontext()


def draw_noises(generators: list[torch.Generator], steps: int, shape: torch.Size, device: torch.device
                ) -> torch.Tensor:
    """(steps + 1, N, C, H, W) standard normal noise: slice n's (steps + 1, C, H, W) drawn from
    ``generators[n]`` (one per slice of the batch, ``srbench.slice_noise.slice_generators``), step-major."""
    noises = randn(generators, (steps + 1, *shape[1:]), dim=1)
    if device.type == "cuda":  # one pinned, asynchronous copy per batch
        return noises.pin_memory().to(device, non_blocking=True)
    return noises.to(device)


def sample(model_fn, d: ResShiftDiffusion, y: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
    """x_0 from the condition ``y`` (network units, channels-last): prior, then steps t = T-1 .. 0.

    The same arithmetic as ``ResShiftDiffusion.p_sample_loop`` (float32), but the schedule tables and timesteps
    are put on the device once, before the loop, so no step waits for a host-to-device copy. ``model_fn`` may
    return bfloat16 (a ``to_bf16`` network): the update arithmetic is float32 either way.
    """
    dev, steps, nd = y.device, d.num_timesteps, y.dim()

    def table(arr):  # float64 schedule -> float32, as the diffusion's _gather does, indexed [step]
        return torch.as_tensor(arr).float().to(dev).view(-1, *([1] * nd))

    coef1, coef2 = table(d.posterior_mean_coef1), table(d.posterior_mean_coef2)
    std = torch.exp(0.5 * table(d.posterior_log_variance_clipped))
    nonzero = (torch.arange(steps, device=dev) != 0).float().view(-1, *([1] * nd))
    sqrt_etas, etas, kappa_sqrt_etas = table(d.sqrt_etas), table(d.etas), table(d.kappa_sqrt_etas)
    one_minus_etas = table(1 - d.etas)
    # the network's (original) timestep for each sampling step, for the whole batch
    net_t = torch.as_tensor(d.timestep_map, dtype=torch.long).to(dev)[:, None].expand(steps, y.shape[0]).contiguous()

    x = y + kappa_sqrt_etas[steps - 1] * noises[0]  # prior sample x_T
    with exact(dev):
        for k, i in enumerate(range(steps - 1, -1, -1), start=1):
            x_in = x
            if d.normalize_input:
                x_in = x / torch.sqrt(etas[i] * d.kappa ** 2 + 1) if d.latent_flag \
                    else x / (sqrt_etas[i] * d.kappa * 3 + 1)
            out = model_fn(x_in, net_t[i], y).float()
            if d.predict_type == "xstart":
                pred = out
            elif d.predict_type == "residual":
                pred = y - out
            else:
                eps = sqrt_etas[i] * d.kappa * out if d.predict_type == "epsilon" else out
                pred = (x - eps - etas[i] * y) / one_minus_etas[i]
            pred = pred.clamp(-1, 1)
            x = coef1[i] * x + coef2[i] * pred + nonzero[i] * std[i] * noises[k]
    return x
