"""Res-SRDiff's 4-step sampler: srbench against the official code, side by side in one process.

A measurement, not a test: it prints a table and writes a JSON of figures. Every timed row runs the same network
configuration, weights and input; the rows of one size and batch are interleaved repeat by repeat (so a loaded
machine slows them alike) and each keeps its best time. Ratios are official / srbench (higher is faster).

    python benchmarks/sampler_speed.py --official /path/to/Res-SRDiff [--preset tiny] [--sizes 64,256]
        [--batches 1,8] [--threads 2] [--modes fp32,bf16] [--baseline-srbench DIR] [--out FILE]

--official: a checkout of github.com/mosaf/Res-SRDiff (its ``script`` folder is imported); without it the
comparison with the official code is skipped. --baseline-srbench: a copy of an older ``plugins/res_srdiff``
folder, imported under another name and timed as one more row. Modes: fp32 (exact), bf16 (a bfloat16 copy of the
network, the tiny preset's default where the hardware has it), both through traced graphs on CPU as long runs
use them (``graphs.TracedNet``; traced during the warm-up: the steady state that a run reaches after
``graphs.TRACE_AT_USE`` batches); fp32-eager and bf16-eager (never traced, the same outputs); compiled (fp32 under
torch.compile), compiled-bf16.
With the official code at hand the fp32 row's output is checked against the official sampler's (same noise).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

from srbench_plugins.res_srdiff import ResSRDiff
from srbench_plugins.res_srdiff import graphs
from srbench_plugins.res_srdiff.sampler import sample

MODES = {"fp32": ("fp32", False, True), "bf16": ("bf16", False, True), "compiled": ("fp32", True, False),
         "compiled-bf16": ("bf16", True, False), "fp32-eager": ("fp32", False, False),
         "bf16-eager": ("bf16", False, False)}  # mode: (precision, compiled, traced)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_official(checkout: Path, method: ResSRDiff):
    """(network, diffusion) of the official code, with ``method``'s configuration and weights."""
    script = Path(checkout) / "script"
    if not (script / "networks" / "unet.py").is_file():
        raise SystemExit(f"{checkout}: not a Res-SRDiff checkout (no script/networks/unet.py)")
    sys.path.insert(0, str(script))
    from diffusion.Gaussian_model import create_gaussian_diffusion
    from networks.unet import UNetModelSwin

    net = UNetModelSwin(**method.settings["network"]).to(method.device).eval()
    net.load_state_dict({k: v.contiguous() for k, v in method.net.state_dict().items()}, strict=True)
    d = method.settings["diffusion"]
    diffusion = create_gaussian_diffusion(
        normalize_input=False, schedule_name="exponential", sf=1.0, min_noise_level=d["min_noise_level"],
        steps=d["steps"], kappa=d["kappa"], etas_end=d["etas_end"], schedule_kwargs={"power": d["power"]},
        predict_type="xstart", timestep_respacing=method.settings["sample_steps"], scale_factor=1.0,
        latent_flag=False)
    return net, diffusion


