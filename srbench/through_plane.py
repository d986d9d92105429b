"""Through-plane scores of a case's SR volume: coronal and sagittal planes, slice-to-slice consistency.

Slice-wise methods predict axial slices one at a time, so errors that only show across slices (steps between
neighbours, a through-plane blur) are invisible to axial scores. The predicted axial slices of a case are
stacked in slice order into a (K, H, W) volume on the HR grid, and:

- **coronal planes** (fixed y: K x W images) and **sagittal planes** (fixed x: K x H images) are scored with
  the run's metrics and the axial conventions (prediction clipped to [0, 1], both multiplied by the mask,
  planes whose mask is empty skipped; without a mask, planes with a constant reference are skipped). A metric
  that cannot score planes this thin (e.g. fewer rows than SSIM's 11-pixel window) is reported unavailable for
  them, with the reason.
- **slice-to-slice consistency** is the through-plane gradient error, for each pair of adjacent predicted
  slices k, k+1 (neighbours in the volume, both predicted)::

      z_gradient_error(k) = mean over voxels inside the mask of both slices of
                            | (SR[k+1] - SR[k]) - (HR[k+1] - HR[k]) |

  on [0, 1] intensities (SR clipped), lower is better; 0 means the SR changes from slice to slice exactly as the
  reference does. Per slice = per pair; per volume = the mean over a case's pairs.

Per volume (every score): the mean over a case's planes (pairs), then mean ± SD over cases, as for axial.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SRBenchError

PLANES = {"coronal": (1, 0, 2), "sagittal": (2, 0, 1)}  # (z, y, x) stack -> (plane, z, in-plane) axes
CONSISTENCY = "z_gradient_error"
CONSISTENCY_DEFINITION = ("mean over voxels inside the mask of both slices of |(SR[k+1] - SR[k]) - (HR[k+1] - "
                          "HR[k])|, for adjacent predicted axial slices k, k+1; [0, 1] intensities, SR clipped; "
                          "lower is better")
PLANE_DEFINITION = ("the predicted axial slices stacked in slice order; coronal planes (fixed y) and sagittal planes "
                    "(fixed x) scored with the run's metrics, prediction clipped to [0, 1], both multiplied by the "
                    "mask, planes with an empty mask skipped")
PAIR = "axial-pair"  # the `plane` of consistency rows in planes.csv
FILE = "planes.csv"  # beside a run's scores.csv


@dataclass
class CaseResult:
    """One case's through-plane rows (planes.csv) and why a metric could not score its planes."""

    index: int  # the case's position in the test split (ranks merge in this order)
    rows: list[dict] = field(default_factory=list)
    unavailable: dict = field(default_factory=dict)  # metric -> reason


def score_case(index: int, case_id: str, patient_id: str, sr: np.ndarray, hr: np.ndarray,
               mask: np.ndarray | None, slices: list[int], metrics: list, device: str = "cpu") -> CaseResult:
    """``sr``: (len(slices), H, W) predictions of the axial ``slices`` of ``hr`` (z, y, x; [0, 1]); ``mask``
    on ``hr``'s grid or None."""
    from .scoring import usable_slices  # scoring loads torch: only when scores are computed

    result = CaseResult(index)
    sr = np.clip(sr, 0.0, 1.0)
    ref = hr[slices]
    m = mask[slices] if mask is not None else None
    base = {"case": case_id, "patient": patient_id}
    for plane, axes in PLANES.items():
        pred_p, ref_p = sr.transpose(axes), ref.transpose(axes)
        mask_p = m.transpose(axes) if m is not None else None
        keep, _ = usable_slices(ref_p, mask_p)
        if not keep:
            continue
        values = _score_planes(pred_p[keep], ref_p[keep], None if mask_p is None else mask_p[keep], metrics,
                               device, result.unavailable)
        for i, k in enumerate(keep):
            row = {**base, "plane": plane, "index": k}
            row.update({name: (None if v is None else float(v[i])) for name, v in values.items()})
            result.rows.append(row)
    for k, value in _z_gradient_errors(sr, ref, m, slices):
        result.rows.append({**base, "plane": PAIR, "index": k, CONSISTENCY: value})
    return result


def _score_planes(pred, ref, mask, metrics, device, unavailable: dict) -> dict:
    """All metrics at once; when that fails (a metric needs larger images), metric by metric."""
    from .scoring import score_arrays

    try:
        return score_arrays(pred, ref, metrics, mask=mask, device=device).values
    except (ValueError, RuntimeError):
        pass
    values = {}
    for metric in metrics:
        try:
            values.update(score_arrays(pred, ref, [metric], mask=mask, device=device).values)
        except (ValueError, RuntimeError) as exc:
            values[metric.name] = None
            unavailable[metric.name] = f"cannot score {pred.shape[1]} x {pred.shape[2]} planes ({exc})"[:200]
    return values


def _z_gradient_errors(sr, ref, mask, slices):
    """(k, error) for each pair of adjacent predicted slices whose joint mask is not empty."""
    for i in range(len(slices) - 1):
        if slices[i + 1] != slices[i] + 1:
            continue
        inside = np.ones(sr.shape[1:], bool) if mask is None else (mask[i] > 0) & (mask[i + 1] > 0)
        if inside.any():
            diff = (sr[i + 1] - sr[i]) - (ref[i + 1] - ref[i])
            yield slices[i], float(np.abs(diff[inside]).mean())


