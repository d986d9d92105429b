"""The example plugin package (examples/srbench-example-method) installs with pip as a separate distribution, is
found through its entry point, passes the conformance kit, and runs on the demo through the CLI.

It is installed into a temporary ``--target`` folder put on PYTHONPATH, so the shared environment is left as it
was; the source tree is copied first, so the build leaves nothing behind in ``examples/``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from srbench import plugins

from conftest import SRBENCH_EXE, pip_install_offline, subprocess_env

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "srbench-example-method"
DIST, MODULE, METHOD = "srbench-example-method", "srbench_example_method", "example-srcnn"


def install(target: Path, scratch: Path) -> str:
    """pip-install the example into ``target`` (offline, no build isolation); returns how it was installed.

    Where pip cannot build here (no setuptools in the environment), the same files are laid out by hand: the
    package plus a ``.dist-info`` with the pyproject's entry point, which is what pip would have written.
    """
    source = scratch / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    error = pip_install_offline(source, target)
    if error is None:
        return "pip"
    from srbench.compat import tomllib

    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    shutil.copytree(source / "src" / MODULE, target / MODULE)
    info = target / f"{MODULE}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in meta["entry-points"]["srbench"].items())
    (info / "entry_points.txt").write_text(f"[srbench]\n{eps}")
    return f"dist-info (pip failed: {error})"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("example-plugin")
    target = scratch / "site"
    how = install(target, scratch)
    print(f"example installed by {how}")
    assert (target / MODULE / "__init__.py").exists()
    assert any(target.glob(f"{MODULE}-0.1.0.dist-info/entry_points.txt"))
    return target


def test_example_is_found_through_its_entry_point(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    plugins.reset()
    rows = {r["name"]: r for r in plugins.describe_plugins()}
    assert rows[METHOD]["distribution"] == DIST and rows[METHOD]["version"] == "0.1.0"
    assert rows[METHOD]["hooks"] == ["register_methods"]
    assert rows[METHOD]["registers"] == {"methods": [METHOD]}
    assert plugins.get_registry().failures == []


def test_example_passes_the_conformance_kit(installed, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(installed))
    from srbench.testing import check_method

    cls = plugins.lookup("methods", METHOD)
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(installed)  # the installed copy
    report = check_method(cls, preset="smoke", workdir=tmp_path)
    assert report["checks"]["fit"] == "passed" and report["training"]["steps"] == 20
    assert report["card"]["parameters"] > 0 and report["card"]["citation"].startswith("Dong C")


def test_example_runs_on_the_demo_through_the_cli(installed, tmp_path):
    results = tmp_path / "results"
    ran = subprocess.run([str(SRBENCH_EXE), "run", "--method", METHOD, "--dataset", "demo", "--preset", "smoke",
                          "--results-dir", str(results)], capture_output=True, text=True, encoding="utf-8",
                         env=subprocess_env(installed), timeout=300)
    assert ran.returncode == 0, ran.stderr
    [record_path] = results.glob(f"demo/brain-t1map/{METHOD}/*/record.json")
    assert ran.stdout.strip().splitlines()[-1] == str(record_path.parent)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    card = record["method_card"]
    assert (card["name"], card["version"], card["trains"], card["preset"]) == (METHOD, "0.1.0", True, "smoke")
    assert record["weights"]["source"] == "trained-in-run" and len(record["weights"]["sha256"]) == 64
    assert record["training"]["steps"] == 20 and record["training"]["finished"] is True
    assert record["lr_to_hr_interpolator"] == "bspline"
    psnr = record["summary"]["per_slice"]["psnr"]["mean"]
    assert math.isfinite(psnr) and psnr > 25  # the residual network starts as B-spline interpolation
    assert (record_path.parent / "weights.safetensors").exists()
