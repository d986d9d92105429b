"""The ``folder`` dataset: NIfTI folders with masks, BIDS trees, DICOM series folders, broken copies,
``--dataset folder:PATH`` and datasets named in a config file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from srbench.errors import SRBenchError
from srbench.runner import make_dataset

from conftest import assert_one_line_error
from test_prostatex import all_cases, phantom, write_series

from srbench_datasets.folder import FolderDataset


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SRBENCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def brain(seed=0, size=(24, 24, 18), spacing=(0.8, 0.8, 0.8)) -> tuple[sitk.Image, sitk.Image]:
    """A skull-stripped-looking volume (zero outside an ellipsoid) and its mask."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in size[::-1]), indexing="ij")
    inside = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.8) ** 2 < 1
    values = np.random.default_rng(seed).uniform(1000, 2000, inside.shape) * inside
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def test_nifti_folder_with_masks_beside_and_in_masks_folder(tmp_path):
    root = tmp_path / "maps"
    for i in range(6):
        image, mask = brain(i)
        write(image, root / f"case{i}.nii.gz")
        if i == 0:
            write(mask, root / "case0_mask.nii.gz")
        if i == 1:
            write(mask, root / "masks" / "case1.nii.gz")
    write(brain(9)[0], root / "extra.nrrd")
    ds = FolderDataset(root=str(root))
    assert ds.default_degradation == "brain-t1map"
    m = ds.manifest()
    ids = sorted(c for v in m.splits.values() for c in v)
    assert ids == ["case0", "case1", "case2", "case3", "case4", "case5", "extra"]
    assert len(m.splits["test"]) == round(7 * 66 / 334) and m.extra["layout"] == "plain"
    assert FolderDataset(root=str(root)).manifest().hash == m.hash  # seeded: the same split every time
    cases = all_cases(ds)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cases["case0"].mask), sitk.GetArrayFromImage(brain(0)[1]))
    assert cases["case1"].mask is not None and cases["case2"].mask is None
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cases["case3"].hr), sitk.GetArrayFromImage(brain(3)[0]))
    assert ds.skipped == []


