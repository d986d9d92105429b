"""Calibration of srbench's metrics against independent references, on real MRI slices.

Real slices: axial slices of the MNI152 2009 T1 template that ships inside nilearn's wheel, normalised by the
volume's [min, max] to [0, 1], degraded realistically (anti-aliased x2/x3 downsampling + cubic upsampling,
noise, blur) to get prediction/reference pairs with a spread of qualities.

References (none of them calls piq):
- PSNR: a NumPy float64 transcription (with piq's eps) and skimage.metrics.peak_signal_noise_ratio (no eps).
- SSIM: a NumPy/SciPy transcription of Wang 2004 with 'valid' separable Gaussian filtering and piq's pooling,
  and skimage.metrics.structural_similarity (Gaussian, sigma 1.5, population covariance).
- GMSD: a NumPy/SciPy transcription of Xue 2014 as piq implements it.
- LPIPS: the lpips package called directly (random backbone: plumbing only) and torchvision's AlexNet.
"""

from __future__ import annotations

import hashlib
import math
import socket
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, signal

import srbench.metrics as M
import srbench.scoring as S

# --- tolerance table -----------------------------------------------------------------------------------------
# (metric, reference): (absolute tolerance, reason). The metrics run piq in float32, as the official code does;
# the references run in float64. Measured maxima over the 33 pairs below (233x197, 512x512, even/odd crops),
# piq 0.8.0 / skimage 0.26 / torch 2.14 CPU:
#   PSNR-numpy 2.4e-6 dB, PSNR-skimage 8.6e-4 dB (the eps, bounded above), SSIM-numpy 5.2e-6,
#   SSIM-skimage 5.2e-6, numpy-vs-skimage SSIM 2.3e-15, GMSD-numpy 9.4e-9, LPIPS-lpips 0 (bit-identical),
#   batch-vs-single 7.5e-9 (GMSD; 0 for the others).
TOLERANCES = {
    ("PSNR", "numpy"): (1e-4, "same formula and eps; float32 MSE vs float64 (dB)"),
    ("PSNR", "skimage"): (2e-3, "skimage has no eps: piq's +1e-8 on the MSE lowers PSNR by "
                                "10 log10(1 + 1e-8 / MSE) <= 1.4e-3 dB for PSNR <= 45 dB (all pairs here; asserted)"),
    ("SSIM", "numpy"): (5e-5, "same formula; float32 E[x^2] - E[x]^2 cancellation vs float64"),
    ("SSIM", "skimage"): (5e-5, "skimage filters the whole image (reflect) with the same 11-tap Gaussian "
                                "(truncate 3.5 -> radius 5) then crops 5 px per side: the same valid region as piq, "
                                "so no looser tolerance is needed; float32 vs float64 only. skimage does not pool: "
                                "f > 1 slices are pooled before calling it"),
    ("SSIM", "numpy-vs-skimage"): (1e-10, "the two float64 references must agree with each other"),
    ("GMSD", "numpy"): (1e-6, "same formula; float32 vs float64"),
    ("PSNR", "piq"): (1e-4, "same formula and eps, both float32; the MSE summed in another order (dB)"),
    ("SSIM", "piq"): (1e-5, "same window and constants, both float32; the Gaussian applied as two 1-D passes "
                            "instead of one 2-D kernel (its outer product), so sums round differently"),
    ("GMSD", "piq"): (1e-6, "same pooling, Prewitt kernels and c, both float32; sums in another order"),
    ("LPIPS", "lpips"): (1e-6, "same network and weights, both float32; batch vs. separate calls"),
    ("LPIPS", "torchvision"): (1e-5, "AlexNet trunk activations, float32, relative to their max"),
    ("batch", "single"): (1e-6, "one batch vs image by image: per-image results must not depend on the batch"),
}


def tol(metric: str, reference: str) -> float:
    return TOLERANCES[(metric if metric == "batch" else metric.upper(), reference)][0]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small CPU convolutions run far faster on one thread when the 2 cores are shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- real slices -------------------------------------------------------------------------------------------

MNI = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
AXIAL = (70, 90, 110)  # through the ventricles and cortex


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return ndimage.zoom(img, (shape[0] / img.shape[0], shape[1] / img.shape[1]), order=3, mode="nearest")


