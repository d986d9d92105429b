"""The core plugin: srbench's own degradations and metrics, registered like any third-party plugin."""

from __future__ import annotations

from .degradation import PROTOCOLS, Resample, protocol_factory
from .hookspecs import hookimpl
from .kspace import KSPACE_PROTOCOLS, KSpace, kspace_protocol_factory
from .noise import RicianNoise


@hookimpl
def register_degradations(register):
    register("resample", Resample)
    for protocol in PROTOCOLS:
        register(protocol, protocol_factory(protocol))
    register("kspace", KSpace)
    for protocol in KSPACE_PROTOCOLS:
        register(protocol, kspace_protocol_factory(protocol))
    register("noise", RicianNoise)
    # Compositions ("prostate-t2w+noise:snr=20") are built from these by srbench.runner.make_degradation (srbench.degradation.build for each step).


@hookimpl
def register_metrics(register):
    from .metrics import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        register(metric() if isinstance(metric, type) else metric)


@hookimpl
def register_commands(cli):
    import json

    import click

    @cli.group("cache")
    def cache_group():
        """The preprocessing cache ($SRBENCH_CACHE, default ~/.cache/srbench)."""

    @cache_group.command("info")
    def cache_info():
        """Where the cache is and how much it holds (JSON)."""
        from .cache import PreprocessCache

        click.echo(json.dumps(PreprocessCache().info(), indent=2))

    @cache_group.command("clear")
    def cache_clear():
        """Delete every cache entry (they are rebuilt on the next run)."""
        from .cache import PreprocessCache

        cache = PreprocessCache()
        cache.clear()
        click.echo(json.dumps(cache.info(), indent=2))
