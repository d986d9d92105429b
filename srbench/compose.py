"""Composition of degradations: ``A+B+...`` applies A, then B to A's output, and so on.

Spec syntax: the specs of the steps joined by ``+``, each ``name`` or ``name:key=value;key=value`` as usual,
e.g. ``--degradation "prostate-t2w+noise:snr=20"`` (resample to 2 x 2 x 3 mm, then Rician noise at SNR 20 on the
LR grid) or ``"kspace:spacing=2,2,3;window=hann+noise:sigma=0.01"``. A ``+`` splits steps only where a name
follows it (a letter), so values such as ``1e+3`` stay whole. The LR grid is the last step's output grid.

Step i gets its own seed, ``SeedSequence([seed, i])``, so two stochastic steps never share a noise field.
``params()`` records every step's parameters in order.
"""

from __future__ import annotations

import re

import numpy as np
import SimpleITK as sitk

from .degradation import Degradation
from .errors import SRBenchError

_SPLIT = re.compile(r"\+(?=\s*[A-Za-z])")


def split_spec(spec: str) -> list[str]:
    """The step specs of a composed spec (a single step gives a list of one)."""
    parts = [p.strip() for p in _SPLIT.split(spec)]
    if (len(parts) > 1 and not all(parts)) or spec.strip().startswith("+") or spec.strip().endswith("+"):
        raise SRBenchError(f"degradation {spec!r}: empty step in a '+' composition")
    return parts


def step_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0])


class Compose(Degradation):
    """Steps applied in order; parameters of every step recorded."""

    name = "compose"

    def __init__(self, steps, specs=None):
        steps = list(steps)
        if not steps:
            raise SRBenchError("compose: needs at least one step")
        self.steps = steps
        self.specs = list(specs) if specs is not None else None

    def params(self) -> dict:
        return {"name": self.name, "spec": "+".join(self.specs) if self.specs else None,
                "steps": [s.params() for s in self.steps], "seed_rule": "step i: SeedSequence([seed, i])"}

    def apply(self, hr: sitk.Image, seed: int = 0) -> sitk.Image:
        image = hr
        for i, step in enumerate(self.steps):
            image = step.apply(image, step_seed(seed, i))
        return image


def make_composed(parts: list[str], make_one) -> tuple[str, Compose]:
    """(name, Compose) from step specs; ``make_one(spec) -> (name, Degradation)`` builds each step."""
    built = [make_one(p) for p in parts]
    return "+".join(name for name, _ in built), Compose([d for _, d in built], specs=parts)