def _bicubic(ref: np.ndarray, factor: int) -> np.ndarray:
    """Anti-aliased x`factor` downsampling, cubic upsampling back to the reference grid."""
    lr = ndimage.zoom(ndimage.gaussian_filter(ref, 0.5 * factor), 1 / factor, order=3)
    return np.clip(_resize(lr, ref.shape), 0, 1)


def _noise(ref: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return np.clip(ref + np.random.default_rng(seed).normal(0, sigma, ref.shape), 0, 1)


def _degradations(ref: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    return {
        "bicubic_x2": _bicubic(ref, 2),
        "bicubic_x3": _bicubic(ref, 3),
        "bicubic_x3+noise": _noise(_bicubic(ref, 3), 0.02, seed),
        "blur_1.0": np.clip(ndimage.gaussian_filter(ref, 1.0), 0, 1),
        "noise_0.03": _noise(ref, 0.03, seed + 1),
    }


@pytest.fixture(scope="module")
def slices() -> np.ndarray:
    """Three real axial T1 slices (233 x 197), float64 in [0, 1]."""
    nilearn = pytest.importorskip("nilearn")
    sitk = pytest.importorskip("SimpleITK")
    path = Path(nilearn.__file__).parent / MNI
    if not path.is_file():
        pytest.skip(f"MNI152 template not found in nilearn's wheel at {path}")
    vol = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
    vol = (vol - vol.min()) / (vol.max() - vol.min())
    return vol[list(AXIAL)]


@pytest.fixture(scope="module")
def pairs(slices) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, pred, ref) on the native 233 x 197 grid (SSIM f = 1), on 512 x 512 (f = 2), and on even/odd crops."""
    out = []
    for k, ref in enumerate(slices):
        refs = {"233x197": ref, "512x512": np.clip(_resize(ref, (512, 512)), 0, 1)}
        for grid, r in refs.items():
            for name, p in _degradations(r, seed=10 * k).items():
                out.append((f"z{AXIAL[k]} {grid} {name}", p, r))
    ref = slices[1]
    p = _bicubic(ref, 3)
    out.append(("232x197 crop (even H, odd W)", p[:232], ref[:232]))
    out.append(("233x196 crop (odd H, even W)", p[:, :196], ref[:, :196]))
    out.append(("232x196 crop (even, even)", p[:232, :196], ref[:232, :196]))
    return out


def _score(metric, pred: np.ndarray, ref: np.ndarray) -> float:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
    return float(metric(t(pred), t(ref))[0])


def _f32(a: np.ndarray) -> np.ndarray:
    """What the metrics see: the float32 image (the references get the same values, in float64)."""
    return a.astype(np.float32).astype(np.float64)


def _stack(pairs, shape=(233, 197)):
    """The pairs of one grid as two float32 (N, H, W) stacks."""
    sel = [(p, r) for _, p, r in pairs if r.shape == shape]
    return (np.stack([p for p, _ in sel]).astype(np.float32), np.stack([r for _, r in sel]).astype(np.float32))


def _max_dev(metric, reference, pairs) -> float:
    return max(abs(_score(metric, p, r) - reference(_f32(p), _f32(r))) for _, p, r in pairs)


# --- independent references ----------------------------------------------------------------------------------

def np_psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    return 10 * math.log10(1.0 / (np.mean((pred - ref) ** 2) + 1e-8))


def _avg_pool(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    return a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def ssim_pool_factor(h: int, w: int) -> int:
    return max(1, round(min(h, w) / 256))  # Python round: half to even


def np_ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Wang 2004 mean SSIM, Gaussian 11x11 sigma 1.5, 'valid' filtering, after f x f average pooling."""
    f = ssim_pool_factor(*ref.shape)
    if f > 1:
        pred, ref = _avg_pool(pred, f), _avg_pool(ref, f)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(a):  # separable valid convolution (g is symmetric)
        return signal.convolve2d(signal.convolve2d(a, g[None, :], mode="valid"), g[:, None], mode="valid")

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(pred), filt(ref)
    vx, vy, cxy = filt(pred * pred) - mx**2, filt(ref * ref) - my**2, filt(pred * ref) - mx * my
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def np_gmsd(pred: np.ndarray, ref: np.ndarray) -> float:
    """Xue 2014 GMSD as piq 0.8 computes it (data range 1)."""
    pad = max(ref.shape[0] % 2, ref.shape[1] % 2)  # piq pads both axes when either is odd
    pred, ref = (np.pad(a, ((0, pad), (0, pad))) for a in (pred, ref))
    pred, ref = _avg_pool(pred, 2), _avg_pool(ref, 2)
    px = np.array([[-1.0, 0.0, 1.0]] * 3) / 3

    def grad(a):
        gx = ndimage.correlate(a, px, mode="constant", cval=0.0)
        gy = ndimage.correlate(a, px.T, mode="constant", cval=0.0)
        return np.sqrt(gx**2 + gy**2)

    c = 170 / 255**2
    mp, mr = grad(pred), grad(ref)
    gms = (2 * mp * mr + c) / (mp**2 + mr**2 + c)
    return float(gms.std())  # population SD


def sk_psnr(pred, ref):
    from skimage.metrics import peak_signal_noise_ratio

    return peak_signal_noise_ratio(ref, pred, data_range=1.0)


def sk_ssim(pred, ref):
    from skimage.metrics import structural_similarity

    f = ssim_pool_factor(*ref.shape)
    if f > 1:  # skimage does not pool; give it what piq's SSIM sees after pooling
        pred, ref = _avg_pool(pred, f), _avg_pool(ref, f)
    return structural_similarity(ref, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, K1=0.01, K2=0.03)


# --- calibration -------------------------------------------------------------------------------------------

def test_pairs_span_a_range_of_qualities(pairs):
    psnrs = [np_psnr(_f32(p), _f32(r)) for _, p, r in pairs]
    assert min(psnrs) < 30 and max(psnrs) > 33, psnrs
    # The skimage tolerance for PSNR relies on every pair being at most 45 dB (see TOLERANCES).
    assert max(psnrs) <= 45, psnrs
    ssims = [np_ssim(_f32(p), _f32(r)) for _, p, r in pairs]
    assert max(ssims) - min(ssims) > 0.1, ssims
    assert {ssim_pool_factor(*r.shape) for _, _, r in pairs} == {1, 2}


@pytest.mark.parametrize("reference", ["numpy", "skimage"])
def test_psnr_calibration(pairs, reference):
    ref_fn = {"numpy": np_psnr, "skimage": sk_psnr}[reference]
    assert _max_dev(M.PSNR(), ref_fn, pairs) <= tol("PSNR", reference)


def test_psnr_of_identical_images_is_80_db(slices):
    """piq adds eps = 1e-8 to the MSE: identical images score exactly 10 log10(1e8) = 80 dB, not inf."""
    s = _score(M.PSNR(), slices[0], slices[0])
    assert s == pytest.approx(80.0, abs=1e-4)
    assert M.PSNR.info.value_range == (0.0, 80.0)


@pytest.mark.parametrize("reference", ["numpy", "skimage"])
def test_ssim_calibration(pairs, reference):
    ref_fn = {"numpy": np_ssim, "skimage": sk_ssim}[reference]
    assert _max_dev(M.SSIM(), ref_fn, pairs) <= tol("SSIM", reference)


def test_ssim_pooling_factor_rounds_half_to_even(slices):
    """f = round(min(H, W) / 256) with Python's round: 384 -> 2 (1.5 rounds up), 640 -> 2 (2.5 rounds down)."""
    assert [ssim_pool_factor(n, n) for n in (255, 383, 384, 512, 639, 640, 641)] == [1, 1, 2, 2, 2, 2, 3]
    ref = np.clip(_resize(slices[1], (640, 640)), 0, 1)
    pred = _bicubic(ref, 3)
    ours = _score(M.SSIM(), pred, ref)
    assert abs(ours - np_ssim(_f32(pred), _f32(ref))) <= tol("SSIM", "numpy")
    # ... and it is not the f = 3 value (measured 2.1e-3 away, 40x the tolerance).
    g3 = sk_ssim(_avg_pool(_f32(pred), 3), _avg_pool(_f32(ref), 3))
    assert abs(ours - g3) > 20 * tol("SSIM", "numpy")


def test_gmsd_calibration(pairs):
    assert _max_dev(M.GMSD(), np_gmsd, pairs) <= tol("GMSD", "numpy")


def test_ssim_references_agree_with_each_other(pairs):
    dev = max(abs(np_ssim(_f32(p), _f32(r)) - sk_ssim(_f32(p), _f32(r))) for _, p, r in pairs)
    assert dev <= tol("SSIM", "numpy-vs-skimage")


def test_metrics_are_piq_as_the_official_code_calls_it(pairs):
    """Equal to piq.psnr / ssim / gmsd (what the official code calls) with defaults, data_range=1,
    reduction='none', float32, within the tolerance table; odd and pooled sizes included."""
    import piq

    official = {"psnr": lambda x, y: piq.psnr(x, y, data_range=1.0, reduction="none"),
                "ssim": lambda x, y: piq.ssim(x, y, data_range=1.0, reduction="none"),
                "gmsd": lambda x, y: piq.gmsd(x, y, data_range=1.0, reduction="none")}
    batches = [_stack(pairs)] + [(p[None].astype(np.float32), r[None].astype(np.float32))
                                 for _, p, r in pairs if r.shape != (233, 197)]
    assert len(batches) > 1  # the pairs include other sizes than the first (odd, 512^2 pooled)
    for pred, ref in batches:
        x, y = torch.from_numpy(pred[:, None]), torch.from_numpy(ref[:, None])
        for metric in (M.PSNR(), M.SSIM(), M.GMSD()):
            dev = (metric(x, y) - official[metric.name](x, y).double()).abs().max().item()
            assert dev <= tol(metric.name, "piq"), (metric.name, pred.shape, dev)


# --- conventions ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_lpips():
    return M.LPIPS(random_backbone=True)


def test_batch_equals_single_images(pairs, random_lpips):
    pred, ref = _stack(pairs)
    for metric in (M.PSNR(), M.SSIM(), M.GMSD(), random_lpips):
        batch = metric(torch.from_numpy(pred[:, None]), torch.from_numpy(ref[:, None]))
        assert batch.shape == (len(pred),) and batch.dtype == torch.float64
        single = [_score(metric, p, r) for p, r in zip(pred, ref)]
        np.testing.assert_allclose(batch.numpy(), single, rtol=0, atol=tol("batch", "single"), err_msg=metric.name)
        # Per-image scores do not depend on the other images of the batch (no batch reduction).
        assert len(set(np.round(batch.numpy(), 9))) > 1, metric.name


def test_masks_are_not_applied_inside_metrics(slices, random_lpips):
    ref = slices[1]
    pred = _bicubic(ref, 3)
    mask = ndimage.binary_fill_holes(ref > 0.1)
    assert 0.2 < mask.mean() < 0.9
    pred_bg = pred.copy()
    pred_bg[~mask] = np.clip(pred_bg[~mask] + 0.05, 0, 1)  # change the background only
    for metric in (M.PSNR(), M.SSIM(), M.GMSD(), random_lpips):
        # The background counts: the metric does not mask by itself ...
        assert _score(metric, pred_bg, ref) != pytest.approx(_score(metric, pred, ref), abs=1e-6), metric.name
        # ... and masking before the metric (the scorer's job) removes the difference.
        assert _score(metric, pred_bg * mask, ref * mask) == pytest.approx(_score(metric, pred * mask, ref * mask),
                                                                            abs=1e-9), metric.name
    assert _score(M.PSNR(), pred * mask, ref * mask) == pytest.approx(np_psnr(_f32(pred * mask), _f32(ref * mask)),
                                                                       abs=tol("PSNR", "numpy"))


def test_direction_and_range(slices):
    ref = slices[2]
    better_to_worse = [_noise(ref, s, seed=3) for s in (0.005, 0.02, 0.08, 0.2)]
    bicubic = [_bicubic(ref, 2), _bicubic(ref, 3), _bicubic(ref, 4)]
    for metric in (M.PSNR(), M.SSIM(), M.GMSD()):
        lo, hi = metric.info.value_range
        for series in (better_to_worse, bicubic):
            scores = [_score(metric, p, ref) for p in series]
            assert all(lo <= s <= hi for s in scores), (metric.name, scores)
            ordered = scores if metric.direction == "higher" else [-s for s in scores]
            assert ordered == sorted(ordered, reverse=True), (metric.name, scores)
        perfect = _score(metric, ref, ref)
        assert perfect == pytest.approx({"psnr": 80.0, "ssim": 1.0, "gmsd": 0.0}[metric.name], abs=1e-6)
    assert [m.info.direction for m in (M.PSNR, M.SSIM, M.GMSD, M.LPIPS)] == ["higher", "higher", "lower", "lower"]


def test_out_of_range_inputs_are_rejected(slices):
    ref = torch.from_numpy(slices[0].astype(np.float32))[None, None]
    for bad in (ref + 0.5, ref - 0.5, ref * float("nan")):
        for metric in (M.PSNR(), M.SSIM(), M.GMSD()):
            with pytest.raises(ValueError, match=r"\[0, 1\]"):
                metric(bad, ref)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_device_handling(pairs, random_lpips, device):
    pred, ref = _stack(pairs)
    cpu = S.score_slices(pred, ref, [M.PSNR, M.SSIM, M.GMSD, random_lpips], device="cpu")
    out = S.score_slices(pred, ref, [M.PSNR, M.SSIM, M.GMSD, random_lpips], device=device)
    for name in cpu:
        np.testing.assert_allclose(out[name], cpu[name], rtol=0, atol=1e-5, err_msg=name)
    x = torch.from_numpy(pred[:2, None]).to(device)
    assert random_lpips(x, x).device.type == device
    assert any(d.split(":")[0] == device for _, d in M._LPIPS_NETS)  # the network was cached per device


# --- score_slices and aggregate ------------------------------------------------------------------------------

def test_score_slices(pairs, tmp_path):
    pred, ref = _stack(pairs)
    unavailable = M.LPIPS(weights_path=tmp_path / "missing.pth")
    out = S.score_slices(pred, ref, [M.PSNR, M.SSIM(), M.GMSD, unavailable], batch_size=4)
    assert list(out) == ["psnr", "ssim", "gmsd", "lpips"] and out["lpips"] is None
    for name, fn in (("psnr", np_psnr), ("ssim", np_ssim), ("gmsd", np_gmsd)):
        assert out[name].shape == (len(pred),) and out[name].dtype == np.float64
        np.testing.assert_allclose(out[name], [fn(_f32(p), _f32(r)) for p, r in zip(pred, ref)],
                                   rtol=0, atol=tol(name, "numpy"), err_msg=name)
    # Batch size does not change the numbers.
    one = S.score_slices(pred, ref, [M.PSNR, M.SSIM, M.GMSD], batch_size=1)
    for name in one:
        np.testing.assert_allclose(one[name], out[name], rtol=0, atol=tol("batch", "single"))
    # pred is clipped to [0, 1] first: an overshoot scores like its clipped version.
    overshoot = pred.copy()
    overshoot[:, 100:110, 90:100] = 1.7
    overshoot[:, 0:5, 0:5] = -0.3
    a = S.score_slices(overshoot, ref, [M.PSNR, M.SSIM])
    b = S.score_slices(np.clip(overshoot, 0, 1), ref, [M.PSNR, M.SSIM])
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    bad = pred.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="prediction must be finite"):
        S.score_slices(bad, ref, [M.PSNR])
    with pytest.raises(ValueError, match=r"reference must be finite and in \[0, 1\]"):
        S.score_slices(pred, ref * 2, [M.PSNR])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        S.score_slices(pred[0], ref[0], [M.PSNR])