def test_bids_tree_case_is_the_subject_and_sessions_stay_together(tmp_path):
    root = tmp_path / "bids"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.8.0"}))
    for s in range(1, 6):
        image, mask = brain(s)
        write(image, root / f"sub-{s:02d}" / "anat" / f"sub-{s:02d}_T1w.nii.gz")
        write(image, root / f"sub-{s:02d}" / "anat" / f"sub-{s:02d}_T2w.nii.gz")  # other contrast: ignored
        if s == 1:
            write(mask, root / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz")
        if s == 2:
            write(mask, root / "derivatives" / "skullstrip" / "sub-02" / "anat" / "sub-02_desc-brain_mask.nii.gz")
    for ses in ("ses-1", "ses-2"):
        write(brain(7)[0], root / "sub-07" / ses / "anat" / f"sub-07_{ses}_T1w.nii.gz")
    (root / "sub-08" / "anat").mkdir(parents=True)  # a subject without a T1w: skipped, counted
    ds = FolderDataset(root=str(root))
    m = ds.manifest()
    ids = sorted(c for v in m.splits.values() for c in v)
    assert ids == ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-07_ses-1", "sub-07_ses-2"]
    side = [k for k, v in m.splits.items() if "sub-07_ses-1" in v]
    assert side and "sub-07_ses-2" in m.splits[side[0]]  # one patient, one split
    assert ds.patient_of("sub-07_ses-2") == "sub-07" and m.extra["layout"] == "bids"
    assert dict(ds.skipped)["sub-08"].startswith("no *_T1w")
    cases = all_cases(ds)
    assert cases["sub-01"].mask is not None and cases["sub-02"].mask is not None and cases["sub-03"].mask is None
    t1map = FolderDataset(root=str(root), suffix="T2w").manifest()
    assert "sub-07_ses-1" not in [c for v in t1map.splits.values() for c in v]


def test_dicom_series_folders(tmp_path):
    root = tmp_path / "dicom"
    for i in range(3):
        write_series(root / f"patient{i}" / "study" / "series", phantom((6, 32, 32), i), "mprage", f"P{i}",
                     spacing=(0.8, 0.8, 0.8))
    ds = FolderDataset(root=str(root))
    cases = all_cases(ds)
    assert set(cases) == {"patient0", "patient1", "patient2"}
    hr = cases["patient1"].hr
    assert hr.GetSize() == (32, 32, 6)
    np.testing.assert_allclose(hr.GetSpacing(), (0.8, 0.8, 0.8), rtol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(hr), phantom((6, 32, 32), 1))
    # A folder that is itself one series is one case.
    single = FolderDataset(root=str(root / "patient0" / "study" / "series"))
    assert list(single.sources()) == ["series"]


def test_broken_inputs_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "broken"
    for i in range(3):
        write(brain(i)[0], root / f"good{i}.nii.gz")
    image = brain(5)[0]
    nan = sitk.GetArrayFromImage(image)
    nan[3, 3, 3] = np.nan
    nan_image = sitk.GetImageFromArray(nan)
    write(nan_image, root / "nan.nii.gz")
    write(sitk.JoinSeries([image, image]), root / "fourd.nii.gz")
    data = write(image, root / "cut.nii.gz").read_bytes()
    (root / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    (root / "garbage.nii").write_bytes(b"not a nifti at all" * 10)
    write(sitk.GetImageFromArray(np.zeros((10, 10, 10), np.float32)), root / "flat.nii.gz")
    write(image, root / "badmask.nii.gz")
    write(sitk.GetImageFromArray(np.ones((5, 5, 5), np.uint8)), root / "badmask_mask.nii.gz")
    write_series(root / "two" / "a", phantom((4, 16, 16)), "t1", "X")  # a case folder with two series
    write_series(root / "two" / "b", phantom((4, 16, 16)), "t1", "X")
    (root / "empty").mkdir()
    t2 = root / "gap" / "series"
    write_series(t2, phantom((5, 16, 16)), "t1", "Y")
    (t2 / "1-03.dcm").unlink()
    ds = FolderDataset(root=str(root), test_fraction=0.5)
    cases = all_cases(ds)
    assert set(cases) == {"good0", "good1", "good2"}
    reasons = dict(ds.skipped)
    assert set(reasons) == {"nan", "fourd", "cut", "garbage", "flat", "badmask", "two", "empty", "gap"}
    assert "NaN" in reasons["nan"] and "4-D" in reasons["fourd"] and "constant" in reasons["flat"]
    assert "truncated" in reasons["cut"] or "cannot read" in reasons["cut"]
    assert "cannot read" in reasons["garbage"] and "mask" in reasons["badmask"]
    assert "2 DICOM series" in reasons["two"] and "no volume" in reasons["empty"]
    assert "non-uniform" in reasons["gap"]
    assert all("\n" not in r for r in reasons.values())


def test_empty_and_missing_directories_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    for root, text in ((tmp_path / "empty", "no volumes found"), (tmp_path / "nope", "no such directory")):
        with pytest.raises(SRBenchError) as info:
            FolderDataset(root=str(root)).manifest()
        assert text in str(info.value) and str(root) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SRBenchError, match="folder:PATH"):
        FolderDataset()


def test_all_cases_of_a_split_skipped_is_a_one_line_error(tmp_path):
    root = tmp_path / "bad"
    for i in range(2):
        write(sitk.GetImageFromArray(np.full((6, 6, 6), np.nan, np.float32)), root / f"c{i}.nii.gz")
    ds = FolderDataset(root=str(root))
    split = next(iter(ds.manifest().splits))
    with pytest.raises(SRBenchError) as info:
        list(ds.cases(split))
    assert "were skipped" in str(info.value) and "NaN" in str(info.value) and "\n" not in str(info.value)


def test_splits_file_naming_missing_cases(tmp_path):
    root = tmp_path / "pinned"
    for i in range(3):
        write(brain(i)[0], root / f"c{i}.nii.gz")
    (root / "srbench-splits.json").write_text(json.dumps({"train": ["c0", "c1"], "test": ["c2", "c9"]}))
    ds = FolderDataset(root=str(root))
    m = ds.manifest()
    assert m.splits == {"train": ["c0", "c1"], "test": ["c2"]} and m.extra["missing"] == ["c9"]
    assert "not found" in dict(ds.skipped)["c9"]
    (root / "srbench-splits.json").write_text(json.dumps({"train": ["c0"], "test": ["c0"]}))
    with pytest.raises(SRBenchError, match="both"):
        FolderDataset(root=str(root)).manifest()


def test_make_dataset_folder_path_and_config_file(tmp_path, monkeypatch):
    root = tmp_path / "brains"
    for i in range(3):
        write(brain(i)[0], root / f"c{i}.nii.gz")
    ds = make_dataset(f"folder:{root}")
    assert isinstance(ds, FolderDataset) and ds.root == str(root.resolve())
    assert make_dataset("folder", str(root)).root == str(root.resolve())
    with pytest.raises(SRBenchError, match="another"):
        make_dataset(f"folder:{root}", str(tmp_path))
    config = tmp_path / "conf" / "srbench.toml"
    config.parent.mkdir()
    config.write_text('[datasets.mybrain]\ntype = "folder"\nroot = "../brains"\nseed = 3\n'
                      '[datasets.broken]\nroot = "x"\n[datasets.wrongopt]\ntype = "folder"\nroot = "../brains"\n'
                      'colour = "red"\n')
    monkeypatch.setenv("SRBENCH_CONFIG", str(config))
    named = make_dataset("mybrain")
    assert named.name == "mybrain" and named.root == str(root.resolve()) and named.seed == 3
    assert named.manifest().dataset == "mybrain"
    with pytest.raises(SRBenchError, match="needs type"):
        make_dataset("broken")
    with pytest.raises(SRBenchError, match="colour"):
        make_dataset("wrongopt")
    with pytest.raises(SRBenchError, match="unknown dataset 'nosuch'"):
        make_dataset("nosuch")
    monkeypatch.setenv("SRBENCH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SRBenchError, match="config file not found"):
        make_dataset("mybrain")


def test_cli_run_on_a_folder(tmp_path, cli):
    root = tmp_path / "brains"
    for i in range(3):
        image, mask = brain(i, size=(27, 27, 18))
        write(image, root / f"c{i}.nii.gz")
        write(mask, root / f"c{i}_mask.nii.gz")
    result = cli("run", "--method", "bicubic", "--dataset", f"folder:{root}", "--results-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    record = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "record.json").read_text(encoding="utf-8"))
    assert record["dataset"]["name"] == "folder" and record["degradation"]["protocol"] == "brain-t1map"
    bad = cli("run", "--method", "bicubic", "--dataset", f"folder:{tmp_path / 'nope'}", "--results-dir",
              tmp_path / "r")
    assert_one_line_error(bad, "no such directory")


def test_nifti2_is_read_through_nibabel_with_the_same_geometry(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    image, _ = brain(1)
    image.SetOrigin((10.0, -20.0, 5.0))
    nifti1 = write(image, tmp_path / "one" / "c.nii.gz")
    n1 = nibabel.load(str(nifti1))
    root = tmp_path / "two"
    root.mkdir()
    nibabel.save(nibabel.Nifti2Image(np.asarray(n1.dataobj), n1.affine), str(root / "c.nii.gz"))
    nibabel.save(nibabel.Nifti2Image(np.zeros((4, 4, 4, 3), np.float32), n1.affine), str(root / "d.nii.gz"))
    ds = FolderDataset(root=str(root), test_fraction=0.5)
    cases = all_cases(ds)
    hr = cases["c"].hr
    np.testing.assert_allclose(hr.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(hr.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(hr), sitk.GetArrayFromImage(image))
    assert "4-D" in dict(ds.skipped)["d"]


def test_scanner_written_dicom_from_pydicom_test_data(tmp_path):
    """Real CT/MR/CR exports (pydicom's test files): series picked by description, bad ones skipped."""
    import shutil

    pydicom = pytest.importorskip("pydicom")
    source = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    if not (source / "98892001" / "CT5N").is_dir():
        pytest.skip("pydicom's test files are not installed")
    root = tmp_path / "export"
    shutil.copytree(source, root)
    ds = FolderDataset(root=str(root))
    ds.manifest()
    reasons = dict(ds.skipped)
    assert "2 DICOM series folders" in reasons["98892001"] and "SmartScore" in reasons["98892001"]
    picked = FolderDataset(root=str(root), series="smartscore")
    assert "98892001" in [c for v in picked.manifest().splits.values() for c in v]
    hr = picked.load_case("98892001").hr
    assert hr.GetSize() == (16, 16, 5)
    np.testing.assert_allclose(hr.GetSpacing(), (0.488281, 0.488281, 2.5), rtol=1e-5)
    assert "no DICOM series whose description" in dict(picked.skipped)["77654033"]
    case = FolderDataset(root=str(root / "77654033" / "CT2"))
    with pytest.raises(SRBenchError, match="non-uniform slice spacing"):
        case.read_case("CT2")


def test_two_folders_with_the_same_file_names_are_two_runs_and_two_rows(tmp_path, cli):
    results = tmp_path / "r"
    dirs = []
    for name, offset in (("a", 0), ("b", 10)):
        root = tmp_path / name / "data"
        for i in range(3):
            image, mask = brain(i + offset, size=(27, 27, 18))
            write(image, root / f"c{i}.nii.gz")
            write(mask, root / f"c{i}_mask.nii.gz")
        result = cli("run", "-m", "bicubic", "-d", f"folder:{root}", "-r", results)
        assert result.exit_code == 0, result.output
        assert "already finished" not in result.stderr  # B's data never reuses A's run
        dirs.append(Path(result.stdout.strip().splitlines()[-1]))
    assert dirs[0] != dirs[1]
    rows = cli("leaderboard", "-r", results, "-f", "csv").stdout.strip().splitlines()
    assert len(rows) == 3  # header + one row per folder
    named = cli("run", "-m", "bicubic", "-d", f"folder:{tmp_path / 'a' / 'data'}?name=mydata", "-r", results)
    assert named.exit_code == 0, named.output
    assert "mydata" in cli("leaderboard", "-r", results, "-f", "csv").stdout
