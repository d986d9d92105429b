"""ProstateX on synthetic DICOM series written in TCIA's layout (patient / study / series / *.dcm), and NIfTI.

The series carry the tags the reader uses (SeriesDescription, ImageOrientationPatient, ImagePositionPatient,
SeriesInstanceUID, PatientID, ...); broken copies check that bad cases are skipped with a reason, never a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from srbench.file_dataset import split_by_patient
from srbench.errors import SRBenchError

import srbench_datasets.prostatex as px
from srbench_datasets.prostatex import ProstateX, canonical_patient, t2w_score

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)
_uid_counter = [0]


def new_uid() -> str:
    _uid_counter[0] += 1
    return f"1.2.826.0.1.3680043.8.498.{_uid_counter[0]}"


def phantom(shape=(8, 40, 40), seed=0) -> np.ndarray:
    """(z, y, x) int16: a smooth ellipsoid with texture, like an MR magnitude image."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = np.exp(-2 * ((x / 0.8) ** 2 + (y / 0.6) ** 2 + (z / 1.2) ** 2))
    texture = np.random.default_rng(seed).uniform(0, 0.2, shape)
    return (1000 * (body + texture)).astype(np.int16)


def write_series(directory: Path, array: np.ndarray, description: str, patient: str, *, spacing=(0.66, 0.66, 1.5),
                 orientation=AXIAL, origin=(-13.2, -13.2, 0.0), series_number=1, uid=None, study_uid="1.2.3.4.5",
                 positions=None) -> str:
    """Write ``array`` (z, y, x) as one single-frame DICOM file per slice, with the tags a scanner writes."""
    directory.mkdir(parents=True, exist_ok=True)
    uid = uid or new_uid()
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        position = np.array(origin) + (k * spacing[2] if positions is None else positions[k]) * normal
        image = sitk.GetImageFromArray(array[k:k + 1].astype(np.int16))
        image.SetSpacing(spacing)
        image.SetOrigin(position.tolist())
        image.SetDirection(np.column_stack([row, col, normal]).ravel().tolist())
        tags = {"0008|0060": "MR", "0008|103e": description, "0010|0010": patient, "0010|0020": patient,
                "0020|000d": study_uid, "0020|000e": uid, "0020|0011": str(series_number),
                "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                "0020|0037": "\\".join(f"{v:.6f}" for v in orientation),
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2])}
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(directory / f"1-{k + 1:02d}.dcm"))
        writer.Execute(image)
    return uid


def tcia_patient(root: Path, patient: str, *, t2=True, seed=0, t2_orientation=AXIAL, shape=(8, 40, 40),
                 extra=True) -> Path | None:
    """One patient as TCIA lays it out; returns the T2w series folder."""
    study = root / patient / "07-07-2011-NA-MR prostaat kanker detectie WDS_mc MCAPRODETW-05711"
    t2_dir = None
    if extra:
        write_series(study / "3.000000-t2tsesag-87368", phantom((6, 40, 40), seed + 1), "t2_tse_sag", patient,
                     orientation=SAGITTAL, series_number=3, spacing=(0.56, 0.56, 3.6))
        write_series(study / "6.000000-ep2ddifftraDYNDIST-14342", phantom((5, 20, 20), seed + 2),
                     "ep2d_diff_tra_DYNDIST", patient, series_number=6, spacing=(2.0, 2.0, 3.0))
        write_series(study / "7.000000-ep2ddifftraDYNDISTADC-48954", phantom((5, 20, 20), seed + 3),
                     "ep2d_diff_tra_DYNDIST_ADC", patient, series_number=7, spacing=(2.0, 2.0, 3.0))
    if t2:
        t2_dir = study / "4.000000-t2tsetra-00702"
        write_series(t2_dir, phantom(shape, seed), "t2_tse_tra", patient, orientation=t2_orientation, series_number=4)
    return t2_dir


def all_cases(dataset) -> dict:
    """Every usable case of every split (a split whose cases were all skipped gives none)."""
    out = {}
    for split in dataset.manifest().splits:
        try:
            for case in dataset.cases(split):
                out[case.case_id] = case
        except SRBenchError as exc:
            assert "were skipped" in str(exc) and "\n" not in str(exc)
    return out


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SRBENCH_DATA", raising=False)


@pytest.fixture
def committed(monkeypatch, tmp_path):
    """Point the dataset at a small committed manifest (the real one names 346 patients)."""
    def make(splits: dict) -> Path:
        path = tmp_path / "committed.json"
        path.write_text(json.dumps({"dataset": "prostatex", "rule": "test manifest", "splits": splits,
                                    "extra": {"seed": 0}}))
        monkeypatch.setattr(px, "COMMITTED", path)
        return path
    return make


