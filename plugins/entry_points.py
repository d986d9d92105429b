"""What the entry points of the first-party method plugins name: each method's card and import path.

Every ``srbench`` command loads every plugin, so a plugin that imported torch when loaded would make
``srbench --help`` wait for torch. Each first-party plugin is therefore a small object here that registers its
method by import path (:func:`srbench.lazy`); the method's own package (``srbench_plugins.<name>``) is imported
the first time a command uses the method. The card fields below are checked against the class then, and by
``tests/test_startup.py``.
"""

from __future__ import annotations

import srbench


class MethodPlugin:
    """A plugin that registers its methods by import path, each with the card ``srbench methods`` shows."""

    def __init__(self, *methods):
        self.methods = methods

    @srbench.hookimpl
    def register_methods(self, register):
        for method in self.methods:
            register(method)


class ResSRDiffPlugin(MethodPlugin):
    """Res-SRDiff also adds ``srbench conformance``, which checks this install against the official code."""

    @srbench.hookimpl
    def register_commands(self, cli):
        import json
        from pathlib import Path

        import click

        @cli.command("conformance")
        @click.argument("method", type=click.Choice(["res-srdiff"]))
        @click.argument("directory", type=click.Path(path_type=Path), required=False)
        @click.option("--json", "-j", "as_json", is_flag=True, help="Print one JSON object.")
        def conformance(method, directory, as_json):
            """Check this install against a vector set produced by the official code (default: the bundled set)."""
            from srbench_plugins.res_srdiff.conformance import BUNDLED_VECTORS, check_conformance

            result = check_conformance(directory or BUNDLED_VECTORS)
            if as_json:
                click.echo(json.dumps(result))
            else:
                for key, value in result.items():
                    click.echo(f"{key:10s} {value}")
            if not result["passed"]:
                raise SystemExit(1)


bicubic = MethodPlugin(
    srbench.lazy("srbench_plugins.bicubic:Bicubic", name="bicubic", version="2.0.0", trains=False,
                 presets=["tiny", "paper"],
                 summary="Keys cubic convolution (a = -0.5, as MATLAB imresize; no antialiasing, edges repeated) of "
                         "the LR volume onto the HR grid, separable in 3-D."),
    srbench.lazy("srbench_plugins.bicubic:BSpline", name="bspline", version="1.0.0", trains=False,
                 presets=["tiny", "paper"],
                 summary="Cubic B-spline interpolation of the LR volume onto the HR grid (3-D, SimpleITK "
                         "sitkBSpline); most likely the paper's 'Bicubic'."))

pix2pix = MethodPlugin(srbench.lazy(
    "srbench_plugins.pix2pix:Pix2Pix", name="pix2pix", version="1.2.0", trains=True, presets=["tiny", "paper"],
    summary="Conditional GAN: U-Net generator, 70x70 PatchGAN, adversarial + 100 x L1 (Isola et al. 2017)."))

cyclegan = MethodPlugin(srbench.lazy(
    "srbench_plugins.cyclegan:CycleGAN", name="cyclegan", version="1.1.0", trains=True, presets=["tiny", "paper"],
    summary="Unpaired GAN with cycle consistency: ResNet generators both ways, PatchGANs, LSGAN, cycle 10, "
            "identity 0.5, image pools (Zhu et al. 2017); SR with the LR -> HR generator."))

tm_ddpm = MethodPlugin(srbench.lazy(
    "srbench_plugins.tm_ddpm:TMDDPM", name="tm-ddpm", version="1.2.0", trains=True,
    presets=["tiny", "paper", "tiny-full", "paper-ddim"],
    summary="Conditional DDPM (linear betas, T = 1000, epsilon prediction, LR concatenated) with a Swin-UNet "
            "backbone from timm blocks; full ancestral or DDIM sampling."))

res_srdiff = ResSRDiffPlugin(srbench.lazy(
    "srbench_plugins.res_srdiff:ResSRDiff", name="res-srdiff", version="1.3.0", trains=True,
    presets=["tiny", "paper-prostate", "paper-brain", "paper", "tiny-t15"],
    summary="Residual-shifting diffusion with a Swin-UNet, 4 sampling steps (Safari et al. 2025)."))
