"""Plugin discovery: entry points of group ``srbench``, SRBENCH_LOAD_PLUGINS, failures, duplicate names."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess

import pytest

from srbench import plugins
from srbench.errors import SRBenchError

from conftest import SRBENCH_EXE, make_distribution, subprocess_env

BUILTINS = {"bicubic", "core", "demo", "res-srdiff"}

EXTERNAL_METHOD = """
    import srbench
    from srbench.method import Method


    class Identity(Method):
        name = "{name}"
        version = "0.3.0"
        summary = "LR put on the HR grid (linear), returned as is: an external test plugin"
        input_interpolator = "linear"

        def predict_slices(self, lr, generator):
            return lr


    @srbench.hookimpl
    def register_methods(register):
        register(Identity)
"""


def loaded_names() -> set[str]:
    pm = plugins.get_plugin_manager()
    return {pm.get_name(p) for p in pm.get_plugins()}


def external(tmp_path, monkeypatch, module: str, source: str, ep: str, dist: str = "srbench-test-plugin"):
    """Install (on sys.path, without pip) a distribution whose entry point ``ep`` is ``module``."""
    make_distribution(tmp_path / "site", dist, {module: source}, {ep: module})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins.reset()


def test_builtins_are_entry_points_of_the_srbench_group():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="srbench")}
    assert BUILTINS <= set(eps)
    assert all(eps[n].dist.name == "srbench" for n in BUILTINS)
    reg = plugins.get_registry()
    failed = {f.name for f in reg.failures}
    assert BUILTINS <= loaded_names() | failed
    assert {"bicubic", "core", "demo"} <= loaded_names()
    # Each built-in registered its things under its own plugin name, like a third-party plugin would.
    assert reg.owners[("methods", "bicubic")] == "bicubic"
    assert reg.owners[("datasets", "demo")] == "demo"
    for name in ("resample", "brain-t1map", "prostate-t2w"):
        assert reg.owners[("degradations", name)] == "core"
    assert {n.lower() for n in reg.metrics} >= {"psnr", "ssim", "gmsd", "lpips"}
    assert {reg.owners[("metrics", n)] for n in reg.metrics} == {"core"}


def test_describe_plugins_names_distribution_and_hooks():
    rows = {r["name"]: r for r in plugins.describe_plugins()}
    assert rows["bicubic"]["distribution"] == "srbench"
    assert rows["bicubic"]["version"] == importlib.metadata.version("srbench")
    assert "register_methods" in rows["bicubic"]["hooks"]
    assert rows["bicubic"]["registers"]["methods"] == ["bicubic", "bspline"]
    assert {"brain-t1map", "prostate-t2w", "resample"} <= set(rows["core"]["registers"]["degradations"])


def test_load_plugins_restricts_loading(monkeypatch):
    monkeypatch.setenv("SRBENCH_LOAD_PLUGINS", "bicubic, core,demo")
    assert loaded_names() == {"bicubic", "core", "demo"}
    assert "res-srdiff" not in loaded_names()
    assert set(plugins.get_registry().methods) == {"bicubic", "bspline"}
    assert plugins.get_registry().failures == []


def test_load_plugins_naming_an_unknown_plugin_says_so(monkeypatch):
    monkeypatch.setenv("SRBENCH_LOAD_PLUGINS", "bicubic,bicubc")
    assert loaded_names() == {"bicubic"}
    [failure] = plugins.get_registry().failures
    assert failure.name == "bicubc" and "not installed" in failure.error


def test_empty_load_plugins_loads_none(monkeypatch, cli):
    monkeypatch.setenv("SRBENCH_LOAD_PLUGINS", "")
    assert loaded_names() == set()
    reg = plugins.get_registry()
    assert reg.methods == reg.datasets == reg.degradations == reg.metrics == {}
    with pytest.raises(SRBenchError, match="none installed"):
        plugins.lookup("methods", "bicubic")
    result = cli("methods", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_plugin_failing_at_import_is_reported_and_others_load(tmp_path, monkeypatch, cli):
    external(tmp_path, monkeypatch, "srbench_broken_at_import",
             "raise ImportError('needs libfoo 9')\n", "broken", dist="srbench-broken")
    reg = plugins.get_registry()
    [failure] = [f for f in reg.failures if f.name == "broken"]
    assert (failure.distribution, failure.version, failure.stage) == ("srbench-broken", "0.1", "import")
    assert "needs libfoo 9" in failure.error
    assert {"bicubic", "core", "demo"} <= loaded_names()
    assert "bicubic" in reg.methods and "demo" in reg.datasets
    result = cli("methods", "--json")
    assert result.exit_code == 0
    assert "bicubic" in {m["name"] for m in json.loads(result.stdout)}
    warning = [ln for ln in result.stderr.splitlines() if "broken" in ln]
    assert len(warning) == 1 and "srbench-broken" in warning[0] and "needs libfoo 9" in warning[0]
    # Switching the broken plugin off silences it.
    monkeypatch.setenv("SRBENCH_LOAD_PLUGINS", "bicubic,core,demo")
    plugins.reset()
    assert plugins.get_registry().failures == []


def test_plugin_failing_in_register_methods_is_reported_and_others_unaffected(tmp_path, monkeypatch):
    source = """
        import srbench

        @srbench.hookimpl
        def register_methods(register):
            raise RuntimeError("cannot build the model")

        @srbench.hookimpl
        def register_degradations(register):
            register("fails-later-degradation", dict)
    """
    external(tmp_path, monkeypatch, "srbench_broken_register", source, "badreg", dist="srbench-badreg")
    reg = plugins.get_registry()
    [failure] = [f for f in reg.failures if f.name == "badreg"]
    assert failure.stage == "register_methods" and failure.distribution == "srbench-badreg"
    assert "cannot build the model" in failure.error
    assert "bicubic" in reg.methods and "demo" in reg.datasets
    assert reg.owners[("degradations", "fails-later-degradation")] == "badreg"  # its other hooks still ran


DUPLICATE_AND_MORE = EXTERNAL_METHOD.format(name="bicubic") + """

    class Other(Identity):
        name = "dup-other"


    @srbench.hookimpl
    def register_datasets(register):
        register(type("Ds", (), {"name": "dup-dataset"}))


    @srbench.hookimpl(specname="register_methods")
    def register_another_method(register):
        register(Other)
