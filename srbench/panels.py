"""Qualitative panels (the paper's Figures 3-4): a few predicted slices kept by every run, and the figure.

**What a run keeps** (``examples.npz`` in its run directory, written by the runner, atomically, before the
record): for each of the first :data:`MAX_CASES` test cases of the dataset (in the order
``Dataset.cases("test")`` gives; the report shows the first unless told ``--case``) and its usable
slices ``u`` (sorted, as scored), the slices at 25 %, 50 % and 75 % of that list, i.e.
``u[floor(f * (len(u) - 1) + 0.5)]`` for ``f`` in :data:`FRACTIONS` (duplicates dropped). The rule depends only
on the test split and the HR data, never on the method, so every method on a dataset keeps the SAME slices.

Arrays (``K`` kept slices; ``h x w`` the stored window of the ``H x W`` slice, see below):

- ``sr``, ``hr``, ``lr``: float16 ``(K, h, w)``, intensities in [0, 1] as scored (``sr`` clipped to [0, 1] as
  the metrics see it; ``lr`` is the LR volume put back on the HR grid with the method's own input interpolator,
  named in ``interpolator``). float16 keeps about 3 significant digits (relative step 2**-11, under 5e-4 on
  [0, 1]), enough for figures and difference maps, not for re-scoring. Stored with ``np.savez_compressed``.
- ``mask``: bool ``(K, h, w)``; all True when the dataset has no mask (``has_mask`` False).
- ``slices``: int ``(K,)``, axial indices in the case's HR volume; ``case``, ``interpolator``, ``rule``: str.
- ``origin``: int ``(2,)``, the window's first (row, column) in the full slice; ``full_shape``: ``(H, W)``.
- Through-plane images of the predicted slab (:func:`through_planes`): ``coronal_{sr,hr,lr,mask}`` float16 /
  bool ``(len(u), w)``, one image row per usable slice (in ``u`` order, first slice at the bottom when shown),
  at the row ``coronal_index`` of the volume (the middle of the mask's bounding box over the usable slices);
  ``sagittal_*`` the same ``(len(u), h)`` at the column ``sagittal_index``; ``spacing`` float ``(3,)``: the HR
  voxel spacing (x, y, z) in mm, so that a figure draws them with the right aspect.
- The first case's arrays are stored under these names; case ``i`` of the kept ones (``i >= 1``) under
  ``"{i}.<name>"``; ``cases`` lists the kept case ids in order.

The stored window (:func:`storage_box`) is the bounding box of the mask over the kept slices plus
:data:`MARGIN` pixels (the whole slice without a mask); when it holds more than :data:`MAX_PIXELS` pixels it is
shrunk about its centre, keeping its aspect ratio, to at most that many: 3 float16 arrays of 3 slices then take
under 1 MB before compression (the demo: about 0.2 MB on disk). It depends only on the mask and the slice size,
so it is the same for every method.

**The panel slice** (:func:`panel_slice`): among the kept slices, the one on which the block's best method
(highest mean PSNR; if PSNR is unavailable, the first method) scores its median PSNR over the kept slices
(ties and missing scores: the middle kept slice) - a typical slice, not a flattering one.

**Zoomed regions** (:func:`zoom_regions`): two square windows of side ``max(16, round(min(H, W) / 5))`` pixels
(``H x W`` the full slice; at most the stored window's smaller side),
the first the window with the largest sum of the HR slice's squared gradient magnitude (``np.gradient``) over
the mask eroded by :data:`ERODE` pixels (so that the edge between the object and the background does not win
over anatomy), the second the same among windows that do not overlap the first (first maximum in row-major
order on ties). They depend only on the HR slice, so they are the same for every method.

The figure shows each slice cropped to the mask's bounding box (the whole slice without a mask) plus a
:data:`MARGIN`-pixel margin.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXAMPLES = "examples.npz"
MAX_CASES = 4  # test cases whose examples a run keeps (the report's --case chooses among them)
PLANES = ("axial", "coronal", "sagittal")
ERODE = 3
MARGIN = 4
MAX_PIXELS = 55_000  # per stored slice: 3 arrays x 3 slices x 2 bytes x 55 000 < 1 MB
FRACTIONS = (0.25, 0.5, 0.75)
RULE = ("first test case; usable slices at 25/50/75 % of the sorted usable-slice list "
        "(u[floor(f*(len(u)-1)+0.5)])")


def example_slices(usable) -> list[int]:
    """The kept slice indices of a case whose usable (scored) slices are ``usable``: see the module docstring."""
    u = sorted(int(k) for k in usable)
    if not u:
        return []
    picked = [u[int(np.floor(f * (len(u) - 1) + 0.5))] for f in FRACTIONS]
    return sorted(set(picked))


def take_examples(case_id: str, prepared, sr: np.ndarray, interpolator: str) -> dict:
    """The arrays to keep for one case: ``prepared`` is the runner's ``Prepared`` case, ``sr`` the prediction
    of its usable slices (``prepared.slices`` order), ``interpolator`` the method's LR-to-HR-grid interpolator."""
    from .volume import resample_to, to_array

    keep = example_slices(prepared.slices)
    position = {k: i for i, k in enumerate(prepared.slices)}
    rows = [position[k] for k in keep]
    lr_all = to_array(resample_to(prepared.lr, prepared.hr, interpolator))
    lr = lr_all[keep]
    has_mask = prepared.mask is not None
    mask = prepared.mask[keep] > 0 if has_mask else np.ones((len(keep),) + sr.shape[1:], bool)
    r0, r1, c0, c1 = storage_box(mask.any(axis=0))
    window = (slice(None), slice(r0, r1), slice(c0, c1))
    used = list(prepared.slices)
    slab_mask = prepared.mask[used] > 0 if has_mask else np.ones(sr.shape, bool)
    slab = {"sr": np.clip(sr, 0.0, 1.0), "hr": prepared.hr_array[used], "lr": np.clip(lr_all[used], 0.0, 1.0),
            "mask": slab_mask}
    return {"sr": np.clip(sr[rows], 0.0, 1.0)[window].astype(np.float16),
            "hr": prepared.hr_array[keep][window].astype(np.float16),
            "lr": np.clip(lr, 0.0, 1.0)[window].astype(np.float16), "mask": mask[window],
            "has_mask": np.array(has_mask), "slices": np.array(keep, dtype=np.int64), "case": np.array(str(case_id)),
            "interpolator": np.array(str(interpolator)), "rule": np.array(RULE),
            "origin": np.array([r0, c0], dtype=np.int64), "full_shape": np.array(sr.shape[1:], dtype=np.int64),
            "spacing": np.array(prepared.hr.GetSpacing(), dtype=np.float64), **through_planes(slab)}


