"""Res-SRDiff on CUDA (skipped without a GPU; benchmarks/gpu.sh runs it): exact fp32, bf16 close to it, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import srbench_plugins.res_srdiff as rs
from srbench_plugins.res_srdiff.conformance import build_model, load_vectors

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "res_srdiff"
WEIGHTS = Path(rs.__file__).parent / "weights" / "demo-tiny.safetensors"


@pytest.mark.skipif(not VECTORS.is_dir(), reason="conformance vectors not found")
def test_network_forward_on_cuda_matches_the_official_vectors_in_fp32():
    v = load_vectors(VECTORS)
    model = build_model(v["config"], v["weights"]).cuda().to(memory_format=torch.channels_last)
    f = v["forward"]
    cudnn = torch.backends.cudnn
    with torch.no_grad(), cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        out = model(f["x_t"].cuda(), f["t"].cuda(), lq=f["lq"].cuda()).cpu()
    assert (out - f["out"]).abs().max().item() <= 1e-4


def _method(precision, device):
    method = rs.ResSRDiff(preset="tiny", device=device, seed=0, precision=precision)
    if WEIGHTS.exists():
        method.load(WEIGHTS)
    return method


def test_cuda_fp32_prediction_equals_cpu_for_the_same_seed():
    lr = torch.rand(2, 1, 96, 80, generator=torch.Generator().manual_seed(0))
    cpu = _method("fp32", "cpu").predict_slices(lr, torch.Generator().manual_seed(3))
    gpu = _method("fp32", "cuda").predict_slices(lr.cuda(), torch.Generator().manual_seed(3)).cpu()
    assert (cpu - gpu).abs().max().item() <= 1e-3


def test_cuda_bf16_prediction_is_close_to_fp32():
    lr = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(0)).cuda()
    exact = _method("fp32", "cuda").predict_slices(lr, torch.Generator().manual_seed(3))
    fast = _method("bf16", "cuda")
    assert fast.settings["inference"]["precision"] == "bf16" and fast.batch_size == 16
    out = fast.predict_slices(lr, torch.Generator().manual_seed(3))
    assert torch.isfinite(out).all() and 0 < (out - exact).abs().mean().item() < 0.02
