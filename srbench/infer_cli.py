"""``srbench infer``: super-resolve one volume with any method (``srbench.infer`` does the work).

Added to the command-line group by :func:`register` (``srbench.cli`` calls it).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from .cli_common import (CONTEXT, batch_size_opt, check_preset, device_opt, json_opt, method_opt, precision_opt,
                         preset_opt, seed_opt)
from .overrides import check_batch_size


def register(cli: click.Group) -> None:
    """Add the ``infer`` command to ``cli``."""
    cli.add_command(infer)


@click.command(context_settings=CONTEXT)
@method_opt()
@click.option("--input", "-i", "input_path", required=True, type=click.Path(path_type=Path), help="LR volume.")
@click.option("--output", "-o", "output_path", required=True, type=click.Path(path_type=Path), help="SR volume.")
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path), default=None, help="Weights (default: shipped).")
@click.option("--like", "-l", type=click.Path(path_type=Path), default=None, help="Take the output grid from it.")
@click.option("--spacing", "-S", default=None, help="Output spacing x,y,z mm (default: input / protocol factors).")
@click.option("--dataset", "-d", default="demo", show_default=True, help="Whose checkpoint and protocol to use.")
@click.option("--degradation", "-g", default=None, help="Protocol for the default grid (default: the dataset's).")
@preset_opt()
@seed_opt()
@device_opt()
@batch_size_opt()
@precision_opt()
@json_opt("Print the written volume's path as JSON on stdout.")
def infer(method, input_path, output_path, checkpoint, like, spacing, dataset, degradation, preset, seed, device,
          batch_size, precision, as_json):
    """Super-resolve a whole volume with any method; the output keeps correct geometry."""
    from .infer import infer as do_infer

    err = Console(stderr=True, soft_wrap=True)
    check_preset(method, preset)
    check_batch_size(batch_size)
    values = None
    if spacing is not None:
        try:
            values = [float(v) for v in spacing.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected x,y,z in mm, got {spacing!r}", param_hint="--spacing") from None
    do_infer(method, input_path, output_path, checkpoint, like, values, preset, seed, device, dataset=dataset,
             degradation=degradation, say=lambda text: err.print(text, highlight=False, markup=False),
             batch_size=batch_size, precision=precision)
    if as_json:
        click.echo(json.dumps({"output": str(output_path), "method": method, "preset": preset}))
    err.print(f"wrote {output_path}")