def through_planes(slab: dict) -> dict:
    """Coronal and sagittal images of a predicted slab (arrays ``(len(u), H, W)`` in usable-slice order): the
    volume's row and column through the middle of the mask's bounding box, each cropped to that box (plus
    :data:`MARGIN`). See the module docstring for the stored names."""
    r0, r1, c0, c1 = crop_box(slab["mask"].any(axis=0))
    row, col = (r0 + r1) // 2, (c0 + c1) // 2
    out = {"coronal_index": np.array(row, dtype=np.int64), "sagittal_index": np.array(col, dtype=np.int64)}
    for key, value in slab.items():
        kind = bool if key == "mask" else np.float16
        out[f"coronal_{key}"] = np.ascontiguousarray(value[:, row, c0:c1]).astype(kind)
        out[f"sagittal_{key}"] = np.ascontiguousarray(value[:, r0:r1, col]).astype(kind)
    return out


def storage_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of the stored window: see the module docstring."""
    r0, r1, c0, c1 = crop_box(mask)
    h, w = r1 - r0, c1 - c0
    if h * w > MAX_PIXELS:
        scale = np.sqrt(MAX_PIXELS / (h * w))
        nh, nw = int(h * scale), int(w * scale)
        r0, c0 = r0 + (h - nh) // 2, c0 + (w - nw) // 2
        r1, c1 = r0 + nh, c0 + nw
    return int(r0), int(r1), int(c0), int(c1)


def save_examples(path: Path, examples: dict | list | None) -> None:
    """Write ``examples`` (one :func:`take_examples` dict, or a list of them, one per kept case) to ``path``
    atomically; nothing when None or empty."""
    from .record import atomic_write_bytes

    cases = [examples] if isinstance(examples, dict) else list(examples or [])
    if not cases:
        return
    arrays = dict(cases[0], cases=np.array([str(c["case"]) for c in cases]))
    for i, more in enumerate(cases[1:], start=1):
        arrays.update({f"{i}.{key}": value for key, value in more.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


@dataclass
class Plane:
    """One through-plane image of the predicted slab (coronal or sagittal), float32, shown bottom-up."""

    index: int  # the volume's row (coronal) or column (sagittal)
    sr: np.ndarray
    hr: np.ndarray
    lr: np.ndarray
    mask: np.ndarray
    aspect: float  # slice spacing / in-plane spacing: the height of one image row in pixel widths


@dataclass
class Examples:
    case: str
    slices: list[int]
    sr: np.ndarray  # float32 (K, H, W), converted from the stored float16
    hr: np.ndarray
    lr: np.ndarray
    mask: np.ndarray
    interpolator: str
    origin: tuple[int, int] = (0, 0)  # the stored window's first (row, column) in the full slice
    full_shape: tuple[int, int] | None = None
    planes: dict = None  # "coronal" / "sagittal" -> Plane (runs recorded before they were kept: empty)


def kept_cases(run_dir: Path) -> list[str]:
    """The test cases whose examples a run kept (first = the report's default)."""
    path = Path(run_dir) / EXAMPLES
    if not path.is_file():
        return []
    with np.load(path, allow_pickle=False) as z:
        return [str(c) for c in z["cases"]] if "cases" in z.files else [str(z["case"])]


def load_examples(run_dir: Path, case: str | None = None) -> Examples | None:
    """A run's kept slices of ``case`` (default: the first kept case), or None when the run kept none of it."""
    path = Path(run_dir) / EXAMPLES
    if not path.is_file():
        return None
    cases = kept_cases(run_dir)
    if case is not None and case not in cases:
        return None
    i = cases.index(case) if case is not None else 0
    prefix = f"{i}." if i else ""
    with np.load(path, allow_pickle=False) as npz:
        z = {key[len(prefix):]: npz[key] for key in npz.files if key.startswith(prefix) and (prefix or "." not in key)}
    f32 = {k: z[k].astype(np.float32) for k in ("sr", "hr", "lr")}
    return Examples(case=str(z["case"]), slices=[int(k) for k in z["slices"]], mask=z["mask"].astype(bool),
                    interpolator=str(z["interpolator"]),
                    origin=tuple(int(v) for v in z["origin"]) if "origin" in z else (0, 0),
                    full_shape=tuple(int(v) for v in z["full_shape"]) if "full_shape" in z else None,
                    planes=_planes(z), **f32)


def _planes(z: dict) -> dict:
    if "coronal_sr" not in z:
        return {}
    sx, sy, sz = (float(v) for v in z["spacing"])
    return {name: Plane(int(z[f"{name}_index"]), *(z[f"{name}_{k}"].astype(np.float32) for k in ("sr", "hr", "lr")),
                        z[f"{name}_mask"].astype(bool), sz / (sx if name == "coronal" else sy))
            for name in ("coronal", "sagittal")}


# --- choosing what to show ------------------------------------------------------------------------------------


def panel_slice(examples: dict[str, Examples], slice_psnr: dict[str, dict[int, float]], best: str | None) -> int:
    """Index (into the kept slices) of the panel slice: see the module docstring.

    ``slice_psnr``: method -> {slice index -> PSNR} from the runs' scores; ``best``: the best method's label."""
    first = next(iter(examples.values()))
    k = len(first.slices)
    middle = (k - 1) // 2
    scores = slice_psnr.get(best or "", {})
    values = [scores.get(s) for s in first.slices]
    if k == 0 or any(v is None or not np.isfinite(v) for v in values):
        return middle
    order = np.argsort(values, kind="stable")
    return int(order[(k - 1) // 2])


def window_side(full_shape, shape=None) -> int:
    """Zoom window side: max(16, round(min(H, W) / 5)) of the full slice, at most the stored window's side."""
    return int(min(max(16, round(min(full_shape) / 5)), min(shape or full_shape)))


def zoom_regions(hr: np.ndarray, mask: np.ndarray | None = None, n: int = 2,
                 full_shape=None) -> list[tuple[int, int, int]]:
    """``n`` non-overlapping square windows (row, col, side) of highest HR gradient energy inside the mask."""
    side = window_side(full_shape or hr.shape, hr.shape)
    gy, gx = np.gradient(hr.astype(np.float64))
    energy = gy ** 2 + gx ** 2
    if mask is not None:
        from scipy.ndimage import binary_erosion

        inner = binary_erosion(mask, iterations=ERODE) if mask.any() else mask
        energy = energy * (inner if inner.any() else mask)
    # Sum over every side x side window with an integral image.
    c = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]
    out = []
    for _ in range(n):
        if not np.isfinite(sums).any():
            break
        r, col = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(sums), sums, -np.inf))), sums.shape)
        out.append((int(r), int(col), side))
        # Windows overlapping this one start within (side - 1) of it in both directions.
        sums = sums.astype(float)
        sums[max(0, r - side + 1):r + side, max(0, col - side + 1):col + side] = -np.inf
    return out


