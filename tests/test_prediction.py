"""srbench.prediction: one check of a method's output, the one run, infer and the conformance kit apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srbench.errors import SRBenchError
from srbench.prediction import check_prediction
from srbench.outputs import check_output_path
from srbench.volume import WRITABLE_SUFFIXES


@pytest.mark.parametrize("output, words", [
    (None, ["returned None", "NumPy array (2, 4, 5)"]),
    (torch.zeros(2, 4, 5), ["torch.Tensor", ".cpu().numpy()"]),
    (np.zeros((2, 1, 4, 5), np.float32), ["(2, 1, 4, 5)", "predict_slices returns (N, 1, H, W)"]),
    (np.zeros((3, 4, 5), np.float32), ["one output slice per requested slice"]),
    (np.zeros((2, 5, 4), np.float32), ["expected (2, 4, 5)"]),
    (np.zeros((2, 4, 5), np.uint8), ["uint8"]),
    (np.full((2, 4, 5), np.nan, np.float32), ["40 NaN or Inf"]),
    (np.full((2, 4, 5), 255.0, np.float32), ["far outside [0, 1]"]),
])
def test_bad_outputs_are_one_line_errors_naming_the_method_and_plugin(output, words):
    with pytest.raises(SRBenchError) as info:
        check_prediction(output, 2, (4, 5), "bicubic", "case 'c1'")
    message = str(info.value)
    assert message.startswith("method 'bicubic' (plugin 'bicubic') on case 'c1': ")
    assert "case 'c1'" in message and "\n" not in message
    for word in words:
        assert word in message, message


def test_values_near_the_range_are_clipped_to_it():
    pred = np.linspace(-0.2, 1.2, 40, dtype=np.float64).reshape(2, 4, 5)
    out = check_prediction(pred, 2, (4, 5), "bicubic")
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, np.clip(pred, 0, 1), atol=1e-7)


@pytest.mark.parametrize("name, words", [
    ("folder", ["is a directory"]),
    ("out.png", ["cannot tell the format", ".nii.gz"]),
    ("a_file/sr.nii.gz", ["a_file is a file"]),
    ("in.nii.gz", ["is also an input"]),
])
def test_output_paths_are_checked_before_any_work(tmp_path, name, words):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "in.nii.gz").write_text("x")
    with pytest.raises(SRBenchError) as info:
        check_output_path(tmp_path / name, inputs=(tmp_path / "in.nii.gz",), suffixes=WRITABLE_SUFFIXES)
    for word in words:
        assert word in str(info.value)
    assert check_output_path(tmp_path / "new" / "deeper" / "sr.nii.gz") == tmp_path / "new" / "deeper" / "sr.nii.gz"
