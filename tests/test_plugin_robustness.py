"""A plugin that fails at run time (constructing, fit, predict, load) is reported in one line by name, with its
distribution and version; nothing is recorded for it; other plugins and the leaderboard are unaffected;
SRBENCH_LOAD_PLUGINS switches it off; SRBENCH_TRACE_PLUGINS=1 logs plugin loading and hook calls.

Failures at import and at registration are covered by test_plugins.py.
"""

from __future__ import annotations

import json
import re

import click
import pytest

from srbench import plugins
from srbench.testing import TinyDatasetPlugin

from conftest import make_distribution

FLAKY = """
    import srbench
    from srbench.errors import SRBenchError
    from srbench.method import Method


    class Base(Method):
        version = "2.0.0"
        summary = "test methods that fail at one stage each"
        input_interpolator = "linear"

        def predict_slices(self, lr, generator):
            return lr


    class FitFails(Base):
        name = "fit-fails"
        trains = True

        def fit(self, train, val, workdir):
            raise RuntimeError("loss diverged at step 3")


    class PredictFails(Base):
        name = "predict-fails"

        def predict_slices(self, lr, generator):
            raise ValueError("expected a 4-D input,\\n got 3-D")


    class InitFails(Base):
        name = "init-fails"

        def __init__(self, preset="tiny", device="cpu", seed=0):
            super().__init__(preset, device, seed)
            raise OSError("no GPU memory left")


    class LoadFails(Base):
        name = "load-fails"
        trains = True

        def load(self, path):
            raise KeyError("model.weight")


    class SaysWhy(Base):
        name = "says-why"

        def predict_slices(self, lr, generator):
            raise SRBenchError("says-why: these weights are for x2 only")


    @srbench.hookimpl
    def register_methods(register):
        for cls in (FitFails, PredictFails, InitFails, LoadFails, SaysWhy):
            register(cls)
"""


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    """An installed-looking third-party distribution ``srbench-flaky 1.3`` (entry point ``flaky``), plus the kit's
    tiny dataset registered in-process (``srbench-tiny``, seconds per run)."""
    make_distribution(tmp_path / "site", "srbench-flaky", {"srbench_flaky": FLAKY}, {"flaky": "srbench_flaky"},
                      version="1.3")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins.reset()
    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    return tmp_path


def records(results):
    return sorted(p.relative_to(results).parts[2] for p in results.rglob("record.json"))


def error_line(result) -> str:
    """The run failed: non-zero exit, no traceback, the last stderr line is one 'Error: ...' line."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


@pytest.mark.parametrize("method, stage, message", [
    ("fit-fails", "fit", "RuntimeError: loss diverged at step 3"),
    ("predict-fails", "predict", "ValueError: expected a 4-D input, got 3-D"),
    ("init-fails", "init", "OSError: no GPU memory left"),
])
def test_a_method_failing_at_run_time_is_reported_by_name_distribution_and_version(flaky, cli, method, stage,
                                                                                     message):
    results = flaky / "results"
    assert cli("run", "--method", "bicubic", "--dataset", "srbench-tiny", "--results-dir", results).exit_code == 0
    line = error_line(cli("run", "--method", method, "--dataset", "srbench-tiny", "--results-dir", results))
    assert f"method '{method}' (plugin 'flaky', srbench-flaky 1.3) failed in {stage}: {message}" in line
    assert re.search(r"\[at srbench_flaky\.py:\d+\]$", line), line  # where, in the plugin's own code
    # nothing recorded for it; the other plugins and the leaderboard are unaffected
    assert records(results) == ["bicubic"]
    board = cli("leaderboard", "--results-dir", results, "--format", "csv")
    assert board.exit_code == 0 and "bicubic" in board.stdout and method not in board.stdout
    again = cli("run", "--method", "bicubic", "--dataset", "srbench-tiny", "--seed", "1", "--results-dir", results)
    assert again.exit_code == 0, again.output
    assert records(results) == ["bicubic", "bicubic"]


def test_a_failing_load_is_reported_and_a_plugins_own_message_is_kept(flaky, cli):
    results = flaky / "results"
    weights = flaky / "w.safetensors"
    weights.write_bytes(b"not really")
    line = error_line(cli("run", "--method", "load-fails", "--dataset", "srbench-tiny", "--checkpoint", weights,
                          "--results-dir", results))
    assert "method 'load-fails' (plugin 'flaky', srbench-flaky 1.3) failed in load: KeyError: 'model.weight'" in line
    # an SRBenchError raised by the plugin is already a message for users: it is passed on as it is
    line = error_line(cli("run", "--method", "says-why", "--dataset", "srbench-tiny", "--results-dir", results))
    assert line == "Error: says-why: these weights are for x2 only"
    assert records(results) == []


def test_in_process_runs_raise_one_line_srbench_errors(flaky):
    from srbench.errors import SRBenchError
    from srbench.runner import RunOptions, run

    with pytest.raises(SRBenchError, match=r"^method 'predict-fails' \(plugin 'flaky', srbench-flaky 1\.3\) failed in "
                                           r"predict: ValueError") as info:
        run(RunOptions(method="predict-fails", dataset="srbench-tiny", results_dir=flaky / "results"))
    assert "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)  # the original, for a debugger


def test_load_plugins_switches_a_failing_plugin_off(flaky, cli, monkeypatch):
    assert "fit-fails" in plugins.get_registry().methods
    monkeypatch.setenv("SRBENCH_LOAD_PLUGINS", "bicubic,core,demo")
    plugins.reset()
    listed = cli("methods", "--json")
    assert listed.exit_code == 0 and {m["name"] for m in json.loads(listed.stdout)} == {"bicubic", "bspline"}
    line = error_line(cli("run", "--method", "fit-fails", "--dataset", "demo"))
    assert "unknown method 'fit-fails'; available: bicubic, bspline" in line


BROKEN_REGISTRATION = """
    import srbench

    @srbench.hookimpl
    def register_methods(register):
        raise RuntimeError("cannot build the model")
