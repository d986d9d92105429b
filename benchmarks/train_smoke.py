"""A short Res-SRDiff training run at a preset's patch size, for GPU readiness (benchmarks/gpu.sh).

The demo slices (233 x 197) are smaller than the paper presets' 256^2 / 384^2 patches, and the U-Net needs sides
that are multiples of 64, so the slices are zero-padded (background) to the patch size first. Everything else is
the plugin's own ``fit`` through the shared training engine (AMP, EMA, checkpoints). Prints one JSON line.

    python benchmarks/train_smoke.py --preset paper-prostate --steps 100 --device cuda --workdir DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from srbench.method import SlicePairs
from srbench.runner import make_dataset, make_degradation, training_pairs
from srbench_plugins.res_srdiff import ResSRDiff


def padded(pairs: SlicePairs, side: int) -> SlicePairs:
    h, w = pairs.hr.shape[1:]
    pad = ((0, 0), (0, max(0, side - h)), (0, max(0, side - w)))
    return SlicePairs(lr=np.pad(pairs.lr, pad), hr=np.pad(pairs.hr, pad), case_ids=pairs.case_ids)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper-prostate")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON line here.")
    args = parser.parse_args(argv)
    method = ResSRDiff(preset=args.preset, device=args.device, seed=0)
    method.settings["train"].update(steps=args.steps, checkpoint_every=max(1, args.steps // 2), restarts=(),
                                    warmup_steps=min(method.settings["train"]["warmup_steps"], args.steps // 10))
    dataset = make_dataset("demo")
    _, degradation = make_degradation(dataset.default_degradation)
    pairs = padded(training_pairs(dataset, "train", degradation, method, 0), method.settings["patch"])
    if method.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(method.device)
    t0 = time.perf_counter()
    record = method.fit(pairs, None, args.workdir)
    seconds = time.perf_counter() - t0
    losses = [v if not isinstance(v, dict) else v.get("loss") for _, v in record.get("loss_history", [])]
    result = {"preset": args.preset, "device": str(method.device), "steps": record.get("steps", args.steps),
              "seconds": seconds, "steps_per_s": args.steps / seconds,
              "batch_size": method.settings["train"]["batch_size"], "patch": method.settings["patch"],
              "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
              # the engine records the loss every 10 steps: None when the run was shorter
              "finite": bool(np.isfinite(losses).all()) if losses else None,
              "peak_memory_gib": torch.cuda.max_memory_allocated(method.device) / 2 ** 30
              if method.device.type == "cuda" else None}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
