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


def test_infer_takes_the_precision(cli, tmp_path, volume):
    from conftest import assert_one_line_error

    path, _ = volume
    out = tmp_path / "sr.nii.gz"
    result = cli("infer", "-m", "bicubic", "-i", path, "-o", out, "-S", "1.8,2.2,4", "-x", "fp32")
    assert result.exit_code == 1 and not out.exists()
    assert_one_line_error(result, "method 'bicubic' has no precision choice (--precision): it runs as its preset says")
    result = cli("infer", "-m", "res-srdiff", "-i", path, "-o", out, "-S", "1.8,2.2,4", "-D", "cpu", "-x", "fp32")
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_the_prepared_network_follows_new_weights_precision_and_compile(monkeypatch, tmp_path):
    """Inference reuses one prepared network (bf16 copy, compiled) until the weights, precision or compile flag
    change; torch.compile is replaced by a recorder here (compiling takes minutes on a CPU)."""
    from srbench_plugins.res_srdiff import ResSRDiff

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda net, **kw: compiled.append(net) or net)
    method = ResSRDiff(preset="tiny", device="cpu", seed=0, precision="fp32")
    first = method._inference_net(False, "fp32")
    assert method._inference_net(False, "fp32") is first and first.net is method.net  # fp32: the network, traced
    method._inference_net(True, "fp32")
    method._inference_net(True, "fp32")
    assert len(compiled) == 1  # compiled once for these weights
    method.save(tmp_path / "w.safetensors")
    method.load(tmp_path / "w.safetensors")  # new weights (same values): the parameters' versions move on
    method._inference_net(True, "fp32")
    assert len(compiled) == 2
    bf16 = method._inference_net(False, "bf16").net
    assert bf16 is not method.net and bf16.input_blocks[0][0].weight.dtype == torch.bfloat16
    assert method.net.input_blocks[0][0].weight.dtype == torch.float32  # the trained network stays float32
    assert bf16.out[2].weight.dtype == torch.float32  # the output head stays float32 (the official use_fp16 design)
    assert bf16.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # and every GroupNorm
