"""How inference runs Res-SRDiff's network: eager, as traced graphs (the CPU default) or compiled.

At small sizes on CPU, sampling is bound by per-operation work around the kernels, not by arithmetic: at
64 x 64, batch 1, Python's module calls and the timestep-embedding branch (a dozen small matrix products per
step) cost about a fifth of the network's time (measured on a 2-core CPU, bfloat16). ``TracedNet`` removes that
work: it records the forward with ``torch.jit.trace`` and runs the frozen graph (``torch.jit.freeze``: weights
inlined as constants, constant branches folded) from then on. A sampler calls the network at a few fixed
timesteps, so a graph is traced per input shape *and timestep*: the whole embedding branch is then a constant.

The graph runs the same kernels on the same operands, so its outputs are bit-identical to eager ones (tested, fp32
and bf16; freezing runs with ``optimize_numerics=False``, which keeps it from folding additions into convolution
biases). Tracing is not part of a run's identity. A trace costs about 0.7 s; a graph is traced at its third use,
so short predictions (tests, a validation pass) stay eager and long ones gain.

TorchScript is deprecated upstream in favour of ``torch.compile``, which compiles for about 70 s per shape on
this CPU and was not faster at 64 x 64 (``compile=True``, ``frozen_compile``). Should a future torch lack
TorchScript, or a trace fail, ``TracedNet`` runs the network eagerly: slower, never different.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

TRACE_AT_USE = 3  # eager for a graph's first two uses: a trace pays for itself only over many calls


class _AtTimestep(nn.Module):
    """``net`` at fixed timesteps: traced, the timestep embedding branch becomes constant and is folded."""

    def __init__(self, net: nn.Module, t: torch.Tensor):
        super().__init__()
        self.net, self.t = net, t

    def forward(self, x: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, self.t, lq=lq)


class TracedNet:
    """``net(x, t, lq=y)`` through one frozen TorchScript graph per input shape and timestep, eager until a graph's
    ``TRACE_AT_USE``-th use, and where tracing fails.

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
                inputs = (x,) if lq is None else (x, lq)
                traced = torch.jit.trace(_AtTimestep(self.net, t.clone()), inputs, check_trace=False)
                return torch.jit.freeze(traced.eval(), optimize_numerics=False)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the (identical, slower) eager network
            warnings.warn(f"res-srdiff: tracing the network failed, sampling eagerly instead "
                          f"({type(exc).__name__}: {str(exc)[:160]})", RuntimeWarning, stacklevel=3)
            return self.net


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
    """The callable inference runs: compiled if asked, else traced on CPU (unless ``traced=False``), else the
    eager network.

    CUDA stays eager: TorchScript's GPU fusers would change float32 arithmetic, and the GPU path is not limited by
    Python work at the batch sizes it runs (16); ``benchmarks/gpu.sh`` measures eager and compiled there.
    """
    if compiled:
        return frozen_compile(net)
    device = next(net.parameters()).device
    return TracedNet(net) if traced and device.type == "cpu" else net