"""


def test_a_plugin_registering_a_taken_name_is_skipped_with_all_it_registers(tmp_path, monkeypatch, cli):
    external(tmp_path, monkeypatch, "srbench_dup_bicubic", DUPLICATE_AND_MORE, "dup", dist="srbench-dup")
    reg = plugins.get_registry()
    [failure] = [f for f in reg.failures if f.name == "dup"]
    # The message names both plugins; the built-in keeps its name and nothing of the offender is registered.
    assert "'bicubic'" in failure.line() and "'dup'" in failure.line() and "srbench-dup" in failure.line()
    assert reg.owners[("methods", "bicubic")] == "bicubic"
    assert reg.methods["bicubic"].__module__ == "srbench_plugins.bicubic"
    assert "dup-other" not in reg.methods and "dup-dataset" not in reg.datasets
    assert not any(owner == "dup" for owner in reg.owners.values())
    # Every command keeps working and says why the plugin is left out, naming both.
    plugins.reset()
    result = cli("methods", "--json")
    assert result.exit_code == 0
    assert {m["name"] for m in json.loads(result.stdout)} >= {"bicubic", "pix2pix"}
    [warning] = [ln for ln in result.stderr.splitlines() if "'dup'" in ln]
    assert "'bicubic'" in warning and "already registered" in warning


def test_a_plugin_registering_one_name_twice_is_skipped(tmp_path, monkeypatch):
    source = EXTERNAL_METHOD.format(name="twice") + """

    @srbench.hookimpl
    def register_degradations(register):
        register("twice-deg", dict)
        register("twice-deg", dict)