# --- the figure -----------------------------------------------------------------------------------------------

ZOOM_COLOURS = ("#ffd400", "#00e5ff")


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the mask's bounding box plus MARGIN pixels (the whole slice when the mask is empty)."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return 0, mask.shape[0], 0, mask.shape[1]
    return (max(0, rows.min() - MARGIN), min(mask.shape[0], rows.max() + 1 + MARGIN),
            max(0, cols.min() - MARGIN), min(mask.shape[1], cols.max() + 1 + MARGIN))


def plane_examples(examples: dict[str, Examples], plane: str) -> tuple[dict[str, Examples], float]:
    """The ``coronal`` or ``sagittal`` image of each run as one-slice :class:`Examples` (for
    :func:`panel_figure`), and its aspect; runs that kept no through-plane image are left out."""
    out, aspect = {}, 1.0
    for label, ex in examples.items():
        p = (ex.planes or {}).get(plane)
        if p is not None:
            out[label] = Examples(ex.case, [p.index], p.sr[None], p.hr[None], p.lr[None], p.mask[None],
                                  ex.interpolator)
            aspect = p.aspect
    return out, aspect


def panel_figure(title: str, examples: dict[str, Examples], index: int, psnr_of: dict[str, float | None] | None = None,
                 aspect: float = 1.0, origin: str = "upper", zooms: int = 2):
    """The figure: columns HR, LR (the first run's input on the HR grid), every method; rows: the slice (cropped to
    the mask) with the two zoom windows outlined, zoom 1, zoom 2, |SR - HR| (one colour scale, one colour bar).
    ``aspect``: the height of an image row in pixel widths (through-plane images: slice spacing / in-plane
    spacing); ``origin="lower"`` draws the first row at the bottom; ``zooms``: how many zoom rows.
    Returns (figure, zoom windows as (row, col, side) in full-slice pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    psnr_of = psnr_of or {}
    first_label, first = next(iter(examples.items()))
    hr, mask = first.hr[index], first.mask[index]
    regions = zoom_regions(hr, mask, n=zooms, full_shape=first.full_shape) if zooms else []
    r0, r1, c0, c1 = crop_box(mask)
    columns = [("HR (ground truth)", hr, None),
               (f"LR input ({first.interpolator})", first.lr[index], None)]
    for label, ex in examples.items():
        p = psnr_of.get(label)
        columns.append((label if p is None else f"{label}\nPSNR {p:.2f} dB", ex.sr[index], np.abs(ex.sr[index] - hr)))
    diffs = [d[mask] if mask.any() else d.ravel() for _, _, d in columns if d is not None]
    vmax = max(float(np.percentile(np.concatenate(diffs), 99.5)), 1e-3) if diffs else 1.0
    n_rows, n_cols = 2 + len(regions), len(columns)
    tile = 2.1
    shape = aspect * (r1 - r0) / max(1, c1 - c0)
    heights = [shape] + [aspect] * len(regions) + [shape]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(tile * n_cols + 0.9, tile * sum(heights) + 0.9), squeeze=False,
                             dpi=90, gridspec_kw={"height_ratios": heights})
    diff_image = None
    for j, (name, image, diff) in enumerate(columns):
        ax = axes[0, j]
        ax.imshow(image[r0:r1, c0:c1], cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect=aspect,
                  origin=origin)
        ax.set_title(name, fontsize=9)
        for (r, c, side), colour in zip(regions, ZOOM_COLOURS):
            ax.add_patch(Rectangle((c - c0 - 0.5, r - r0 - 0.5), side, side, fill=False, edgecolor=colour,
                                   linewidth=1.2))
        for i, ((r, c, side), colour) in enumerate(zip(regions, ZOOM_COLOURS), start=1):
            ax = axes[i, j]
            ax.imshow(image[r:r + side, c:c + side], cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      aspect=aspect, origin=origin)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5)
        ax = axes[n_rows - 1, j]
        if diff is not None:
            diff_image = ax.imshow(diff[r0:r1, c0:c1], cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest",
                                   aspect=aspect, origin=origin)
        else:
            ax.axis("off")
            if j == 0:
                ax.text(0.5, 0.5, "|SR − HR|", ha="center", va="center", fontsize=10, transform=ax.transAxes)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if regions:
        axes[1, 0].set_ylabel("zoom 1", fontsize=9)
    if len(regions) > 1:
        axes[2, 0].set_ylabel("zoom 2", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.92, top=1 - 0.75 / fig.get_figheight(), bottom=0.02, wspace=0.04,
                        hspace=0.08)
    if diff_image is not None:
        box = axes[n_rows - 1, 2].get_position()
        cax = fig.add_axes([0.93, box.y0, 0.012, box.height])
        bar = fig.colorbar(diff_image, cax=cax)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("|SR − HR| (shared scale)", fontsize=8)
    return fig, regions