def test_picks_the_axial_t2w_series_from_tags_in_tcia_layout(tmp_path):
    root = tmp_path / "PROSTATEx"
    t2_dir = tcia_patient(root, "ProstateX-0000", seed=0)
    # A tilted axial T2w (15 degrees about x) is still axial; the sagittal and diffusion series are not T2w tra.
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    tcia_patient(root, "ProstateX-0001", seed=5, t2_orientation=(1, 0, 0, 0, c, s))
    ds = ProstateX(root=str(root), split="local")
    chosen = ds.chosen()
    assert set(chosen) == {"ProstateX-0000", "ProstateX-0001"}
    assert chosen["ProstateX-0000"].path == t2_dir
    assert chosen["ProstateX-0000"].description == "t2_tse_tra" and chosen["ProstateX-0000"].kind == "dicom"
    case = ds.load_case("ProstateX-0000")
    assert case.patient_id == "ProstateX-0000" and not case.loaded  # lazy: nothing read yet
    hr = case.hr
    assert hr.GetSize() == (40, 40, 8)
    np.testing.assert_allclose(hr.GetSpacing(), (0.66, 0.66, 1.5), rtol=1e-5)
    np.testing.assert_allclose(hr.GetOrigin(), (-13.2, -13.2, 0.0), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(hr), phantom(seed=0).astype(np.float32))
    tilted = ds.load_case("ProstateX-0001").hr
    np.testing.assert_allclose(np.array(tilted.GetDirection()).reshape(3, 3)[:, 2], (0, -s, c), atol=1e-5)
    assert ds.skipped == [] and ds.default_degradation == "prostate-t2w"


def test_series_choice_prefers_t2_tse_tra_then_more_files_then_later_series(tmp_path):
    root = tmp_path / "px"
    study = root / "ProstateX-0002" / "study"
    write_series(study / "a", phantom((6, 40, 40), 1), "t2_tse_tra", "ProstateX-0002", series_number=4)
    repeat = study / "b"
    write_series(repeat, phantom((6, 40, 40), 2), "t2_tse_tra", "ProstateX-0002", series_number=9)
    write_series(study / "c", phantom((10, 40, 40), 3), "T2 axial", "ProstateX-0002", series_number=2)
    write_series(study / "d", phantom((12, 40, 40), 4), "t2_localizer", "ProstateX-0002", series_number=1)
    chosen = ProstateX(root=str(root)).chosen()["ProstateX-0002"]
    assert chosen.path == repeat


@pytest.mark.parametrize("description, cosine, score", [
    ("t2_tse_tra", 1.0, 3), ("t2_tse_tra_Grappa3", 0.97, 3), ("T2W_TSE_ax", 1.0, 3), ("t2 tra", 1.0, 2),
    ("t2_tse_sag", 0.0, None), ("t2_tse_cor", 0.0, None), ("t2_tse_tra", 0.2, None), ("ep2d_diff_tra", 1.0, None),
    ("ADC", 1.0, None), ("tfl_3d PD ref_tra", 1.0, None), ("t2_localizer", 1.0, None), ("T2", 1.0, 1),
    ("T2", None, None), ("dynamic", 1.0, None),
])
def test_t2w_score(description, cosine, score):
    assert t2w_score(description, cosine) == score


def test_canonical_patient_ids():
    assert canonical_patient("ProstateX-0007") == "ProstateX-0007"
    assert canonical_patient("manifest-1/PROSTATEx/prostatex_12/x") == "ProstateX-0012"
    assert canonical_patient("Case 3") is None


def test_missing_data_errors_say_where_to_download_and_put_it(tmp_path, monkeypatch):
    with pytest.raises(SRBenchError) as info:
        ProstateX().manifest()
    message = str(info.value)
    assert px.URL in message and "$SRBENCH_DATA/prostatex" in message and "--data-root" in message
    assert "\n" not in message
    for root in (tmp_path / "nothing-here", tmp_path):
        with pytest.raises(SRBenchError) as info:
            ProstateX(root=str(root)).manifest()
        assert px.URL in str(info.value) and str(root) in str(info.value)
    monkeypatch.setenv("SRBENCH_DATA", str(tmp_path / "data"))
    tcia_patient(tmp_path / "data" / "prostatex", "ProstateX-0003", extra=False)
    ds = ProstateX()
    assert ds.root == str((tmp_path / "data" / "prostatex").resolve())
    assert list(ds.chosen()) == ["ProstateX-0003"]


