"""Rician noise at a given SNR: the noise of a magnitude MRI image.

A magnitude image is |signal + n_re + i n_im| with n_re, n_im independent zero-mean Gaussians of standard
deviation sigma (the noise of each k-space channel after the inverse FFT). ``RicianNoise`` draws them seeded and
returns sqrt((x + n_re)^2 + n_im^2) on the input's grid.

**SNR definition** (recorded in ``params()``): SNR = S / sigma, with S the reference signal:

* ``reference="foreground"`` (default): S is the mean intensity of the foreground, the voxels above the Otsu
  threshold of the input (SimpleITK's ``OtsuThresholdImageFilter``, 256 bins);
* ``reference="max"``: S is the maximum intensity of the input.

Or give ``sigma`` directly (in the input's intensity units; after the runner's normalisation, a fraction of the
HR range). The runner calls degradations with a per-case seed (``case_seed``), so cases get independent noise
and a case gets the same noise in every run with the same seed.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import SimpleITK as sitk

from .degradation import Degradation
from .errors import SRBenchError

REFERENCES = ("foreground", "max")
SEED_RULE = "per case: int(sha256(f'{seed}:{case_id}')[:8], 16), from the run seed"


def case_seed(seed: int, case_id: str) -> int:
    """The seed a degradation gets for one case of a run (independent noise per case, reproducible)."""
    return int(hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()[:8], 16)


# Declared ranges: an SNR past 1000 is no noise at all; sigma is in the runner's normalised units (HR range 1).
SNR_MAX, SIGMA_MAX = 1000.0, 1.0


def _positive(what: str, value, most: float) -> float:
    problem = f"noise: {what} must be a positive number up to {most:g}, got {value!r}"
    if isinstance(value, bool):
        raise SRBenchError(problem)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SRBenchError(problem) from None
    if not (math.isfinite(out) and 0 < out <= most):
        raise SRBenchError(problem)
    return out


def reference_signal(array: np.ndarray, reference: str) -> float:
    """S of the SNR definition: mean over the Otsu foreground, or the maximum."""
    if reference == "max":
        signal = float(array.max())
    else:
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.SetNumberOfHistogramBins(256)
        otsu.Execute(sitk.GetImageFromArray(array.astype(np.float32)))
        foreground = array > otsu.GetThreshold()
        signal = float(array[foreground].mean()) if foreground.any() else float(array.max())
    if not (math.isfinite(signal) and signal > 0):
        raise SRBenchError(f"noise: the reference signal ({reference}) is {signal}; cannot set an SNR")
    return signal


class RicianNoise(Degradation):
    """Rician noise: ``snr`` (S / sigma, S per ``reference``) or ``sigma``; the grid is unchanged."""

    name = "noise"

    def __init__(self, snr=None, sigma=None, reference: str = "foreground"):
        if (snr is None) == (sigma is None):
            raise SRBenchError("noise: give exactly one of snr or sigma")
        self.snr = _positive("snr", snr, SNR_MAX) if snr is not None else None
        self.sigma = _positive("sigma", sigma, SIGMA_MAX) if sigma is not None else None
        if reference not in REFERENCES:
            raise SRBenchError(f"noise: reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
        self.reference = reference

    def params(self) -> dict:
        return {"name": self.name, "distribution": "rician", "snr": self.snr, "sigma": self.sigma,
                "reference": self.reference if self.snr is not None else None,
                "snr_definition": ("mean over voxels above the Otsu threshold / sigma" if self.reference ==
                                   "foreground" else "max / sigma") if self.snr is not None else None,
                "seed_rule": SEED_RULE}

    def sigma_for(self, array: np.ndarray) -> float:
        if self.sigma is not None:
            return self.sigma
        return reference_signal(array, self.reference) / self.snr

    def apply(self, hr: sitk.Image, seed: int = 0) -> sitk.Image:
        array = sitk.GetArrayFromImage(hr).astype(np.float64)
        sigma = self.sigma_for(array)
        rng = np.random.default_rng(seed)
        real = array + sigma * rng.standard_normal(array.shape)
        imag = sigma * rng.standard_normal(array.shape)
        out = sitk.GetImageFromArray(np.sqrt(real ** 2 + imag ** 2).astype(np.float32))
        out.CopyInformation(hr)
        return out
