"""``srbench new-method NAME`` writes a plugin package that installs, is found, and passes the kit as generated."""

from __future__ import annotations

import importlib
import sys
from srbench.compat import tomllib

import pytest

from srbench import plugins
from srbench.scaffold import names

from conftest import assert_one_line_error, pip_install_offline


def generate(cli, tmp_path, name="my-unet"):
    result = cli("new-method", name, "--directory", tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path / f"srbench-{name}", result


def test_names_follow_one_rule():
    assert names("my-unet") == {"name": "my-unet", "dist": "srbench-my-unet", "module": "srbench_my_unet",
                                "cls": "MyUnet"}
    assert names("sr3")["cls"] == "Sr3"


def test_new_method_writes_the_package(cli, tmp_path):
    root, result = generate(cli, tmp_path)
    files = {"pyproject.toml", "README.md", "src/srbench_my_unet/__init__.py", "tests/test_srbench_my_unet.py"}
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == files
    assert result.stdout.splitlines() == [str(root / f) for f in ("pyproject.toml", "README.md",
                                                                  "src/srbench_my_unet/__init__.py",
                                                                  "tests/test_srbench_my_unet.py")]
    assert "pip install -e" in result.stderr
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "srbench-my-unet"
    assert project["project"]["entry-points"]["srbench"] == {"my-unet": "srbench_my_unet"}
    source = (root / "src/srbench_my_unet/__init__.py").read_text(encoding="utf-8")
    compile(source, "generated", "exec")
    assert 'name = "my-unet"' in source and "class MyUnet(TorchMethod)" in source


def test_the_generated_package_passes_its_own_conformance_test(cli, tmp_path, monkeypatch):
    root, _ = generate(cli, tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))
    monkeypatch.syspath_prepend(str(root / "tests"))
    for mod in ("srbench_my_unet", "test_srbench_my_unet"):
        sys.modules.pop(mod, None)
    try:
        generated_test = importlib.import_module("test_srbench_my_unet")
        (tmp_path / "work").mkdir()
        generated_test.test_srbench_my_unet_conforms(tmp_path / "work")  # the test exactly as generated
    finally:
        for mod in ("srbench_my_unet", "test_srbench_my_unet"):
            sys.modules.pop(mod, None)


def test_the_generated_package_installs_and_is_found(cli, tmp_path, monkeypatch):
    root, _ = generate(cli, tmp_path, "sr3")
    site = tmp_path / "site"
    error = pip_install_offline(root, site)
    if error is not None:
        pytest.skip(f"pip cannot build here: {error}")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("srbench_sr3", None)
    plugins.reset()
    try:
        [row] = [r for r in plugins.describe_plugins() if r["name"] == "sr3"]
        assert (row["distribution"], row["version"], row["registers"]) == ("srbench-sr3", "0.1.0",
                                                                           {"methods": ["sr3"]})
        card = plugins.lookup("methods", "sr3")(preset="tiny").card()
        assert card["trains"] is True and card["parameters"] > 0
    finally:
        sys.modules.pop("srbench_sr3", None)


@pytest.mark.parametrize("bad", ["My_Net", "9lives", "a--b", "my net", "unet-"])
def test_bad_names_are_refused_in_one_line(cli, tmp_path, bad):
    assert_one_line_error(cli("new-method", bad, "--directory", tmp_path), "use lower-case letters")
    assert not any(tmp_path.iterdir())


def test_an_existing_package_is_not_overwritten_unless_forced(cli, tmp_path):
    root, _ = generate(cli, tmp_path)
    module = root / "src/srbench_my_unet/__init__.py"
    module.write_text("# my edits\n")
    assert_one_line_error(cli("new-method", "my-unet", "--directory", tmp_path), "already exists", "--force")
    assert module.read_text(encoding="utf-8") == "# my edits\n"
    assert cli("new-method", "my-unet", "--directory", tmp_path, "--force").exit_code == 0
    assert "class MyUnet" in module.read_text(encoding="utf-8")


def test_a_name_already_installed_is_warned_about(cli, tmp_path):
    result = cli("new-method", "bicubic", "--directory", tmp_path)
    assert result.exit_code == 0 and "already installed" in result.stderr
