"""Scoring speed: PSNR + SSIM + GMSD on 256x256 slices through srbench's scorer and through plain piq 0.8 (what
the official Res-SRDiff code calls), side by side in one process, interleaved pass by pass so that the load of
a shared machine falls on both alike. A measurement, not a test: it prints the figures and writes a JSON.

    python benchmarks/scoring_speed.py [--slices 2668] [--pool 256] [--threads 2] [--out scoring_speed.json]

The slices are axial slices of the demo's MNI152 template (nilearn's wheel), resized to 256x256, with
predictions made by blurring and adding noise; a pool of ``--pool`` pairs is scored over and over until
``--slices`` slices (ProstateX's 2,668 test slices by default) have been scored by each side. Both sides get
the same float32 NumPy stacks and return per-slice float64 scores; the largest difference between them is
reported beside the times.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 64


def slice_pool(n: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref): ``n`` pairs of (size, size) float32 slices in [0, 1]."""
    from scipy import ndimage

    from srbench_datasets.demo import load_template
    from srbench.volume import to_array

    volume = to_array(load_template()[0])
    volume = (volume - volume.min()) / (volume.max() - volume.min())
    axial = [k for k in range(len(volume)) if (volume[k] > 0.05).mean() > 0.15]
    rng = np.random.default_rng(seed)
    refs = torch.from_numpy(np.stack([volume[axial[i % len(axial)]] for i in range(n)]).astype(np.float32))
    ref = F.interpolate(refs[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    ref = ref.numpy()
    blurred = ndimage.gaussian_filter(ref, sigma=(0, 1.2, 1.2))
    pred = np.clip(blurred + rng.normal(0, 0.02, ref.shape), 0, 1).astype(np.float32)
    return pred, ref


def score_srbench(pred: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    from srbench.metrics import GMSD, PSNR, SSIM
    from srbench.scoring import score_slices

    return score_slices(pred, ref, [PSNR(), SSIM(), GMSD()], batch_size=BATCH)


def score_piq(pred: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Plain piq, batch by batch, as the official code calls it (data range 1, per-image scores)."""
    import piq

    out = {"psnr": [], "ssim": [], "gmsd": []}
    with torch.no_grad():
        for start in range(0, len(pred), BATCH):
            x = torch.from_numpy(pred[start:start + BATCH, None])
            y = torch.from_numpy(ref[start:start + BATCH, None])
            out["psnr"].append(piq.psnr(x, y, data_range=1.0, reduction="none"))
            out["ssim"].append(piq.ssim(x, y, data_range=1.0, reduction="none"))
            out["gmsd"].append(piq.gmsd(x, y, data_range=1.0, reduction="none"))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=2668)
    ap.add_argument("--pool", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scoring_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred, ref = slice_pool(args.pool)
    ours, theirs = score_srbench(pred, ref), score_piq(pred, ref)  # warm-up (imports, band matrices) and check
    deviation = {k: float(np.abs(ours[k] - theirs[k]).max()) for k in theirs}
    seconds = {"srbench": 0.0, "piq": 0.0}
    done = 0
    while done < args.slices:
        n = min(args.pool, args.slices - done)
        for side, fn in (("srbench", score_srbench), ("piq", score_piq)):
            t0 = time.perf_counter()
            fn(pred[:n], ref[:n])
            seconds[side] += time.perf_counter() - t0
        done += n
    result = {
        "slices": args.slices, "size": [256, 256], "metrics": ["psnr", "ssim", "gmsd"], "threads": args.threads,
        "batch": BATCH, "seconds": seconds, "slices_per_second": {k: args.slices / v for k, v in seconds.items()},
        "speedup_vs_piq": seconds["piq"] / seconds["srbench"], "max_abs_difference_vs_piq": deviation,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{args.slices} slices of 256x256, PSNR+SSIM+GMSD, {args.threads} threads: srbench "
          f"{seconds['srbench']:.1f} s, plain piq {seconds['piq']:.1f} s, ratio {result['speedup_vs_piq']:.2f}x; "
          f"max |srbench - piq|: " + ", ".join(f"{k} {v:.1e}" for k, v in deviation.items()))


if __name__ == "__main__":
    main()