def test_aggregate_mean_and_sample_sd():
    values = [31.2, 29.8, 33.1, 30.4]
    mean, sd = S.aggregate(values)
    assert mean == pytest.approx(statistics.mean(values), abs=1e-12)
    assert sd == pytest.approx(statistics.stdev(values), abs=1e-12)  # sample SD, n - 1
    assert sd != pytest.approx(statistics.pstdev(values), abs=1e-6)
    mean, sd = S.aggregate(np.array([0.9]))
    assert mean == 0.9 and math.isnan(sd)
    with pytest.raises(ValueError):
        S.aggregate([])
    with pytest.raises(ValueError):
        S.aggregate([1.0, float("nan")])


# --- LPIPS ---------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Every test here runs offline: any attempt to download (torch.hub or a socket) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"attempted a download: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
def test_lpips_random_backbone_matches_lpips_package(pairs, random_lpips):
    import lpips

    pred, ref = _stack(pairs)
    pred, ref = torch.from_numpy(pred[:, None]), torch.from_numpy(ref[:, None])
    ours = random_lpips(pred, ref)
    assert ours.shape == (len(pred),)
    net = random_lpips.network("cpu")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    direct = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    direct.load_state_dict(net.state_dict())
    with torch.no_grad():
        # grey -> 3 channels; normalize=True is lpips's own [0, 1] -> [-1, 1] mapping.
        expected = direct(pred.repeat(1, 3, 1, 1), ref.repeat(1, 3, 1, 1), normalize=True).reshape(-1)
    np.testing.assert_allclose(ours.numpy(), expected.double().numpy(), rtol=0, atol=tol("LPIPS", "lpips"))
    # Identical images: distance 0; and the distance is symmetric.
    assert float(random_lpips(ref, ref).abs().max()) < 1e-7
    np.testing.assert_allclose(random_lpips(ref, pred).numpy(), ours.numpy(), rtol=0, atol=1e-6)
    # The random backbone can never pass for LPIPS.
    assert random_lpips.name != "lpips" and random_lpips.unavailable_reason() is None


