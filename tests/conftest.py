"""Shared fixtures: clean plugin state, a results directory, a synthetic volume, the CLI, one bicubic demo run."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from srbench import plugins

SRBENCH_EXE = Path(sys.executable).parent / "srbench"

# A proper rotation (det +1): 20 degrees about z, then 10 degrees about x.
_cz, _sz = np.cos(np.radians(20)), np.sin(np.radians(20))
_cx, _sx = np.cos(np.radians(10)), np.sin(np.radians(10))
DIRECTION = (np.array([[1, 0, 0], [0, _cx, -_sx], [0, _sx, _cx]])
             @ np.array([[_cz, -_sz, 0], [_sz, _cz, 0], [0, 0, 1]]))
SPACING = (0.9, 1.1, 2.0)
ORIGIN = (-12.5, 30.25, 7.0)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Runs cache their preprocessing under $SRBENCH_CACHE: a session folder, never the user's ~/.cache."""
    saved = os.environ.get("SRBENCH_CACHE")
    os.environ["SRBENCH_CACHE"] = str(tmp_path_factory.mktemp("srbench-cache"))
    yield
    if saved is None:
        os.environ.pop("SRBENCH_CACHE", None)
    else:
        os.environ["SRBENCH_CACHE"] = saved


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Every test starts with freshly discovered plugins and no srbench environment variables."""
    for var in ("SRBENCH_LOAD_PLUGINS", "SRBENCH_RESULTS", "SRBENCH_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "results"


def synthetic_image(size=(40, 36, 30), spacing=SPACING, origin=ORIGIN, direction=DIRECTION, seed=0) -> sitk.Image:
    """A smooth blob plus texture, (x, y, z) = ``size``, with the given geometry."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in size[::-1]), indexing="ij")
    blob = np.exp(-3 * (x ** 2 + y ** 2 + z ** 2))
    texture = 0.1 * np.random.default_rng(seed).standard_normal(blob.shape)
    image = sitk.GetImageFromArray((100 * (blob + texture)).astype(np.float32))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in np.asarray(direction).ravel()])
    return image


@pytest.fixture
def volume(tmp_path) -> tuple[Path, sitk.Image]:
    """A small synthetic volume with non-trivial spacing, origin and direction, written to NIfTI."""
    image = synthetic_image()
    path = tmp_path / "volume.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, image


class Cli:
    """``srbench`` in-process through click's CliRunner (stdout and stderr kept apart)."""

    def __init__(self):
        from srbench.cli import cli

        self.cli = cli
        self.runner = CliRunner()

    def __call__(self, *args):
        return self.runner.invoke(self.cli, [str(a) for a in args])


@pytest.fixture
def cli() -> Cli:
    return Cli()


def assert_one_line_error(result, *must_contain: str, progress_allowed: bool = False) -> str:
    """A user error: non-zero exit, one line 'Error: ...' last on stderr, no traceback, nothing on stdout.

    ``progress_allowed``: lines of a progress bar (a run that got as far as predicting) may come before it.
    """
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error:"), result.stderr
    assert len(lines) == 1 or (progress_allowed and all("━" in ln for ln in lines[:-1])), result.stderr
    for text in must_contain:
        assert text in lines[-1], lines[-1]
    return lines[-1]


def make_distribution(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                      version: str = "0.1") -> None:
    """An installed-looking distribution without pip: module files plus ``<dist>-<version>.dist-info``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[srbench]\n{eps}")


def pip_install_offline(package: Path, target: Path) -> str | None:
    """``pip install --target`` a local package, offline and without build isolation; pip's last error line
    when it cannot build here (no setuptools in the environment), else None."""
    import subprocess

    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--disable-pip-version-check", "--target", str(target), str(package)],
                         capture_output=True, text=True, encoding="utf-8", timeout=180)
    return None if pip.returncode == 0 else (pip.stderr.strip().splitlines() or [""])[-1]


def subprocess_env(pythonpath: Path | None = None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRBENCH_") or k == "SRBENCH_CACHE"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _demo_run(tmp_path_factory, method: str) -> tuple[Path, Path]:
    """(results dir, run dir) of one in-process run of ``method`` on ``demo``, in a session folder of its own."""
    from srbench.runner import RunOptions, run

    plugins.reset()
    results = tmp_path_factory.mktemp(f"session-{method}") / "results"
    run_dir, ran = run(RunOptions(method=method, dataset="demo", results_dir=results))
    assert ran
    plugins.reset()
    return results, run_dir


@pytest.fixture(scope="session")
def bicubic_run(tmp_path_factory) -> tuple[Path, Path]:
    """The ``bicubic`` demo run (``_demo_run``). Read-only: copy before editing."""
    return _demo_run(tmp_path_factory, "bicubic")


@pytest.fixture(scope="session")
def bspline_run(tmp_path_factory) -> tuple[Path, Path]:
    """The ``bspline`` demo run: its pipeline is SimpleITK's alone, so tests can recompute it independently.
    Read-only: copy before editing."""
    return _demo_run(tmp_path_factory, "bspline")


@pytest.fixture
def one_thread():
    """Micro networks gain nothing from threads, and on shared cores two threads stall each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
