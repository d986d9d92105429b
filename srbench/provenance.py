"""What produced a leaderboard row, read from its run record for display: the training budget of a learned
method (samples seen, wall time, device), the hardware the run predicted on, and the method card.

The training budget comes from the record's ``training`` entry: the weights' training record (shipped or
``--checkpoint`` weights: the engine's record is nested under its own ``training`` key) or the engine's record
of a run that trained. A ``budget`` entry there (``samples_seen``, ``steps``, ``batch_size``,
``wall_seconds``, ``device``, as :mod:`srbench.budget` records it; ``samples`` and ``seconds`` also read) is
read first; without it, samples seen = steps x ``config.batch_size`` and the wall time and device
are the engine's ``seconds`` and ``device``.
"""

from __future__ import annotations

import math


def _engine(training: dict) -> dict:
    inner = training.get("training")
    return inner if isinstance(inner, dict) else training


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def training_budget(record: dict) -> dict | None:
    """``{"samples", "steps", "batch_size", "seconds", "device"}`` (None values where unknown), or None when the
    run's method did not train (no training record)."""
    training = record.get("training")
    if not isinstance(training, dict) or not training:
        return None
    engine = _engine(training)
    budget = next((b for b in (engine.get("budget"), training.get("budget")) if isinstance(b, dict)), {})
    config = engine.get("config") or {}
    steps = _number(budget.get("steps", engine.get("steps")))
    batch = _number(budget.get("batch_size", config.get("batch_size")))
    samples = _number(budget.get("samples", budget.get("samples_seen")))
    if samples is None and steps is not None and batch is not None:
        samples = int(steps) * int(batch)
    hardware = training.get("hardware") or {}
    device = budget.get("device") or engine.get("device") or hardware.get("device")
    if device and str(device).startswith("cuda") and hardware.get("gpu"):
        device = f"{device} ({hardware['gpu']})"
    return {"samples": samples, "steps": steps, "batch_size": batch,
            "seconds": _number(budget.get("wall_seconds", budget.get("seconds", engine.get("seconds")))),
            "device": device}


def run_device(record: dict) -> str | None:
    """The device the run predicted on: ``cpu``, or ``cuda:0 (GPU name)``."""
    hw = record.get("hardware") or {}
    device = hw.get("device")
    if device and hw.get("gpu"):
        return f"{device} ({hw['gpu']})"
    return device


def hardware_text(record: dict) -> str:
    """One line: device, processor, CPU count and torch threads, platform."""
    hw = record.get("hardware") or {}
    parts = [run_device(record) or "?"]
    if hw.get("processor"):
        parts.append(f"{hw['processor']}, {hw.get('cpu_count', '?')} CPUs, {hw.get('torch_threads', '?')} threads")
    if hw.get("platform"):
        parts.append(str(hw["platform"]))
    return "; ".join(parts)


def duration(seconds) -> str:
    """``42 s``, ``13.6 min``, ``3.3 h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def samples_text(budget: dict | None) -> str:
    """``104 k (13000 x 8)``; ``—`` for a method that does not train."""
    if not budget or budget.get("samples") is None:
        return "—"
    n = budget["samples"]
    short = f"{n / 1e6:.3g} M" if n >= 1e6 else f"{n / 1e3:.3g} k" if n >= 1e3 else str(int(n))
    if budget.get("steps") is not None and budget.get("batch_size") is not None:
        return f"{short} ({int(budget['steps'])} × {int(budget['batch_size'])})"
    return short


def card_items(card: dict) -> list[tuple[str, str]]:
    """The method card as (field, text) pairs, in the card's order, for display: nested values (settings) are
    written as compact JSON so that whatever the card holds is shown."""
    import json

    out = []
    for key, value in (card or {}).items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)
        else:
            text = str(value)
        out.append((key.replace("_", " "), text))
    return out
