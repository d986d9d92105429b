"""The Python API: what the ``srbench`` commands do, as functions that return DataFrames (for notebooks).

``import srbench`` stays light: these are loaded on first use (``srbench.evaluate`` and friends).

Score any two volumes (paths, SimpleITK images or NumPy arrays, axial = first NumPy axis), one row per slice:

>>> import numpy as np, srbench
>>> ref = np.linspace(0, 1, 4 * 32 * 32, dtype=np.float32).reshape(4, 32, 32)
>>> pred = 0.5 + 0.9 * (ref - 0.5)  # contrast reduced by 10 %
>>> df = srbench.score(pred, ref)
>>> list(df.columns)
['slice', 'psnr', 'ssim', 'gmsd', 'lpips']
>>> df.psnr.round(2).tolist()
[28.36, 36.81, 36.81, 28.36]

Evaluate a method on a dataset (a run, recorded as ``srbench run`` records it; an already finished run is
read back, not repeated):

>>> import tempfile
>>> results = tempfile.mkdtemp()
>>> run = srbench.evaluate("bspline", "demo", results_dir=results, progress=False)
>>> run.scores.shape[0], sorted(run.planes.plane.unique())
(32, ['axial-pair', 'coronal', 'sagittal'])
>>> round(float(run.summary().loc[("axial", "psnr"), "mean"]), 2)
30.95

Every finished run of a results folder, the leaderboard, and the statistics behind its marks:

>>> _ = srbench.evaluate("bicubic", "demo", results_dir=results, progress=False)
>>> srbench.load_results(results)[["method", "psnr_mean"]].round(2).values.tolist()
[['bspline', 30.95], ['bicubic', 30.76]]
>>> board = srbench.leaderboard(results)
>>> bool(board.loc[board.method == "bicubic", "psnr_not_sig_from_best"].item())
True
>>> srbench.stats(results, "demo").metrics["psnr"].best
'bspline'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SRBenchError

PLANES = ("axial", "coronal", "sagittal")


@dataclass
class Run:
    """One finished run: its record, per-slice scores, through-plane scores and folder."""

    path: Path
    record: object  # srbench.record.RunRecord (record.to_dict(): the JSON form)
    scores: pd.DataFrame  # one row per axial test slice: case, patient, slice, one column per metric
    planes: pd.DataFrame  # coronal / sagittal planes and axial slice pairs (srbench.through_plane)
    ran: bool = True  # False when the run had already finished and was read back

    def summary(self, unit: str = "slice") -> pd.DataFrame:
        """Mean, SD and n per (plane, metric): axial, coronal, sagittal and the slice-to-slice consistency;
        ``unit`` "slice" (the paper's) or "volume" (mean per case first)."""
        key = {"slice": "per_slice", "volume": "per_volume"}.get(unit)
        if key is None:
            raise SRBenchError(f"unit must be 'slice' or 'volume', got {unit!r}")
        raw = self.record.to_dict()
        tp = raw.get("through_plane") or {}
        sections = {"axial": raw["summary"][key],
                    **{p: tp.get(p, {}).get(key, {}) for p in PLANES[1:]},
                    "consistency": tp.get("consistency", {}).get(key, {})}
        rows = [{"plane": plane, "metric": name.lower(), **(s or {"mean": np.nan, "std": np.nan, "n": 0})}
                for plane, stats in sections.items() for name, s in stats.items()]
        return pd.DataFrame(rows).set_index(["plane", "metric"])

    def volume(self, case: str | None = None):
        """The saved SR volume of ``case`` (default: the first) as a SimpleITK image."""
        from .volume import read_volume

        files = (self.record.volumes or {}).get("files") or {}
        if not files:
            raise SRBenchError(f"{self.path}: no SR volumes saved (run with save_volumes=True)")
        if case is not None and case not in files:
            raise SRBenchError(f"{self.path}: no SR volume for case {case!r}; saved: {', '.join(files)}")
        return read_volume(self.path / files[case if case is not None else next(iter(files))])


def load_run(path: str | Path, ran: bool = False) -> Run:
    """A run folder (the one holding ``record.json``) as a :class:`Run`."""
    from . import record as rec
    from .through_plane import FILE as PLANES_CSV

    path = Path(path)
    if not (path / rec.RECORD).is_file():
        raise SRBenchError(f"{path}: no {rec.RECORD} (not a finished run folder)")
    record = rec.load_record(path)
    planes = pd.read_csv(path / PLANES_CSV) if (path / PLANES_CSV).is_file() else pd.DataFrame()
    return Run(path, record, record.scores(), planes, ran)


def evaluate(method: str, dataset: str, degradation: str | None = None, seed: int = 0, *, preset: str = "tiny",
             device: str = "auto", results_dir: str | Path | None = None, train: bool = False,
             checkpoint: str | Path | None = None, force: bool = False, save_volumes: bool | None = None,
             data_root: str | None = None, progress: bool = True, pretrained_only: bool = False,
             batch_size: int | None = None, precision: str | None = None, console=None) -> Run | None:
    """Run ``method`` on ``dataset``'s test split (fitting it first when it trains and has no shipped weights),
    score it, record it under ``results_dir`` (default: ``$SRBENCH_RESULTS`` or ``./leaderboards``), as
    ``srbench run`` does; returns the :class:`Run` (None when ``pretrained_only`` skipped a learned method that
    has no weights). ``batch_size``: slices per forward pass at inference (None: the method's own); outputs do
    not depend on it, so it is not part of the run's identity (``run.record.batch_size`` is the one used).
    ``precision``: ``fp32`` or ``bf16`` inference for methods that offer it (None: the preset's; part of the identity).
    ``progress=False`` silences the progress bars; ``console``: a rich Console for them."""
    from rich.console import Console

    from .runner import RunOptions
    from .runner import run as do_run

    opts = RunOptions(method=method, dataset=dataset, degradation=degradation, preset=preset, seed=seed,
                      device=device, results_dir=resolve_results_dir(results_dir), force=force, train=train,
                      checkpoint=Path(checkpoint) if checkpoint else None, data_root=data_root,
                      pretrained_only=pretrained_only, save_volumes=save_volumes, batch_size=batch_size,
                      precision=precision)
    out_dir, ran = do_run(opts, console or Console(stderr=True, quiet=not progress))
    return None if out_dir is None else load_run(out_dir, ran)


def _image(value, like=None, what: str = "volume"):
    """A path, SimpleITK image or array as a SimpleITK image (an array takes ``like``'s geometry, if any)."""
    import SimpleITK as sitk

    from .volume import from_array, read_volume

    if isinstance(value, sitk.Image):
        return sitk.Cast(value, sitk.sitkFloat32)
    if isinstance(value, (str, Path)):
        return read_volume(value)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]  # one slice
    if array.ndim != 3:
        raise SRBenchError(f"{what}: expected a 3-D (z, y, x) array or one 2-D slice, got shape {array.shape}")
    if like is not None and like.GetSize() == array.shape[::-1]:
        return from_array(array, like)
    return sitk.GetImageFromArray(array)


