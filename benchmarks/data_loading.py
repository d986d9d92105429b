"""Data loading speed: slices per second to read, normalise and degrade a 300-slice volume set, cold (empty
preprocessing cache), cached (second run), and with the cache off; also the training-pair path (LR put back on
the HR grid). A measurement, not a test: it prints the figures and writes them to a JSON.

    python benchmarks/data_loading.py [--format nifti|dicom] [--volumes 10] [--slices 30] [--size 256]
                                      [--degradation brain-t1map] [--out data_loading.json]

The volumes (3-D Shepp-Logan phantoms with texture, written by this script to a temporary folder) are read
through the ``folder`` dataset, exactly as ``srbench run --dataset folder:PATH`` reads them. One unmeasured
warm-up pass comes first (imports; the files then sit in the OS page cache for every measured pass, so "cold"
means an empty preprocessing cache, not a cold disk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the DICOM writer of the tests


def phantom_volume(size: int, slices: int, seed: int) -> np.ndarray:
    from phantominator import shepp_logan

    base = np.transpose(np.clip(shepp_logan((size, size, slices)), 0, None), (2, 0, 1))  # (z, y, x)
    texture = np.random.default_rng(seed).uniform(0.0, 0.05, base.shape)
    return (1000 * (base + texture)).astype(np.float32)


def write_set(root: Path, fmt: str, volumes: int, slices: int, size: int) -> None:
    for i in range(volumes):
        array = phantom_volume(size, slices, i)
        if fmt == "nifti":
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((0.8, 0.8, 0.8))
            sitk.WriteImage(image, str(root / f"case{i:02d}.nii.gz"))
        else:
            from test_prostatex import write_series

            write_series(root / f"case{i:02d}" / "study" / "series", array.astype(np.int16), "t1_map", f"P{i}",
                         spacing=(0.8, 0.8, 0.8))


def one_pass(root: Path, spec: str, pairs: bool) -> tuple[float, int]:
    """Seconds and slices for one pass over every case of every split."""
    from srbench.plugins import reset
    from srbench.runner import make_degradation, prepare, training_pairs
    from srbench_datasets.folder import FolderDataset

    reset()

    class Method:  # the training-pair path needs only the method's interpolator
        input_interpolator = "bspline"

    t0 = time.perf_counter()
    dataset = FolderDataset(root=str(root))
    _, degradation = make_degradation(spec)
    n = 0
    for split in dataset.manifest().splits:
        if pairs:
            n += len(training_pairs(dataset, split, degradation, Method(), 0).case_ids)
        else:
            for case in dataset.cases(split):
                n += len(prepare(case, degradation, 0).slices)
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--degradation", default="brain-t1map")
    parser.add_argument("--out", type=Path, default=Path("data_loading.json"))
    args = parser.parse_args()

    results = {"format": args.format, "volumes": args.volumes, "slices_per_volume": args.slices,
               "matrix": args.size, "degradation": args.degradation, "cpu": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "python": platform.python_version(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data, cache = Path(tmp) / "data", Path(tmp) / "cache"
        data.mkdir()
        write_set(data, args.format, args.volumes, args.slices, args.size)
        os.environ["SRBENCH_CACHE"] = "off"
        one_pass(data, args.degradation, False)  # warm-up: imports, the OS page cache of the files
        for path, label in ((False, "prepare"), (True, "training_pairs")):
            os.environ["SRBENCH_CACHE"] = "off"
            off_s, n = one_pass(data, args.degradation, path)
            os.environ["SRBENCH_CACHE"] = str(cache / label)
            cold_s, _ = one_pass(data, args.degradation, path)
            cached_s, _ = one_pass(data, args.degradation, path)
            size = sum(f.stat().st_size for f in (cache / label).rglob("*") if f.is_file())
            results["runs"][label] = {
                "slices": n, "no_cache_s": off_s, "cold_s": cold_s, "cached_s": cached_s,
                "slices_per_s": {"no_cache": n / off_s, "cold": n / cold_s, "cached": n / cached_s},
                "speedup_cached_vs_no_cache": off_s / cached_s, "cache_bytes": size}
    for label, r in results["runs"].items():
        s = r["slices_per_s"]
        print(f"{label:15s} {r['slices']} slices: no cache {s['no_cache']:8.1f}/s, cold {s['cold']:8.1f}/s, "
              f"cached {s['cached']:8.1f}/s (x{r['speedup_cached_vs_no_cache']:.1f}); "
              f"cache {r['cache_bytes'] / 2 ** 20:.0f} MiB")
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
