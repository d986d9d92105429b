"""`srbench infer`: whole volumes, any method, correct geometry, seeded."""

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

import srbench_plugins.res_srdiff as rs
from srbench.cli import cli
from srbench.infer import grid_with_spacing


def _volume(size=(24, 20, 6), spacing=(1.5, 1.5, 3.0), seed=0):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.random(size[::-1]).astype(np.float32) * 100)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 2.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    return image


def test_grid_with_spacing_keeps_extent_and_centre():
    lr = _volume()
    grid = grid_with_spacing(lr, (0.5, 0.5, 1.0))
    assert grid.GetSize() == (72, 60, 18)
    corner = lambda im, idx: np.array(im.TransformContinuousIndexToPhysicalPoint(idx))  # noqa: E731
    # The outer faces of the first voxel coincide: same physical extent.
    assert np.allclose(corner(lr, (-0.5, -0.5, -0.5)), corner(grid, (-0.5, -0.5, -0.5)))
    assert np.allclose(corner(lr, [s - 0.5 for s in lr.GetSize()]), corner(grid, [s - 0.5 for s in grid.GetSize()]))


def test_infer_bspline_writes_volume_on_the_reference_grid(tmp_path):
    lr, like = _volume(), _volume(size=(48, 40, 12), spacing=(0.75, 0.75, 1.5))
    like.SetOrigin((9.625, -5.375, 1.25))
    sitk.WriteImage(lr, str(tmp_path / "lr.nii.gz"))
    sitk.WriteImage(like, str(tmp_path / "like.nii.gz"))
    result = CliRunner().invoke(cli, ["infer", "-m", "bspline", "--input", str(tmp_path / "lr.nii.gz"), "--output",
                                      str(tmp_path / "sr.nii.gz"), "--like", str(tmp_path / "like.nii.gz")])
    assert result.exit_code == 0, result.output
    sr = sitk.ReadImage(str(tmp_path / "sr.nii.gz"))
    assert sr.GetSize() == like.GetSize()
    assert np.allclose(sr.GetSpacing(), like.GetSpacing()) and np.allclose(sr.GetOrigin(), like.GetOrigin())
    assert np.allclose(sr.GetDirection(), like.GetDirection())
    # Independent: SimpleITK B-spline resampling of the LR volume onto the same grid, in the input's range.
    expected = sitk.GetArrayFromImage(sitk.Resample(lr, like, sitk.Transform(), sitk.sitkBSpline, 0.0,
                                                    sitk.sitkFloat32, True))
    lo, hi = sitk.GetArrayFromImage(lr).min(), sitk.GetArrayFromImage(lr).max()
    assert np.allclose(sitk.GetArrayFromImage(sr), np.clip(expected, lo, hi), atol=1e-3)


def test_infer_learned_method_is_seeded(tmp_path, monkeypatch):
    micro = {**rs.PRESETS["tiny"], "network": dict(image_size=32, in_channels=1, out_channels=1, model_channels=32,
                                                    num_res_blocks=[1, 1], attention_resolutions=(16,),
                                                    channel_mult=(1, 2), lq_size=32)}
    monkeypatch.setitem(rs.ResSRDiff.presets, "micro", micro)
    rs.ResSRDiff(preset="micro").save(tmp_path / "w.safetensors")
    sitk.WriteImage(_volume(size=(16, 16, 4)), str(tmp_path / "lr.nii.gz"))
    outs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        args = ["infer", "-m", "res-srdiff", "--preset", "micro", "--checkpoint", str(tmp_path / "w.safetensors"),
                "--input", str(tmp_path / "lr.nii.gz"), "--output", str(tmp_path / f"{name}.nii.gz"),
                "--spacing", "0.75,0.75,3", "--seed", seed, "--device", "cpu"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        outs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{name}.nii.gz"))))
    assert outs[0].shape == (4, 32, 32)
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_infer_takes_at_most_one_grid(tmp_path):
    sitk.WriteImage(_volume(), str(tmp_path / "lr.nii.gz"))
    result = CliRunner().invoke(cli, ["infer", "-m", "bicubic", "--input", str(tmp_path / "lr.nii.gz"),
                                      "--output", str(tmp_path / "sr.nii.gz"), "--like", "x.nii.gz",
                                      "--spacing", "1,1,1"])
    assert result.exit_code != 0 and "at most one of --like or --spacing" in result.output


def test_infer_defaults_to_the_protocol_inverse_and_says_so(tmp_path):
    """demo's brain-t1map protocol is x3 on every axis: the default grid is the input spacing / 3, same extent."""
    lr = _volume()
    sitk.WriteImage(lr, str(tmp_path / "lr.nii.gz"))
    result = CliRunner().invoke(cli, ["infer", "-m", "bicubic", "-i", str(tmp_path / "lr.nii.gz"),
                                      "-o", str(tmp_path / "sr.nii.gz")])
    assert result.exit_code == 0, result.output
    assert "input spacing 1.5x1.5x3 mm / brain-t1map factors 3x3x3 = 0.5x0.5x1 mm" in result.output
    sr = sitk.ReadImage(str(tmp_path / "sr.nii.gz"))
    expected = grid_with_spacing(lr, (0.5, 0.5, 1.0))
    assert sr.GetSize() == expected.GetSize() == (72, 60, 18)
    assert np.allclose(sr.GetOrigin(), expected.GetOrigin()) and np.allclose(sr.GetDirection(), lr.GetDirection())
    # a protocol with an LR spacing instead of factors leaves the HR spacing unknown: a one-line error
    result = CliRunner().invoke(cli, ["infer", "-m", "bicubic", "-i", str(tmp_path / "lr.nii.gz"),
                                      "-o", str(tmp_path / "sr2.nii.gz"), "-g", "prostate-t2w"])
    assert result.exit_code == 1 and "sets an LR spacing, not factors" in result.output


def test_infer_uses_the_shipped_checkpoint_by_default(tmp_path):
    sitk.WriteImage(_volume(size=(16, 16, 4)), str(tmp_path / "lr.nii.gz"))
    result = CliRunner().invoke(cli, ["infer", "-m", "pix2pix", "-i", str(tmp_path / "lr.nii.gz"),
                                      "-o", str(tmp_path / "sr.nii.gz"), "-D", "cpu"])
    assert result.exit_code == 0, result.output
    assert "weights: the demo-tiny checkpoint shipped with pix2pix" in result.output
    assert sitk.ReadImage(str(tmp_path / "sr.nii.gz")).GetSize() == (48, 48, 12)
    missing = CliRunner().invoke(cli, ["infer", "-m", "pix2pix", "-i", str(tmp_path / "lr.nii.gz"),
                                       "-o", str(tmp_path / "sr3.nii.gz"), "-p", "paper"])
    assert missing.exit_code == 1 and "ships no demo-paper checkpoint: give --checkpoint" in missing.output