def test_lpips_linear_layers_are_the_wheels_v01_weights(random_lpips):
    import lpips

    wheel = Path(lpips.__file__).parent / "weights/v0.1/alex.pth"
    state = torch.load(wheel, map_location="cpu", weights_only=True)
    ours = random_lpips.network("cpu").state_dict()
    assert len(state) == 5
    for k, v in state.items():
        assert torch.equal(ours[k], v), k


def test_lpips_without_weights_is_unavailable(monkeypatch, tmp_path, slices):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    metric = M.LPIPS()
    expected_path = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert metric.weights_path == expected_path == M.alexnet_weights_path()
    reason = metric.unavailable_reason()
    assert reason == (f"LPIPS unavailable: AlexNet ImageNet weights not found at {expected_path}; "
                      f"download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth to that path, then rerun.")
    assert "\n" not in reason
    nets_before = dict(M._LPIPS_NETS)
    x = torch.from_numpy(slices[:2, None].astype(np.float32))
    with pytest.raises(M.MetricUnavailable, match="LPIPS unavailable"):
        metric(x, x)
    assert S.score_slices(slices[:2], slices[:2], [metric, M.PSNR])["lpips"] is None
    assert M._LPIPS_NETS == nets_before  # no network was built
    assert not expected_path.exists()


