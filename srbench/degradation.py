"""Degradations: HR volume -> LR volume on its own (coarser) grid, with serialisable parameters.

The harness, not the degradation, puts LR back on the HR grid (``srbench.volume.resample_to``) with the
interpolator the method declares; that choice is recorded in every run.

Specs (``--degradation name:key=value;key=value``) are parsed strictly, since a value read wrongly is recorded
as if it had been meant: booleans are ``true`` or ``false``, factors and spacings lie in the declared ranges
``FACTOR_RANGE`` and ``SPACING_RANGE``, a key the degradation does not take is refused, and every error names
the spec and what is allowed.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError
from .volume import interpolator as sitk_interpolator

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# A degradation coarsens (factor >= 1); x16 per axis is past any MRI super-resolution protocol (the paper: x3).
FACTOR_RANGE = (1.0, 16.0)
# Target voxel sizes in mm: from a 0.05 mm microscopy-MRI voxel to a 20 mm slab.
SPACING_RANGE = (0.05, 20.0)


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
        self.factors = three_in_range("resample", "factors", factors, FACTOR_RANGE) if factors is not None else None
        self.spacing = three_in_range("resample", "spacing", spacing, SPACING_RANGE, " mm") \
            if spacing is not None else None
        sitk_interpolator(interpolator)  # fail early on an unknown name
        self.interpolator = interpolator
        self.antialias = flag("resample", "antialias", antialias)
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
        require_lr_size("resample", new_size, hr)
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


def three_in_range(owner: str, what: str, values, bounds: tuple[float, float], unit: str = "") \
        -> tuple[float, float, float]:
    """Three finite numbers (x, y, z) within ``bounds``, or a one-line error saying what is allowed."""
    lo, hi = bounds
    problem = f"{owner}: {what} must be three numbers x,y,z in [{lo:g}, {hi:g}]{unit}, got {values!r}"
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise SRBenchError(problem) from None
    if len(out) != 3 or not all(math.isfinite(v) and lo <= v <= hi for v in out):
        raise SRBenchError(problem)
    return out


def flag(owner: str, what: str, value) -> bool:
    """A boolean given as one (a spec's ``true``/``false``); anything else is refused, never read as true."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise SRBenchError(f"{owner}: {what} must be true or false, got {value!r}")


def require_lr_size(owner: str, size, hr: sitk.Image) -> None:
    """The LR grid keeps at least 2 voxels per axis (one voxel is no image to super-resolve)."""
    small = [axis for axis, n in zip("xyz", size) if n < 2]
    if small:
        raise SRBenchError(f"{owner}: the LR grid {tuple(size)} of a {hr.GetSize()} volume (spacing "
                           f"{tuple(round(v, 3) for v in hr.GetSpacing())} mm) has fewer than 2 voxels along "
                           f"{', '.join(small)}: use smaller factors or spacing")


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
    factory.accepts = accepted_keys(cls)
    return factory


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value;key=value`` (values: numbers, comma lists, true/false, words)."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise SRBenchError(f"degradation {spec!r}: expected key=value, got {item!r}")
        if key in params:
            raise SRBenchError(f"degradation {spec!r}: {key} is given twice")
        params[key] = _parse_value(value)
    return name.strip(), params


def accepted_keys(factory) -> list[str] | None:
    """The spec keys ``factory`` takes (its keyword parameters, less ``protocol``, which names a preset and is
    set by the protocol itself); None when it takes ``**kwargs`` and only it can judge."""
    if getattr(factory, "accepts", None) is not None:
        return list(factory.accepts)
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in ("self", "protocol")]


def build(spec: str, name: str, factory, params: dict) -> Degradation:
    """``factory(**params)`` for one step spec: unknown keys refused with the accepted ones listed, and every
    error of the degradation's own checks prefixed with the spec."""
    accepted = accepted_keys(factory)
    unknown = sorted(set(params) - set(accepted)) if accepted is not None else []
    if unknown:
        raise SRBenchError(f"degradation {spec!r}: unknown key{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(unknown)}; {name} accepts: {', '.join(accepted) or 'no keys'}")
    try:
        return factory(**params)
    except SRBenchError as exc:
        raise SRBenchError(f"degradation {spec!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SRBenchError(f"degradation {spec!r}: {exc}") from None


def _parse_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return text
    return numbers if len(parts) > 1 else numbers[0]
