"""The core plugin: srbench's own degradations and metrics, registered like any third-party plugin."""

from __future__ import annotations

from .degradation import PROTOCOLS, Resample, protocol_factory
from .hookspecs import hookimpl


@hookimpl
def register_degradations(register):
    register("resample", Resample)
    for protocol in PROTOCOLS:
        register(protocol, protocol_factory(protocol))


@hookimpl
def register_metrics(register):
    from .metrics import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        register(metric() if isinstance(metric, type) else metric)
