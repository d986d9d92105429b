"""How inference runs Res-SRDiff's network: eager, as traced graphs (CPU, long runs) or compiled.

At small sizes on CPU, sampling is bound by per-operation work around the kernels, not by arithmetic: at
64 x 64, batch 1, Python's module calls and the timestep-embedding branch (a dozen small matrix products per
step) cost a fifth to a quarter of the network's time (measured on a 2-core CPU, bfloat16). ``TracedNet``
removes that work: it records the forward once with ``torch.jit.trace`` and runs the TorchScript graph. A sampler
calls the network at a few fixed timesteps, so a graph is traced per input shape *and timestep*: the weights, the
timesteps and so the whole embedding branch are constants, which the graph executor folds.

The graph runs the same kernels on the same operands, so its outputs are bit-identical to eager ones (tested, fp32
and bf16); tracing is not part of a run's identity. At batch 1 a graph costs 0.4-0.7 s to trace and optimise
(tiny preset, 64^2 to 256^2) and saves 3-12 ms a call (a step's network takes 15-130 ms), so it pays for itself
after roughly 60-200 calls: a graph is traced at its ``TRACE_AT_USE``-th call, near the start of that range, which
bounds what a run can lose to tracing. Short runs (the demo's 32 slices a seed, a validation pass, tests) stay
eager; long ones (a ProstateX test split: 2,668 slices) gain.

TorchScript is deprecated upstream in favour of ``torch.compile``, which compiles for about 70 s per shape on
this CPU and was not faster at 64 x 64 (``compile=True``, ``frozen_compile``). Should a future torch lack
TorchScript, or a trace fail, ``TracedNet`` runs the network eagerly: slower, never different.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

TRACE_AT_USE = 64  # a graph's calls before this one run eagerly (see above)


class TracedNet:
    """``net(x, t, lq=y)`` through one TorchScript graph per input shape and timestep, eager until a graph's
    ``TRACE_AT_USE``-th call, and where tracing fails.

    A trace records the control flow that the input's shapes took (window counts, mask shapes) and the timesteps'
    values, so graphs are keyed by those. ``net`` must not change afterwards: the plugin builds a new
    ``TracedNet`` whenever the weights change.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.graphs: dict[tuple, object] = {}
        self.uses: dict[tuple, int] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        key = (x.shape, x.dtype, None if lq is None else lq.shape, tuple(t.tolist()))
        graph = self.graphs.get(key)
        if graph is None:
            self.uses[key] = self.uses.get(key, 0) + 1
            if self.uses[key] < TRACE_AT_USE:
                return self.net(x, t, lq=lq)
            graph = self.graphs[key] = self._trace(x, t, lq)
        if graph is self.net:  # tracing failed
            return self.net(x, t, lq=lq)
        return graph(x) if lq is None else graph(x, lq)

    def _trace(self, x, t, lq):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # The deprecation notices, and the notices that shape-dependent branches (mask shapes, window
                # counts) are recorded as constants: hence one graph per shape.
                warnings.simplefilter("ignore")
                self.net(x, t, lq=lq)  # fills the layers' mask caches, so the trace holds the masks as constants
                t = t.clone()
                with _constant_weights(self.net):
                    return torch.jit.trace(lambda x, lq=None: self.net(x, t, lq=lq), (x,) if lq is None else (x, lq),
                                           check_trace=False)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the (identical, slower) eager network
            warnings.warn(f"res-srdiff: tracing the network failed, sampling eagerly instead "
                          f"({type(exc).__name__}: {str(exc)[:160]})", RuntimeWarning, stacklevel=3)
            return self.net


@contextlib.contextmanager
def _constant_weights(net: nn.Module):
    """Parameters without ``requires_grad`` while a function is traced, so that the trace records them as constants
    (it refuses tensors that require grad); restored afterwards. The graph holds the parameters themselves, no copy.
    """
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def frozen_compile(net: nn.Module):
    """``torch.compile(net)`` with Inductor's freezing. Set through the config (``options={"freezing": True}``
    was measured to have no effect) around every call, since compiling happens at the first one."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(net, dynamic=False)  # one static graph per slice size: a dataset has one or a few

    def run(*args, **kwargs):
        with inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)
    return run


def prepare(net: nn.Module, compiled: bool, traced: bool = True) -> object:
    """The callable inference runs: compiled if asked, else on CPU a ``TracedNet`` (eager until a graph's
    ``TRACE_AT_USE``-th call; ``traced=False``: always eager), else the eager network.

    CUDA stays eager: the graphs were measured on CPU only (no GPU was at hand), and TorchScript's GPU fusers may
    change float32 arithmetic, which the bit-identity tests would not see here; ``benchmarks/gpu.sh`` measures eager
    and compiled on a GPU.
    """
    if compiled:
        return frozen_compile(net)
    device = next(net.parameters()).device
    return TracedNet(net) if traced and device.type == "cpu" else net
