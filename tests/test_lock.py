"""srbench.lock with real processes: one computes a run while the others wait and then find it finished; a run
killed with SIGKILL leaves no lock and its temporaries are removed by the next; other runs proceed in parallel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from srbench import record as rec
from srbench.lock import LOCKS, remove_temps, run_lock

from conftest import subprocess_env

# A writer: takes the run lock, and unless the run is finished, "computes" it (slowly) and writes its record
# atomically; prints what it did. Only srbench.lock is imported, so eight of them start in a moment.
WRITER = r"""
import json, os, sys, time
from pathlib import Path
from srbench.lock import run_lock
results, folder, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
with run_lock(results, folder, lambda holder: print("waiting for", holder, flush=True)):
    record = folder / "record.json"
    if record.exists():
        print("finished already", flush=True)
        sys.exit(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".scores.csv.{os.getpid()}.tmp").write_text("half a file")  # an atomic write under way
    print("computing", os.getpid(), flush=True)
    if mode == "hang":
        time.sleep(600)
    if mode.startswith("meet:"):  # hold the lock until the other run (another folder) holds its own too
        (folder / "holding").touch()
        other = Path(mode[5:])
        deadline = time.time() + 60
        while not (other / "holding").exists():
            if time.time() > deadline:
                sys.exit("never met the other run: its lock was not taken in parallel")
            time.sleep(0.05)
    time.sleep(0.3)
    tmp = folder / f".record.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid()}))
    os.replace(tmp, record)
    (folder / f".scores.csv.{os.getpid()}.tmp").unlink()
"""


def writer(results: Path, folder: Path, mode: str = "run") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(results), str(folder), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_eight_writers_of_one_run_compute_it_once(tmp_path):
    results, folder = tmp_path / "results", tmp_path / "results" / "demo" / "deg" / "m" / "seed0-x"
    procs = [writer(results, folder) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    computed = [out for out, _ in outputs if "computing" in out]
    assert len(computed) == 1, outputs
    pid = int(computed[0].split("computing")[1].split()[0])
    assert json.loads((folder / "record.json").read_text()) == {"pid": pid}
    assert sum("finished already" in out for out, _ in outputs) == 7
    assert any("waiting for pid" in out for out, _ in outputs)  # the holder is named to whoever waits
    assert debris(folder) == [] and not (results / LOCKS).exists()


def test_a_killed_run_leaves_no_lock_and_its_debris_is_removed(tmp_path):
    results, folder = tmp_path / "results", tmp_path / "results" / "d" / "g" / "m" / "seed0-y"
    hung = writer(results, folder, "hang")
    assert "computing" in hung.stdout.readline()
    assert debris(folder)  # the half-written file of the run under way
    os.kill(hung.pid, signal.SIGKILL)
    hung.wait(timeout=30)
    again = writer(results, folder)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and "computing" in out and "waiting" not in out, err
    assert json.loads((folder / "record.json").read_text()) == {"pid": again.pid}
    assert debris(folder) == [] and not (results / LOCKS).exists()


def test_runs_of_different_configurations_hold_their_locks_in_parallel(tmp_path):
    results = tmp_path / "results"
    a, b = results / "d" / "g" / "a" / "seed0-a", results / "d" / "g" / "b" / "seed0-b"
    procs = [writer(results, a, f"meet:{b}"), writer(results, b, f"meet:{a}")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "computing" in out and "waiting" not in out, err
    assert (a / "record.json").exists() and (b / "record.json").exists()


def test_remove_temps_takes_only_temporaries(tmp_path):
    names = [".record.json.k2j_3h4.tmp", ".sr.nii.gz.tmp.nii.gz", ".w.safetensors.tmp", "record.json",
             "scores.csv", ".gitignore", "notes.tmp.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


def test_srbench_run_waits_for_the_holder_then_finds_the_run_finished(bicubic_run, tmp_path):
    """The real command: while this test holds the run's lock, ``srbench run`` of the same configuration waits
    (saying so), then finds the record the holder wrote and does nothing; a rerun after a kill cleans up."""
    source, source_dir = bicubic_run
    results = tmp_path / "results"
    shutil.copytree(source, results)
    run_dir = results / source_dir.relative_to(source)
    kept = (run_dir / rec.RECORD).read_bytes()
    (run_dir / rec.RECORD).unlink()
    env = subprocess_env(SRBENCH_RESULTS=str(results))
    with run_lock(results, run_dir):
        second = subprocess.Popen([sys.executable, "-c", "from srbench.cli import main; main()", "run", "-m", "bicubic",
                                   "-d", "demo"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 120
        line = ""
        while "waiting" not in line and time.time() < deadline:
            line = second.stderr.readline()
            assert line or second.poll() is None, "srbench run ended without waiting for the lock"
        assert "is being computed by pid" in line
        (run_dir / rec.RECORD).write_bytes(kept)  # the holder finishes its run
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0 and "already finished" in err, err
    assert (run_dir / rec.RECORD).read_bytes() == kept


def test_a_rerun_after_a_kill_removes_the_debris_and_finishes(tmp_path):
    """A run killed between its last writes (half-written temporaries, no record) is redone, cleanly."""
    from srbench import plugins
    from srbench.runner import RunOptions, run
    from srbench.testing import TinyDatasetPlugin

    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    opts = RunOptions(method="bicubic", dataset="srbench-tiny", results_dir=tmp_path / "results")
    out, ran = run(opts)
    first = json.loads((out / rec.RECORD).read_text())
    (out / rec.RECORD).unlink()
    for name in (".examples.npz.k2j3h4ab.tmp", ".record.json.x8y9z0ab.tmp", ".scores.csv.tmp"):
        (out / name).write_bytes(b"half a file")
    again, ran = run(opts)
    assert ran and again == out
    left = sorted(p.name for p in out.iterdir())
    assert {"examples.npz", "record.json", "scores.csv"} <= set(left)
    assert not [name for name in left if name.endswith(".tmp") or name.startswith(".")], left  # no debris
    assert json.loads((out / rec.RECORD).read_text())["summary"] == first["summary"]
    assert not (opts.results_dir / LOCKS).exists()


def test_a_locks_folder_removed_between_mkdir_and_its_check_is_made_again(tmp_path, monkeypatch):
    """Another holder may remove the empty locks folder just after a third process made it: Path.mkdir then
    raises FileExistsError although exist_ok is set (seen with eight writers). The lock is taken all the same."""
    results, folder = tmp_path / "results", tmp_path / "results" / "d" / "g" / "m" / "seed0-z"
    results.mkdir()
    real_mkdir, calls = Path.mkdir, []

    def racing_mkdir(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 1:
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    with run_lock(results, folder) as path:
        assert path.exists()
    assert len(calls) == 2
