"""Res-SRDiff's traced inference graphs (``graphs.TracedNet``): faster on CPU, never different."""

from __future__ import annotations

import pytest
import torch

import srbench_plugins.res_srdiff as rs
from srbench_plugins.res_srdiff import graphs
from srbench_plugins.res_srdiff.sampler import resolve_precision

NATIVE_BF16 = resolve_precision("bf16", torch.device("cpu")) == "bf16"
MICRO = {
    **rs.PRESETS["tiny"],
    "network": dict(image_size=32, in_channels=1, out_channels=1, model_channels=32, num_res_blocks=[1, 1],
                    attention_resolutions=(16,), channel_mult=(1, 2), lq_size=32),
}
LR = torch.rand(2, 1, 40, 70, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(rs.ResSRDiff.presets, "micro", MICRO)
    monkeypatch.setattr(graphs, "TRACE_AT_USE", 3)  # not 64: a few predictions reach a traced graph

    def make(precision="fp32", traced=True):
        torch.manual_seed(3)  # the same initial weights for every method made here
        method = rs.ResSRDiff(preset="micro", device="cpu", seed=0, precision=precision)
        method.traced = traced
        return method
    return make


def _predict(method, times=1):
    return [method.predict_slices(LR, torch.Generator().manual_seed(5)) for _ in range(times)]


def _graphs(method) -> dict:
    return method._inference_net(False, method.settings["inference"]["precision"]).graphs


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.skipif(
    not NATIVE_BF16, reason="this CPU has no native bf16 (bf16 falls back to fp32)"))])
def test_traced_sampling_is_bit_identical_to_eager(micro, precision):
    eager = _predict(micro(precision, traced=False))[0]
    traced = micro(precision)
    outputs = _predict(traced, graphs.TRACE_AT_USE + 1)
    assert all(isinstance(g, torch.jit.ScriptFunction) for g in _graphs(traced).values())  # the graphs did run
    for out in outputs:
        assert torch.equal(out, eager)


def test_a_graph_per_shape_and_timestep_is_traced_at_its_nth_use(micro):
    method = micro()
    steps = method.diffusion.num_timesteps
    _predict(method, graphs.TRACE_AT_USE - 1)
    assert _graphs(method) == {}  # short predictions stay eager
    _predict(method)
    assert len(_graphs(method)) == steps  # one per sampling step: each folds its timestep embedding
    assert {key[-1] for key in _graphs(method)} == {(t, t) for t in method.diffusion.timestep_map}
    method.predict_slices(LR[:1], torch.Generator())
    assert len(_graphs(method)) == steps  # another batch size is another shape: eager until its nth use


def test_graphs_follow_weights_changed_in_place(micro):
    """A graph holds the weights as constants (and its timestep branch precomputed): training or loading in place
    must give a new graph, not stale constants."""
    method = micro()
    _predict(method, graphs.TRACE_AT_USE)
    with torch.no_grad():
        for p in method.net.parameters():
            p.mul_(1.01)
    changed = _predict(method, graphs.TRACE_AT_USE)  # the last one through a graph traced on the new weights
    assert all(isinstance(g, torch.jit.ScriptFunction) for g in _graphs(method).values())
    eager = micro(traced=False)
    eager.net.load_state_dict(method.net.state_dict())
    expected = _predict(eager)[0]
    assert all(torch.equal(out, expected) for out in changed)


def test_a_failing_trace_leaves_the_eager_network_with_a_warning(micro, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    method = micro()
    with pytest.warns(RuntimeWarning, match="tracing the network failed, sampling eagerly instead"):
        outputs = _predict(method, graphs.TRACE_AT_USE + 1)
    expected = _predict(micro(traced=False))[0]
    assert all(torch.equal(out, expected) for out in outputs)
