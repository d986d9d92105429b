"""The conformance kit for method plugins: tiny data and ``check_method``, shipped as a pytest plugin.

A plugin author tests their method with one call::

    from srbench.testing import check_method
    from srbench_mine import Mine

    def test_mine_conforms(tmp_path):
        check_method(Mine, preset="tiny", settings={"train": {"steps": 20}}, workdir=tmp_path)

``check_method`` builds the method as the runner does (``cls(preset=..., device=..., seed=...)``), trains it on
a tiny synthetic dataset when it trains, and checks the contract srbench relies on:

========== ================================================================================================
card       ``card()`` is complete: name, version, summary, citation, license, trains, stochastic, parameters,
           sampling_steps, input_interpolator, preset, settings; plain JSON; agrees with the class
fit        (methods that train) ``fit(train, val, workdir)`` returns its training record, a dict
shape      ``predict_volume(lr, grid, slices, progress=...)`` returns ``(len(slices), H, W)`` of ``grid``
dtype      ... as a float32 NumPy array
range      ... finite, in a sensible range around [0, 1] (scoring clips to [0, 1]; far outside means a wrong
           intensity convention), not constant
geometry   ... aligned with the HR reference: the requested slices, in the grid's orientation
save-load  ``save(path)``, then ``load(path)`` into a fresh instance, predicts the same
determinism the same seed predicts the same twice; another seed predicts differently exactly when the card
           says ``stochastic``
batch-size predicting in batches of another size gives the same output (a run's batch size is not part of its
           identity): a stochastic method draws each slice's noise from its own generator
           (:mod:`srbench.slice_noise`)
========== ================================================================================================

All checks run; a failure raises :class:`ConformanceError` (an ``AssertionError``) listing every failed check
with what was expected and what to change. ``check_method`` returns a report when all pass.

As a pytest plugin (entry point ``pytest11``, loaded by every pytest run where srbench is installed; disable
with ``-p no:srbench``) it provides fixtures: ``srbench_volume`` (a tiny HR volume with non-trivial geometry and
its LR), ``srbench_dataset`` (a tiny dataset, train/val/test), ``srbench_train_pairs`` (its training slices).
This module imports only numpy (and pytest) at the top, and loads the rest when a check runs; importing it does
run ``srbench/__init__.py``, which today imports torch (about 2-3 s, once per pytest session).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

try:
    import pytest
except ImportError:  # pragma: no cover - check_method works without pytest; the fixtures need it
    pytest = None

# The tiny data live in srbench.tiny_data; the kit re-exports them, its public face for plugin authors.
from .tiny_data import (TINY_DEGRADATION, TINY_ORIGIN, TINY_SIZE, TINY_SPACING, TinyDatasetPlugin,  # noqa: F401
                        TinyVolume, slice_pairs, tiny_hr, tiny_volume)

CHECKS = ("card", "fit", "shape", "dtype", "range", "geometry", "save-load", "determinism", "batch-size")
# batch-size: largest mean |difference| accepted between batch sizes. Measured on the kit's tiny volume: float32
# kernels chosen by batch size differ by 2e-7 (Res-SRDiff), its bfloat16 inference by 5e-4; two noise draws
# differ by 2.6e-2 (Res-SRDiff) and 2.1e-3 (pix2pix's test-time dropout), so per-batch noise cannot pass.
BATCH_TOLERANCE = 1e-3
CARD_FIELDS = ("name", "version", "summary", "citation", "license", "trains", "stochastic", "parameters",
               "sampling_steps", "input_interpolator", "preset", "settings")


# --- what the checks predict -------------------------------------------------------------------------------
def check_slices(depth: int) -> list[int]:
    """The slices ``check_method`` predicts: four, not contiguous, not from 0 (the method must honour ``slices``)."""
    return sorted({1, depth // 3, depth // 3 + 1, depth - 2})


def __getattr__(name: str):
    if name == "TinyDataset":  # built on first use (srbench.tiny_data): srbench.dataset loads only when needed
        from . import tiny_data

        return tiny_data.TinyDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- pytest fixtures (prefixed: they must not clash with a project's own) --------------------------------
if pytest is not None:
    @pytest.fixture
    def srbench_volume() -> TinyVolume:
        """A tiny HR volume in [0, 1] with non-trivial spacing, origin and direction, and its LR (x2 coarser)."""
        return tiny_volume(seed=3)

    @pytest.fixture
    def srbench_dataset():
        """A tiny dataset (``srbench.testing.TinyDataset``): two train cases, one val, one test."""
        return __getattr__("TinyDataset")()

    @pytest.fixture
    def srbench_train_pairs(srbench_dataset):
        """Training slices of the tiny dataset, LR put on the HR grid with B-spline interpolation."""
        return slice_pairs(srbench_dataset, "train", "bspline")


# --- the checks -------------------------------------------------------------------------------------------
class ConformanceError(AssertionError):
    """A method breaks the plugin contract; ``failures`` maps each failed check to what went wrong."""

    def __init__(self, method: str, failures: dict[str, str], report: dict):
        self.method, self.failures, self.report = method, failures, report
        lines = [f"method {method!r} fails {len(failures)} conformance check(s):"]
        lines += [f"  [{check}] {message}" for check, message in failures.items()]
        super().__init__("\n".join(lines))


class _Fail(Exception):
    pass


class _Skip(Exception):
    pass


def _raised(exc: BaseException, what: str) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(str(exc).split())[:300]
    return f"{what} raised {type(exc).__name__}: {text}{where}"


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if a.size else 0.0


class _Checker:
    def __init__(self, cls, preset, device, seed, settings, fit, workdir: Path, size):
        self.cls, self.preset, self.device, self.seed = cls, preset, device, seed
        self.settings, self.do_fit, self.workdir, self.size = settings or {}, fit, workdir, size
        self.volume = tiny_volume(seed=3, size=size)
        self.slices = check_slices(size[2])
        self.pred = None
        self.weights: Path | None = None
        self.saved_ok = False
        self.repeatable = False  # the same seed predicts the same (determinism): batch sizes can then be compared

    def new(self, seed: int):
        method = self.cls(preset=self.preset, device=self.device, seed=seed)
        if self.settings:
            method.settings = _merge(method.settings, self.settings)
        return method

    def predict(self, method) -> np.ndarray:
        # as the runner calls it: with a progress callback that receives slice counts
        return method.predict_volume(self.volume.lr, self.volume.hr, list(self.slices), progress=lambda n: None)

    # card ------------------------------------------------------------------------------------------------
    def card(self):
        from .volume import RESAMPLERS

        cls, problems = self.cls, []
        card = self.method.card()
        if not isinstance(card, dict):
            raise _Fail(f"card() must return a dict, got {type(card).__name__}")
        missing = [k for k in CARD_FIELDS if k not in card]
        if missing:
            problems.append(f"missing field(s) {', '.join(missing)} (call super().card() and update it)")
        for key in ("name", "version", "summary", "citation", "license"):
            if key in card and not (isinstance(card[key], str) and card[key].strip()):
                problems.append(f"{key!r} is empty: set the class attribute {key} = \"...\"")
        name = card.get("name")
        if isinstance(name, str) and name and not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
            problems.append(f"name {name!r} is not a command-line name (lower case, digits, '-', '_', '.')")
        if name and name != cls.name:
            problems.append(f"card name {name!r} differs from the class attribute name {cls.name!r}")
        version = card.get("version")
        if isinstance(version, str) and version and not re.match(r"\d+(\.\d+)*", version):
            problems.append(f"version {version!r} does not start with a release number such as 1.0.0")
        for key in ("trains", "stochastic"):
            if key in card and not isinstance(card[key], bool):
                problems.append(f"{key!r} must be True or False, got {card[key]!r}")
            elif key in card and card[key] != getattr(cls, key):
                problems.append(f"card {key}={card[key]} but the class says {key}={getattr(cls, key)}: the runner "
                                "reads the class attribute")
        params = card.get("parameters")
        if card.get("trains") and not (isinstance(params, int) and params > 0):
            problems.append(f"'parameters' is {params!r}: a method that trains must count its parameters "
                            "(override parameter_count())")
        elif params is not None and not (isinstance(params, int) and params >= 0):
            problems.append(f"'parameters' must be a non-negative int or None, got {params!r}")
        steps = card.get("sampling_steps")
        if card.get("trains") and not (isinstance(steps, int) and steps >= 1):
            problems.append(f"'sampling_steps' is {steps!r}: a learned method states its network evaluations per "
                            "prediction (1 for a feed-forward network; override sampling_steps())")
        elif steps is not None and not (isinstance(steps, int) and steps >= 1):
            problems.append(f"'sampling_steps' must be a positive int or None, got {steps!r}")
        if card.get("input_interpolator", self.method.input_interpolator) not in RESAMPLERS:
            problems.append(f"input_interpolator {card.get('input_interpolator')!r} is not one of "
                            f"{', '.join(RESAMPLERS)}")
        if "tiny" not in getattr(cls, "presets", {}):
            problems.append("no 'tiny' preset: `srbench run` uses --preset tiny unless told otherwise (CPU-sized)")
        try:
            json.dumps(card, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"not plain JSON (it is written into every run record): {exc}")
        if problems:
            raise _Fail("; ".join(problems))
        self.report["card"] = card

    # fit -------------------------------------------------------------------------------------------------
    def fit(self):
        if not self.cls.trains:
            raise _Skip("the method does not train")
        if self.do_fit is False:
            raise _Skip("fit=False")
        dataset = __getattr__("TinyDataset")(size=self.size)
        interp = self.method.input_interpolator
        train, val = slice_pairs(dataset, "train", interp), slice_pairs(dataset, "val", interp)
        t0 = time.perf_counter()
        try:
            record = self.method.fit(train, val, self.workdir / "fit")
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "fit(train, val, workdir)")) from None
        self.report["fit_seconds"] = round(time.perf_counter() - t0, 2)
        if not isinstance(record, dict):
            raise _Fail(f"fit() must return its training record as a dict (steps, seconds, ...), got "
                        f"{type(record).__name__}; return trainer.fit() when using srbench.engine.Trainer")
        try:
            json.dumps(record, default=str)
        except (TypeError, ValueError) as exc:
            raise _Fail(f"the training record is written into the run record and must be JSON: {exc}") from None
        self.report["training"] = record

    # prediction ------------------------------------------------------------------------------------------
    def shape(self):
        try:
            pred = self.predict(self.method)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "predict_volume(lr, grid, slices, progress=...)")) from None
        from .errors import SRBenchError
        from .prediction import check_shape

        nx, ny, _ = self.volume.hr.GetSize()
        if isinstance(pred, np.ndarray):
            self.pred = pred
        try:  # the check srbench run and infer apply to every prediction
            check_shape(pred, len(self.slices), (ny, nx), "predict_volume")
        except SRBenchError as exc:
            raise _Fail(str(exc).removeprefix("predict_volume: ")) from None

    def _need_prediction(self):
        if self.pred is None or self.pred.shape != (len(self.slices), *self.volume.hr_array.shape[1:]):
            raise _Skip("no prediction of the right shape (see [shape])")

    def dtype(self):
        self._need_prediction()
        if self.pred.dtype != np.float32:
            raise _Fail(f"predict_volume returned {self.pred.dtype}, expected float32 (.astype(np.float32))")

    def range(self):
        self._need_prediction()
        from .errors import SRBenchError
        from .prediction import check_values

        pred = self.pred
        try:  # the check srbench run and infer apply to every prediction
            check_values(pred, "predict_volume")
        except SRBenchError as exc:
            raise _Fail(str(exc).removeprefix("predict_volume: ")) from None
        lo, hi = float(pred.min()), float(pred.max())
        if hi - lo < 1e-6:
            raise _Fail(f"the prediction is constant ({lo:.4g})")

    def geometry(self):
        self._need_prediction()
        pred = np.nan_to_num(self.pred.astype(np.float64))
        hr = self.volume.hr_array.astype(np.float64)
        ref = hr[self.slices]
        depth = len(hr)
        wrong = {
            "flipped up-down": ref[:, ::-1, :],
            "flipped left-right": ref[:, :, ::-1],
            f"slices {[(k + 3) % depth for k in self.slices]}": hr[[(k + 3) % depth for k in self.slices]],
            "the first slices of the volume": hr[:len(self.slices)],
        }
        right = float(np.mean((pred - ref) ** 2))
        errors = {what: float(np.mean((pred - other) ** 2)) for what, other in wrong.items()
                  if other.shape == ref.shape and not np.array_equal(other, ref)}
        if errors:
            what = min(errors, key=errors.get)
            err = errors[what]
            if err <= right:
                raise _Fail(f"the prediction matches the HR reference {what} (MSE {err:.4g}) at least as well as the "
                            f"requested slices {self.slices} in place (MSE {right:.4g}): predict_volume must return "
                            "the requested axial slices of `grid`, in its orientation (resample LR onto `grid` with "
                            "srbench.volume.resample_to)")
        self.report["mse_vs_hr"] = right

    # weights and seeds -----------------------------------------------------------------------------------
    def save_load(self):
        self.weights = self.workdir / "weights.safetensors"
        try:
            self.method.save(self.weights)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "save(path)")) from None
        if self.cls.trains and not self.weights.exists():
            raise _Fail(f"save(path) wrote nothing at {self.weights.name}: the runner keeps the weights at the path "
                        "it gives and loads them from there")
        try:
            other = self.new(self.seed)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "constructing a second instance")) from None
        try:
            other.load(self.weights)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "load(path) of what save(path) wrote")) from None
        self._need_prediction()
        try:
            again = self.predict(other)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "predict_volume after load")) from None
        if np.shape(again) != self.pred.shape or _max_diff(np.asarray(again), self.pred) > 1e-5:
            diff = _max_diff(np.asarray(again), self.pred) if np.shape(again) == self.pred.shape else float("nan")
            raise _Fail(f"a fresh instance (same preset and seed) that loaded the saved weights predicts differently "
                        f"(max |diff| {diff:.3g}): save() must write every weight the prediction uses and load() "
                        "must read them back (if [determinism] fails too, fix that first)")
        self.saved_ok = True

    def determinism(self):
        self._need_prediction()
        try:
            again = self.predict(self.method)
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, "a second predict_volume")) from None
        if np.shape(again) != self.pred.shape or not np.array_equal(np.asarray(again), self.pred, equal_nan=True):
            diff = _max_diff(np.asarray(again), self.pred) if np.shape(again) == self.pred.shape else float("nan")
            raise _Fail(f"two predictions with the same seed differ (max |diff| {diff:.3g}): draw randomness from the "
                        "`generator` predict_slices receives (seeded from the run's seed), not from the global RNG")
        self.repeatable = True
        if not self.saved_ok:
            raise _Skip("another seed is compared only once save/load works (see [save-load])")
        other = self.new(self.seed + 1)
        other.load(self.weights)
        changed = not np.array_equal(np.asarray(self.predict(other)), self.pred, equal_nan=True)
        if self.cls.stochastic and not changed:
            raise _Fail(f"the card says stochastic=True but seeds {self.seed} and {self.seed + 1} predict the same: "
                        "use the `generator` predict_slices receives, or set stochastic = False")
        if not self.cls.stochastic and changed:
            raise _Fail(f"seeds {self.seed} and {self.seed + 1} predict differently with the same weights, but the "
                        "card says stochastic=False: set stochastic = True")

    def batch_size(self):
        self._need_prediction()
        if not self.repeatable:
            raise _Skip("batch sizes are compared only once the same seed predicts the same (see [determinism])")
        if not np.isfinite(self.pred).all():
            raise _Skip("the prediction is not finite (see [range])")
        default = self.method.batch_size
        other = 3 if default == 1 else 1
        self.method.batch_size = other
        try:
            again = np.asarray(self.predict(self.method))
        except Exception as exc:  # noqa: BLE001
            raise _Fail(_raised(exc, f"predict_volume in batches of {other}")) from None
        finally:
            self.method.batch_size = default
        mean = float(np.mean(np.abs(again - self.pred))) if again.shape == self.pred.shape else float("nan")
        if not mean <= BATCH_TOLERANCE:
            raise _Fail(f"predicting in batches of {other} instead of {default} changes the output (mean |diff| "
                        f"{mean:.3g} > {BATCH_TOLERANCE:g}): a run's batch size is not part of its identity, so a "
                        "slice's output must not depend on its batch; draw each slice's noise from its own "
                        "generator (srbench.slice_noise.slice_generators)")


def check_method(method_cls, preset: str = "tiny", *, device: str = "cpu", seed: int = 0,
                 settings: dict | None = None, fit: bool | None = None, workdir: str | Path | None = None,
                 checks=None, size: tuple[int, int, int] = TINY_SIZE) -> dict:
    """Run the plugin contract on ``method_cls`` (a :class:`srbench.Method` subclass); see the module doc.

    ``preset``: the preset to build (make it small: when the method trains, it trains on the tiny dataset's two
    train volumes, 24 slices of 39 x 46 by default)
    ``settings``: overrides merged into ``method.settings`` after construction, e.g. ``{"train": {"steps": 20}}``
    (as ``srbench train --steps`` does). ``fit``: train before predicting (default: when the method trains).
    ``workdir``: a fresh folder for checkpoints and weights (default: a temporary one). ``checks``: a subset of
    :data:`CHECKS` (``card`` and ``fit`` are prerequisites of nothing; prediction checks share one prediction).
    ``size``: (x, y, z) voxels of the synthetic volumes (default 46 x 39 x 12: in-plane sizes that need padding).

    Returns ``{"method", "preset", "checks": {check: "passed" | "skipped: why"}, "card", ...}``; raises
    :class:`ConformanceError` naming every failed check.
    """
    selected = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in selected if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; checks: {', '.join(CHECKS)}")
    name = getattr(method_cls, "name", "") or method_cls.__name__
    report: dict = {"method": name, "preset": preset, "checks": {}}
    tmp = tempfile.TemporaryDirectory(prefix="srbench-check-") if workdir is None else None
    root = Path(tmp.name if tmp else workdir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        if len(size) != 3 or min(size) < 6:
            raise ValueError(f"size {size}: (x, y, z) with at least 6 voxels along each axis")
        checker = _Checker(method_cls, preset, device, seed, settings, fit, root, tuple(size))
        checker.report = report
        try:
            checker.method = checker.new(seed)
        except Exception as exc:  # noqa: BLE001
            raise ConformanceError(name, {"init": _raised(exc, f"{method_cls.__name__}(preset={preset!r}, "
                                                              f"device={device!r}, seed={seed})")}, report) from None
        failures: dict[str, str] = {}
        # shape also produces the prediction the later checks read; save-load precedes determinism (weights)
        needed = set(selected) | ({"shape"} if set(selected) & {"dtype", "range", "geometry", "save-load",
                                                                "determinism", "batch-size"} else set())
        if "batch-size" in needed:
            needed.add("determinism")
        if "determinism" in needed:
            needed.add("save-load")
        for check in CHECKS:
            if check not in needed:
                continue
            t0 = time.perf_counter()
            try:
                getattr(checker, check.replace("-", "_"))()
                status = "passed"
            except _Skip as skip:
                status = f"skipped: {skip}"
            except _Fail as fail:
                status = "failed"
                failures[check] = str(fail)
            except Exception as exc:  # noqa: BLE001 - an unexpected error inside the method is a failure too
                status = "failed"
                failures[check] = _raised(exc, "the method")
            report.setdefault("seconds", {})[check] = round(time.perf_counter() - t0, 3)
            if check in selected:
                report["checks"][check] = status
        failures = {c: m for c, m in failures.items() if c in selected}
        if failures:
            raise ConformanceError(name, failures, report)
        return report
    finally:
        if tmp is not None:
            tmp.cleanup()
