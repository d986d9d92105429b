"""Volume I/O: geometry survives every format, DICOM series, rejected shapes, atomic writes, NaN kept."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import srbench.volume as volume
from srbench.errors import SRBenchError
from srbench.volume import read_volume, require_same_grid, same_grid, write_volume

from conftest import assert_one_line_error, synthetic_image


def assert_same_geometry(a: sitk.Image, b: sitk.Image, atol=1e-4):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    image = synthetic_image()
    path = tmp_path / f"v{suffix}"
    write_volume(image, path)
    back = read_volume(path)
    assert back.GetPixelID() == sitk.sitkFloat32
    assert_same_geometry(back, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_reads_the_fixture_volume(volume):
    path, image = volume
    assert_same_geometry(read_volume(path), image)


def write_dicom_series(image: sitk.Image, folder) -> None:
    """One DICOM file per axial slice with the tags a series reader needs (SimpleITK's documented recipe)."""
    folder.mkdir()
    d = image.GetDirection()
    series = [("0008|0060", "MR"), ("0008|0008", "DERIVED\\SECONDARY"), ("0008|103e", "srbench test series"),
              ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.1"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"),
              ("0020|0037", "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])))]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        for tag, value in series:
            s.SetMetaData(tag, value)
        s.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.3.{k + 1}")
        s.SetMetaData("0020|0032", "\\".join(f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0018|0050", str(image.GetSpacing()[2]))
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)


def test_dicom_series_directory_round_trip(tmp_path):
    source = synthetic_image(size=(24, 20, 9), spacing=(0.7, 0.8, 2.5))
    image = sitk.Cast(sitk.Round(source), sitk.sitkInt16)
    write_dicom_series(image, tmp_path / "series")
    back = read_volume(tmp_path / "series")
    assert back.GetPixelID() == sitk.sitkFloat32
    assert_same_geometry(back, image, atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image).astype(np.float32))


def test_directory_without_dicom_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(SRBenchError, match="no DICOM series"):
        read_volume(tmp_path)


@pytest.mark.parametrize("kind", ["4-D", "vector", "2-D"])
def test_non_3d_scalar_volumes_are_rejected(tmp_path, kind, cli):
    if kind == "4-D":
        image, path = sitk.GetImageFromArray(np.random.rand(2, 5, 6, 7).astype(np.float32)), tmp_path / "t.nii.gz"
    elif kind == "vector":
        image = sitk.GetImageFromArray(np.random.rand(5, 6, 7, 3).astype(np.float32), isVector=True)
        path = tmp_path / "v.mha"
    else:
        image, path = sitk.GetImageFromArray(np.random.rand(6, 7).astype(np.float32)), tmp_path / "s.nii.gz"
    sitk.WriteImage(image, str(path))
    with pytest.raises(SRBenchError, match="expected a 3-D scalar volume") as info:
        read_volume(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert_one_line_error(cli("score", "--pred", path, "--ref", path), "3-D scalar")


def test_nan_in_nifti_is_read_as_nan_where_it_was(tmp_path):
    """ITK reads NIfTI NaN as 0; read_volume puts it back, at the same voxel, so it can be refused."""
    image = synthetic_image()
    array = sitk.GetArrayFromImage(image)
    array[3, 4, 5] = np.nan
    array[7, 1, 2] = np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    for suffix in (".nii.gz", ".nii", ".mha"):
        sitk.WriteImage(bad, str(tmp_path / f"bad{suffix}"))
        back = sitk.GetArrayFromImage(read_volume(tmp_path / f"bad{suffix}"))
        assert [tuple(i) for i in np.argwhere(~np.isfinite(back))] == [(3, 4, 5), (7, 1, 2)], suffix
        finite = np.isfinite(array)
        np.testing.assert_array_equal(back[finite], array[finite])


def test_write_is_atomic_and_replaces(tmp_path):
    first, second = synthetic_image(seed=1), synthetic_image(seed=2)
    path = tmp_path / "out" / "v.nii.gz"
    write_volume(first, path)  # creates the folder
    write_volume(second, path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(path)), sitk.GetArrayFromImage(second))
    assert [p.name for p in path.parent.iterdir()] == ["v.nii.gz"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "v.nii.gz"
    write_volume(synthetic_image(seed=1), path)
    before = path.read_bytes()

    def half_write(image, name, *args, **kwargs):
        with open(name, "wb") as fh:
            fh.write(b"half a volume")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(volume.sitk, "WriteImage", half_write)
    with pytest.raises(SRBenchError, match="No space left"):
        write_volume(synthetic_image(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


def test_unknown_format_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(SRBenchError, match="cannot write"):
        write_volume(synthetic_image(), tmp_path / "v.unknown")
    assert list(tmp_path.iterdir()) == []


def test_grid_comparison():
    a = synthetic_image()
    assert same_grid(a, synthetic_image(seed=5))
    moved = synthetic_image(origin=(0, 0, 0))
    assert not same_grid(a, moved)
    with pytest.raises(SRBenchError, match="same size but different spacing, origin or direction"):
        require_same_grid(moved, a, "pred", "ref")
    with pytest.raises(SRBenchError, match=r"pred has size \(40, 36, 29\) but ref has size \(40, 36, 30\)"):
        require_same_grid(synthetic_image(size=(40, 36, 29)), a, "pred", "ref")
