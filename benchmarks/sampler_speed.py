"""Seconds per 256x256 slice of Res-SRDiff's 4-step sampler, per preset, batch size and device.

A measurement, not a test: it writes a JSON of figures (and prints them). Run it on a GPU machine whenever one
is available; name the device when quoting the figures. Paper reference: 0.95 s/slice on ProstateX (256^2)
and 0.46 s/slice on the brain data, on the authors' GPU.

    python benchmarks/sampler_speed.py [--presets tiny,paper-prostate] [--batches 1,16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from srbench_plugins.res_srdiff import ResSRDiff


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(preset: str, batch: int, device: str, repeats: int, size: int = 256) -> dict:
    method = ResSRDiff(preset=preset, device=device, seed=0)
    lr = torch.rand(batch, 1, size, size, device=method.device)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        method.predict_slices(lr, generator)  # warm-up (allocations, kernels)
        _sync(method.device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            method.predict_slices(lr, generator)
            _sync(method.device)
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {"preset": preset, "batch": batch, "device": str(method.device), "size": size,
            "sampling_steps": method.sampling_steps(), "parameters": method.parameter_count(),
            "seconds_per_batch": best, "seconds_per_slice": best / batch, "repeats": repeats}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,paper-prostate")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler_speed.json"))
    args = parser.parse_args()
    rows = []
    for device in args.devices.split(","):
        for preset in args.presets.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                row = time_sampler(preset, batch, device, args.repeats)
                row["device_name"] = device_name(device)
                rows.append(row)
                print(f"{preset:15s} batch {batch:3d} {row['device_name']:30s} "
                      f"{row['seconds_per_slice']:.3f} s/slice", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
