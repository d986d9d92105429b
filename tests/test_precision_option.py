"""`--precision` on `srbench run` / `srbench infer`: a method's inference arithmetic, part of the run's identity."""

import pytest
import torch

from srbench.plugins import lookup
from srbench_plugins.res_srdiff.sampler import resolve_precision

NATIVE_BF16 = resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.fixture
def tiny_res_srdiff():
    """The kit's tiny dataset (one 12-slice test case) and Res-SRDiff's shipped demo weights."""
    from srbench import plugins
    from srbench.testing import TinyDatasetPlugin

    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    return lookup("methods", "res-srdiff").shipped_checkpoint("demo", "tiny")


def _run(cli, results, weights, *extra):
    import json

    from srbench.record import load_record

    result = cli("run", "-m", "res-srdiff", "-d", "srbench-tiny", "-r", results, "-c", weights, "-D", "cpu", "-j",
                 *extra)
    assert result.exit_code == 0, result.output
    return load_record(json.loads(result.stdout.splitlines()[-1])["run_dir"])


def _precision(record) -> str:
    return record.method_card["settings"]["inference"]["precision"]


def test_the_exact_mode_is_recorded_and_reproduced(cli, tmp_path, tiny_res_srdiff):
    from srbench.reproduce import reproduce

    exact = _run(cli, tmp_path / "a", tiny_res_srdiff, "-x", "fp32")
    assert _precision(exact) == "fp32"
    default = _run(cli, tmp_path / "a", tiny_res_srdiff)
    assert _precision(default) == ("bf16" if NATIVE_BF16 else "fp32")
    # another arithmetic is another run (and row) where it changes the output
    assert (default.run_id != exact.run_id) == NATIVE_BF16
    rerun, deviations = reproduce(exact.path, tmp_path / "b", device="cpu")
    assert _precision(rerun) == "fp32" and rerun.run_id == exact.run_id
    assert max(deviations.values()) <= 1e-5


def test_a_method_without_a_choice_is_a_one_line_error(cli, tmp_path):
    from conftest import assert_one_line_error

    result = cli("run", "-m", "bicubic", "-d", "demo", "-r", tmp_path, "-x", "bf16")
    assert result.exit_code == 1
    assert_one_line_error(result, "method 'bicubic' has no precision choice (--precision): it runs as its preset says")
    assert not list(tmp_path.rglob("record.json"))


def test_an_unknown_precision_is_refused(cli, tmp_path):
    result = cli("run", "-m", "res-srdiff", "-d", "demo", "-r", tmp_path, "-x", "fp16")
    assert result.exit_code == 2 and "fp16" in result.output
