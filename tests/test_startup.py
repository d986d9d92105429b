"""Start-up: plugins register by import path, so `srbench --help` and `srbench methods` import no heavy module.

Guarded by which modules a command imports (in a fresh process), not by timing; the times themselves are
measured side by side in benchmarks/startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from srbench import builtins, plugins, registration
from srbench.errors import SRBenchError

from conftest import make_distribution, subprocess_env

# Heavy enough to matter (each takes a large part of a second to import): a listing must not need them.
HEAVY = {"torch", "torchvision", "timm", "piq", "lpips", "scipy", "scikit_posthocs", "matplotlib", "pandas",
         "numpy", "SimpleITK", "nilearn", "pydicom"}

PROBE = """\
import sys
from srbench.cli import main
sys.argv = ["srbench", *sys.argv[1:]]
try:
    main()
finally:
    print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*args: str, env: dict | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, encoding="utf-8",
                          env=env or subprocess_env(), timeout=120)
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("MODULES ")]
    return {m.split(".")[0] for m in line.split()[1:]}, done


@pytest.mark.parametrize("args", [["--help"], ["methods"], ["methods", "--json"], ["run", "--help"]])
def test_help_and_method_listing_import_no_heavy_module(args):
    modules, done = imported_by(*args)
    assert done.returncode == 0, done.stderr
    assert modules & HEAVY == set()
    assert "conformance" in done.stdout or args[0] != "--help"  # plugin commands are there all the same


def test_a_command_that_needs_them_still_imports_them():
    modules, done = imported_by("metrics", "--json")
    assert done.returncode == 0, done.stderr
    assert "torch" in modules  # the probe sees imports: it would notice if nothing were ever loaded


def test_first_party_cards_match_their_classes():
    reg = plugins.get_registry()
    assert reg.failures == []
    for kind in plugins.KINDS:
        entries = getattr(reg, kind)
        for name in entries:
            entry = entries.peek(name)
            obj = entries[name]  # resolving checks the card against the object (a mismatch raises)
            if isinstance(entry, registration.Lazy) and kind != "degradations":
                assert obj.name == name == entry.name
    from srbench.degradation import PROTOCOLS
    from srbench.kspace import KSPACE_PROTOCOLS

    from srbench.metrics import BUILTIN_METRICS

    assert list(builtins.METRICS) == [m.info.name for m in BUILTIN_METRICS]
    assert list(builtins.METRICS.values()) == [m.__name__ for m in BUILTIN_METRICS]
    assert set(builtins.RESAMPLE_PROTOCOLS) == set(PROTOCOLS)
    assert set(builtins.KSPACE_PROTOCOLS) == set(KSPACE_PROTOCOLS)


LAZY_PLUGIN = """
    import srbench

    @srbench.hookimpl
    def register_methods(register):
        register(srbench.lazy("srbench_lazy_impl:Identity", name="lazy-identity", version="{version}",
                              trains=False, presets=["tiny", "paper"], summary="identity, registered by path"))
"""

LAZY_IMPL = """
    import torch  # what a real method module imports; listing the plugin must not need it

    from srbench.method import Method


    class Identity(Method):
        name = "lazy-identity"
        version = "0.2.0"
        summary = "identity, registered by path"
        input_interpolator = "linear"

        def predict_slices(self, lr, generator):
            return lr
"""


def install_lazy_plugin(tmp_path, version="0.2.0", monkeypatch=None):
    site = tmp_path / "site"
    if monkeypatch is not None:  # in-process: forget the modules an earlier test imported from its own site
        for module in ("srbench_lazy", "srbench_lazy_impl"):
            monkeypatch.delitem(sys.modules, module, raising=False)
    make_distribution(site, "srbench-lazy", {"srbench_lazy": LAZY_PLUGIN.format(version=version),
                                             "srbench_lazy_impl": LAZY_IMPL}, {"lazy": "srbench_lazy"})
    return site


