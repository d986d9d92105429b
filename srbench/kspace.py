"""k-space truncation: low resolution the way an MRI scanner acquires it.

An MRI image is the inverse Fourier transform of the k-space samples the scanner acquired; a coarser matrix
over the same field of view (FOV) means fewer, central k-space samples. ``KSpace`` reproduces that:

* **In-plane (x, y)**, per axis: centred FFT (``numpy.fft.fft`` + ``fftshift``), keep the central
  ``N_lr`` frequencies k = -floor(N_lr/2) ... ceil(N_lr/2) - 1 (cycles per FOV), optionally weighted by a Hann
  or Tukey window over the kept band (``scipy.signal.windows``; it trades Gibbs ringing for resolution), then the
  inverse FFT of length ``N_lr`` (``ifftshift`` + ``ifft``) scaled by ``N_lr / N_hr`` so that intensities (the
  DC term, i.e. the mean) are kept. The result is the band-limited (trigonometric) interpolant of the HR
  samples, evaluated at the LR voxel centres.
* **Through-plane (z)**: ``through_plane="average"`` (default; a 2-D multi-slice acquisition such as the
  prostate T2w TSE) averages the HR signal over each LR slice's thickness with a box slice profile: LR slice j is
  the mean of the HR voxels over [c_j - T/2, c_j + T/2], each HR voxel weighted by its overlap with that slab
  (``thickness`` T defaults to the LR slice spacing; slabs reaching past the FOV are averaged over the part
  inside it). ``through_plane="kspace"`` (a 3-D acquisition such as MP2RAGE) truncates z like x and y.

**The LR grid.** Per axis, N_lr = max(1, round(N_hr * s_hr / s_target)), where the target spacing comes from
``factors`` (s_target = factor * s_hr) or ``spacing`` (mm). The FOV is kept *exactly* (as a scanner keeps the
FOV when it lowers the matrix), so the LR spacing is s_lr = N_hr * s_hr / N_lr: equal to the target when the
FOV divides evenly, otherwise within the rounding of N_lr (``Resample``, in contrast, keeps the target spacing
exactly and the extent up to rounding). Same direction as HR; same outer corners, hence the same centre: LR voxel
j sits at HR continuous index c_j = -1/2 + (j + 1/2) * N_hr / N_lr along that axis (the half-voxel shift is
applied in k-space as a linear phase). An axis that is not coarsened (N_lr = N_hr) is left untouched (no
window); so is an axis whose HR spacing is already as coarse as the target or coarser (e.g. ProstateX T2w at
3.6 mm slices under a 3 mm target): k-space truncation cannot add frequencies, and this degradation never
interpolates.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy.signal import windows

from .degradation import (FACTOR_RANGE, SPACING_RANGE, Degradation, protocol_factory, require_lr_size,
                          three_in_range)
from .errors import SRBenchError

WINDOWS = ("none", "hann", "tukey")
THROUGH_PLANE = ("average", "kspace")


def lr_axis(n_hr: int, s_hr: float, s_target: float) -> tuple[int, float, float]:
    """(N_lr, s_lr, c_0): LR samples, LR spacing, and HR continuous index of LR sample 0 along one axis."""
    n_lr = min(n_hr, max(1, int(round(n_hr * s_hr / s_target))))  # never finer than HR: nothing to add
    return n_lr, n_hr * s_hr / n_lr, -0.5 + 0.5 * n_hr / n_lr


def band_window(kind: str, n: int, alpha: float) -> np.ndarray:
    """Weights over the kept band in fftshift order (k = 0 at index n // 2), symmetric about k = 0."""
    if kind == "none":
        return np.ones(n)
    sym = n % 2 == 1  # odd n: symmetric window, peak at (n-1)/2; even: periodic window, peak at n/2
    if kind == "hann":
        return windows.hann(n, sym=sym)
    return windows.tukey(n, alpha=alpha, sym=sym)


def truncate_axis(data: np.ndarray, axis: int, n_lr: int, window: np.ndarray | None = None) -> np.ndarray:
    """Keep the central ``n_lr`` frequencies of ``data`` along ``axis``, sampled at the LR centres (complex out)."""
    n_hr = data.shape[axis]
    spectrum = np.fft.fftshift(np.fft.fft(data, axis=axis), axes=axis)
    start = n_hr // 2 - n_lr // 2
    kept = np.take(spectrum, np.arange(start, start + n_lr), axis=axis)
    k = np.arange(n_lr) - n_lr // 2                        # cycles per FOV, fftshift order
    c0 = -0.5 + 0.5 * n_hr / n_lr                           # HR index of LR sample 0 (same outer corners)
    weights = np.exp(2j * np.pi * k * c0 / n_hr)
    if window is not None:
        weights = weights * window
    shape = [1] * data.ndim
    shape[axis] = n_lr
    kept = kept * weights.reshape(shape)
    return np.fft.ifft(np.fft.ifftshift(kept, axes=axis), axis=axis) * (n_lr / n_hr)


def slab_weights(n_hr: int, n_lr: int, thickness_hr: float) -> np.ndarray:
    """(n_lr, n_hr) box-profile weights: overlap of each LR slab with each HR voxel, rows summing to 1.

    ``thickness_hr`` is the slab thickness in HR voxels; slab j is centred on c_j = -1/2 + (j + 1/2) n_hr/n_lr.
    """
    centres = -0.5 + (np.arange(n_lr) + 0.5) * n_hr / n_lr
    lo, hi = centres - thickness_hr / 2, centres + thickness_hr / 2
    voxel_lo = np.arange(n_hr) - 0.5
    overlap = np.clip(np.minimum(hi[:, None], voxel_lo[None, :] + 1) - np.maximum(lo[:, None], voxel_lo[None, :]),
                      0.0, None)
    total = overlap.sum(axis=1, keepdims=True)
    return overlap / np.where(total > 0, total, 1.0)


class KSpace(Degradation):
    """k-space truncation to a coarser matrix over the same FOV (see the module docstring for the grid).

    ``factors`` or ``spacing`` (x, y, z; exactly one), ``window`` none|hann|tukey (``alpha``: Tukey's taper
    fraction), ``through_plane`` average|kspace, ``thickness`` (mm, ``average`` only; default: LR z spacing).
    Deterministic: the seed is not used.
    """

    name = "kspace"

    def __init__(self, factors=None, spacing=None, window: str = "none", alpha: float = 0.5,
                 through_plane: str = "average", thickness: float | None = None, protocol: str | None = None):
        if (factors is None) == (spacing is None):
            raise SRBenchError("kspace: give exactly one of factors or spacing")
        self.factors = three_in_range("kspace", "factors", factors, FACTOR_RANGE) if factors is not None else None
        self.spacing = three_in_range("kspace", "spacing", spacing, SPACING_RANGE, " mm") \
            if spacing is not None else None
        if window not in WINDOWS:
            raise SRBenchError(f"kspace: window must be one of {', '.join(WINDOWS)}, got {window!r}")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise SRBenchError(f"kspace: alpha must be a number in [0, 1], got {alpha!r}") from None
        if not 0.0 <= alpha <= 1.0:
            raise SRBenchError(f"kspace: alpha must be a number in [0, 1], got {alpha!r}")
        if through_plane not in THROUGH_PLANE:
            raise SRBenchError(f"kspace: through_plane must be one of {', '.join(THROUGH_PLANE)}, "
                               f"got {through_plane!r}")
        if thickness is not None:
            try:
                thickness = float(thickness)
            except (TypeError, ValueError):
                thickness = float("nan")
            lo, hi = SPACING_RANGE
            if not (math.isfinite(thickness) and lo <= thickness <= hi):
                raise SRBenchError(f"kspace: thickness must be a number of mm in [{lo:g}, {hi:g}], "
                                   f"got {thickness!r}")
            if through_plane != "average":
                raise SRBenchError("kspace: thickness applies to through_plane=average only")
        self.window, self.alpha, self.through_plane = window, alpha, through_plane
        self.thickness, self.protocol = thickness, protocol

    def params(self) -> dict:
        return {"name": self.name, "protocol": self.protocol, "factors": self.factors, "spacing": self.spacing,
                "window": self.window, "alpha": self.alpha if self.window == "tukey" else None,
                "through_plane": self.through_plane, "thickness": self.thickness,
                "fov": "kept exactly; LR spacing = FOV / round(FOV / target); an axis already at least as "
                       "coarse as the target is kept", "slice_profile":
                    "box" if self.through_plane == "average" else None}

    def target_spacing(self, hr: sitk.Image) -> np.ndarray:
        if self.spacing is not None:
            return np.array(self.spacing)
        return np.array(hr.GetSpacing()) * np.array(self.factors)

    def lr_grid(self, hr: sitk.Image) -> tuple[list[int], list[float], list[float]]:
        """(size, spacing, origin) of the LR grid for ``hr`` (x, y, z order, like SimpleITK)."""
        axes = [lr_axis(n, s, t) for n, s, t in zip(hr.GetSize(), hr.GetSpacing(), self.target_spacing(hr))]
        size = [a[0] for a in axes]
        spacing = [a[1] for a in axes]
        shift = np.array([a[2] for a in axes]) * np.array(hr.GetSpacing())
        direction = np.array(hr.GetDirection()).reshape(3, 3)
        origin = (np.array(hr.GetOrigin()) + direction @ shift).tolist()
        return size, spacing, origin

    def apply(self, hr: sitk.Image, seed: int = 0) -> sitk.Image:
        if hr.GetDimension() != 3:
            raise SRBenchError(f"kspace: expected a 3-D volume, got {hr.GetDimension()}-D")
        size, spacing, origin = self.lr_grid(hr)
        require_lr_size("kspace", size, hr)
        data = sitk.GetArrayFromImage(hr).astype(np.float64)  # (z, y, x)
        n_hr = hr.GetSize()
        # Through-plane first (fewer samples for the FFTs that follow); numpy axis 0 is z.
        if size[2] != n_hr[2]:
            if self.through_plane == "average":
                thickness = self.thickness if self.thickness is not None else spacing[2]
                weights = slab_weights(n_hr[2], size[2], thickness / hr.GetSpacing()[2])
                data = np.tensordot(weights, data, axes=(1, 0))
            else:
                data = truncate_axis(data, 0, size[2], self._window(size[2]))
        for axis, n in ((2, size[0]), (1, size[1])):  # numpy axis 2 is x, 1 is y
            if n != n_hr[2 - axis]:
                data = truncate_axis(data, axis, n, self._window(n))
        out = sitk.GetImageFromArray(np.real(data).astype(np.float32))
        out.SetSpacing(spacing)
        out.SetOrigin(origin)
        out.SetDirection(hr.GetDirection())
        return out

    def _window(self, n: int) -> np.ndarray | None:
        return None if self.window == "none" else band_window(self.window, n, self.alpha)


# k-space versions of the paper's protocols: the same target spacings. The prostate T2w TSE is a 2-D
# multi-slice acquisition (slice-thickness averaging); the brain MP2RAGE is 3-D (truncation along z too).
KSPACE_PROTOCOLS = {
    "prostate-t2w-kspace": dict(spacing=(2.0, 2.0, 3.0), through_plane="average"),
    "brain-t1map-kspace": dict(factors=(3, 3, 3), through_plane="kspace"),
}


def kspace_protocol_factory(protocol: str):
    return protocol_factory(protocol, KSPACE_PROTOCOLS, KSpace, "k-space truncation")