def load_baseline(folder: Path, preset: str, device: str, state: dict):
    """An older copy of the plugin, imported as the package ``srbench_baseline_res_srdiff``."""
    spec = importlib.util.spec_from_file_location("srbench_baseline_res_srdiff", Path(folder) / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    old = module.ResSRDiff(preset=preset, device=device, seed=0)
    old.net.load_state_dict(state)
    old.head = "plain"
    return old


def official_sampler(net, diffusion, device):
    def run(lr: torch.Tensor, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # the official loop draws from the global RNG
        y = 2 * lr - 1
        with torch.no_grad():
            x = diffusion.p_sample_loop(y, net, model_kwargs={"lq": y}, clip_denoised=True, device=device)
        return ((x + 1) / 2).clamp(0, 1)
    return run


def check_equal(method: ResSRDiff, official_net, diffusion, lr: torch.Tensor) -> float:
    """Max |srbench fp32 - official| on one input, srbench fed the official loop's own noise draws."""
    out = official_sampler(official_net, diffusion, method.device)(lr, 7)
    torch.manual_seed(7)
    y = 2 * lr - 1
    noises = torch.stack([torch.randn_like(y) for _ in range(method.diffusion.num_timesteps + 1)])
    with torch.no_grad():
        ours = sample(method.model_fn(method._inference_net(False)), method.diffusion,
                      y.contiguous(memory_format=torch.channels_last), noises)
    return ((ours + 1) / 2).clamp(0, 1).sub(out).abs().max().item()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def time_rows(runners: dict, lr: torch.Tensor, device: torch.device, repeats: int, clock=time.perf_counter) -> dict:
    for run in runners.values():  # warm-up: allocations, kernel selection, compilation, tracing (main sets it first)
        for _ in range(2):  # a TorchScript graph is optimised at its second call
            run(lr, 0)
    _sync(device)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = clock()
            run(lr, 0)
            _sync(device)
            times[name].append(clock() - t0)
    return {name: min(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="Checkout of mosaf/Res-SRDiff.")
    parser.add_argument("--baseline-srbench", type=Path, default=None, help="Older plugins/res_srdiff folder.")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--weights", type=Path, default=None, help="Weights (default: shipped demo, else random).")
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--modes", default="fp32,bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: the process's CPU time, steadier than wall time on a machine others load "
                             "(use with --threads 1: with more threads it also counts threads waiting on each other)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    graphs.TRACE_AT_USE = 1  # time the traced graphs at once, not after 64 eager calls (excluded, as compiling is)
    methods = {}
    for mode in args.modes.split(","):
        precision, compiled, traced = MODES[mode]
        methods[mode] = ResSRDiff(preset=args.preset, device=args.device, seed=0, precision=precision,
                                  compile=compiled)
        methods[mode].traced = traced
    first = next(iter(methods.values()))
    weights = args.weights or ResSRDiff.shipped_checkpoint("demo", args.preset)
    for method in methods.values():
        if weights:
            method.load(weights)
        else:
            method.net.load_state_dict(first.net.state_dict())
        method.head = "plain"  # the official network's output head, so that outputs compare
    state = {k: v.contiguous() for k, v in first.net.state_dict().items()}
    runners, official = {}, None
    if args.official:
        official = load_official(args.official, first)
        runners["official"] = official_sampler(*official, first.device)
    if args.baseline_srbench:
        old = load_baseline(args.baseline_srbench, args.preset, args.device, state)
        runners["srbench-baseline"] = lambda lr, seed: old.predict_slices(lr, torch.Generator().manual_seed(seed))
    for mode, method in methods.items():
        runners[f"srbench-{mode} ({method.settings['inference']['precision']})"] = \
            (lambda m: lambda lr, seed: m.predict_slices(lr, torch.Generator().manual_seed(seed)))(method)
    rows = []
    header = {"device": device_name(first.device), "torch": torch.__version__, "preset": args.preset,
              "weights": str(weights) if weights else "random init", "repeats": args.repeats, "clock": args.clock}
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            lr = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(size + batch))
            lr = lr.to(first.device)
            best = time_rows(runners, lr, first.device, args.repeats,
                             time.process_time if args.clock == "cpu" else time.perf_counter)
            row = {"size": size, "batch": batch, "seconds_per_slice": {k: v / batch for k, v in best.items()}}
            if official:
                row["speedup_vs_official"] = {k: best["official"] / v for k, v in best.items() if k != "official"}
                row["fp32_max_abs_diff_vs_official"] = check_equal(methods.get("fp32", first), *official, lr)
            if args.baseline_srbench:
                row["speedup_vs_baseline"] = {k: best["srbench-baseline"] / v for k, v in best.items()
                                              if k.startswith("srbench-") and k != "srbench-baseline"}
            rows.append(row)
            write(args.out, {**header, "rows": rows})  # after every row: a time-limited run keeps what it measured
            print(f"{size}^2 batch {batch}: " + ", ".join(f"{k} {v * 1e3:.1f} ms/slice"
                                                         for k, v in row["seconds_per_slice"].items()), flush=True)
            for key in ("speedup_vs_official", "speedup_vs_baseline"):
                if key in row:
                    print(f"    {key}: " + ", ".join(f"{k} {v:.2f}x" for k, v in row[key].items()), flush=True)
    print(f"wrote {args.out}")


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
