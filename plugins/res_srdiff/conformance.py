"""Check the Res-SRDiff re-implementation against conformance vectors produced by the official code.

A vector set is a folder with config.json (``ctor_kwargs``, ``diffusion_kwargs``), schedule.json
(float64 schedule arrays per ``T<n>`` key), weights.safetensors (strict state_dict),
forward.safetensors, q_sample.safetensors and sampler.safetensors (see the set's README).
Everything is rebuilt from those files; nothing about a particular set is hard-coded. The plugin carries one
small set, ``BUNDLED_VECTORS`` (made by ``conformance_vectors/generate.py`` from the official code).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from srbench.errors import SRBenchError

from .diffusion import ResShiftDiffusion
from .network import UNetModelSwin, build_network

BUNDLED_VECTORS = Path(__file__).resolve().parent / "conformance_vectors"
TOLERANCES = {"schedule": 1e-6, "q_sample": 1e-4, "forward": 1e-4, "sampler": 1e-4}
VECTOR_FILES = ("forward", "q_sample", "sampler")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SRBenchError(f"cannot read {path}: {_one_line(exc)}") from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise SRBenchError(f"cannot read {path}: {_one_line(exc)}") from None


def load_vectors(directory) -> dict:
    """All files of a vector set: config, schedule, weights and the three tensor files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SRBenchError(f"conformance folder not found: {directory}")
    vectors = {"config": read_json(directory / "config.json"),
               "schedule": read_json(directory / "schedule.json"),
               "weights": read_tensors(directory / "weights.safetensors")}
    for name in VECTOR_FILES:
        vectors[name] = read_tensors(directory / f"{name}.safetensors")
    if "ctor_kwargs" not in vectors["config"] or "diffusion_kwargs" not in vectors["config"]:
        raise SRBenchError(f"{directory / 'config.json'} lacks ctor_kwargs or diffusion_kwargs")
    return vectors


def _as_tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))


def max_dev(a, b) -> float:
    """max |a - b| in float64; inf when the shapes differ or a value is not finite."""
    a, b = _as_tensor(a), _as_tensor(b)
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    d = (a.double() - b.double()).abs().max().item()
    return d if math.isfinite(d) else math.inf


def schedule_deviations(schedule: dict) -> dict[str, float]:
    """Per 'T<n>/<array>' deviation of ResShiftDiffusion's float64 arrays from schedule.json."""
    base = dict(schedule.get("diffusion_kwargs_except_steps", {}))
    devs = {}
    for key, ref in schedule.items():
        match = re.fullmatch(r"T(\d+)", key)
        if not match:
            continue
        diff = ResShiftDiffusion.from_official_kwargs({**base, "steps": int(match.group(1))})
        ours = diff.schedule_arrays()
        for name, values in ref.items():
            if name == "num_timesteps":
                devs[f"{key}/{name}"] = abs(diff.num_timesteps - int(values))
            elif name in ours:
                devs[f"{key}/{name}"] = max_dev(ours[name], values)
    return devs


def build_model(config: dict, weights: dict[str, torch.Tensor], **overrides) -> UNetModelSwin:
    """Network from config.json's ctor_kwargs with weights loaded strictly, in eval mode."""
    model = build_network(config["ctor_kwargs"], **overrides)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def model_fn_of(model: UNetModelSwin):
    return lambda x, t, lq: model(x, t, lq=lq)


def q_sample_deviation(diff: ResShiftDiffusion, v: dict) -> float:
    return max_dev(diff.q_sample(v["x0"], v["y"], v["t"], v["noise"]), v["x_t"])


# In the vector files ``lq`` is both the diffusion's y and the network condition unless a separate
# ``y`` is stored (needed only when lq_size != image_size).
def forward_deviations(diff: ResShiftDiffusion, model_fn, v: dict) -> dict[str, float]:
    devs, y = {}, v.get("y", v["lq"])
    if "x0" in v and "noise" in v:
        devs["x_t"] = max_dev(diff.q_sample(v["x0"], y, v["t"], v["noise"]), v["x_t"])
    out = diff.p_mean_variance(model_fn, v["x_t"], y, v["t"], clip=True, lq=v["lq"])
    for ours, ref in (("model_output", "out"), ("pred_xstart", "pred_xstart"),
                      ("mean", "mean"), ("log_variance", "log_variance")):
        if ref in v:
            devs[ref] = max_dev(out[ours], v[ref])
    return devs


def sampler_deviations(diff: ResShiftDiffusion, model_fn, v: dict) -> dict[str, float]:
    res = diff.p_sample_loop(model_fn, v.get("y", v["lq"]), noises=v["noises"], clip=True,
                             return_intermediates=True, lq=v["lq"])
    devs = {k: max_dev(res[k], v[k]) for k in ("x_T", "samples", "pred_xstart", "means", "final")
            if k in v}
    if "t_sequence" in v:
        devs["t_sequence"] = 0.0 if torch.equal(res["t_sequence"], v["t_sequence"].long()) else math.inf
    return devs


def check_conformance(directory, detail: bool = False) -> dict:
    """Deviation of this implementation from the official vectors in ``directory``.

    Returns {"schedule", "q_sample", "forward", "sampler": max abs deviation, "passed": bool}
    (tolerances: schedule 1e-6, others 1e-4; float32 on CPU); with ``detail`` also "detail", the
    deviation of every compared array.  If the network of config.json cannot be built or does not
    take weights.safetensors strictly, "forward" and "sampler" are inf, "passed" is False and
    "error" says why.  Missing or unreadable files raise SRBenchError.
    """
    vectors = load_vectors(directory)
    config = vectors["config"]
    diff = ResShiftDiffusion.from_official_kwargs(config["diffusion_kwargs"])
    parts = {"schedule": schedule_deviations(vectors["schedule"]),
             "q_sample": {"x_t": q_sample_deviation(diff, vectors["q_sample"])}}
    error = None
    try:
        model = build_model(config, vectors["weights"])
    except (RuntimeError, TypeError, ValueError) as exc:
        error = f"network from config.json does not take weights.safetensors: {_one_line(exc)[:300]}"
        parts.update(forward={}, sampler={})
    else:
        fn = model_fn_of(model)
        with torch.no_grad():
            parts["forward"] = forward_deviations(diff, fn, vectors["forward"])
            parts["sampler"] = sampler_deviations(diff, fn, vectors["sampler"])
    result = {k: max(d.values(), default=math.inf) for k, d in parts.items()}
    result["passed"] = all(result[k] <= tol for k, tol in TOLERANCES.items())
    if error:
        result["error"] = error
    if detail:
        result["detail"] = parts
    return result