@pytest.fixture(scope="module")
def fake_alexnet(tmp_path_factory):
    """A random AlexNet trunk saved under torchvision's cache file name (features only, to keep it small)."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = torchvision.models.alexnet(weights=None)
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir()
    torch.save({k: v for k, v in model.state_dict().items() if k.startswith("features.")}, path)
    return model.eval(), path


def test_lpips_with_wrong_file_is_unavailable(fake_alexnet):
    _, path = fake_alexnet
    reason = M.LPIPS(weights_path=path).unavailable_reason()
    assert reason is not None and reason.startswith(f"LPIPS unavailable: {path} is not torchvision's AlexNet")
    assert "\n" not in reason


def test_lpips_loads_cached_alexnet_weights_into_the_trunk(monkeypatch, fake_alexnet, slices):
    """With a file in the cache, the trunk is exactly torchvision's AlexNet with those weights."""
    model, path = fake_alexnet
    monkeypatch.setattr(M, "_LPIPS_NETS", {})  # keep these fake weights out of the shared cache
    monkeypatch.setattr(M, "ALEXNET_SHA256_PREFIX", hashlib.sha256(path.read_bytes()).hexdigest()[:8])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(path.parent.parent))
    metric = M.LPIPS()
    assert metric.unavailable_reason() is None and metric.name == "lpips"
    x = torch.from_numpy(slices[:2, None].astype(np.float32)).repeat(1, 3, 1, 1) * 2 - 1
    with torch.no_grad():
        trunk = metric.network("cpu").net(x)
        h, expected = x, []
        for i, layer in enumerate(model.features):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):  # relu1 ... relu5, the layers LPIPS compares
                expected.append(h)
    for ours, theirs in zip(trunk, expected, strict=True):
        assert float((ours - theirs).abs().max()) <= tol("LPIPS", "torchvision") * float(theirs.abs().max())
    ref = torch.from_numpy(slices[:2, None].astype(np.float32))
    pred = torch.from_numpy(np.stack([_bicubic(s, 3) for s in slices[:2]])[:, None].astype(np.float32))
    scores = metric(pred, ref)
    assert scores.shape == (2,) and bool((scores > 0).all())
