"""The preprocessing cache: hits skip reading and degrading, keys change with every input, corrupt files are
detected (checksum) and rebuilt, writes are atomic, and an unwritable cache never stops a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from srbench import cache as cache_mod
from srbench.cache import PreprocessCache, read_entry, write_entry
from srbench.dataset import Case
from srbench.degradation import Degradation
from srbench.runner import NORMALISATION, make_degradation, prepare, training_pairs

from conftest import synthetic_image

from srbench_datasets.folder import FolderDataset


@pytest.fixture(autouse=True)
def cache_dir(monkeypatch, tmp_path) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("SRBENCH_CACHE", str(path))
    for k in cache_mod.STATS:
        monkeypatch.setitem(cache_mod.STATS, k, 0)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "vols"
    root.mkdir()
    for i in range(3):
        image = synthetic_image(size=(30, 27, 24), seed=i)
        sitk.WriteImage(image, str(root / f"c{i}.nii.gz"))
    return root


@pytest.fixture
def reads(monkeypatch) -> list:
    """Case ids whose files FolderDataset actually reads."""
    calls = []
    original = FolderDataset.read_case

    def spy(self, case_id):
        calls.append(case_id)
        return original(self, case_id)

    monkeypatch.setattr(FolderDataset, "read_case", spy)
    return calls


def prepare_all(root: Path, spec="brain-t1map", seed=0) -> dict:
    ds = FolderDataset(root=str(root), test_fraction=0.34)
    _, degradation = make_degradation(spec)
    return {case.case_id: prepare(case, degradation, seed) for split in ds.manifest().splits
            for case in ds.cases(split)}


def same(a, b) -> None:
    np.testing.assert_array_equal(a.hr_array, b.hr_array)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.lr), sitk.GetArrayFromImage(b.lr))
    for image_a, image_b in ((a.hr, b.hr), (a.lr, b.lr)):
        assert image_a.GetSize() == image_b.GetSize() and image_a.GetSpacing() == image_b.GetSpacing()
        assert image_a.GetOrigin() == image_b.GetOrigin() and image_a.GetDirection() == image_b.GetDirection()
    assert a.slices == b.slices and a.skipped == b.skipped
    assert (a.mask is None) == (b.mask is None)


def test_second_run_reads_nothing_and_gives_identical_results(folder, reads, cache_dir):
    first = prepare_all(folder)
    assert sorted(reads) == ["c0", "c1", "c2"] and cache_mod.STATS["misses"] == 3
    reads.clear()
    second = prepare_all(folder)
    assert reads == [] and cache_mod.STATS["hits"] == 3  # validated files, cached volumes: no read at all
    for cid in first:
        same(first[cid], second[cid])
        assert not second[cid].case.loaded
    assert not list(cache_dir.rglob("*.tmp"))  # atomic writes leave no temporaries
    info = PreprocessCache().info()
    assert info["hr"]["entries"] == 3 and info["prepared"]["entries"] == 3


def test_a_changed_parameter_seed_or_file_gives_a_new_key(folder, reads):
    prepare_all(folder)
    prepare_all(folder, spec="brain-t1map:antialias=true")
    assert cache_mod.STATS["hits"] == 0 and cache_mod.STATS["misses"] == 6
    prepare_all(folder, seed=1)
    assert cache_mod.STATS["misses"] == 9
    prepare_all(folder)
    assert cache_mod.STATS["hits"] == 3
    # Replacing a file's content (new size/mtime) invalidates that case only.
    reads.clear()
    image = synthetic_image(size=(30, 27, 24), seed=42)
    sitk.WriteImage(image, str(folder / "c1.nii.gz"))
    out = prepare_all(folder)
    assert reads == ["c1"]
    np.testing.assert_allclose(out["c1"].hr_array.max(), 1.0)
    hr = synthetic_image()
    cache = PreprocessCache()
    _, deg = make_degradation("resample:factors=2,2,2")
    base = cache.keys(Case("a", "p", hr), deg, 0, NORMALISATION)
    assert cache.keys(Case("a", "p", hr), deg, 0, NORMALISATION) == base
    assert cache.keys(Case("a", "p", hr), deg, 0, "another rule")[0] != base[0]
    assert cache.keys(Case("a", "p", hr), deg, 1, NORMALISATION)[1] != base[1]
    assert cache.keys(Case("b", "p", hr), deg, 0, NORMALISATION)[1] != base[1]
    assert cache.keys(Case("a", "p", hr, slices=[3, 4]), deg, 0, NORMALISATION)[1] != base[1]
    _, other = make_degradation("kspace:factors=2,2,2")
    assert cache.keys(Case("a", "p", hr), other, 0, NORMALISATION)[1] != base[1]
    changed = sitk.Image(hr)
    changed[1, 1, 1] = 123.0
    assert cache.keys(Case("a", "p", changed), deg, 0, NORMALISATION)[0] != base[0]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "magic", "tail"])
def test_corrupted_cache_files_are_detected_and_rebuilt(folder, cache_dir, damage):
    first = prepare_all(folder)
    files = sorted(cache_dir.glob("prepared/*/*.srbc")) + sorted(cache_dir.glob("hr/*/*.srbc"))
    for path in files:
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "flip":
            data[len(data) // 2] ^= 0xFF
        elif damage == "empty":
            data = bytearray()
        elif damage == "garbage":
            data = bytearray(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        elif damage == "magic":
            data[:4] = b"XXXX"
        else:
            data += b"extra"
        path.write_bytes(bytes(data))
    again = prepare_all(folder)
    assert cache_mod.STATS["rebuilt"] >= 3 and cache_mod.STATS["hits"] == 0
    for cid in first:
        same(first[cid], again[cid])
    third = prepare_all(folder)  # rebuilt entries are valid again
    assert cache_mod.STATS["hits"] == 3
    for cid in first:
        same(first[cid], third[cid])


def test_entry_format_round_trip_and_checks(tmp_path):
    path = tmp_path / "e.srbc"
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2, 3], np.uint8)}
    write_entry(path, arrays, {"x": 1})
    got, meta = read_entry(path)
    assert meta == {"x": 1}
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].flags.writeable
    assert read_entry(tmp_path / "absent.srbc") is None
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError):
        read_entry(path)


def test_an_unwritable_cache_never_stops_a_run(folder, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SRBENCH_CACHE", str(blocker / "cache"))
    out = prepare_all(folder)
    assert len(out) == 3 and cache_mod.STATS["write_errors"] > 0


def test_cache_off(folder, monkeypatch, tmp_path, reads):
    monkeypatch.setenv("SRBENCH_CACHE", "off")
    assert not PreprocessCache().enabled
    prepare_all(folder)
    prepare_all(folder)
    assert len(reads) == 6 and cache_mod.STATS["hits"] == 0
    assert not (tmp_path / "cache").exists()


def test_training_pairs_cache_the_slices_on_the_hr_grid(folder):
    class Stub:
        input_interpolator = "bspline"

    ds = FolderDataset(root=str(folder), test_fraction=0.34)
    _, degradation = make_degradation("brain-t1map")
    first = training_pairs(ds, "train", degradation, Stub(), 0)
    hits = cache_mod.STATS["hits"]
    second = training_pairs(FolderDataset(root=str(folder), test_fraction=0.34), "train", degradation, Stub(), 0)
    assert cache_mod.STATS["hits"] == hits + 2 * len(ds.manifest().splits["train"])  # prepared + on-grid
    np.testing.assert_array_equal(first.lr, second.lr)
    np.testing.assert_array_equal(first.hr, second.hr)
    assert first.case_ids == second.case_ids
    Stub.input_interpolator = "nearest"  # another interpolator: another entry
    third = training_pairs(FolderDataset(root=str(folder), test_fraction=0.34), "train", degradation, Stub(), 0)
    assert not np.array_equal(third.lr, first.lr)


def test_plain_cases_are_keyed_by_content(cache_dir):
    hr = synthetic_image()
    _, deg = make_degradation("brain-t1map")
    a = prepare(Case("x", "p", hr), deg, 0)
    b = prepare(Case("x", "p", hr), deg, 0)
    assert cache_mod.STATS["hits"] == 1
    same(a, b)


def test_second_run_of_the_runner_starts_from_the_cache(folder, reads, tmp_path):
    from srbench.runner import RunOptions, run

    opts = RunOptions(method="bicubic", dataset=f"folder:{folder}", results_dir=tmp_path / "r")
    run_dir, ran = run(opts)
    assert ran and reads
    reads.clear()
    opts.force = True
    run_dir2, ran2 = run(opts)
    assert ran2 and reads == [] and cache_mod.STATS["hits"] >= 1
    a = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))["summary"]
    b = json.loads((run_dir2 / "record.json").read_text(encoding="utf-8"))["summary"]
    assert a == b


def test_cache_cli(folder, cache_dir):
    """``srbench cache info|clear``: added by the core plugin through register_commands."""
    import click
    from click.testing import CliRunner

    from srbench import plugins

    group = click.Group("srbench")
    for impl in plugins.get_plugin_manager().hook.register_commands.get_hookimpls():
        impl.function(group)
    assert "cache" in group.commands
    prepare_all(folder)
    result = CliRunner().invoke(group, ["cache", "info"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prepared"]["entries"] == 3
    result = CliRunner().invoke(group, ["cache", "clear"])
    assert result.exit_code == 0 and json.loads(result.stdout)["prepared"]["entries"] == 0


class _SeedStamp(Degradation):
    """A NumPy-only degradation (no SimpleITK filter, so its output is the same on every platform): every other
    slice, plus the case seed it was given as a constant offset, so that the seed rule is part of the digest."""

    name = "seed-stamp"

    def params(self) -> dict:
        return {"name": self.name}

    def apply(self, hr, seed=0):
        array = sitk.GetArrayFromImage(hr)[::2] + np.float32(seed % 997) / np.float32(1000)
        out = sitk.GetImageFromArray(array.astype(np.float32))
        out.SetSpacing(hr.GetSpacing()[:2] + (hr.GetSpacing()[2] * 2,))
        return out


# sha256 of prepare()'s output on _pipeline_case() under _SeedStamp, per cache.PIPELINE_VERSION.
PIPELINE_DIGESTS = {1: "d0cf798f9265ac2fa291826c0adb4e30bcb32dc4cebfaf8f78af7ba17ec58850"}


def _pipeline_case() -> Case:
    """A fixed case built from integers (no RNG), with an empty-mask slice for the slice choice."""
    z, y, x = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    array = (3 * z + 5 * y * x - 40).astype(np.float32)
    hr = sitk.GetImageFromArray(array)
    hr.SetSpacing((0.5, 0.5, 1.5))
    mask = np.ones(array.shape, np.uint8)
    mask[4] = 0
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(hr)
    return Case("golden", "p", hr, mask=mask_image, slices=[0, 1, 2, 3, 4])


def _prepared_digest(p) -> str:
    h = hashlib.sha256()
    for array in (p.hr_array, sitk.GetArrayFromImage(p.lr), p.mask):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(json.dumps([p.slices, p.skipped, p.hr.GetSpacing(), p.lr.GetSpacing()]).encode())
    return h.hexdigest()


@pytest.mark.parametrize("cached", [False, True])
def test_prepare_output_is_pinned_per_pipeline_version(monkeypatch, cached):
    """The cache keys entries by ``PIPELINE_VERSION`` instead of the code that made them: if this digest
    changes, prepare's output changed, so bump ``srbench.cache.PIPELINE_VERSION`` and record the new digest."""
    if not cached:
        monkeypatch.setenv("SRBENCH_CACHE", "off")
    p = prepare(_pipeline_case(), _SeedStamp(), 3)
    assert p.slices == [0, 1, 2, 3] and p.skipped == [4]  # with a mask, only empty-mask slices are skipped
    assert _prepared_digest(p) == PIPELINE_DIGESTS.get(cache_mod.PIPELINE_VERSION), (
        "prepare's output changed: bump srbench.cache.PIPELINE_VERSION and record the digest in PIPELINE_DIGESTS")


def test_the_pipeline_version_is_part_of_every_key(monkeypatch, cache_dir):
    case, degradation = _pipeline_case(), _SeedStamp()
    cache = PreprocessCache()
    before = cache.keys(case, degradation, 3, NORMALISATION)
    first = prepare(case, degradation, 3)
    monkeypatch.setattr(cache_mod, "PIPELINE_VERSION", cache_mod.PIPELINE_VERSION + 1)
    after = cache.keys(case, degradation, 3, NORMALISATION)
    assert after[0] != before[0] and after[1] != before[1]
    second = prepare(case, degradation, 3)  # the old entries are not used: both HR and LR are computed again
    assert cache_mod.STATS["hr_hits"] == 0 and cache_mod.STATS["hr_misses"] == 2
    assert cache_mod.STATS["hits"] == 0 and cache_mod.STATS["misses"] == 2
    same(first, second)