"""


def test_trace_logs_plugin_loading_and_every_hook_call(tmp_path, monkeypatch, capsys):
    make_distribution(tmp_path / "site", "srbench-badreg", {"srbench_badreg": BROKEN_REGISTRATION},
                      {"badreg": "srbench_badreg"}, version="0.4")
    make_distribution(tmp_path / "site", "srbench-noimport", {"srbench_noimport": "import not_a_module_here\n"},
                      {"noimport": "srbench_noimport"}, version="0.5")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("SRBENCH_TRACE_PLUGINS", "1")
    plugins.reset()
    reg = plugins.get_registry()
    trace = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("srbench-trace: ")]
    text = "\n".join(trace)
    assert re.search(r"load entry point 'bicubic' = srbench_plugins\.entry_points:bicubic \(srbench [\d.]+\) in [\d.]+ ms", text)
    assert ("load entry point 'noimport' = srbench_noimport (srbench-noimport 0.5) FAILED: ModuleNotFoundError"
            in text)
    assert re.search(r"call register_methods of plugin 'bicubic' \(srbench [\d.]+\)", text)
    assert "plugin 'bicubic' registered method 'bicubic'" in text
    assert "plugin 'demo' registered dataset 'demo'" in text
    assert re.search(r"register_methods of plugin 'badreg' raised RuntimeError: cannot build the model", text)
    assert re.search(r"register_datasets of plugin 'demo' done \([\d.]+ ms\)", text)
    # the failures are still reported as before, with distribution and version
    assert {(f.name, f.distribution, f.version, f.stage) for f in reg.failures} >= {
        ("badreg", "srbench-badreg", "0.4", "register_methods"), ("noimport", "srbench-noimport", "0.5", "import")}
    # hooks the CLI calls itself (register_commands) are traced too
    group = click.Group()
    for impl in plugins.get_plugin_manager().hook.register_commands.get_hookimpls():
        impl.function(group)
    assert re.search(r"call register_commands of plugin 'core' \(srbench [\d.]+\)", capsys.readouterr().err)
    # and an in-process plugin's hooks as well
    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    plugins.get_registry()
    assert ("call register_datasets of plugin 'srbench-tiny' ((in-process) ?)" in capsys.readouterr().err)


def test_no_trace_without_the_variable(capsys):
    plugins.get_registry()
    assert "srbench-trace" not in capsys.readouterr().err


@pytest.mark.parametrize("method, stage, message, extra", [
    ("predict-fails", "predict", "ValueError: expected a 4-D input, got 3-D", []),
    ("init-fails", "init", "OSError: no GPU memory left", []),
    ("load-fails", "load", "KeyError: 'model.weight'", ["--checkpoint", "w.safetensors"]),
])
def test_infer_reports_a_failing_method_as_run_does(flaky, cli, method, stage, message, extra):
    """``srbench infer`` builds the method through the same guard as ``srbench run``: one line, same words."""
    import numpy as np
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)),
                    str(flaky / "lr.nii.gz"))
    (flaky / "w.safetensors").write_bytes(b"not really")
    extra = [str(flaky / e) if e.endswith(".safetensors") else e for e in extra]
    line = error_line(cli("infer", "-m", method, "--input", flaky / "lr.nii.gz", "--output", flaky / "sr.nii.gz",
                          "--spacing", "1,1,0.5", *extra))
    assert f"method '{method}' (plugin 'flaky', srbench-flaky 1.3) failed in {stage}: {message}" in line
    assert not (flaky / "sr.nii.gz").exists()
    missing = error_line(cli("infer", "-m", "load-fails", "--input", flaky / "lr.nii.gz", "--output",
                             flaky / "sr.nii.gz", "--spacing", "1,1,0.5", "--checkpoint", flaky / "absent.safetensors"))
    assert missing == f"Error: {flaky / 'absent.safetensors'}: checkpoint not found"
