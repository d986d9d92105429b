"""Every option of every command has help text and a short flag; common options share one flag everywhere;
names get "did you mean"; presets are checked before any work; an empty results folder is an error."""

from __future__ import annotations

import json

import click
import pytest

from conftest import assert_one_line_error

# One flag per common option, on every command that has it.
SHARED = {"--method": "-m", "--dataset": "-d", "--degradation": "-g", "--preset": "-p", "--seed": "-s",
          "--device": "-D", "--batch-size": "-b", "--precision": "-x", "--results-dir": "-r", "--data-root": "-R",
          "--output": "-o", "--json": "-j",
          "--protocol": "-P", "--unit": "-u", "--alpha": "-a", "--case": "-c", "--checkpoint": "-c"}


def walk(group: click.Group, ctx: click.Context, path=("srbench",)):
    """(command path, command, its context) of every command under ``group``, groups included; contexts are
    chained as when the command runs, so settings such as ``-h`` are inherited."""
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        sub = click.Context(cmd, parent=ctx, info_name=name, **cmd.context_settings)
        yield path + (name,), cmd, sub
        if isinstance(cmd, click.Group):
            yield from walk(cmd, sub, path + (name,))


@pytest.fixture
def tree():
    from srbench.cli import _add_plugin_commands, cli

    _add_plugin_commands()  # the commands built-in plugins add (cache, conformance), as `srbench` has them
    root = click.Context(cli, info_name="srbench", **cli.context_settings)
    return [(("srbench",), cli, root)] + list(walk(cli, root))


def test_every_option_has_help_and_a_short_flag(tree):
    names = {" ".join(p) for p, _, _ in tree}
    assert {"srbench run", "srbench report", "srbench leaderboard", "srbench stats", "srbench score",
            "srbench infer", "srbench train", "srbench cache info", "srbench conformance"} <= names
    missing_help, missing_short, inconsistent = [], [], []
    for path, cmd, ctx in tree:
        for param in cmd.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            where = f"{' '.join(path)} {param.opts[0]}"
            if not (param.help or "").strip():
                missing_help.append(where)
            flags = param.opts + param.secondary_opts
            shorts = [f for f in flags if not f.startswith("--")]
            if not shorts:
                missing_short.append(where)
            long = next((f for f in flags if f.startswith("--")), None)
            if long in SHARED and SHARED[long] not in shorts:
                inconsistent.append(f"{where} ({shorts})")
        assert cmd.help or cmd.short_help, f"{' '.join(path)} has no help"
    assert not missing_help, f"options without help: {missing_help}"
    assert not missing_short, f"options without a short flag: {missing_short}"
    assert not inconsistent, f"shared options with another short flag: {inconsistent}"


def test_device_defaults_to_auto_everywhere(tree):
    for path, cmd, ctx in tree:
        for param in cmd.get_params(ctx):
            if param.name == "device":
                assert param.default == "auto", path


@pytest.mark.parametrize("args,expected", [
    (["run", "-m", "bicubc", "-d", "demo"], "did you mean 'bicubic'?"),
    (["run", "-m", "bicubic", "-d", "dmeo"], "did you mean 'demo'?"),
    (["run", "-m", "bicubic", "-d", "demo", "-g", "brain-t1mpa"], "did you mean 'brain-t1map'?"),
    (["run", "-m", "pix2pix", "-d", "demo", "-p", "tinyy"], "has no preset 'tinyy' (did you mean 'tiny'?)"),
    (["train", "-m", "pix2pix", "-d", "demo", "-p", "papr", "-o", "x.safetensors"], "did you mean 'paper'?"),
])
def test_names_get_did_you_mean(cli, args, expected):
    assert_one_line_error(cli(*args), expected)


def test_metric_names_get_did_you_mean():
    from srbench.errors import SRBenchError
    from srbench.plugins import lookup

    with pytest.raises(SRBenchError, match="did you mean 'psnr'"):
        lookup("metrics", "psrn")


def test_a_results_dir_without_runs_is_an_error(cli, tmp_path):
    for command in ("leaderboard", "report", "stats"):
        extra = ["-d", "demo"] if command == "stats" else []
        assert_one_line_error(cli(command, "-r", tmp_path, *extra), str(tmp_path), "no runs here")
        assert_one_line_error(cli(command, "-r", tmp_path / "typo", *extra), "no runs: folder not found")


def test_leaderboard_filters_say_what_exists(cli, bicubic_run):
    results, _ = bicubic_run
    assert_one_line_error(cli("leaderboard", "-r", results, "-d", "dmeo"), "did you mean 'demo'?")
    result = cli("leaderboard", "-r", results, "-j")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["method"] == "bicubic" and row["psnr_mean"] > 20


def test_run_says_where_weights_come_from_and_what_to_type_next(cli, bicubic_run):
    results, run_dir = bicubic_run
    result = cli("run", "-m", "bicubic", "-d", "demo", "-r", results, "-j")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["run_dir"] == str(run_dir) and out["ran"] is False and out["summary"]["per_slice"]
    assert "weights:" not in result.stderr  # bicubic loads nothing
    assert f"next: srbench report -r {results}" in result.stderr


def test_weights_notice_names_the_shipped_checkpoint():
    from srbench.cli import _weights_notice
    from srbench.runner import RunOptions

    shipped = _weights_notice(RunOptions(method="pix2pix", dataset="demo"))
    assert shipped.startswith("weights: the demo-tiny checkpoint shipped with pix2pix (") and "--train" in shipped
    assert "training pix2pix now (--train" in _weights_notice(RunOptions(method="pix2pix", dataset="demo", train=True))
    assert _weights_notice(RunOptions(method="pix2pix", dataset="demo", preset="paper", pretrained_only=True)) is None