def table(results: list[CaseResult]) -> pd.DataFrame:
    """planes.csv: case, patient, plane (coronal, sagittal, axial-pair), index, one column per score."""
    rows = [row for r in sorted(results, key=lambda r: r.index) for row in r.rows]
    return pd.DataFrame(rows, columns=None if rows else ["case", "patient", "plane", "index"])


def summary(results: list[CaseResult], metric_names: list[str]) -> dict:
    """The record's ``through_plane`` section: per plane and for consistency, per-slice and per-volume mean ±
    SD (n = planes, pairs or cases), with the definitions and what could not be scored."""
    df = table(results)
    unavailable = {k: v for r in results for k, v in r.unavailable.items()}
    out = {"definition": PLANE_DEFINITION,
           "consistency": {"name": CONSISTENCY, "direction": "lower", "definition": CONSISTENCY_DEFINITION},
           "unavailable": unavailable}
    for plane in PLANES:
        rows = df[df["plane"] == plane] if len(df) else df
        out[plane] = _per_slice_and_volume(rows, [n for n in metric_names if n in rows.columns])
    pairs = df[df["plane"] == PAIR] if len(df) else df
    out["consistency"].update(_per_slice_and_volume(pairs, [CONSISTENCY] if CONSISTENCY in pairs else []))
    return out


def _per_slice_and_volume(rows: pd.DataFrame, names: list[str]) -> dict:
    from .scoring import summarise

    if rows.empty or not names:
        return {"per_slice": {}, "per_volume": {}}
    per_case = rows.groupby("case", sort=False)[names].mean()

    def column(frame, n):
        values = pd.to_numeric(frame[n], errors="coerce").dropna()
        return None if values.empty else values.to_numpy(float)

    return {"per_slice": summarise({n: column(rows, n) for n in names}),
            "per_volume": summarise({n: column(per_case, n) for n in names})}


# --- for tables: flat columns and per-plane score tables ---------------------------------------------------

PLANE_CHOICES = ("axial", *PLANES)  # what a table can show
COLUMN_PREFIXES = tuple(f"{p}_" for p in (*PLANES, CONSISTENCY))  # of the columns() names


def columns(record) -> dict:
    """Flat leaderboard columns of a run record's ``through_plane`` section: ``<plane>_<metric>_mean`` and
    ``_std`` (per-slice) for coronal and sagittal, and ``z_gradient_error_mean`` / ``_std``; NaN when the run
    has none."""
    tp = record.through_plane or {}
    out = {}
    for plane in PLANES:
        for name, s in ((tp.get(plane) or {}).get("per_slice") or {}).items():
            out[f"{plane}_{name.lower()}_mean"] = s["mean"] if s else np.nan
            out[f"{plane}_{name.lower()}_std"] = s["std"] if s else np.nan
    s = ((tp.get("consistency") or {}).get("per_slice") or {}).get(CONSISTENCY)
    out[f"{CONSISTENCY}_mean"] = s["mean"] if s else np.nan
    out[f"{CONSISTENCY}_std"] = s["std"] if s else np.nan
    return out


def plane_scores(planes: pd.DataFrame, plane: str) -> pd.DataFrame:
    """planes.csv rows of one plane in the form of scores.csv (case, patient, slice = plane index, metrics), so
    that statistics and tables treat coronal or sagittal planes as they treat axial slices."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    rows = planes[planes["plane"] == plane].drop(columns=["plane", CONSISTENCY], errors="ignore")
    return rows.rename(columns={"index": "slice"}).reset_index(drop=True)


def scores_of(runs: dict, plane: str) -> pd.DataFrame:
    """Long format as :func:`srbench.scores.scores_of` (method label, case, slice, one column per metric), from
    each run record's planes.csv rows of ``plane``: the statistics of a coronal or sagittal table."""
    parts = []
    for label, record in runs.items():
        path = Path(record.path) / FILE
        if not path.is_file():
            raise SRBenchError(f"{path}: missing (a run from before through-plane scores; rerun it with --force)")
        df = plane_scores(pd.read_csv(path), plane)
        metrics = [m.lower() for m in record.metrics if m.lower() in df.columns]
        part = df[["case", "slice"] + metrics].astype({m: float for m in metrics})
        part.insert(0, "method", label)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def plane_view(record, plane: str):
    """``record`` (a :class:`srbench.record.RunRecord`) as a table of ``plane`` sees it: its coronal or sagittal
    per-slice and per-volume summaries in place of the axial ones and ``scores()`` reading that plane's rows of
    planes.csv, so that every table and statistic built from records shows that plane unchanged."""
    from .record import RunRecord, Stat

    if plane == "axial":
        return record
    section = (record.through_plane or {}).get(plane)
    if plane not in PLANES or not section:
        raise SRBenchError(f"{record.path}: no {plane} scores (planes: axial, {', '.join(PLANES)}; runs recorded "
                           "before through-plane scoring have none: run them again with --force)")

    def stats(part):
        return {k.lower(): None if v is None else Stat(float(v["mean"]), float(v["std"]), int(v["n"]))
                for k, v in section[part].items()}

    class PlaneRecord(RunRecord):
        def scores(self) -> pd.DataFrame:
            return plane_scores(pd.read_csv(Path(self.path) / FILE), plane)

    values = {f.name: getattr(record, f.name) for f in fields(record)}
    return PlaneRecord(**{**values, "per_slice": stats("per_slice"), "per_volume": stats("per_volume")})
