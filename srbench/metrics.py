"""srbench's built-in metrics: PSNR, SSIM, GMSD and LPIPS, as the official Res-SRDiff code computes them.

Conventions shared by all four (checked against independent references in tests/test_metrics_calibration.py):

- Inputs are ``(N, 1, H, W)`` float32 batches with intensities in [0, 1]: data range 1, checked once by the
  interface (:func:`srbench.metric.check_batch`), never silently clipped here; the scorer clips predictions.
- One score per image (slice), never a batch mean or sum (the official code sums LPIPS over its batch).
- No metric applies a mask. The scorer multiplies both images by the mask before a metric sees them, so the
  background inside the image counts like every other pixel.
- PSNR, SSIM and GMSD are the formulas of piq 0.8 (which the official code calls), written out here in float32
  so that each convention is visible and a batch is computed in one pass: equal to piq within the calibration
  tolerances (< 1e-5 dB, < 1e-5, < 1e-6), and to float64 NumPy references within the same.
- LPIPS runs the lpips package's network in float32, under ``torch.no_grad``, in eval mode.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from .metric import HIGHER, LOWER, Metric, MetricInfo, MetricUnavailable

__all__ = ["PSNR", "SSIM", "GMSD", "LPIPS", "BUILTIN_METRICS", "MetricUnavailable", "ALEXNET_URL",
           "alexnet_weights_path"]

PSNR_EPS = 1e-8  # piq adds it to the MSE: identical images score 10 log10(1e8) = 80 dB, not inf
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
GMSD_T = 170 / 255**2  # Xue 2014's c = 170 for [0, 255] images, rescaled to data range 1 (piq's default)


class PSNR(Metric):
    """Peak signal-to-noise ratio over the whole image: 10 log10(1 / (MSE + 1e-8)), data range 1 (as piq.psnr)."""

    info = MetricInfo(
        name="psnr", direction=HIGHER, value_range=(0.0, 80.0), digits=2,
        definition="10 log10(1 / (MSE + 1e-8)) dB per image, data range 1 (piq.psnr); identical images give 80 dB",
    )

    def compute(self, pred, ref):
        # The eps lowers every PSNR by 10 log10(1 + 1e-8 / MSE) (<= 4.3e-4 dB below 40 dB). MSE <= 1: PSNR >= 0.
        mse = (pred - ref).square().mean(dim=(1, 2, 3))
        return -10 * torch.log10(mse + PSNR_EPS)


class SSIM(Metric):
    """Mean structural similarity, Wang et al. 2004, exactly as piq.ssim (piq 0.8) computes it.

    - average-pool both images by f x f (stride f, remainder rows/columns dropped) when
      f = max(1, round(min(H, W) / 256)) > 1; Python's round halves to even (384 -> 2, 640 -> 2);
    - 11 x 11 Gaussian window, sigma 1.5, normalised to sum 1; 'valid' filtering (no padding), so the
      SSIM map is (H' - 10) x (W' - 10);
    - population (co)variances: sigma_xy = E_w[xy] - mu_x mu_y; C1 = (0.01)^2, C2 = (0.03)^2;
    - score = mean of the SSIM map.
    """

    info = MetricInfo(
        name="ssim", direction=HIGHER, value_range=(-1.0, 1.0),
        definition=("Wang 2004 mean SSIM: 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, valid filtering, "
                    "after f x f average pooling, f = max(1, round(min(H, W) / 256)) (piq.ssim)"),
    )

    def compute(self, pred, ref):
        f = max(1, round(min(pred.shape[-2:]) / 256))
        if f > 1:
            pred, ref = F.avg_pool2d(pred, f), F.avg_pool2d(ref, f)
        # The five local moments in one filtering pass: E[x], E[y], E[x^2], E[y^2], E[xy].
        mu_x, mu_y, e_xx, e_yy, e_xy = gaussian_valid(torch.cat([pred, ref, pred * pred, ref * ref, pred * ref], 1))
        c1, c2 = SSIM_K1**2, SSIM_K2**2
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        cs = (2 * (e_xy - mu_xy) + c2) / ((e_xx - mu_xx) + (e_yy - mu_yy) + c2)
        return ((2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs).mean(dim=(-2, -1))


def gaussian_valid(maps: torch.Tensor) -> torch.Tensor:
    """The 11 x 11 Gaussian window (sigma 1.5) over each ``(H, W)`` map of ``maps`` ``(N, C, H, W)``, 'valid'
    (no padding): ``(C, N, H - 10, W - 10)``.

    Written by hand because it is most of the scoring time: the window is separable (piq's 2-D kernel is the
    outer product of this 1-D one, normalised), and both 1-D passes run as products with a banded matrix, on
    the BLAS, which on CPU is several times faster than piq's 2-D convolution of a one-channel image (measured
    in benchmarks/scoring_speed.py). Each pass is cut into strips of ``STRIP`` outputs, each a product of a
    strided view (no copy) with a (STRIP + 10, STRIP) band: the multiplications by the band's zeros fall from
    W per output to STRIP + 10 (measured 1.9x faster than one full band at 256^2).
    """
    h, w = maps.shape[-2:]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window")
    halo = SSIM_WINDOW - 1
    x = torch.cat([maps[..., s:e + halo] @ _band(e - s + halo, maps.device, maps.dtype)
                   for s, e in _strips(w - halo)], -1)
    x = torch.cat([_band(e - s + halo, maps.device, maps.dtype).transpose(0, 1) @ x[..., s:e + halo, :]
                   for s, e in _strips(h - halo)], -2)
    return x.transpose(0, 1)


STRIP = 48  # outputs per strip of the banded products: fewer wasted multiplications vs more, smaller products


def _strips(n: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of about ``STRIP`` outputs, of equal width, covering ``range(n)``."""
    width = -(-n // -(-n // STRIP))
    return [(s, min(s + width, n)) for s in range(0, n, width)]


@functools.lru_cache(maxsize=16)
def _band(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, n - 10): column j holds the normalised 1-D Gaussian at rows j..j+10 (valid correlation)."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    band = torch.zeros(n, n - SSIM_WINDOW + 1, dtype=torch.float64)
    for j in range(n - SSIM_WINDOW + 1):
        band[j:j + SSIM_WINDOW, j] = g
    return band.to(device=device, dtype=dtype)


class GMSD(Metric):
    """Gradient magnitude similarity deviation, Xue et al. 2014, exactly as piq.gmsd (piq 0.8) computes it.

    - if H or W is odd, one zero row AND one zero column are appended (piq pads both when either is odd);
      then 2 x 2 average pooling, stride 2 (a trailing odd row/column is dropped);
    - gradients: Prewitt kernels [[-1, 0, 1]] * 3 rows / 3 and its transpose, zero padding 1 (same size);
      magnitude m = sqrt(gx^2 + gy^2);
    - GMS = (2 m_ref m_pred + c) / (m_ref^2 + m_pred^2 + c), c = 170 / 255^2;
    - score = population standard deviation of the GMS map (all pixels, borders included).
    GMS lies in (0, 1], so the score lies in [0, 0.5].
    """

    info = MetricInfo(
        name="gmsd", direction=LOWER, value_range=(0.0, 0.5),
        definition=("Xue 2014: 2x2 average pooling, Prewitt/3 gradient magnitudes, GMS with c = 170/255^2, "
                    "score = population SD of the GMS map (piq.gmsd)"),
    )

    def compute(self, pred, ref):
        odd = max(pred.shape[-2] % 2, pred.shape[-1] % 2)
        both = F.avg_pool2d(F.pad(torch.cat([pred, ref], 1), [0, odd, 0, odd]), 2)
        m_pred, m_ref = prewitt_magnitude(both).unbind(1)
        gms = (2 * m_pred * m_ref + GMSD_T) / (m_pred.square() + m_ref.square() + GMSD_T)
        return gms.flatten(1).std(dim=1, correction=0)


def prewitt_magnitude(x: torch.Tensor) -> torch.Tensor:
    """sqrt(gx^2 + gy^2) of each map of ``x`` (N, C, H, W), Prewitt / 3 with zero padding 1 (piq's gradient_map):
    gx = (sum of the 3 pixels one column right - sum of the 3 one column left) / 3, gy likewise by rows."""
    p = F.pad(x, [1, 1, 1, 1])
    h, w = x.shape[-2:]
    across_rows = p[..., 0:h, :] + p[..., 1:h + 1, :] + p[..., 2:h + 2, :]   # (N, C, H, W + 2)
    across_cols = p[..., 0:w] + p[..., 1:w + 1] + p[..., 2:w + 2]             # (N, C, H + 2, W)
    gx = (across_rows[..., 2:] - across_rows[..., :-2]) / 3
    gy = (across_cols[..., 2:, :] - across_cols[..., :-2, :]) / 3
    return torch.sqrt(gx.square() + gy.square())


# --- LPIPS -------------------------------------------------------------------------------------------------

# torchvision's AlexNet ImageNet weights (AlexNet_Weights.IMAGENET1K_V1). torch.hub caches them as
# torch.hub.get_dir()/checkpoints/<file name of the URL>; the "7be5be79" in the name is the start of the
# file's SHA-256, which torch checks only when it downloads. srbench never downloads; it checks the hash of
# the cached file once per process (about a second) so that a wrong file cannot give plausible numbers.
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_SHA256_PREFIX = "7be5be79"

_SHA256: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex digest
_LPIPS_NETS: dict[tuple[str, str], torch.nn.Module] = {}  # (weights source, device) -> network


def alexnet_weights_path() -> Path:
    """Where torchvision looks for (and would download) the AlexNet ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(ALEXNET_URL).path).name


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def _build_lpips(weights: Path | None) -> torch.nn.Module:
    """lpips v0.1 AlexNet network on CPU; random trunk (seeded) when ``weights`` is None."""
    import lpips

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # lpips passes pretrained= to torchvision, which warns that the argument is deprecated.
        warnings.filterwarnings("ignore", message=r"(The parameter 'pretrained'|Arguments other than a weight)",
                                category=UserWarning)
        torch.manual_seed(0)
        # pnet_rand=True always: lpips then builds the trunk with torchvision's pretrained=False, which never
        # downloads. pretrained=True loads the v0.1 linear layers that ship inside the lpips wheel.
        net = lpips.LPIPS(net="alex", version="0.1", lpips=True, pretrained=True, pnet_rand=True, verbose=False)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        # lpips keeps torchvision's features[i] as net.slice<k>.<i>: map "slice2.3.weight" <- "features.3.weight".
        trunk = {name: state["features." + name.split(".", 1)[1]] for name in net.net.state_dict()}
        net.net.load_state_dict(trunk, strict=True)
    return net.eval().requires_grad_(False)


class LPIPS(Metric):
    """Learned perceptual image patch similarity (Zhang et al. 2018), lpips package, AlexNet trunk, v0.1.

    Grey images are repeated to 3 channels and mapped from [0, 1] to [-1, 1] (2x - 1), as lpips expects;
    one distance per image. The AlexNet ImageNet weights must already be in torchvision's cache (see
    :func:`alexnet_weights_path`); without them the metric is unavailable, never computed from random weights.

    ``LPIPS(random_backbone=True)`` uses a seeded random AlexNet trunk: for plumbing tests only. Its name is
    ``LPIPS[random-backbone]`` so its numbers can never pass for LPIPS.
    """

    info = MetricInfo(
        name="lpips", direction=LOWER, value_range=(0.0, math.inf),
        definition=("Zhang 2018 LPIPS v0.1, AlexNet (ImageNet) trunk, lpips linear layers; grey repeated to "
                    "3 channels, [0, 1] mapped to [-1, 1]; one value per image"),
    )

    def __init__(self, random_backbone: bool = False, weights_path: str | Path | None = None):
        self.random_backbone = random_backbone
        self._weights_path = None if weights_path is None else Path(weights_path)
        if random_backbone:
            self.info = MetricInfo(name="lpips[random-backbone]", direction=LOWER, value_range=(0.0, math.inf),
                                   definition="LPIPS with a random AlexNet trunk: plumbing tests only, meaningless")

    @property
    def weights_path(self) -> Path:
        return self._weights_path if self._weights_path is not None else alexnet_weights_path()

    def unavailable_reason(self) -> str | None:
        if self.random_backbone:
            return None
        path = self.weights_path
        if not path.is_file():
            return (f"LPIPS unavailable: AlexNet ImageNet weights not found at {path}; "
                    f"download {ALEXNET_URL} to that path, then rerun.")
        digest = _sha256(path)
        if not digest.startswith(ALEXNET_SHA256_PREFIX):
            return (f"LPIPS unavailable: {path} is not torchvision's AlexNet ImageNet file (SHA-256 {digest[:8]}..., "
                    f"expected {ALEXNET_SHA256_PREFIX}...); replace it with {ALEXNET_URL}.")
        return None

    def network(self, device: torch.device | str) -> torch.nn.Module:
        """The lpips network on ``device``, built once per weights source and device."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise MetricUnavailable(reason)
        source = "random" if self.random_backbone else str(self.weights_path.resolve())
        key = (source, str(torch.device(device)))
        if key not in _LPIPS_NETS:
            _LPIPS_NETS[key] = _build_lpips(None if self.random_backbone else self.weights_path).to(device)
        return _LPIPS_NETS[key]

    def compute(self, pred, ref):
        net = self.network(pred.device)  # raises MetricUnavailable before any number exists
        with torch.no_grad():
            x = pred.repeat(1, 3, 1, 1) * 2 - 1
            y = ref.repeat(1, 3, 1, 1) * 2 - 1
            return net(x, y).reshape(-1)  # (N, 1, 1, 1) spatial average -> (N,)


BUILTIN_METRICS = [PSNR, SSIM, GMSD, LPIPS]
