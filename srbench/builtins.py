"""The core plugin: srbench's own degradations and metrics, registered like any third-party plugin.

Everything is registered by import path (:func:`srbench.lazy`), so that loading this plugin imports neither
SimpleITK, SciPy nor torch: each degradation or metric is imported when a command first uses it.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .registration import lazy

# The named protocols of srbench.degradation.PROTOCOLS and srbench.kspace.KSPACE_PROTOCOLS (a test keeps these
# lists equal to those tables, which cannot be read here without importing SimpleITK and SciPy).
RESAMPLE_PROTOCOLS = ("brain-t1map", "prostate-t2w")
KSPACE_PROTOCOLS = ("prostate-t2w-kspace", "brain-t1map-kspace")
METRICS = {"psnr": "PSNR", "ssim": "SSIM", "gmsd": "GMSD", "lpips": "LPIPS"}  # name -> class in srbench.metrics


@hookimpl
def register_degradations(register):
    register("resample", lazy("srbench.degradation:Resample"))
    for protocol in RESAMPLE_PROTOCOLS:
        register(protocol, lazy("srbench.degradation:protocol_factory", args=(protocol,)))
    register("kspace", lazy("srbench.kspace:KSpace"))
    for protocol in KSPACE_PROTOCOLS:
        register(protocol, lazy("srbench.kspace:kspace_protocol_factory", args=(protocol,)))
    register("noise", lazy("srbench.noise:RicianNoise"))
    # Compositions ("prostate-t2w+noise:snr=20") are built from these by srbench.runner.make_degradation
    # (srbench.degradation.build for each step).


@hookimpl
def register_metrics(register):
    for name, cls in METRICS.items():
        register(lazy(f"srbench.metrics:{cls}", args=(), name=name))


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