def test_a_third_party_plugin_registered_by_path_is_listed_without_importing_it(tmp_path):
    modules, done = imported_by("methods", "--json", env=subprocess_env(install_lazy_plugin(tmp_path)))
    assert done.returncode == 0, done.stderr
    listed = {m["name"]: m for m in json.loads(done.stdout)}
    assert listed["lazy-identity"] == {"name": "lazy-identity", "plugin": "lazy", "version": "0.2.0",
                                       "trains": False, "presets": ["tiny", "paper"],
                                       "summary": "identity, registered by path"}
    assert "srbench_lazy_impl" not in modules and "torch" not in modules


def test_a_method_registered_by_path_resolves_on_first_use(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_lazy_plugin(tmp_path, monkeypatch=monkeypatch)))
    plugins.reset()
    cls = plugins.lookup("methods", "lazy-identity")
    assert cls.__name__ == "Identity" and cls(preset="tiny").card()["version"] == "0.2.0"
    assert plugins.lookup("methods", "lazy-identity") is cls


def test_a_card_that_disagrees_with_its_class_is_a_one_line_error_naming_the_plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_lazy_plugin(tmp_path, "9.9.9", monkeypatch)))
    plugins.reset()
    with pytest.raises(SRBenchError) as info:
        plugins.lookup("methods", "lazy-identity")
    message = str(info.value)
    assert "\n" not in message and "'lazy'" in message and "srbench-lazy" in message
    assert "'0.2.0'" in message and "'9.9.9'" in message


def test_a_method_whose_module_fails_to_import_is_reported_when_used(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "srbench-lazy", {"srbench_lazy": LAZY_PLUGIN.format(version="0.2.0"),
                                             "srbench_lazy_impl": "raise ImportError('needs libbar 2')\n"},
                      {"lazy": "srbench_lazy"})
    for module in ("srbench_lazy", "srbench_lazy_impl"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    assert "lazy-identity" in plugins.get_registry().methods
    with pytest.raises(SRBenchError, match=r"method 'lazy-identity' \(plugin 'lazy', srbench-lazy 0.1\).*"
                                           r"needs libbar 2"):
        plugins.lookup("methods", "lazy-identity")
    assert "bicubic" in plugins.get_registry().methods


def test_lazy_needs_a_module_and_attribute():
    with pytest.raises(SRBenchError, match="expected 'package.module:Attribute'"):
        registration.lazy("no_colon_here")


COMMANDS = """
    import click
    import srbench

    @srbench.hookimpl
    def register_commands(cli):
        @cli.command("hello")
        def hello():
            click.echo("hello from the plugin")

        @cli.command("{name}")
        def clash():
            click.echo("the plugin's {name}")
"""


@pytest.mark.parametrize("name", ["run", "conformance"])
def test_a_plugin_command_replacing_an_existing_one_is_an_error_naming_both(tmp_path, name):
    site = tmp_path / "site"
    make_distribution(site, "srbench-clash", {"srbench_clash": COMMANDS.format(name=name)},
                      {"clash": "srbench_clash"})
    done = subprocess.run([sys.executable, "-m", "srbench", name, "--help"], capture_output=True, text=True,
                          encoding="utf-8", env=subprocess_env(site), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "the plugin's" not in done.stdout and "Usage:" in done.stdout  # the existing command answered
    [error] = [ln for ln in done.stderr.splitlines() if "error" in ln]
    owner = "srbench itself" if name == "run" else "plugin 'res-srdiff'"
    assert f"plugin 'clash' adds command '{name}' (from {owner})" in error
    hello = subprocess.run([sys.executable, "-m", "srbench", "hello"], capture_output=True, text=True,
                           encoding="utf-8", env=subprocess_env(site), timeout=120)
    assert hello.returncode != 0 and "No such command 'hello'" in hello.stderr  # all its commands left out


def test_an_entry_point_that_implements_no_hook_is_reported(tmp_path, monkeypatch):
    make_distribution(tmp_path / "site", "srbench-empty", {"srbench_empty": "X = 1\n"}, {"empty": "srbench_empty"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins.reset()
    [failure] = [f for f in plugins.get_registry().failures if f.name == "empty"]
    assert "implements no srbench hook" in failure.error and failure.distribution == "srbench-empty"