def test_committed_manifest_is_the_stated_rule():
    data = json.loads(px.COMMITTED.read_text(encoding="utf-8"))
    ids = [f"ProstateX-{i:04d}" for i in range(346)]
    splits = data["splits"]
    assert sorted(p for v in splits.values() for p in v) == ids  # every patient once: no patient in two splits
    assert splits == split_by_patient(ids, 0, 66 / 334, 0.05)
    assert {k: len(v) for k, v in splits.items()} == {"train": 264, "val": 14, "test": 68}
    # With the paper's 334 patients the same rule gives its 268 train (255 + 13 val) / 66 test.
    paper = split_by_patient([f"p{i}" for i in range(334)], 0, 66 / 334, 0.05)
    assert (len(paper["train"]) + len(paper["val"]), len(paper["test"])) == (268, 66)


def test_partial_copy_keeps_every_patient_on_its_committed_side(tmp_path):
    committed = ProstateX.committed()
    picks = committed.splits["test"][:2] + committed.splits["train"][:2]
    root = tmp_path / "px"
    for i, pid in enumerate(picks):
        tcia_patient(root, pid, seed=i, extra=False)
    ds = ProstateX(root=str(root))
    m = ds.manifest()
    assert m.splits["test"] == sorted(picks[:2]) and m.splits["train"] == sorted(picks[2:])
    assert "val" not in m.splits
    assert m.extra["committed_hash"] == committed.hash and m.hash != committed.hash
    assert m.extra["left_out"] == 342
    skipped = dict(ds.skipped)
    assert len(skipped) == 342 and "not under" in skipped[committed.splits["test"][5]]


def test_complete_copy_gets_the_committed_manifest_and_hash(tmp_path, committed):
    committed({"train": ["ProstateX-0010", "ProstateX-0011"], "test": ["ProstateX-0012"]})
    root = tmp_path / "px"
    for i in (10, 11, 12):
        tcia_patient(root, f"ProstateX-{i:04d}", seed=i, extra=False)
    ds = ProstateX(root=str(root))
    assert ds.manifest().hash == ProstateX.committed().hash
    assert ds.manifest().rule == "test manifest" and ds.skipped == []
    assert [c.case_id for c in ds.cases("test")] == ["ProstateX-0012"]


def test_unknown_patients_are_assigned_by_the_hash_rule_and_local_split(tmp_path, committed):
    committed({"train": ["ProstateX-0010"], "test": ["ProstateX-0012"]})
    root = tmp_path / "px"
    tcia_patient(root, "ProstateX-0010", extra=False)
    tcia_patient(root, "ProstateX-0012", extra=False)
    for name in ("Case1", "Case2", "Case3"):
        tcia_patient(root, name, extra=False)
    ds = ProstateX(root=str(root))
    m = ds.manifest()
    assert m.extra["not_in_committed"] == ["Case1", "Case2", "Case3"]
    for name in ("Case1", "Case2", "Case3"):
        assert name in m.splits[ds._hash_split(name)]
    local = ProstateX(root=str(root), split="local").manifest()
    assert sorted(p for v in local.splits.values() for p in v) == ["Case1", "Case2", "Case3", "ProstateX-0010",
                                                                    "ProstateX-0012"]
    assert local.splits == ProstateX(root=str(root), split="local").manifest().splits  # seeded, deterministic
    with pytest.raises(SRBenchError, match="split must be"):
        ProstateX(root=str(root), split="random")


def test_no_test_patient_present_is_a_helpful_one_line_error(tmp_path, committed):
    committed({"train": ["ProstateX-0010"], "test": ["ProstateX-0012", "ProstateX-0013"]})
    tcia_patient(tmp_path / "px", "ProstateX-0010", extra=False)
    ds = ProstateX(root=str(tmp_path / "px"))
    with pytest.raises(SRBenchError) as info:
        list(ds.cases("test"))
    assert "ProstateX-0013" in str(info.value) and px.URL in str(info.value) and "\n" not in str(info.value)


