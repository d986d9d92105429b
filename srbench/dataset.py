"""The Dataset interface: cases (patients' HR volumes), and a split manifest with a hash.

Splits are by patient, never by slice. A case may restrict itself to some axial slices (``slices``) when a
dataset splits one volume into disjoint slabs, as the demo does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError

SPLITS = ("train", "val", "test")


@dataclass
class Case:
    case_id: str
    patient_id: str
    hr: sitk.Image
    mask: sitk.Image | None = None
    slices: Sequence[int] | None = None  # axial indices that belong to this case; None: all


@dataclass
class SplitManifest:
    """Which case ids form each split; its hash identifies the split in every run record."""

    dataset: str
    splits: dict[str, list[str]]
    rule: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "rule": self.rule, "splits": self.splits, "extra": self.extra}

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def case_ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise SRBenchError(f"dataset {self.dataset!r} has no split {split!r}; it has {', '.join(self.splits)}")
        return list(self.splits[split])


class Dataset:
    """Base class. Subclasses set ``name``, ``default_degradation`` and implement the two methods."""

    name: str = ""
    description: str = ""
    default_degradation: str = "brain-t1map"

    def __init__(self, root: str | None = None):
        self.root = root

    def manifest(self) -> SplitManifest:
        raise NotImplementedError

    def load_case(self, case_id: str) -> Case:
        raise NotImplementedError

    def cases(self, split: str) -> Iterator[Case]:
        for case_id in self.manifest().case_ids(split):
            yield self.load_case(case_id)

    def perturbed(self, split: str, seed: int = 0) -> "Dataset":
        """A copy of this dataset whose ``split`` cases hold uniform noise instead of their HR content (same
        geometry and mask), for the split-isolation check (``srbench.splitcheck``). This default suits datasets
        whose cases are volumes of their own (one file or series each); a dataset that cuts several cases from
        one source volume overrides it to perturb that source, which is where leakage would come from."""
        return _Perturbed(self, split, seed)


class _Perturbed(Dataset):
    def __init__(self, base: Dataset, split: str, seed: int):
        super().__init__(base.root)
        self.base, self.noisy, self.seed = base, set(base.manifest().case_ids(split)), seed
        self.name, self.default_degradation = base.name, base.default_degradation

    def manifest(self) -> SplitManifest:
        return self.base.manifest()

    def load_case(self, case_id: str) -> Case:
        case = self.base.load_case(case_id)
        if case_id not in self.noisy:
            return case
        array = sitk.GetArrayFromImage(case.hr)
        rng = np.random.default_rng(self.seed)
        noise = sitk.GetImageFromArray(rng.uniform(0, float(array.max()) or 1.0, array.shape).astype(array.dtype))
        noise.CopyInformation(case.hr)
        return Case(case.case_id, case.patient_id, noise, case.mask, case.slices)
