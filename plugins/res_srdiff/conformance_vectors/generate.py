"""Generate this folder's Res-SRDiff conformance vectors by running the official code (not shipped here).

Usage (from a checkout of github.com/mosaf/Res-SRDiff, commit 2a0e0a8c6de924f61f496f1eaad9557038971c99, with
torch and timm installed):

    python plugins/res_srdiff/conformance_vectors/generate.py /path/to/Res-SRDiff/script OUT_DIR

It imports the official ``networks.unet.UNetModelSwin`` and ``diffusion.Gaussian_model.create_gaussian_diffusion``
and nothing from srbench, builds the small network of ``CTOR_KWARGS`` on CPU in float32, perturbs the parameters
that the official initialisation leaves all-zero or all-one (so that every layer contributes to the output),
records one network evaluation, ``q_sample`` and a whole ``p_sample_loop`` with every random draw, and writes
config.json, schedule.json and four safetensors files (see README.md). It then reloads the weights into a fresh
official network, recomputes everything (the sampler with the recorded noise injected) and records the largest
difference under config.json "generation_checks" (0.0 when the run is reproducible).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

COMMIT = "2a0e0a8c6de924f61f496f1eaad9557038971c99"
# Small enough for the repository (~1 M parameters, 4 MB) yet covering every path of the network: shifted Swin
# windows (feature side 16 > window 8), an unshifted one (side 8), a window clamped to a side of 4, two heads,
# channel changes (1x1 skip convolutions) in encoder and decoder, down- and upsampling, the middle block.
CTOR_KWARGS = {
    "image_size": 16, "in_channels": 1, "model_channels": 32, "out_channels": 1, "num_res_blocks": [1, 1, 1],
    "attention_resolutions": [16, 8, 4], "dropout": 0, "channel_mult": [1, 1, 2], "conv_resample": True,
    "dims": 2, "use_fp16": False, "num_heads": 2, "num_head_channels": -1, "use_scale_shift_norm": False,
    "resblock_updown": False, "swin_depth": 2, "swin_embed_dim": 32, "window_size": 8, "mlp_ratio": 2.0,
    "patch_norm": False, "cond_lq": True, "cond_mask": False, "lq_size": 16,
}
# The defaults of the official script/main.py, with T = 4 steps.
DIFFUSION_KWARGS = {
    "sf": 1.0, "schedule_name": "exponential", "schedule_kwargs": {"power": 0.3}, "etas_end": 0.99, "steps": 4,
    "min_noise_level": 0.2, "kappa": 2.0, "weighted_mse": False, "predict_type": "xstart",
    "timestep_respacing": None, "scale_factor": 1.0, "normalize_input": False, "latent_flag": False,
}
SCHEDULE_ARRAYS = ("sqrt_etas", "etas", "etas_prev", "alpha", "posterior_mean_coef1", "posterior_mean_coef2",
                   "posterior_variance", "posterior_variance_clipped", "posterior_log_variance_clipped",
                   "weight_loss_mse")
SEEDING = {
    "model_init": "torch.manual_seed(0) immediately before UNetModelSwin(**ctor_kwargs)",
    "perturbation": "torch.Generator().manual_seed(1); params visited in named_parameters() order",
    "forward_inputs": "torch.Generator().manual_seed(2)",
    "q_sample_inputs": "torch.Generator().manual_seed(3)",
    "sampler_lq": "torch.Generator().manual_seed(4)",
    "sampler_noise": "torch.manual_seed(5) before p_sample_loop (global CPU RNG)",
}
PERTURB_STD = 0.02
THREADS = 2


def official(script_dir: Path):
    sys.path.insert(0, str(script_dir))
    from diffusion.Gaussian_model import create_gaussian_diffusion
    from networks.unet import UNetModelSwin

    return UNetModelSwin, create_gaussian_diffusion


def build(unet_cls):
    kwargs = {**CTOR_KWARGS, "attention_resolutions": tuple(CTOR_KWARGS["attention_resolutions"]),
              "channel_mult": tuple(CTOR_KWARGS["channel_mult"])}
    torch.manual_seed(0)
    return unet_cls(**kwargs)


def perturb(model) -> dict[str, list[str]]:
    """Add N(0, 0.02^2) to every parameter the official init leaves all zeros or all ones."""
    gen, done = torch.Generator().manual_seed(1), {"zero_initialised_perturbed": [], "one_initialised_perturbed": []}
    with torch.no_grad():
        for name, p in model.named_parameters():
            kind = ("zero" if torch.all(p == 0) else "one" if torch.all(p == 1) else None)
            if kind:
                p.add_(torch.randn(p.shape, generator=gen) * PERTURB_STD)
                done[f"{kind}_initialised_perturbed"].append(name)
    return done


class Recorder:
    """The model as the diffusion calls it, keeping its raw outputs (``out`` before clamping)."""

    def __init__(self, model):
        self.model, self.outputs = model, []

    def __call__(self, x, t, **kwargs):
        out = self.model(x, t, **kwargs)
        self.outputs.append(out.detach().clone())
        return out


def forward_vectors(model, diffusion) -> dict:
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 1, 16, 16, generator=gen) * 2 - 1
    lq = (x0 + 0.3 * torch.randn(2, 1, 16, 16, generator=gen)).clamp(-1, 1)
    noise = torch.randn(2, 1, 16, 16, generator=gen)
    t = torch.tensor([3, 1], dtype=torch.int64)
    x_t = diffusion.q_sample(x0, lq, t, noise)
    rec = Recorder(model)
    with torch.no_grad():
        out = diffusion.p_mean_variance(rec, x_t, lq, t, clip_denoised=True, model_kwargs={"lq": lq})
    return {"x0": x0, "lq": lq, "noise": noise, "t": t, "x_t": x_t, "out": rec.outputs[0],
            "pred_xstart": out["pred_xstart"], "mean": out["mean"],
            "log_variance": out["log_variance"].expand_as(x_t).contiguous().float()}


def q_sample_vectors(diffusion) -> dict:
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    y = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    noise = torch.randn(4, 1, 16, 16, generator=gen)
    t = torch.arange(4, dtype=torch.int64)
    return {"x0": x0, "y": y, "noise": noise, "t": t, "x_t": diffusion.q_sample(x0, y, t, noise)}


def sample(model, diffusion, lq, noises=None) -> dict:
    """The official p_sample_loop_progressive; every torch.randn_like draw is recorded (or replaced by
    ``noises``, in order)."""
    drawn, original = [], torch.randn_like

    def randn_like(x, *args, **kwargs):
        value = noises[len(drawn)].clone() if noises is not None else original(x, *args, **kwargs)
        drawn.append(value.clone())
        return value

    torch.randn_like = randn_like  # the official code calls th.randn_like (th is torch)
    try:
        steps = list(diffusion.p_sample_loop_progressive(lq, model, clip_denoised=True, model_kwargs={"lq": lq},
                                                         device="cpu"))
    finally:
        torch.randn_like = original
    return {"lq": lq, "noises": torch.stack(drawn), "x_T": diffusion.prior_sample(lq, drawn[0]),
            "samples": torch.stack([s["sample"] for s in steps]),
            "pred_xstart": torch.stack([s["pred_xstart"] for s in steps]),
            "means": torch.stack([s["mean"] for s in steps]), "final": steps[-1]["sample"],
            "t_sequence": torch.arange(diffusion.num_timesteps - 1, -1, -1, dtype=torch.int64)}


def sampler_vectors(model, diffusion) -> dict:
    lq = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    torch.manual_seed(5)
    return sample(model, diffusion, lq)


def schedule(create) -> dict:
    out = {"note": "float64 values as computed by the official GaussianDiffusion/SpacedDiffusion "
                   "(create_gaussian_diffusion with main.py defaults); array index i is timestep index t=i, "
                   "i.e. eta_{i+1}.",
           "diffusion_kwargs_except_steps": {k: v for k, v in DIFFUSION_KWARGS.items() if k != "steps"}}
    for steps in (4, 15):
        d = create(**{**DIFFUSION_KWARGS, "steps": steps})
        arrays = {name: np.asarray(getattr(d, name), dtype=np.float64).tolist() for name in SCHEDULE_ARRAYS}
        out[f"T{steps}"] = {**arrays, "timestep_map": list(d.timestep_map), "num_timesteps": d.num_timesteps}
    return out


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if k in b)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script_dir", type=Path, help="the official repository's script/ folder")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    unet_cls, create = official(args.script_dir.resolve())
    model = build(unet_cls)
    perturbation = perturb(model)
    model.eval()
    diffusion = create(**DIFFUSION_KWARGS)
    files = {"forward": forward_vectors(model, diffusion), "q_sample": q_sample_vectors(diffusion),
             "sampler": sampler_vectors(model, diffusion)}
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()},
              str(out / "weights.safetensors"))
    for name, tensors in files.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    (out / "schedule.json").write_text(json.dumps(schedule(create), indent=1) + "\n", encoding="utf-8")

    # Self-check: a fresh official network from the written weights reproduces every file.
    again = build(unet_cls)
    again.load_state_dict(load_file(str(out / "weights.safetensors")), strict=True)
    again.eval()
    checks = {"reloaded_forward_max_abs_diff": max_diff(forward_vectors(again, diffusion), files["forward"]),
              "reloaded_q_sample_max_abs_diff": max_diff(q_sample_vectors(diffusion), files["q_sample"]),
              "recorded_noise_replay_max_abs_diff": max_diff(
                  sample(again, diffusion, files["sampler"]["lq"], files["sampler"]["noises"]), files["sampler"])}
    import timm

    config = {"repo": "mosaf/Res-SRDiff", "commit": COMMIT, "model_class": "networks/unet.py:UNetModelSwin",
              "ctor_kwargs": CTOR_KWARGS,
              "ctor_kwargs_types_note": "attention_resolutions and channel_mult were passed as tuples",
              "diffusion_kwargs": DIFFUSION_KWARGS,
              "param_count": sum(p.numel() for p in model.parameters()),
              "buffer_count": sum(b.numel() for b in model.buffers()), "seed": 0, "seeding": SEEDING,
              "perturbation": {"std": PERTURB_STD, **perturbation},
              "versions": {"torch": torch.__version__, "numpy": np.__version__, "timm": timm.__version__,
                           "python": platform.python_version()},
              "device": "cpu", "dtype": "float32", "torch_num_threads": THREADS, "generation_checks": checks}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(checks))


if __name__ == "__main__":
    main()
