"""The training budget (samples seen, wall time, device) and the hardware shown beside each leaderboard row."""

from __future__ import annotations

import json

import pytest

from srbench import provenance as pv
from test_report import csv_rows, three_methods  # noqa: F401 - three_methods is a fixture

ENGINE = {"steps": 500, "seconds": 90.0, "device": "cuda:0", "config": {"batch_size": 4}}


@pytest.mark.parametrize("training,expected", [
    (None, None),  # the method does not train
    (ENGINE, {"samples": 2000, "steps": 500, "batch_size": 4, "seconds": 90.0, "device": "cuda:0"}),  # trained in run
    ({"training": ENGINE, "hardware": {"device": "cuda:0", "gpu": "H200"}},  # shipped weights' record
     {"samples": 2000, "steps": 500, "batch_size": 4, "seconds": 90.0, "device": "cuda:0 (H200)"}),
    ({"training": {**ENGINE, "budget": {"samples": 4096, "steps": 512, "batch_size": 8, "seconds": 12.5,
                                        "device": "cpu"}}},  # a declared budget wins
     {"samples": 4096, "steps": 512, "batch_size": 8, "seconds": 12.5, "device": "cpu"}),
    ({"training": {**ENGINE, "budget": {"name": "tiny", "samples_seen": 1024, "planned_samples": 2048, "steps": 256,
                                        "batch_size": 4, "wall_seconds": 33.3, "device": "cpu"}}, "budget": "tiny"},
     {"samples": 1024, "steps": 256, "batch_size": 4, "seconds": 33.3, "device": "cpu"}),  # srbench.budget's record
    ({"training": {"steps": 10}}, {"samples": None, "steps": 10, "batch_size": None, "seconds": None,
                                   "device": None}),
])
def test_training_budget(training, expected):
    assert pv.training_budget({"training": training}) == expected


def test_texts():
    assert pv.samples_text({"samples": 104000, "steps": 13000, "batch_size": 8}) == "104 k (13000 × 8)"
    assert pv.samples_text(None) == "—"
    assert [pv.duration(s) for s in (42, 816, 11815, None)] == ["42 s", "13.6 min", "3.3 h", "—"]
    record = {"hardware": {"device": "cuda:1", "gpu": "NVIDIA H200", "processor": "x86_64", "cpu_count": 16,
                           "torch_threads": 8, "platform": "Linux"}}
    assert pv.run_device(record) == "cuda:1 (NVIDIA H200)"
    assert pv.hardware_text(record) == "cuda:1 (NVIDIA H200); x86_64, 16 CPUs, 8 threads; Linux"


def test_every_format_shows_the_budget_of_learned_rows(three_methods, cli):  # noqa: F811
    [worse] = three_methods.glob("demo/brain-t1map/worse/*/record.json")
    record = json.loads(worse.read_text(encoding="utf-8"))
    record["training"] = {"training": {"steps": 300, "seconds": 9000.0, "device": "cpu",
                                       "config": {"batch_size": 2}}}
    worse.write_text(json.dumps(record), encoding="utf-8")
    rows = csv_rows(cli("leaderboard", "-r", three_methods, "-f", "csv").stdout)
    assert (rows["worse"]["train_samples"], rows["worse"]["train_seconds"], rows["worse"]["train_device"]) == (
        "600", "9000.0", "cpu")
    assert rows["bicubic"]["train_samples"] == "" and rows["bicubic"]["device"] == "cpu"
    [row] = [r for r in json.loads(cli("leaderboard", "-r", three_methods, "-j").stdout) if r["method"] == "worse"]
    assert row["train_samples"] == 600 and row["train_batch_size"] == 2
    md = cli("leaderboard", "-r", three_methods, "-f", "md").stdout
    [line] = [ln for ln in md.splitlines() if ln.startswith("| demo | brain-t1map | worse")]
    assert "| cpu | 600 (300 × 2) | 2.5 h | cpu |" in line
    tex = cli("leaderboard", "-r", three_methods, "-f", "latex").stdout
    assert "600 (300 $\\times$ 2) & 2.5 h & cpu" in tex
    html = cli("leaderboard", "-r", three_methods, "-f", "html", "-t").stdout
    assert '<td data-v="600.0">600 (300 × 2)</td><td data-v="9000.0">2.5 h</td><td>cpu</td>' in html
