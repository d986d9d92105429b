"""The demo dataset: the nilearn MNI152 template, its brain mask, and the disjoint axial slabs of its split."""

from __future__ import annotations

import itertools
from pathlib import Path

import nilearn
import numpy as np
import pytest
import SimpleITK as sitk

import srbench_datasets.demo as demo
from srbench.dataset import SplitManifest
from srbench.errors import SRBenchError

TEMPLATE = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="module")
def cases():
    ds = demo.Demo()
    return {cid: ds.load_case(cid) for split in ("train", "val", "test") for cid in ds.manifest().case_ids(split)}


@pytest.fixture(scope="module")
def slabs():
    return demo.Demo()._slabs()


def test_each_slab_is_cropped_from_the_template_with_its_geometry(cases, slabs):
    template = sitk.ReadImage(str(TEMPLATE))
    assert template.GetSize() == (197, 233, 189)
    for case_id, case in cases.items():
        rows = slabs[case_id]
        assert case.slices is None  # the whole slab is the case
        for image in (case.hr, case.mask):
            assert image.GetSize() == (197, 233, len(rows))
            np.testing.assert_allclose(image.GetSpacing(), (1.0, 1.0, 1.0))
            np.testing.assert_allclose(image.GetOrigin(), template.TransformIndexToPhysicalPoint((0, 0, rows[0])))
            np.testing.assert_allclose(image.GetDirection(), template.GetDirection())


def test_hr_is_the_template_skull_stripped_by_the_mask(cases, slabs):
    case = cases["test"]
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(TEMPLATE))).astype(np.float32)[slabs["test"]]
    hr, mask = sitk.GetArrayFromImage(case.hr), sitk.GetArrayFromImage(case.mask) > 0
    np.testing.assert_array_equal(hr, np.where(mask, t1, 0))
    # The mask is the brain: a sizeable, central part of the head, covering most of the bright tissue.
    assert 0.1 < mask.mean() < 0.5
    bright = t1 > np.percentile(t1[t1 > 0], 50)
    assert mask[bright].mean() > 0.8


def test_split_is_by_case_with_all_three_splits():
    manifest = demo.Demo().manifest()
    assert isinstance(manifest, SplitManifest)
    assert manifest.case_ids("train") == ["train-inferior", "train-superior"]
    assert manifest.case_ids("val") == ["val"] and manifest.case_ids("test") == ["test"]
    with pytest.raises(SRBenchError, match="no split"):
        manifest.case_ids("calibration")
    with pytest.raises(SRBenchError, match="no case"):
        demo.Demo().load_case("nope")


def test_slabs_are_disjoint_contiguous_and_gapped(slabs):
    assert len(slabs["test"]) == demo.TEST_SLICES and len(slabs["val"]) == demo.VAL_SLICES
    for a, b in itertools.combinations(slabs.values(), 2):
        assert not set(a) & set(b)
    for s in slabs.values():
        assert s == list(range(s[0], s[-1] + 1)) and len(s) > 0
    ordered = sorted(slabs.values(), key=lambda s: s[0])
    assert [s[0] for s in ordered] == [slabs[k][0] for k in ("train-inferior", "val", "test", "train-superior")]
    for below, above in zip(ordered, ordered[1:]):
        assert above[0] - below[-1] - 1 >= demo.GAP


def test_every_used_slice_is_in_the_brain(slabs):
    mask = sitk.GetArrayFromImage(demo.load_template()[1]) > 0
    area = mask.sum(axis=(1, 2))
    used = sorted(k for rows in slabs.values() for k in rows)
    assert all(area[k] >= demo.MIN_BRAIN for k in used)
    # Every slice with that much brain is used, except those given up for the gaps.
    brain = set(np.nonzero(area >= demo.MIN_BRAIN)[0].tolist())
    assert set(used) <= brain and len(brain - set(used)) == 3 * demo.GAP


def test_manifest_hash_is_stable_and_tracks_the_split(monkeypatch):
    first, second = demo.Demo().manifest(), demo.Demo().manifest()
    assert first.hash == second.hash and len(first.hash) == 16
    monkeypatch.setattr(demo, "VAL_SLICES", demo.VAL_SLICES - 2)
    assert demo.Demo().manifest().hash != first.hash
    monkeypatch.undo()
    monkeypatch.setattr(demo, "GAP", demo.GAP + 1)
    assert demo.Demo().manifest().hash != first.hash
    monkeypatch.undo()
    assert demo.Demo().manifest().hash == first.hash
    changed = SplitManifest(first.dataset, {**first.splits, "test": ["val"], "val": ["test"]}, first.rule, first.extra)
    assert changed.hash != first.hash


def test_registered_through_its_entry_point():
    from srbench.plugins import get_registry

    reg = get_registry()
    assert reg.datasets["demo"] is demo.Demo and reg.owners[("datasets", "demo")] == "demo"
    assert demo.Demo.default_degradation == "brain-t1map"
