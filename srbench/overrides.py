"""What a run's options change in a method as its preset configured it, and whether that makes another run.

* ``--steps`` (:func:`set_steps`): the training steps; part of the run's identity (the settings change).
* ``--max-minutes`` (:func:`set_time_limit`): a stopping rule for training, not part of the identity: the same
  command resumes the run.
* ``--batch-size`` (:func:`set_batch_size`): slices per forward pass at inference; by default the method's own
  ``batch_size`` (a per-device choice, e.g. Res-SRDiff's). Not part of the identity either: outputs do not depend
  on it (stochastic methods draw each slice's noise from its own generator, ``srbench.slice_noise``), so a run
  with another batch size is the same run, the same leaderboard row. The run record keeps the one used
  (``config.batch_size``), and ``srbench reproduce`` reruns with it.
* ``--precision`` (:func:`set_precision`): the arithmetic of inference (``fp32``, exact, or ``bf16``) for methods
  that offer a choice (``set_precision``, e.g. Res-SRDiff's); part of the identity (the settings change).

Imports nothing heavy: the command line checks these options before loading anything.
"""

from __future__ import annotations

from .errors import SRBenchError


def train_settings(method) -> dict:
    """The method's training settings (``settings["train"]``, the layout of every learned preset)."""
    train = method.settings.get("train")
    if not isinstance(train, dict):
        raise SRBenchError(f"method {method.name!r}: its preset has no 'train' settings to change")
    return train


def set_steps(method, steps: int) -> None:
    """Train for ``steps`` instead of the preset's; the preset's LR restarts past them are dropped."""
    if steps < 1:
        raise SRBenchError(f"--steps must be at least 1, got {steps}")
    train = train_settings(method)
    train["steps"] = steps
    train["restarts"] = tuple(r for r in train.get("restarts", ()) if r < steps)


def set_time_limit(method, minutes: float) -> None:
    """Stop training after ``minutes`` (the engine checkpoints and records the training as unfinished)."""
    train_settings(method)["max_seconds"] = minutes * 60


def check_batch_size(batch_size) -> None:
    """A one-line error unless ``batch_size`` is None (the method's default) or a positive integer."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SRBenchError(f"--batch-size must be a positive integer (slices per forward pass), got {batch_size!r}")


PRECISIONS = ("fp32", "bf16")  # what --precision offers; a method resolves it for its device (set_precision)


def set_precision(method, precision: str | None) -> None:
    """Run inference in ``precision`` instead of the preset's (None: keep it). The method resolves it for its
    device (bf16 only where the hardware computes it natively) and its settings record the one that runs."""
    if precision is None:
        return
    if precision not in PRECISIONS:
        raise SRBenchError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    setter = getattr(method, "set_precision", None)
    if setter is None:
        raise SRBenchError(f"method {method.name!r} has no precision choice (--precision): it runs as its preset says")
    setter(precision)


def set_batch_size(method, batch_size: int | None) -> int:
    """Predict ``batch_size`` slices per forward pass (None: the method's own default); returns the one used."""
    check_batch_size(batch_size)
    if batch_size is not None:
        method.batch_size = batch_size
    return method.batch_size
