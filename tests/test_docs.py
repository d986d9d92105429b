"""docs/plugins.md stays true: its hooks are those of srbench/hookspecs.py, with their signatures; its minimal
plugin runs (in-process, and installed with pip from the docs' own pyproject.toml); its kit reference matches."""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import sys
from srbench.compat import tomllib
from pathlib import Path

import pytest

from srbench import hookspecs, plugins

from conftest import pip_install_offline

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def text() -> str:
    return DOCS.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The body of the ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text(), re.S | re.M)
    assert match, f"docs/plugins.md has no section '## {title}'"
    return match.group(1)


def block(marker: str, language: str) -> str:
    """The fenced code block that follows ``<!-- marker -->``."""
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)^```", text(), re.S | re.M)
    assert match, f"no ```{language} block after <!-- {marker} -->"
    return match.group(1)


def hookspec_functions() -> dict:
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "srbench_spec")}


def normalised(words: str) -> str:
    return " ".join(words.replace("`", "").split())


def test_every_hookspec_is_documented_with_its_signature_and_nothing_else():
    specs = hookspec_functions()
    assert {"register_methods", "register_datasets", "register_degradations", "register_metrics",
            "register_commands"} <= set(specs)
    documented = dict(re.findall(r"^### `(\w+)(\(.*\))`$", section("Hooks"), re.M))
    assert set(documented) == set(specs), "docs/plugins.md and srbench/hookspecs.py list different hooks"
    for name, fn in specs.items():
        assert documented[name] == str(inspect.signature(fn)), f"{name}: the docs show another signature"


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_each_hook_section_states_the_hookspec_contract(name):
    body = re.search(rf"^### `{name}\(.*?\)`\n(.*?)(?=^### |\Z)", section("Hooks"), re.S | re.M).group(1)
    doc = inspect.getdoc(hookspec_functions()[name])
    first_sentence = normalised(doc.split("\n\n")[0])
    assert first_sentence in normalised(body), f"{name}: the docs do not state '{first_sentence}'"


def test_the_minimal_plugin_block_runs_and_passes_the_kit(tmp_path, monkeypatch):
    from srbench.testing import check_method

    (tmp_path / "srbench_mine.py").write_text(block("minimal-plugin", "python"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("srbench_mine", None)
    module = importlib.import_module("srbench_mine")
    try:
        plugins.register_plugin(module, "mine")
        assert plugins.lookup("methods", "mine") is module.Mine
        [row] = [r for r in plugins.describe_plugins() if r["name"] == "mine"]
        assert row["registers"] == {"methods": ["mine"]} and row["hooks"] == ["register_methods"]
        report = check_method(module.Mine, settings={"train": {"steps": 5}}, workdir=tmp_path / "check")
        assert set(report["checks"].values()) == {"passed"}
    finally:
        sys.modules.pop("srbench_mine", None)


def test_the_minimal_pyproject_declares_the_entry_point_of_the_minimal_plugin():
    project = tomllib.loads(block("minimal-pyproject", "toml"))
    assert project["project"]["entry-points"]["srbench"] == {"mine": "srbench_mine"}
    assert project["tool"]["setuptools"]["py-modules"] == ["srbench_mine"]
    assert 'name = "mine"' in block("minimal-plugin", "python")


def test_the_minimal_package_installs_with_pip_and_runs(tmp_path, monkeypatch):
    """As a reader would: the two files from the docs, `pip install`, then srbench finds and runs the method."""
    from srbench.runner import RunOptions, run
    from srbench.testing import TinyDatasetPlugin

    package = tmp_path / "srbench-mine"
    package.mkdir()
    (package / "pyproject.toml").write_text(block("minimal-pyproject", "toml"), encoding="utf-8")
    (package / "srbench_mine.py").write_text(block("minimal-plugin", "python"), encoding="utf-8")
    site = tmp_path / "site"
    error = pip_install_offline(package, site)
    if error is not None:
        pytest.skip(f"pip cannot build here: {error}")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("srbench_mine", None)
    plugins.reset()
    try:
        [row] = [r for r in plugins.describe_plugins() if r["name"] == "mine"]
        assert (row["distribution"], row["version"]) == ("srbench-mine", "0.1.0")
        cls = plugins.lookup("methods", "mine")
        monkeypatch.setitem(cls.presets, "tiny", {"train": dict(steps=5, batch_size=4, lr=2e-3)})
        plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
        run_dir, ran = run(RunOptions(method="mine", dataset="srbench-tiny", results_dir=tmp_path / "results",
                                      device="cpu"))
        assert ran and (run_dir / "record.json").exists() and (run_dir / "weights.safetensors").exists()
    finally:
        sys.modules.pop("srbench_mine", None)
        shutil.rmtree(package, ignore_errors=True)


def test_the_kit_reference_matches_the_kit():
    from srbench.testing import CHECKS, check_method

    kit = section("Testing your plugin: the conformance kit")
    documented = re.search(r"`check_method\((.*?)\)` builds", kit, re.S).group(1)
    params = [p.strip() for p in re.split(r",\s*(?![^()]*\))", " ".join(documented.split()))]
    actual = []
    for p in inspect.signature(check_method).parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in actual:
            actual.append("*")
        actual.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}".replace("'", '"'))
    assert params == actual
    assert re.findall(r"^\| `([a-z-]+)` \|", kit, re.M) == list(CHECKS)
    for fixture in ("srbench_volume", "srbench_dataset", "srbench_train_pairs"):
        assert f"`{fixture}`" in kit
