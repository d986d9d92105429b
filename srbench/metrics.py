"""srbench's built-in metrics: PSNR, SSIM, GMSD and LPIPS, as the official Res-SRDiff code computes them.

Conventions shared by all four (checked against independent references in tests/test_metrics_calibration.py):

- Inputs are ``(N, 1, H, W)`` batches with intensities in [0, 1]: data range 1. Values outside [0, 1] or
  non-finite are an error, never silently clipped here; :func:`score_slices` clips predictions to [0, 1] first.
- One score per image (slice), never a batch mean or sum (the official code sums LPIPS over its batch).
- No metric applies a mask. The scorer multiplies both images by the mask before a metric sees them, so the
  background inside the image counts like every other pixel.
- PSNR, SSIM and GMSD are piq 0.8 called as the official code calls it, in float32 (float64 CPU convolutions
  are ~20x slower). On real MRI slices float32 differs from float64 NumPy references by < 1e-5 dB (PSNR),
  < 1e-5 (SSIM) and < 1e-7 (GMSD).
- LPIPS runs the lpips package's network in float32, under ``torch.no_grad``, in eval mode.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import piq
import torch

from .errors import SRBenchError
from .metric import HIGHER, LOWER, Metric, MetricInfo

__all__ = [
    "PSNR", "SSIM", "GMSD", "LPIPS", "BUILTIN_METRICS", "MetricUnavailable",
    "ALEXNET_URL", "alexnet_weights_path", "score_slices", "aggregate",
]

GMSD_T = 170 / 255**2  # Xue 2014's c = 170 for [0, 255] images, rescaled to data range 1 (piq's default)


class MetricUnavailable(SRBenchError):
    """A metric cannot be computed here (e.g. missing weights); the message is the one-line fix."""


def _check_unit_range(metric: str, **tensors: torch.Tensor) -> None:
    for which, t in tensors.items():
        if not bool(torch.isfinite(t).all()) or float(t.min()) < 0.0 or float(t.max()) > 1.0:
            raise ValueError(f"{metric}: {which} must be finite and in [0, 1] (data range 1); "
                             f"got min {float(t.min()):.4g}, max {float(t.max()):.4g}")


class PSNR(Metric):
    """Peak signal-to-noise ratio over the whole image (piq.psnr, data range 1, reduction 'none')."""

    info = MetricInfo(
        name="psnr", direction=HIGHER, value_range=(0.0, 80.0), digits=2,
        definition="10 log10(1 / (MSE + 1e-8)) dB per image, data range 1 (piq.psnr); identical images give 80 dB",
    )

    def compute(self, pred, ref):
        _check_unit_range(self.name, pred=pred, ref=ref)
        # piq adds eps = 1e-8 to the MSE: identical images score 10 log10(1e8) = 80 dB, not inf, and every
        # PSNR is lowered by 10 log10(1 + 1e-8 / MSE) (<= 4.3e-4 dB below 40 dB). MSE <= 1, so PSNR >= 0.
        return piq.psnr(pred, ref, data_range=1.0, reduction="none")


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
        _check_unit_range(self.name, pred=pred, ref=ref)
        # downsample=True is piq's default; stated so the pooling above is visibly the one computed.
        return piq.ssim(pred, ref, kernel_size=11, kernel_sigma=1.5, data_range=1.0, reduction="none",
                        downsample=True, k1=0.01, k2=0.03)


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
        _check_unit_range(self.name, pred=pred, ref=ref)
        return piq.gmsd(pred, ref, data_range=1.0, reduction="none", t=GMSD_T)


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
        _check_unit_range(self.name, pred=pred, ref=ref)
        with torch.no_grad():
            x = pred.repeat(1, 3, 1, 1) * 2 - 1
            y = ref.repeat(1, 3, 1, 1) * 2 - 1
            return net(x, y).reshape(-1)  # (N, 1, 1, 1) spatial average -> (N,)


BUILTIN_METRICS = [PSNR, SSIM, GMSD, LPIPS]


# --- scoring stacks of slices --------------------------------------------------------------------------------

def score_slices(pred: np.ndarray, ref: np.ndarray, metrics, batch_size: int = 32,
                 device: str | torch.device = "cpu") -> dict[str, np.ndarray | None]:
    """Score stacks of slices ``(N, H, W)``: ``{metric name: (N,) float64 array}``.

    ``ref`` must already be in [0, 1]; ``pred`` is clipped to [0, 1] first (a NaN or inf in either is an error).
    ``metrics`` holds Metric instances or classes. A metric whose ``unavailable_reason()`` is not None is
    skipped: its entry is None (ask the metric for the reason). Masking, if any, is the caller's: multiply
    both stacks by the mask before calling.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.ndim != 3 or pred.shape != ref.shape:
        raise ValueError(f"score_slices: expected two (N, H, W) stacks of one shape, got {pred.shape} and {ref.shape}")
    if len(pred) == 0:
        raise ValueError("score_slices: no slices")
    for which, a in (("pred", pred), ("ref", ref)):
        if not np.isfinite(a).all():
            raise ValueError(f"score_slices: {which} has {int((~np.isfinite(a)).sum())} non-finite values")
    if ref.min() < 0 or ref.max() > 1:
        raise ValueError(f"score_slices: ref must be in [0, 1]; got [{ref.min():.4g}, {ref.max():.4g}]")
    if batch_size < 1:
        raise ValueError("score_slices: batch_size must be >= 1")
    pred = np.clip(pred, 0.0, 1.0).astype(np.float32)
    ref = ref.astype(np.float32)
    device = torch.device(device)

    instances = [m() if isinstance(m, type) else m for m in metrics]
    names = [m.name for m in instances]
    if len(set(names)) != len(names):
        raise ValueError(f"score_slices: duplicate metric names {names}")
    out: dict[str, np.ndarray | None] = {}
    available = []
    for m in instances:
        if m.unavailable_reason() is None:
            available.append(m)
            out[m.name] = np.empty(len(pred), dtype=np.float64)
        else:
            out[m.name] = None
    with torch.no_grad():
        for start in range(0, len(pred), batch_size):
            stop = min(start + batch_size, len(pred))
            p = torch.from_numpy(pred[start:stop, None]).to(device)
            r = torch.from_numpy(ref[start:stop, None]).to(device)
            for m in available:
                out[m.name][start:stop] = m(p, r).cpu().numpy()
    return out


def aggregate(values) -> tuple[float, float]:
    """``(mean, SD)`` of per-slice or per-volume scores, for "mean ± SD" tables.

    SD is the sample standard deviation (ddof = 1, the n - 1 denominator), the usual convention of
    mean ± SD in papers; it is NaN when there is one value (undefined, not 0). Empty input or a non-finite
    value is an error.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("aggregate: no values")
    if not np.isfinite(a).all():
        raise ValueError(f"aggregate: {int((~np.isfinite(a)).sum())} non-finite values")
    std = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return float(np.mean(a)), std