"""
    external(tmp_path, monkeypatch, "srbench_twice", source, "twice", dist="srbench-twice")
    reg = plugins.get_registry()
    [failure] = [f for f in reg.failures if f.name == "twice"]
    assert "'twice-deg' twice" in failure.error
    assert "twice" not in reg.methods and "twice-deg" not in reg.degradations and "bicubic" in reg.methods


def test_in_process_plugin_registers_and_is_described(tmp_path, monkeypatch):
    external(tmp_path, monkeypatch, "srbench_ext_inproc", EXTERNAL_METHOD.format(name="ext-inproc"), "ext-inproc",
             dist="srbench-ext-inproc")
    rows = {r["name"]: r for r in plugins.describe_plugins()}
    assert rows["ext-inproc"]["distribution"] == "srbench-ext-inproc"
    assert rows["ext-inproc"]["version"] == "0.1"
    assert rows["ext-inproc"]["registers"] == {"methods": ["ext-inproc"]}
    assert plugins.lookup("methods", "ext-inproc").version == "0.3.0"


def test_external_package_shows_up_and_runs(tmp_path):
    """A third-party package (dist-info + module on PYTHONPATH, no pip) is listed and runs, in a fresh process."""
    site = tmp_path / "site"
    module = {"srbench_ext_identity": EXTERNAL_METHOD.format(name="ext-identity")}
    make_distribution(site, "srbench-ext-identity", module, {"ext": "srbench_ext_identity"})
    env = subprocess_env(site)
    listed = subprocess.run([str(SRBENCH_EXE), "methods", "--json"], capture_output=True, text=True, encoding="utf-8", env=env,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    methods = {m["name"]: m for m in json.loads(listed.stdout)}
    assert methods["ext-identity"]["plugin"] == "ext" and methods["ext-identity"]["version"] == "0.3.0"
    assert "bicubic" in methods

    results = tmp_path / "results"
    ran = subprocess.run([str(SRBENCH_EXE), "run", "--method", "ext-identity", "--dataset", "demo",
                          "--results-dir", str(results)], capture_output=True, text=True, encoding="utf-8", env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    [record_path] = results.glob("demo/brain-t1map/ext-identity/*/record.json")
    assert ran.stdout.strip().splitlines()[-1] == str(record_path.parent)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    assert record["method_card"]["name"] == "ext-identity" and record["method_card"]["version"] == "0.3.0"
    assert record["lr_to_hr_interpolator"] == "linear"
    assert record["n_slices"] == len((record_path.parent / "scores.csv").read_text(encoding="utf-8").strip().splitlines()) - 1 > 0


def test_entry_point_name_taken_by_another_distribution_is_reported(tmp_path, monkeypatch):
    external(tmp_path, monkeypatch, "srbench_dup_entry_point", EXTERNAL_METHOD.format(name="never-loaded"), "demo",
             dist="srbench-clash")
    reg = plugins.get_registry()
    [failure] = [f for f in reg.failures if f.name == "demo"]
    # Whichever comes first on the path loads; the other is reported, naming both distributions.
    loaded = plugins.describe_plugins()
    [demo] = [r for r in loaded if r["name"] == "demo"]
    assert {failure.distribution, demo["distribution"]} == {"srbench", "srbench-clash"}
    assert f"already taken by {demo['distribution']}" in failure.error
    assert ("demo" in reg.datasets) != ("never-loaded" in reg.methods)


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("command, names", [
    ("methods", {"bicubic"}), ("datasets", {"demo"}), ("degradations", {"resample", "brain-t1map", "prostate-t2w"}),
    ("metrics", {"psnr", "ssim", "gmsd", "lpips"}),
])
def test_listings_as_json(cli, command, names):
    result = cli(command, "--json")
    assert result.exit_code == 0, result.output
    listed = strict_json(result.stdout)
    assert names <= {r["name"].lower() for r in listed}
    table = cli(command)
    assert table.exit_code == 0 and all(n in table.stdout.lower() for n in names)


def test_metrics_listing_states_directions(cli):
    listed = {r["name"].lower(): r for r in strict_json(cli("metrics", "--json").stdout)}
    assert {n: listed[n]["direction"] for n in ("psnr", "ssim", "gmsd", "lpips")} == \
        {"psnr": "higher", "ssim": "higher", "gmsd": "lower", "lpips": "lower"}


def test_plugins_listing_as_json(cli):
    out = strict_json(cli("plugins", "--json").stdout)
    rows = {r["name"]: r for r in out["plugins"]}
    assert {"bicubic", "core", "demo"} <= set(rows)
    assert rows["demo"]["registers"] == {"datasets": ["demo"]} and rows["demo"]["distribution"] == "srbench"
    assert isinstance(out["failures"], list)
