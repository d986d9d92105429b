"""Inference batch size: seconds per slice of one method at several batch sizes, side by side in one process.

A measurement, not a test: it prints a line per batch size and writes a JSON of figures. Each row predicts the same
slices (the shipped demo weights, else a random init) cut into batches of its size; the rows are interleaved repeat
by repeat (so a loaded machine slows them alike) and each keeps its best time (``sampler_speed.time_rows``). Outputs
do not depend on the batch size (``srbench.slice_noise``), so the fastest one is the sensible default per device.

    python benchmarks/batch_size.py [--method res-srdiff] [--size 256] [--batches 4,8] [--slices 8]
        [--threads 1] [--clock cpu] [--repeats 3] [--device cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from sampler_speed import device_name, time_rows, write

from srbench.plugins import lookup


def batched(method, batch_size: int):
    """``method.predict_slices`` over the slices in batches of ``batch_size``, as ``predict_volume`` cuts them."""
    def run(lr: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return torch.cat([method.predict_slices(lr[i:i + batch_size], generator)
                              for i in range(0, len(lr), batch_size)])
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="res-srdiff")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", default="4,8")
    parser.add_argument("--slices", type=int, default=8, help="Slices per timed call (a multiple of every batch).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                        help="cpu: the process's CPU time (with --threads 1), steadier on a machine others load")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/batch_size.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cls = lookup("methods", args.method)
    method = cls(preset=args.preset, device=args.device, seed=0)
    weights = cls.shipped_checkpoint("demo", args.preset) if cls.trains else None
    if weights:
        method.load(weights)
    batches = [int(b) for b in args.batches.split(",")]
    lr = torch.rand(args.slices, 1, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(method.device)
    runners = {f"batch {b}": batched(method, b) for b in batches}
    best = time_rows(runners, lr, method.device, args.repeats,
                     time.process_time if args.clock == "cpu" else time.perf_counter)
    per_slice = {name: t / args.slices for name, t in best.items()}
    write(args.out, {"method": args.method, "preset": args.preset, "device": device_name(method.device),
                     "torch": torch.__version__, "weights": str(weights) if weights else "random init",
                     "size": args.size, "slices": args.slices, "repeats": args.repeats, "clock": args.clock,
                     "default_batch_size": method.batch_size, "seconds_per_slice": per_slice})
    fastest = min(per_slice, key=per_slice.get)
    for name, t in per_slice.items():
        print(f"{args.method} {args.size}^2 {name}: {t * 1e3:.1f} ms/slice ({t / per_slice[fastest]:.3f}x the fastest)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
