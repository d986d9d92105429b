"""The results layer: typed records (validation, migration, plugin metrics), seeds, units and n, reference
marks, scores from a file, umask, and the committed demo records."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats as ss

from srbench import leaderboard as lb
from srbench import record as rec
from srbench import stats as st

REPO = Path(__file__).resolve().parents[1]


def write_run(root: Path, method: str, scores: dict, seed: int = 0, finished_at: str = "2026-01-01T00:00:00+00:00",
              dataset: dict | None = None, metrics: dict | None = None, training: dict | None = None,
              n_cases: int = 3) -> Path:
    """A schema-2 record as the runner writes it (identity, metric info, counts) and its scores.csv."""
    dataset = dataset or {"name": "synth"}
    n = len(next(iter(scores.values())))
    metrics = metrics or {m: {"name": m, "direction": "higher", "value_range": [0, None], "digits": 3}
                          for m in scores}
    identity = {"method": method, "dataset": dataset, "seed": seed, "preset": "tiny"}
    rid = rec.run_id(identity)
    out = rec.run_dir(root, dataset["name"], "deg", method, rid)
    table = pd.DataFrame({"case": [f"c{i % n_cases}" for i in range(n)], "patient": [f"p{i % n_cases}" for i in range(n)],
                          "slice": [i // n_cases for i in range(n)], **scores})
    rec.atomic_write_text(out / rec.SCORES, table.to_csv(index=False))
    summary = {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "n": n} for m, v in scores.items()}
    raw = {"schema": rec.SCHEMA, "run_id": rid, "finished_at": finished_at, "identity": identity,
           "config": {"method": method, "degradation": "deg", "preset": "tiny", "seed": seed},
           "method_card": {"name": method, "preset": "tiny"}, "dataset": {"name": dataset["name"],
                                                                          "root": dataset.get("root")},
           "metrics": metrics, "summary": {"per_slice": summary, "per_volume": {}}, "n_slices": n,
           "n_cases": n_cases, "n_subjects": n_cases, "timings": {"sec_per_slice": 0.1}, "training": training}
    rec.atomic_write_json(out / rec.RECORD, raw)
    return out


def csv_rows(text: str) -> dict:
    return {r["method"]: r for r in csv.DictReader(io.StringIO(text))}


# --- records ----------------------------------------------------------------------------------------------------


def test_committed_demo_records_load_through_the_one_loader():
    paths = rec.find_records(REPO / "leaderboards")
    assert paths, "the committed demo leaderboard has records"
    for path in paths:
        r = rec.load_record(path)
        assert r.schema == rec.SCHEMA and r.method and r.n_slices > 0
        assert set(r.metrics) >= {"psnr", "ssim", "gmsd"} and r.metrics["psnr"].digits == 2
        assert r.metrics["gmsd"].direction == "lower" and r.n_subjects == 1
        assert r.per_slice["psnr"].mean == pytest.approx(r.scores()["psnr"].mean())


@pytest.mark.parametrize("damage", ["truncate", "not-object", "no-field", "schema", "no-scores"])
def test_corrupt_or_partial_records_are_named_and_left_out(tmp_path, cli, damage):
    good = write_run(tmp_path, "a", {"psnr": np.arange(9.0)})
    bad = write_run(tmp_path, "b", {"psnr": np.arange(9.0) + 1})
    path = bad / rec.RECORD
    text = path.read_text(encoding="utf-8")
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "not-object":
        path.write_text("[1, 2]")
    elif damage == "no-field":
        path.write_text(json.dumps({k: v for k, v in json.loads(text).items() if k != "summary"}))
    elif damage == "schema":
        path.write_text(json.dumps({**json.loads(text), "schema": 99}))
    else:
        (bad / rec.SCORES).unlink()
    with pytest.raises(rec.RecordError, match=str(bad)):
        rec.load_record(path)
    result = cli("leaderboard", "--results-dir", tmp_path, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert set(csv_rows(result.stdout)) == {"a"}
    assert "warning" in result.stderr and str(bad) in " ".join(result.stderr.split())
    assert rec.load_record(good).method == "a"


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        rec.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


# --- plugin metrics reach every table -----------------------------------------------------------------------------


def test_a_plugin_metric_appears_in_every_export_and_in_stats(tmp_path, cli):
    rng = np.random.default_rng(0)
    info = {"psnr": {"name": "psnr", "direction": "higher", "value_range": [0, 80], "digits": 2},
            "blurriness": {"name": "blurriness", "direction": "lower", "value_range": [0, 1], "digits": 3,
                           "definition": "a plugin's metric"}}
    for method, shift in (("sharp", 0.0), ("soft", 0.2)):
        write_run(tmp_path, method, {"psnr": rng.normal(30, 1, 30), "blurriness": rng.uniform(0, 0.1, 30) + shift},
                  metrics=info)
    rows = csv_rows(cli("leaderboard", "--results-dir", tmp_path, "--format", "csv").stdout)
    assert float(rows["sharp"]["blurriness_mean"]) < float(rows["soft"]["blurriness_mean"])
    assert {"blurriness_std", "blurriness_not_sig_from_best"} <= set(rows["sharp"])
    md = cli("leaderboard", "--results-dir", tmp_path, "--format", "md").stdout
    assert "BLURRINESS ↓" in md and "**0.0" in md  # three digits, the lower mean in bold
    assert "BLURRINESS" in cli("leaderboard", "--results-dir", tmp_path, "--format", "html", "--table-only").stdout
    assert "BLURRINESS $\\downarrow$" in cli("leaderboard", "--results-dir", tmp_path, "--format", "latex").stdout
    out = cli("stats", "--results-dir", tmp_path, "--dataset", "synth", "--json")
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)["metrics"]["blurriness"]
    assert d["direction"] == "lower" and d["best"] == "sharp"


def test_a_registered_plugin_metric_is_recorded_with_its_info(tmp_path):
    import torch

    from srbench import plugins
    from srbench.metric import Metric, MetricInfo
    from srbench.runner import RunOptions, run

    class Brightness(Metric):
        info = MetricInfo("brightness", "higher", (0.0, 1.0), "mean intensity of the prediction", digits=3)

        def compute(self, pred, ref):
            return pred.mean(dim=(1, 2, 3))

    reg = plugins.get_registry()
    reg.metrics = {"psnr": reg.metrics["psnr"], "brightness": Brightness()}
    out, ran = run(RunOptions(method="bicubic", dataset="demo", results_dir=tmp_path))
    assert ran
    r = rec.load_record(out)
    assert r.metrics["brightness"] == rec.MetricInfo("brightness", "higher", (0.0, 1.0), 3,
                                                     "mean intensity of the prediction", None)
    assert r.per_slice["brightness"].mean == pytest.approx(r.scores()["brightness"].mean())
    assert torch.is_tensor(Brightness()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)))


# --- seeds, units, reference ------------------------------------------------------------------------------------


def test_three_seeds_are_one_row_with_a_seed_sd(tmp_path, cli):
    base = np.linspace(20, 30, 12)
    means = []
    for seed in (0, 1, 2):
        values = base + seed * 0.5
        means.append(values.mean())
        write_run(tmp_path, "noisy", {"psnr": values}, seed=seed)
    write_run(tmp_path, "flat", {"psnr": base - 1})
    rows = csv_rows(cli("leaderboard", "--results-dir", tmp_path, "--format", "csv").stdout)
    row = rows["noisy"]
    assert int(row["n_seeds"]) == 3 and row["seeds"] == "0 1 2"
    assert float(row["psnr_mean"]) == pytest.approx(np.mean(means))
    assert float(row["psnr_seed_sd"]) == pytest.approx(np.std(means, ddof=1))
    assert rows["flat"]["psnr_seed_sd"] == ""
    # the statistics see one seed-averaged score per slice, not three
    board, sig = lb.significance(lb.load_table(tmp_path))
    [block] = sig.blocks
    assert block.report.metrics["psnr"].n == {"noisy": 12, "flat": 12}
    assert block.scores[block.scores.method == "noisy"]["psnr"].tolist() == pytest.approx(list(base + 0.5))


def test_units_and_warnings_are_stated(tmp_path, cli):
    rng = np.random.default_rng(1)
    for m in ("a", "b", "c", "d", "e"):
        write_run(tmp_path, m, {"psnr": rng.normal(30, 1, 36)}, n_cases=6)
    md = cli("leaderboard", "--results-dir", tmp_path, "--format", "md", "--protocol", "paired", "--unit",
             "volume")
    assert md.exit_code == 0, md.output
    assert "n = 6 subject(s), 6 volume(s), 36 slice(s)" in md.stdout
    assert "cannot reach significance (smallest attainable adjusted p = 0.312" in md.stdout
    assert "cannot reach significance" in md.stderr
    slice_md = cli("leaderboard", "--results-dir", tmp_path, "--format", "md").stdout
    assert "come from 6 subject(s)" not in slice_md  # not fewer than a handful
    assert st.smallest_attainable_p("paired", 5, 6) == pytest.approx(10 * 2 / 64)


def test_reference_method_marks_follow_table_1(tmp_path, cli):
    """Table 1: * = no significant difference from the proposed method (not from the best)."""
    rng = np.random.default_rng(2)
    base = rng.normal(30, 1, 40)
    table = pd.DataFrame([{"method": m, "case": f"c{i % 4}", "slice": i // 4, "psnr": v}
                          for m, shift in (("proposed", 0.0), ("twin", 0.001), ("best", 2.0), ("poor", -3.0))
                          for i, v in enumerate(base + shift + rng.normal(0, 0.01, 40))])
    path = tmp_path / "scores.csv"
    table.to_csv(path, index=False)
    rows = csv_rows(cli("leaderboard", "--scores", path, "--format", "csv", "--protocol", "paired",
                        "--reference", "proposed").stdout)
    report = st.analyse(table, {"psnr": "higher"}, "paired")
    p = report.metrics["psnr"].pairwise
    for method, row in rows.items():
        expected = method != "proposed" and not p.loc["proposed", method] < 0.05
        assert row["psnr_not_sig_from_reference"] == str(expected), method
        assert row["reference"] == "proposed"
    md = cli("leaderboard", "--scores", path, "--format", "md", "--reference", "proposed").stdout
    assert "difference from the reference method proposed NOT significant" in md
    assert cli("leaderboard", "--scores", path, "--reference", "nobody").exit_code != 0


# --- scores from anywhere ---------------------------------------------------------------------------------------


def test_stats_on_a_score_file_agrees_with_scipy_and_scikit_posthocs(tmp_path, cli):
    rng = np.random.default_rng(3)
    rows = [{"method": m, "case": f"c{i % 5}", "slice": i // 5, "seed": seed, "psnr": 30 + shift + rng.normal(0, 1),
             "sharp": rng.lognormal(shift, 1)}
            for m, shift in (("x", 0.0), ("y", 0.4), ("z", 1.0)) for seed in (0, 1) for i in range(25)]
    table = pd.DataFrame(rows)
    path = tmp_path / "mine.csv"
    table.to_csv(path, index=False)
    assert cli("stats", "--scores", path).exit_code != 0  # 'sharp' has no known direction
    out = cli("stats", "--scores", path, "--direction", "sharp=lower", "--protocol", "paired", "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["seeds"] == {"x": [0, 1], "y": [0, 1], "z": [0, 1]}
    averaged = table.groupby(["method", "case", "slice"], sort=False)[["psnr", "sharp"]].mean().reset_index()
    for metric in ("psnr", "sharp"):
        wide = averaged.pivot(index=["case", "slice"], columns="method", values=metric)[["x", "y", "z"]]
        assert got["metrics"][metric]["pvalue"] == pytest.approx(
            ss.friedmanchisquare(*(wide[c] for c in wide)).pvalue, rel=1e-12)
        long = wide.melt(var_name="method", value_name="score", ignore_index=False)
        ref = sp.posthoc_wilcoxon(long, val_col="score", group_col="method", p_adjust="holm", sort=False)
        assert got["metrics"][metric]["pairwise"]["x"]["z"] == pytest.approx(ref.loc["x", "z"], rel=1e-12)
    assert got["metrics"]["sharp"]["direction"] == "lower"
    board = csv_rows(cli("leaderboard", "--scores", path, "--direction", "sharp=lower", "--format", "csv").stdout)
    assert int(board["x"]["n_seeds"]) == 2 and int(board["x"]["n_slices"]) == 25


def test_bad_score_files_are_one_line_errors(tmp_path, cli):
    from conftest import assert_one_line_error

    path = tmp_path / "bad.csv"
    path.write_text("method,case,psnr\na,c0,1\n")
    assert_one_line_error(cli("stats", "--scores", path), str(path), "slice")
    path.write_text("method,case,slice,psnr\na,c0,0,1\na,c0,0,2\n")
    assert_one_line_error(cli("stats", "--scores", path), "more than once")
    assert_one_line_error(cli("stats", "--scores", tmp_path / "none.csv"), "not found")


# --- reproduce ----------------------------------------------------------------------------------------------------


def test_reproduce_reruns_a_recorded_run_and_compares_slice_by_slice(bicubic_run, tmp_path, cli):
    import shutil

    from srbench.reproduce import deviations

    results, run_dir = bicubic_run
    mine = tmp_path / "runs" / run_dir.relative_to(results)
    shutil.copytree(run_dir, mine)
    result = cli("reproduce", mine, "--keep", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "psnr: max |deviation| = " in result.stdout and "reproduced within" in result.stderr
    [again] = (tmp_path / "again").glob("*/*/*/*/record.json")
    old, new = rec.load_record(mine), rec.load_record(again)
    assert deviations(old.scores(), new.scores(), old.metrics)["psnr"] <= 1e-3
    table = old.scores()
    table["psnr"] += 0.5  # a tampered score table is not reproduced
    table.to_csv(mine / rec.SCORES, index=False)
    assert deviations(rec.load_record(mine).scores(), new.scores(), ["psnr"])["psnr"] == pytest.approx(0.5)


# --- unfinished training ------------------------------------------------------------------------------------------


def test_time_capped_training_is_recorded_unfinished_flagged_and_resumed(tmp_path, cli):
    import torch

    from srbench import plugins
    from srbench.hookspecs import hookimpl
    from srbench.method import Method
    from srbench.runner import RunOptions, run
    from srbench.testing import TinyDatasetPlugin

    class Capped(Method):
        """Stops at step 2 of 4 when a time cap is set (as the engine does); resumes to 4 from its workdir."""

        name, version, trains = "capped", "1", True
        presets = {"tiny": {"train": {"steps": 4}}, "paper": {"train": {"steps": 4}}}

        def fit(self, train, val, workdir):
            workdir.mkdir(parents=True, exist_ok=True)
            done = int((workdir / "step").read_text()) if (workdir / "step").exists() else 0
            steps = 2 if self.settings["train"].get("max_seconds") and done < 2 else 4
            (workdir / "step").write_text(str(steps))
            return {"steps": steps, "target_steps": 4, "finished": steps >= 4, "resumed_from_step": done}

        def save(self, path):
            path.write_bytes(b"w")

        def load(self, path):
            pass

        def predict_slices(self, lr, generator):
            return lr

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(Capped)

    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    plugins.register_plugin(Plugin(), "capped")
    opts = RunOptions(method="capped", dataset="srbench-tiny", results_dir=tmp_path, device="cpu", max_minutes=0.01)
    run_dir, ran = run(opts)
    record = rec.load_record(run_dir)
    assert ran and record.unfinished_training and record.training_state.steps == 2
    rows = csv_rows(cli("leaderboard", "-r", tmp_path, "-f", "csv").stdout)
    assert rows["capped"]["training"] == "unfinished 2/4"
    md = cli("leaderboard", "-r", tmp_path, "-f", "md")
    assert "capped †" in md.stdout and "† = training stopped" in md.stdout and "planned steps" in md.stderr
    again, ran = run(RunOptions(method="capped", dataset="srbench-tiny", results_dir=tmp_path, device="cpu"))
    assert (again, ran) == (run_dir, True)  # the same run, resumed, not "already finished"
    assert rec.load_record(run_dir).training_state.finished is True
    assert run(RunOptions(method="capped", dataset="srbench-tiny", results_dir=tmp_path, device="cpu"))[1] is False
    assert torch.is_tensor(Capped().predict_slices(torch.zeros(1), None))
