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

    from .cli_common import data_root_opt, json_opt

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

    @cli.command("check-splits")
    @click.option("-d", "--dataset", required=True, help="Dataset name, NAME:ROOT or folder:PATH.")
    @click.option("-g", "--degradation", default=None, help="Degradation spec (default: the dataset's protocol).")
    @click.option("-i", "--interpolators", default=None,
                  help="Comma-separated LR-to-HR interpolators to check (default: all).")
    @data_root_opt()
    @json_opt()
    def check_splits(dataset, degradation, interpolators, data_root, as_json):
        """Show that perturbing one split's HR content leaves every other split's LR inputs bit-identical."""
        from dataclasses import asdict

        from .splitcheck import check_spec

        names = [n.strip() for n in interpolators.split(",")] if interpolators else None
        spec, rows = check_spec(dataset, degradation, names, data_root)
        leaks = [r for r in rows if r.max_abs_diff != 0.0]
        if as_json:
            click.echo(json.dumps({"dataset": dataset, "degradation": spec, "isolated": not leaks,
                                   "rows": [asdict(r) for r in rows]}))
        else:
            for r in rows:
                state = "bit-identical" if r.max_abs_diff == 0.0 else f"CHANGED (max |diff| {r.max_abs_diff:.3g})"
                click.echo(f"{r.perturbed} perturbed -> {r.split}/{r.case_id} [{r.interpolator}]: {state}")
            click.echo(f"{dataset} under {spec}: " + ("splits isolated" if not leaks else f"{len(leaks)} input(s) changed"))
        if leaks:
            raise SystemExit(1)
