"""Split isolation: perturbing one split's HR content leaves every other split's LR inputs bit-identical, for
every built-in degradation and interpolator, and the check catches a pipeline that degrades before it splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from srbench.dataset import Case, Dataset, SplitManifest
from srbench.runner import make_degradation
from srbench.splitcheck import check
from srbench.volume import INTERPOLATORS

SLABS = {"train": range(0, 18), "val": range(24, 36), "test": range(42, 60)}
DEGRADATIONS = ["brain-t1map", "prostate-t2w", "resample:factors=2,2,4", "brain-t1map-kspace",
                "prostate-t2w-kspace", "noise:snr=20", "brain-t1map+noise:snr=15"]


def _source(noisy: str | None = None) -> sitk.Image:
    """A smooth 60-slice phantom (a blob that varies along z), 0.8 mm in-plane, 1 mm through-plane."""
    z, y, x = np.mgrid[0:60, 0:24, 0:24].astype(np.float32)
    array = np.exp(-((y - 12) ** 2 + (x - 12) ** 2) / 60) * (1.5 + np.sin(z / 5))
    if noisy:
        rows = list(SLABS[noisy])
        array[rows] = np.random.default_rng(1).uniform(0, 2.5, array[rows].shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((0.8, 0.8, 1.0))
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


class Slabs(Dataset):
    """Cases cut from one source volume, like the demo: ``cropped`` cuts before degradation (srbench's rule);
    otherwise every case is the whole source with its slab's slice indices (degraded whole, then cut)."""

    name = "slabs"

    def __init__(self, cropped: bool = True, noisy: str | None = None):
        super().__init__(None)
        self.cropped, self.noisy = cropped, noisy

    def manifest(self):
        return SplitManifest("slabs", {k: [k] for k in SLABS})

    def load_case(self, case_id):
        source, rows = _source(self.noisy), list(SLABS[case_id])
        if self.cropped:
            return Case(case_id, "p", source[:, :, rows[0]:rows[-1] + 1])
        return Case(case_id, "p", source, slices=rows)

    def perturbed(self, split, seed=0):
        return Slabs(self.cropped, noisy=split)


@pytest.mark.parametrize("spec", DEGRADATIONS)
def test_cropped_splits_never_share_a_degradation(spec):
    rows = check(Slabs(), make_degradation(spec)[1], tuple(INTERPOLATORS))
    assert len(rows) == 3 * 2 * len(INTERPOLATORS)  # each split perturbed, each other case, each interpolator
    assert all(r.max_abs_diff == 0.0 for r in rows), [r for r in rows if r.max_abs_diff]


def test_the_check_catches_degrading_before_splitting():
    rows = check(Slabs(cropped=False), make_degradation("brain-t1map")[1], ("bspline",))
    leaked = {(r.perturbed, r.split) for r in rows if r.max_abs_diff > 0}
    assert ("test", "val") in leaked and ("val", "test") in leaked


def test_perturbing_the_demo_test_slab_leaves_train_and_val_inputs_bit_identical():
    import srbench_datasets.demo as demo

    rows = check(demo.Demo(), make_degradation("brain-t1map")[1], ("bspline", "nearest"))
    assert {r.perturbed for r in rows} == {"train", "val", "test"}
    assert all(r.max_abs_diff == 0.0 for r in rows)
    # ... and the perturbation does reach the perturbed split itself (the check is not vacuous)
    perturbed = demo.Demo().perturbed("test", seed=1).load_case("test")
    original = demo.Demo().load_case("test")
    assert not np.array_equal(sitk.GetArrayFromImage(perturbed.hr), sitk.GetArrayFromImage(original.hr))


def test_check_splits_command(monkeypatch):
    import srbench.splitcheck as splitcheck

    import click

    from srbench import builtins

    cli = click.Group("srbench")
    builtins.register_commands(cli)  # the core plugin adds check-splits, as `srbench` has it
    monkeypatch.setattr(splitcheck, "make_dataset", lambda spec, root=None: Slabs(cropped=spec == "good"))
    ok = CliRunner().invoke(cli, ["check-splits", "-d", "good", "-i", "bspline", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["isolated"] is True
    bad = CliRunner().invoke(cli, ["check-splits", "-d", "bad", "-i", "bspline"])
    assert bad.exit_code == 1 and "CHANGED" in bad.output and "input(s) changed" in bad.output