def test_bad_cases_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "px"
    tcia_patient(root, "ProstateX-0020", seed=1)                       # good
    tcia_patient(root, "ProstateX-0021", t2=False)                     # no T2w series
    t2 = tcia_patient(root, "ProstateX-0022", extra=False)             # a truncated file
    data = (t2 / "1-03.dcm").read_bytes()
    (t2 / "1-03.dcm").write_bytes(data[: len(data) - 500])
    t2 = tcia_patient(root, "ProstateX-0023", extra=False)             # a missing slice file
    (t2 / "1-04.dcm").unlink()
    study = root / "ProstateX-0024" / "s"                              # mixed orientations in one series
    uid = write_series(study / "t2", phantom((4, 40, 40)), "t2_tse_tra", "ProstateX-0024", series_number=4)
    write_series(study / "t2", phantom((4, 40, 40))[:0], "t2_tse_tra", "ProstateX-0024", uid=uid)  # no-op
    tilted = study / "tmp"
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    write_series(tilted, phantom((4, 40, 40)), "t2_tse_tra", "ProstateX-0024", uid=uid, series_number=4,
                 orientation=(1, 0, 0, 0, c, s), origin=(-13.2, -13.2, 6.0))
    for i, f in enumerate(sorted(tilted.iterdir())):
        f.rename(study / "t2" / f"2-{i:02d}.dcm")
    tilted.rmdir()
    study = root / "ProstateX-0025" / "s"                              # 4-D: two time points at each position
    uid = write_series(study / "t2", phantom((4, 40, 40)), "t2_tse_tra", "ProstateX-0025", series_number=4)
    write_series(study / "tmp", phantom((4, 40, 40), 9), "t2_tse_tra", "ProstateX-0025", uid=uid, series_number=4)
    for i, f in enumerate(sorted((study / "tmp").iterdir())):
        f.rename(study / "t2" / f"2-{i:02d}.dcm")
    (study / "tmp").rmdir()
    garbage = root / "ProstateX-0026" / "s" / "t2"                     # an unreadable file
    tcia_patient(root, "ProstateX-0026", extra=False)
    t2 = next((root / "ProstateX-0026").rglob("*t2tsetra*"))
    (t2 / "1-05.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    del garbage

    ds = ProstateX(root=str(root), split="local")
    cases = all_cases(ds)
    assert set(cases) == {"ProstateX-0020"}
    reasons = dict(ds.skipped)
    assert set(reasons) == {f"ProstateX-00{i}" for i in range(21, 27)}
    assert "no axial T2w series" in reasons["ProstateX-0021"] and "t2_tse_sag" in reasons["ProstateX-0021"]
    assert "1-03.dcm" in reasons["ProstateX-0022"]
    assert "non-uniform slice spacing" in reasons["ProstateX-0023"]
    assert "mixed orientations" in reasons["ProstateX-0024"]
    assert "4-D" in reasons["ProstateX-0025"]
    assert "1-05.dcm" in reasons["ProstateX-0026"]
    assert all("\n" not in r and r.startswith("case '") or "no axial" in r for r in reasons.values())


def test_nifti_layout_with_sidecars(tmp_path):
    root = tmp_path / "nifti"
    (root / "ProstateX-0030").mkdir(parents=True)
    t2 = sitk.GetImageFromArray(phantom().astype(np.float32))
    t2.SetSpacing((0.66, 0.66, 1.5))
    sitk.WriteImage(t2, str(root / "ProstateX-0030" / "t2_tse_tra_4.nii.gz"))
    (root / "ProstateX-0030" / "t2_tse_tra_4.json").write_text(json.dumps({"SeriesDescription": "t2_tse_tra"}))
    sitk.WriteImage(t2, str(root / "ProstateX-0030" / "ep2d_diff_tra_6.nii.gz"))
    mask = sitk.GetImageFromArray((phantom() > 500).astype(np.uint8))
    mask.CopyInformation(t2)
    sitk.WriteImage(mask, str(root / "ProstateX-0030" / "prostate_mask.nii.gz"))
    # Flat layout, one image per patient, no description: used as the T2w.
    sitk.WriteImage(t2, str(root / "ProstateX-0031.nii.gz"))
    # NaN voxels, a 4-D volume, and a truncated file: skipped with reasons.
    nan = phantom().astype(np.float32)
    nan[2, 5, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(root / "ProstateX-0032_t2w.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([t2, t2]), str(root / "ProstateX-0033_t2w.nii.gz"))
    sitk.WriteImage(t2, str(root / "ProstateX-0034_t2w.nii.gz"))
    data = (root / "ProstateX-0034_t2w.nii.gz").read_bytes()
    (root / "ProstateX-0034_t2w.nii.gz").write_bytes(data[: len(data) // 2])
    ds = ProstateX(root=str(root), split="local")
    cases = all_cases(ds)
    assert set(cases) == {"ProstateX-0030", "ProstateX-0031"}
    assert ds.chosen()["ProstateX-0030"].path.name == "t2_tse_tra_4.nii.gz"
    case = cases["ProstateX-0030"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(case.mask), (phantom() > 500).astype(np.uint8))
    reasons = dict(ds.skipped)
    assert "NaN" in reasons["ProstateX-0032"]
    assert "4-D" in reasons["ProstateX-0033"]
    assert "truncated" in reasons["ProstateX-0034"] or "cannot read" in reasons["ProstateX-0034"]


def test_bicubic_run_end_to_end_records_a_run(tmp_path, committed):
    from srbench.runner import RunOptions, run

    committed({"train": ["ProstateX-0040"], "test": ["ProstateX-0041", "ProstateX-0042"]})
    root = tmp_path / "px"
    for i in (40, 41, 42):
        tcia_patient(root, f"ProstateX-{i:04d}", seed=i, extra=False)
    (next((root / "ProstateX-0042").rglob("1-02.dcm"))).unlink()  # broken: skipped, the run goes on
    run_dir, ran = run(RunOptions(method="bicubic", dataset="prostatex", data_root=str(root),
                                  results_dir=tmp_path / "results"))
    assert ran
    record = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    assert record["dataset"]["name"] == "prostatex" and record["degradation"]["protocol"] == "prostate-t2w"
    assert record["n_slices"] == 8 and record["dataset"]["test_cases"] == ["ProstateX-0041", "ProstateX-0042"]


def pydicom_test_file(name: str) -> Path:
    pydicom = pytest.importorskip("pydicom")
    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom's test file {name} is not installed")
    return path


def series_from_real_file(source: Path, directory: Path, patient: str, n: int = 4) -> None:
    """A series of ``n`` slices made from one scanner-written file: only position, UIDs, description change."""
    import pydicom

    directory.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = pydicom.dcmread(str(source))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.0 * k]
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k + 1}"
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = "t2_tse_tra"
        ds.PatientID = patient
        ds.save_as(str(directory / f"1-{k + 1:02d}.dcm"))


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_scanner_written_encodings(tmp_path, name):
    """Transfer syntaxes a real archive holds (implicit/explicit VR, big endian, RLE, JPEG-LS, JPEG 2000)."""
    import pydicom

    source = pydicom_test_file(name)
    root = tmp_path / "px"
    series_from_real_file(source, root / "ProstateX-0050" / "study" / "4.000000-t2tsetra-1", "ProstateX-0050")
    ds = ProstateX(root=str(root), split="local")
    hr = all_cases(ds)["ProstateX-0050"].hr
    reference = pydicom.dcmread(str(pydicom_test_file("MR_small.dcm")))
    assert hr.GetSize() == (64, 64, 4)
    np.testing.assert_allclose(hr.GetSpacing(), (0.3125, 0.3125, 2.0), rtol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(hr)[2], reference.pixel_array.astype(np.float32))


def test_scanner_written_truncated_file_is_skipped(tmp_path):
    """pydicom's MR_truncated.dcm (pixel data cut short) as slice 3 of a series: the case is skipped, named."""
    import pydicom

    root = tmp_path / "px"
    series = root / "ProstateX-0051" / "study" / "t2"
    series_from_real_file(pydicom_test_file("MR_small.dcm"), series, "ProstateX-0051")
    good = pydicom.dcmread(str(series / "1-03.dcm"), stop_before_pixels=True)
    cut = pydicom.dcmread(str(pydicom_test_file("MR_truncated.dcm")))
    for keyword in ("ImagePositionPatient", "SOPInstanceUID", "InstanceNumber", "SeriesDescription", "PatientID",
                    "SeriesInstanceUID"):
        setattr(cut, keyword, getattr(good, keyword))
    cut.save_as(str(series / "1-03.dcm"))
    ds = ProstateX(root=str(root), split="local")
    assert all_cases(ds) == {}
    reason = dict(ds.skipped)["ProstateX-0051"]
    assert "1-03.dcm" in reason and "\n" not in reason


def test_header_index_spares_the_second_scan(tmp_path, monkeypatch):
    import srbench.dicom as dicom

    root = tmp_path / "px"
    tcia_patient(root, "ProstateX-0060")
    calls = []
    original = dicom.header_info
    monkeypatch.setattr(dicom, "header_info", lambda path: calls.append(path) or original(path))
    first = ProstateX(root=str(root), split="local").chosen()
    assert len(calls) == 4  # one header per series folder
    calls.clear()
    second = ProstateX(root=str(root), split="local").chosen()
    assert calls == [] and first["ProstateX-0060"].path == second["ProstateX-0060"].path
    tcia_patient(root, "ProstateX-0061", extra=False)  # a new folder: only its header is read
    third = ProstateX(root=str(root), split="local").chosen()
    assert len(calls) == 1 and set(third) == {"ProstateX-0060", "ProstateX-0061"}
