"""srbench.dicom: a DICOM series is read only when it is one regular 3-D stack, wherever it is read.

Series are written with SimpleITK as a scanner lays them out (one file per slice, the tags the readers use); each
broken copy must be refused in one line that names the folder and the problem, never read silently wrong.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk

from srbench.dicom import read_dicom_series, require_pydicom
from srbench.errors import SRBenchError
from srbench.volume import read_volume

from test_prostatex import phantom, write_series

SHAPE = (6, 16, 16)


def series(tmp_path, name="series", **kwargs):
    folder = tmp_path / name
    write_series(folder, phantom(SHAPE), "t2_tse_tra", "P1", **kwargs)
    return folder


def refused(folder, *words):
    with pytest.raises(SRBenchError) as info:
        read_volume(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message, message
    for word in words:
        assert word in message, message
    return message


def test_a_regular_series_is_read_with_its_geometry(tmp_path):
    folder = series(tmp_path)
    image = read_volume(folder)
    assert image.GetSize() == (16, 16, 6) and image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(image.GetSpacing(), (0.66, 0.66, 1.5), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom(SHAPE).astype(np.float32))


def test_a_missing_slice_file_is_a_gap(tmp_path):
    folder = series(tmp_path)
    (folder / "1-03.dcm").unlink()
    refused(folder, "non-uniform slice spacing", "1-02.dcm", "missing")


def test_a_duplicated_slice_is_refused(tmp_path):
    folder = series(tmp_path, positions=[0, 1.5, 3.0, 3.0, 4.5, 6.0])
    refused(folder, "6 files at 5 slice positions")


def test_two_series_in_one_folder_are_named_not_picked(tmp_path):
    folder = series(tmp_path)
    other = series(tmp_path, "other", series_number=2)
    for f in other.iterdir():
        f.rename(folder / f"b{f.name}")
    message = refused(folder, "holds 2 DICOM series", "t2_tse_tra")
    assert "own folder" in message


def test_a_chosen_series_of_a_shared_folder_is_read(tmp_path):
    folder = series(tmp_path)
    uid = write_series(tmp_path / "other", phantom(SHAPE, seed=3), "t1", "P1", series_number=2)
    for f in (tmp_path / "other").iterdir():
        f.rename(folder / f"b{f.name}")
    image = read_dicom_series(folder, "case", uid=uid)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom(SHAPE, seed=3).astype(np.float32))


def test_mixed_orientation_and_pixel_spacing_are_refused(tmp_path):
    folder = series(tmp_path)
    write_series(tmp_path / "tilted", phantom(SHAPE), "t2_tse_tra", "P1", orientation=(1, 0, 0, 0, 0.9998, 0.02),
                 uid="1.2.826.0.1.3680043.8.498.999", origin=(-13.2, -13.2, 20.0))
    spaced = series(tmp_path, "spaced", uid="1.2.826.0.1.3680043.8.498.998")
    for k in (2, 4):  # a second orientation (same series UID) replaces two slices
        (folder / f"1-0{k}.dcm").unlink()
    import pydicom

    for k, source in ((2, tmp_path / "tilted" / "1-02.dcm"), (4, tmp_path / "tilted" / "1-04.dcm")):
        ds = pydicom.dcmread(str(source))
        ds.SeriesInstanceUID = pydicom.dcmread(str(folder / "1-01.dcm")).SeriesInstanceUID
        ds.save_as(str(folder / f"1-0{k}.dcm"))
    refused(folder, "mixed orientations")
    ds = pydicom.dcmread(str(spaced / "1-03.dcm"))
    ds.PixelSpacing = [0.7, 0.7]
    ds.save_as(str(spaced / "1-03.dcm"))
    refused(spaced, "mixed PixelSpacing")


def test_slices_shifted_sideways_are_two_stacks(tmp_path):
    folder = series(tmp_path)
    import pydicom

    for k in (4, 5, 6):
        path = folder / f"1-0{k}.dcm"
        ds = pydicom.dcmread(str(path))
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 5.0, *ds.ImagePositionPatient[1:]]
        ds.save_as(str(path))
    refused(folder, "one line")


def test_a_folder_of_series_folders_names_them(tmp_path):
    series(tmp_path / "study", "a")
    series(tmp_path / "study", "b")
    refused(tmp_path / "study", "no DICOM series", "give one of them")


def test_without_pydicom_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    folder = series(tmp_path)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(SRBenchError, match="pip install pydicom") as info:
        require_pydicom()
    assert "\n" not in str(info.value)
    refused(folder, "pip install pydicom")


def test_a_sheared_stack_is_refused(tmp_path):
    folder = series(tmp_path)
    import pydicom

    for k in range(1, 7):  # each slice 0.5 mm further along x: a gantry tilt ITK would read as a straight box
        path = folder / f"1-0{k}.dcm"
        ds = pydicom.dcmread(str(path))
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 0.5 * k, *ds.ImagePositionPatient[1:]]
        ds.save_as(str(path))
    refused(folder, "sheared stack")


def test_each_slice_keeps_its_own_rescale_and_non_images_are_left_out(tmp_path):
    folder = series(tmp_path)
    import pydicom

    ds = pydicom.dcmread(str(folder / "1-03.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, 0.25  # a fractional slope on a slice that is not the first
    ds.save_as(str(folder / "1-03.dcm"))
    report = pydicom.dcmread(str(folder / "1-01.dcm"))
    del report.PixelData  # a non-image object of the same series (a report, a presentation state)
    report.SOPInstanceUID += ".99"
    report.save_as(str(folder / "report.dcm"))
    expected = phantom(SHAPE).astype(np.float32)
    expected[2] = expected[2] * 0.5 + 0.25
    np.testing.assert_allclose(sitk.GetArrayFromImage(read_volume(folder)), expected)
