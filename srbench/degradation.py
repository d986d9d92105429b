"""Degradations: HR volume -> LR volume on its own (coarser) grid, with serialisable parameters.

The harness, not the degradation, puts LR back on the HR grid (``srbench.volume.resample_to``) with the
interpolator the method declares; that choice is recorded in every run.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .volume import interpolator as sitk_interpolator

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class Degradation:
    """Base class: ``params()`` is recorded verbatim in the run; ``apply`` must be deterministic per seed."""

    name: str = ""

    def params(self) -> dict:
        raise NotImplementedError

    def apply(self, hr: sitk.Image, seed: int = 0) -> sitk.Image:
        raise NotImplementedError


class Resample(Degradation):
    """SimpleITK resampling to a coarser grid, given per-axis ``factors`` or a target ``spacing`` (mm, x y z).

    The LR grid keeps the HR grid's centre and direction, and its physical extent up to the rounding of the
    size (size = round(extent / spacing)).
    ``antialias`` blurs first with a Gaussian whose FWHM brings the resolution to the target spacing
    (sigma = sqrt(s_new^2 - s_old^2) / 2.355 per axis), as a scanner's larger voxels would.
    """

    name = "resample"

    def __init__(self, factors=None, spacing=None, interpolator: str = "linear", antialias: bool = False,
                 protocol: str | None = None):
        if (factors is None) == (spacing is None):
            raise SRBenchError("resample: give exactly one of factors or spacing")
        self.factors = _three_positive("factors", factors) if factors is not None else None
        self.spacing = _three_positive("spacing", spacing) if spacing is not None else None
        sitk_interpolator(interpolator)  # fail early on an unknown name
        self.interpolator = interpolator
        self.antialias = bool(antialias)
        self.protocol = protocol

    def params(self) -> dict:
        return {"name": self.name, "protocol": self.protocol, "factors": self.factors, "spacing": self.spacing,
                "interpolator": self.interpolator, "antialias": self.antialias}

    def target_spacing(self, hr: sitk.Image) -> np.ndarray:
        if self.spacing is not None:
            return np.array(self.spacing)
        return np.array(hr.GetSpacing()) * np.array(self.factors)

    def apply(self, hr: sitk.Image, seed: int = 0) -> sitk.Image:
        old_spacing = np.array(hr.GetSpacing())
        new_spacing = self.target_spacing(hr)
        old_size = np.array(hr.GetSize())
        new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
        # Same centre as the HR grid (the extent is kept up to the rounding of the size).
        direction = np.array(hr.GetDirection()).reshape(3, 3)
        shift = ((old_size - 1) * old_spacing - (new_size - 1) * new_spacing) / 2.0
        origin = np.array(hr.GetOrigin()) + direction @ shift
        new_size = [int(n) for n in new_size]
        source = hr
        if self.antialias:
            sigma = np.sqrt(np.clip(new_spacing ** 2 - old_spacing ** 2, 0.0, None)) / FWHM_PER_SIGMA
            # Axis by axis: ITK rejects sigma 0, which an axis that is not coarsened has.
            for axis, s in enumerate(sigma):
                if s > 0:
                    source = sitk.RecursiveGaussian(source, float(s), False,
                                                    sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
        return sitk.Resample(source, new_size, sitk.Transform(), sitk_interpolator(self.interpolator),
                             origin.tolist(), new_spacing.tolist(), hr.GetDirection(), 0.0, sitk.sitkFloat32)


def _three_positive(what: str, values) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise SRBenchError(f"resample: {what} must be three positive numbers (x,y,z), got {values!r}") from None
    if len(out) != 3 or not all(math.isfinite(v) and v > 0 for v in out):
        raise SRBenchError(f"resample: {what} must be three positive numbers (x,y,z), got {values!r}")
    return out


# The paper's protocols (Safari et al. 2025): prostate T2w 0.66x0.66x1.5 mm -> 2x2x3 mm; brain T1 map x3
# isotropic (0.8 -> 2.4 mm). SimpleITK resampling without a prior blur, as the paper describes.
PROTOCOLS = {
    "brain-t1map": dict(factors=(3, 3, 3)),
    "prostate-t2w": dict(spacing=(2.0, 2.0, 3.0)),
}


def protocol_factory(protocol: str, table: dict | None = None, cls=None, what: str = "SimpleITK resampling"):
    """A factory for a named protocol: its preset parameters, overridable (a new factors/spacing replaces both)."""
    table = PROTOCOLS if table is None else table
    cls = Resample if cls is None else cls

    def factory(**overrides):
        params = dict(table[protocol])
        if "factors" in overrides or "spacing" in overrides:
            params.pop("factors", None)
            params.pop("spacing", None)
        params.update(overrides)
        return cls(protocol=protocol, **params)
    factory.__doc__ = f"{what}, protocol {protocol}: {table[protocol]}"
    return factory


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value;key=value`` (values: numbers, comma lists, true/false, words)."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SRBenchError(f"degradation {spec!r}: expected key=value, got {item!r}")
        params[key.strip()] = _parse_value(value.strip())
    return name.strip(), params


def _parse_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return text
    return numbers if len(parts) > 1 else numbers[0]