def score(pred, ref, mask=None, *, device: str = "cpu") -> pd.DataFrame:
    """Score ``pred`` against ``ref`` slice by slice (axial = first NumPy axis) with the paper's conventions:
    both normalised by ``ref``'s [min, max], ``pred`` clipped to [0, 1], both multiplied by ``mask`` (non-zero
    = inside; its empty slices skipped). Each may be a path, a SimpleITK image or an array; images must share
    one grid. One row per scored slice: ``slice`` and one lower-case column per metric (NaN: unavailable);
    ``df.attrs`` holds ``skipped`` slices and ``unavailable`` notices."""
    from .score_volumes import score_images

    ref_img = _image(ref, what="reference")
    pred_img = _image(pred, ref_img, "prediction")
    mask_img = _image(mask, ref_img, "mask") if mask is not None else None
    result = score_images(pred_img, ref_img, mask_img, device, names=("prediction", "reference", "mask"))
    df = pd.DataFrame(result["slices"]).rename(columns={"index": "slice"})
    for name in result["metrics"]:
        if name not in df:
            df[name] = np.nan
    df.attrs.update(skipped=result["skipped"], unavailable=result["unavailable"])
    return df


def load_results(results_dir: str | Path | None = None, dataset: str | None = None,
                 degradation: str | None = None, plane: str = "axial") -> pd.DataFrame:
    """The newest finished run of each method x preset x dataset x degradation in ``results_dir``, one row
    each (the leaderboard's CSV columns, without statistics), best first within a block; ``plane`` "coronal"
    or "sagittal": the metric columns are that plane's (``srbench.through_plane``)."""
    from . import leaderboard as lb

    table = lb.load_table(resolve_results_dir(results_dir), dataset, degradation, plane=plane)
    return table[[c for c in table.columns if not str(c).startswith("_")]]


def leaderboard(results_dir: str | Path | None = None, dataset: str | None = None, degradation: str | None = None,
                *, protocol: str = "paper", unit: str = "slice", alpha: float = 0.05,
                format: str | None = None, plane: str = "axial"):
    """:func:`load_results` with ``<metric>_not_sig_from_best`` (the asterisks, from :func:`stats`); with
    ``format`` ("csv", "md", "latex", "html") the export ``srbench leaderboard --format`` writes, as text.
    ``plane`` "coronal" or "sagittal": scores, marks and statistics of that plane."""
    from . import leaderboard_export as lx
    from .report_cli import leaderboard_data

    df, sig, direction, _ = leaderboard_data(resolve_results_dir(results_dir), dataset, degradation, protocol, unit,
                                             alpha, plane=plane)
    if format is None:
        return df[[c for c in df.columns if not str(c).startswith("_")]]
    if format == "csv":
        return lx.to_csv(df)
    if format == "md":
        return lx.to_markdown(df, direction, sig)
    if format == "latex":
        from .latex import to_latex

        return to_latex(df, direction, sig)
    if format == "html":
        from .report import to_report

        return to_report(df, direction, sig)
    raise SRBenchError(f"unknown format {format!r}; expected csv, md, latex or html")


def stats(results_dir: str | Path | None = None, dataset: str | None = None, degradation: str | None = None, *,
          protocol: str = "paper", unit: str = "slice", alpha: float = 0.05):
    """Per metric: the normality decision, the omnibus test, pairwise adjusted p-values (DataFrames) and the
    methods not significantly different from the best, over ``dataset``'s newest runs (``srbench stats``);
    a :class:`srbench.stats.StatsReport` (``.metrics[name]``, ``.to_dict()``)."""
    from . import scores as sc
    from . import stats as st

    if not dataset:
        raise SRBenchError("stats: name the dataset whose runs to compare")
    runs = sc.select_runs(resolve_results_dir(results_dir), dataset, degradation)  # label -> runs (seeds)
    if len(runs) < 2:
        raise SRBenchError(f"only one method ({next(iter(runs))}) has runs for dataset {dataset!r}; "
                           "statistics need two or more")
    report = st.analyse(sc.scores_of(runs), sc.directions_of(runs), protocol, unit, alpha)
    report.runs = runs
    return report


def resolve_results_dir(results_dir) -> Path:
    from .runner import default_results_dir

    return Path(results_dir) if results_dir else default_results_dir()  # $SRBENCH_RESULTS or ./leaderboards
