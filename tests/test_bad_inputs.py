"""The bad-input corpus: each entry point (score, infer, run, stats, leaderboard) given each class of bad input.

Inputs are built from real MRI: a 32 x 32 x 10 crop of the MNI152 2009c T1 template that ships with nilearn,
written as NIfTI and, scaled to int16, as DICOM series (one file per slice, as a scanner writes them), then
broken the ways real files break: cut short, not an image, NaN, constant, another grid, 4-D, complex voxels, an
empty mask, DICOM with a missing slice, a duplicated slice, two series in one folder, no DICOM at all, a
truncated slice file; bad degradation specs, bad output paths and methods whose output is not an image.

Every case must end with a non-zero exit, one 'Error: ...' line naming the culprit, no traceback, and every file
already on disk (inputs, earlier results, a previous output) exactly as it was, with nothing added.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from srbench import plugins
from srbench.hookspecs import hookimpl
from srbench.method import Method
from srbench.runner import RunOptions, run
from srbench.testing import TinyDatasetPlugin

import srbench_datasets.demo as demo
from test_prostatex import write_series


def _write(array: np.ndarray, path: Path, like: sitk.Image) -> None:
    image = sitk.GetImageFromArray(np.asarray(array, np.float32))
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    hr = demo.load_template()[0][82:114, 100:132, 88:98]  # brain tissue: grey and white matter, CSF
    array = sitk.GetArrayFromImage(hr)
    _write(array, root / "hr.nii.gz", hr)
    _write(array + np.random.default_rng(0).normal(0, 3, array.shape), root / "pred.nii.gz", hr)
    _write(array, root / "previous.nii.gz", hr)  # an earlier infer result that a failed infer must not touch
    _write(np.full(array.shape, 7.0), root / "const.nii.gz", hr)
    _write(np.zeros(array.shape), root / "zeros.nii.gz", hr)
    nan = array.copy()
    nan[4, 10, 10] = np.nan
    _write(nan, root / "nan.nii.gz", hr)
    data = (root / "hr.nii.gz").read_bytes()
    (root / "trunc.nii.gz").write_bytes(data[:len(data) // 2])
    (root / "garbage.nii.gz").write_bytes(np.random.default_rng(1).bytes(3000))
    (root / "notes.txt").write_text("not an image")
    shifted = sitk.GetImageFromArray(array)
    shifted.CopyInformation(hr)
    shifted.SetSpacing((1.2, 1.0, 1.0))
    sitk.WriteImage(shifted, str(root / "spacing.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([hr, hr]), str(root / "4d.nii.gz"))
    sitk.WriteImage(sitk.RealAndImaginaryToComplex(hr, hr), str(root / "complex.nii.gz"))
    lr = sitk.Resample(hr, [16, 16, 5], sitk.Transform(), sitk.sitkLinear, hr.GetOrigin(),
                       [2 * s for s in hr.GetSpacing()], hr.GetDirection())
    sitk.WriteImage(lr, str(root / "lr.nii.gz"))
    _dicom(root, (array / array.max() * 1000).astype(np.int16))
    (root / "outdir").mkdir()
    (root / "afile").write_text("a file, not a folder")
    return root


def _dicom(root: Path, slices: np.ndarray) -> None:
    write_series(root / "dcm", slices, "t1_mprage", "P1", spacing=(1.0, 1.0, 1.0))
    shutil.copytree(root / "dcm", root / "gap")
    (root / "gap" / "1-04.dcm").unlink()
    write_series(root / "dup", slices, "t1_mprage", "P1", spacing=(1.0, 1.0, 1.0),
                 positions=[0, 1, 2, 3, 4, 4, 5, 6, 7, 8])
    shutil.copytree(root / "dcm", root / "two")
    write_series(root / "t2", slices, "t2_tse", "P1", series_number=2, spacing=(1.0, 1.0, 1.0))
    for f in sorted((root / "t2").iterdir()):
        f.rename(root / "two" / f"t2-{f.name}")
    (root / "t2").rmdir()
    shutil.copytree(root / "dcm", root / "cut")
    cut = root / "cut" / "1-05.dcm"
    cut.write_bytes(cut.read_bytes()[:-700])  # the pixel data cut short
    (root / "nodcm").mkdir()
    (root / "nodcm" / "readme.txt").write_text("the scanner export went elsewhere")


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (content hash) and folder under ``roots``: what must be unchanged after a failed command."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


PROGRESS = re.compile(r"\d+/\d+ +\d+:\d\d:\d\d\b")  # a progress line (count, elapsed, ...) of a run that began predicting


def refused(cli, args: list, *culprit: str, roots: tuple[Path, ...]) -> str:
    """The command fails with one line naming ``culprit`` (progress lines aside), no traceback, nothing on stdout,
    and leaves every file under ``roots`` as it was."""
    before = snapshot(*roots)
    result = cli(*args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == "", result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not PROGRESS.search(ln)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in culprit:
        assert word in lines[0], lines[0]
    assert snapshot(*roots) == before, "a failed command changed files on disk"
    return lines[0]


# ---------------------------------------------------------------------------------------------------- score

SCORE = [  # (case, --pred, --ref, --mask, words the error line must hold)
    ("missing file", "nope.nii.gz", "hr.nii.gz", None, ["nope.nii.gz", "no such file"]),
    ("truncated NIfTI", "trunc.nii.gz", "hr.nii.gz", None, ["trunc.nii.gz", "cannot read"]),
    ("not an image", "garbage.nii.gz", "hr.nii.gz", None, ["garbage.nii.gz", "cannot read"]),
    ("text file", "notes.txt", "hr.nii.gz", None, ["notes.txt", "cannot read"]),
    ("NaN voxel", "nan.nii.gz", "hr.nii.gz", None, ["nan.nii.gz", "NaN"]),
    ("constant reference", "pred.nii.gz", "const.nii.gz", None, ["const.nii.gz", "constant"]),
    ("other size", "lr.nii.gz", "hr.nii.gz", None, ["lr.nii.gz", "hr.nii.gz", "not on one grid"]),
    ("other spacing", "spacing.nii.gz", "hr.nii.gz", None, ["spacing.nii.gz", "different spacing"]),
    ("4-D volume", "4d.nii.gz", "hr.nii.gz", None, ["4d.nii.gz", "3-D"]),
    ("complex voxels", "complex.nii.gz", "hr.nii.gz", None, ["complex.nii.gz", "magnitude"]),
    ("empty mask", "pred.nii.gz", "hr.nii.gz", "zeros.nii.gz", ["zeros.nii.gz", "empty"]),
    ("mask on another grid", "pred.nii.gz", "hr.nii.gz", "lr.nii.gz", ["lr.nii.gz", "not on one grid"]),
    ("DICOM slice missing", "gap", "dcm", None, ["gap", "1-03.dcm", "a slice file is missing"]),
    ("DICOM slice duplicated", "dup", "dcm", None, ["dup", "10 files at 9 slice positions"]),
    ("two DICOM series", "dcm", "two", None, ["two", "2 DICOM series", "t2_tse"]),
    ("folder without DICOM", "nodcm", "dcm", None, ["nodcm", "no DICOM series"]),
    ("truncated DICOM file", "cut", "dcm", None, ["cut", "1-05.dcm", "truncated"]),
]


@pytest.mark.parametrize("case, pred, ref, mask, words", SCORE, ids=[c[0] for c in SCORE])
def test_score(corpus, cli, case, pred, ref, mask, words):
    args = ["score", "--pred", corpus / pred, "--ref", corpus / ref] + (["--mask", corpus / mask] if mask else [])
    refused(cli, args, *words, roots=(corpus,))


def test_score_reads_a_regular_dicom_series_like_its_nifti(corpus, cli):
    """The control: the good series scores (so the refusals above are about what was broken)."""
    result = cli("score", "--pred", corpus / "dcm", "--ref", corpus / "dcm", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["psnr"]["mean"] > 60


# ---------------------------------------------------------------------------------------------------- infer

class BadOutput(Method):
    """A method whose ``predict_volume`` returns what ``make`` gives for (number of slices, H, W)."""

    make = staticmethod(lambda n, h, w: None)

    def predict_volume(self, lr, grid, slices, progress=None):
        return self.make(len(slices), grid.GetSize()[1], grid.GetSize()[0])


def _bad(name: str, make) -> type:
    return type(name.title().replace("-", ""), (BadOutput,), {"name": name, "make": staticmethod(make)})


BAD_METHODS = {
    "returns-none": (_bad("returns-none", lambda n, h, w: None), ["returned None", "NumPy array"]),
    "wrong-shape": (_bad("wrong-shape", lambda n, h, w: np.zeros((n, 1, h, w), np.float32)),
                    ["predict_slices returns (N, 1, H, W)"]),
    "nan-output": (_bad("nan-output", lambda n, h, w: np.full((n, h, w), np.nan, np.float32)), ["NaN or Inf"]),
    "scale-255": (_bad("scale-255", lambda n, h, w: np.full((n, h, w), 255.0, np.float32)),
                  ["far outside [0, 1]"]),
}


class BadMethods:
    @hookimpl
    def register_methods(self, register):
        for cls, _ in BAD_METHODS.values():
            register(cls)


@pytest.fixture
def bad_plugins():
    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    plugins.register_plugin(BadMethods(), "srbench-bad")


INFER = [  # (case, --input, grid options, --output, extra options, words); @name: a corpus file
    ("input missing", "nope.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz", [], ["nope.nii.gz"]),
    ("input truncated", "trunc.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz", [], ["trunc.nii.gz"]),
    ("input NaN", "nan.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz", [], ["nan.nii.gz", "NaN"]),
    ("input constant", "const.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz", [], ["const.nii.gz", "constant"]),
    ("input DICOM slice missing", "gap", ["--like", "@hr.nii.gz"], "previous.nii.gz", [], ["gap", "missing"]),
    ("grid from two DICOM series", "lr.nii.gz", ["--like", "@two"], "previous.nii.gz", [], ["two", "2 DICOM series"]),
    ("grid 4-D", "lr.nii.gz", ["--like", "@4d.nii.gz"], "previous.nii.gz", [], ["4d.nii.gz", "3-D"]),
    ("spacing zero", "lr.nii.gz", ["--spacing", "1,1,0"], "previous.nii.gz", [], ["--spacing", "positive"]),
    ("spacing absurd", "lr.nii.gz", ["--spacing", "1,1,1e-6"], "previous.nii.gz", [], ["--spacing", "coarser"]),
    ("output is a folder", "lr.nii.gz", ["--like", "@hr.nii.gz"], "outdir", [], ["outdir", "is a directory"]),
    ("output under a file", "lr.nii.gz", ["--like", "@hr.nii.gz"], "afile/sr.nii.gz", [], ["afile", "is a file"]),
    ("output format unknown", "lr.nii.gz", ["--like", "@hr.nii.gz"], "sr.png", [], ["sr.png", ".nii.gz"]),
    ("output is the input", "lr.nii.gz", ["--like", "@hr.nii.gz"], "lr.nii.gz", [], ["lr.nii.gz", "input"]),
    ("checkpoint missing", "lr.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz",
     ["-m", "pix2pix", "--checkpoint", "@nope.safetensors"], ["nope.safetensors", "not found"]),
    ("checkpoint not weights", "lr.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz",
     ["-m", "pix2pix", "--checkpoint", "@garbage.nii.gz"], ["garbage.nii.gz", "safetensors"]),
] + [(f"method output: {name}", "lr.nii.gz", ["--like", "@hr.nii.gz"], "previous.nii.gz", ["-m", name],
      [f"method {name!r} (plugin 'srbench-bad')", *words]) for name, (_, words) in BAD_METHODS.items()]


@pytest.mark.parametrize("case, source, grid, output, extra, words", INFER, ids=[c[0] for c in INFER])
def test_infer(corpus, cli, bad_plugins, case, source, grid, output, extra, words):
    method = extra[extra.index("-m") + 1] if "-m" in extra else "bicubic"
    at = [corpus / v[1:] if v.startswith("@") else v for v in grid + [v for v in extra if v not in ("-m", method)]]
    args = ["infer", "-m", method, "--input", corpus / source, "--output", corpus / output, *at]
    refused(cli, args, *words, roots=(corpus,))


# ------------------------------------------------------------------------------------------------------ run

@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results dir holding one finished run (bicubic on the plugin kit's tiny dataset)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    plugins.reset()
    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    assert run(RunOptions(method="bicubic", dataset="srbench-tiny", results_dir=results))[1]
    plugins.reset()
    return results


@pytest.fixture
def results(finished, tmp_path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(finished, copy)
    return copy


RUN = [  # (case, options after run, words)
    ("boolean spec", ["-m", "bicubic", "-g", "resample:factors=2,2,2;antialias=maybe"], ["antialias=maybe",
                                                                                         "true or false"]),
    ("factor out of range", ["-m", "bicubic", "-g", "resample:factors=1e9,1,1"], ["factors=1e9", "[1, 16]"]),
    ("spacing out of range", ["-m", "bicubic", "-g", "resample:spacing=2,2,500"], ["spacing=2,2,500", "20] mm"]),
    ("unknown spec key", ["-m", "bicubic", "-g", "resample:factors=2,2,2;factor=2"], ["unknown key factor",
                                                                                      "resample accepts"]),
    ("unknown method", ["-m", "bicubic2"], ["bicubic2"]),
] + [(f"method output: {name}", ["-m", name], [f"method {name!r} (plugin 'srbench-bad') on case 'tiny-3'", *words])
     for name, (_, words) in BAD_METHODS.items()]


@pytest.mark.parametrize("case, options, words", RUN, ids=[c[0] for c in RUN])
def test_run(corpus, results, cli, bad_plugins, case, options, words):
    args = ["run", "-d", "srbench-tiny", "--results-dir", results, *options]
    refused(cli, args, *words, roots=(corpus, results))


def test_run_on_a_folder_of_broken_dicom_series(corpus, results, cli, tmp_path):
    data = tmp_path / "scans"
    for name in ("dcm", "gap", "two", "dup"):
        shutil.copytree(corpus / name, data / f"case-{name}")
    (data / "srbench-splits.json").write_text(json.dumps({"train": ["case-dcm"],
                                                          "test": ["case-gap", "case-two", "case-dup"]}))
    line = refused(cli, ["run", "-m", "bicubic", "-d", f"folder:{data}", "--results-dir", results], "3 test case(s)",
                   "skipped", "case-gap", "non-uniform slice spacing", "case-dup",
                   "10 files at 9 slice positions", roots=(corpus, results, data))
    assert str(data / "case-gap") in line


def test_run_into_a_results_dir_that_is_a_file(corpus, cli, bad_plugins):
    refused(cli, ["run", "-m", "bicubic", "-d", "srbench-tiny", "--results-dir", corpus / "afile"], "afile",
            "is a file", roots=(corpus,))


def test_train_to_an_output_that_is_a_folder(corpus, cli, bad_plugins):
    refused(cli, ["train", "-m", "pix2pix", "-d", "srbench-tiny", "--output", corpus / "outdir"], "outdir",
            "is a directory", roots=(corpus,))


# ---------------------------------------------------------------------------------------- stats, leaderboard

REPORTS = [  # (case, command and options, words)
    ("no such results dir", ["stats", "-d", "srbench-tiny", "--results-dir", "{corpus}/none"], ["none", "no runs"]),
    ("results dir without runs", ["stats", "-d", "srbench-tiny", "--results-dir", "{corpus}/outdir"],
     ["outdir", "no runs"]),
    ("unknown dataset", ["stats", "-d", "brains", "--results-dir", "{results}"], ["brains", "srbench-tiny"]),
    ("one method only", ["stats", "-d", "srbench-tiny", "--results-dir", "{results}"], ["only one method"]),
    ("leaderboard: no such results dir", ["leaderboard", "--results-dir", "{corpus}/none"], ["none", "no runs"]),
    ("leaderboard: unknown dataset", ["leaderboard", "-d", "brains", "--results-dir", "{results}"], ["brains"]),
    ("leaderboard: alpha", ["leaderboard", "--alpha", "2", "--results-dir", "{results}"], ["alpha", "2"]),
    ("leaderboard: output is a folder", ["leaderboard", "-o", "{corpus}/outdir", "--results-dir", "{results}"],
     ["outdir", "is a directory"]),
    ("leaderboard: output under a file", ["leaderboard", "-o", "{corpus}/afile/board.md", "--results-dir",
                                          "{results}"], ["afile", "is a file"]),
]


@pytest.mark.parametrize("case, args, words", REPORTS, ids=[c[0] for c in REPORTS])
def test_stats_and_leaderboard(corpus, results, cli, case, args, words):
    args = [a.format(corpus=corpus, results=results) for a in args]
    refused(cli, args, *words, roots=(corpus, results))
