"""The leaderboard built from run records: CSV columns and values, best bold / second underlined, -o FILE."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srbench import plugins

REQUIRED = ["method", "dataset", "degradation", "n_slices", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
            "gmsd_mean", "gmsd_std", "lpips_mean", "lpips_std", "sec_per_slice"]


def craft(results: Path, source: Path, method: str, deltas: dict, finished_at: str, degradation="brain-t1map",
          sec_per_slice=0.5) -> Path:
    """A record of ``method`` made from a real one: its scores shifted by ``deltas``, LPIPS unavailable."""
    out = results / "demo" / degradation / method / f"seed0-{re.sub(r'[^0-9]', '', finished_at)[:14]}"
    shutil.copytree(source, out)
    record = json.loads((out / "record.json").read_text(encoding="utf-8"))
    table = pd.read_csv(out / "scores.csv")
    summary = {}
    for name in record["summary"]["per_slice"]:
        if name.lower() == "lpips":
            table[name] = np.nan
            summary[name] = None
            continue
        table[name] = table[name] + deltas.get(name.lower(), 0.0)
        summary[name] = {"mean": table[name].mean(), "std": table[name].std(ddof=1), "n": len(table)}
    record["summary"]["per_slice"] = summary
    record["method_card"]["name"] = method
    record["config"].update(method=method, degradation=degradation)
    record.update(run_id=out.name, finished_at=finished_at)
    record["timings"]["sec_per_slice"] = sec_per_slice
    (out / "record.json").write_text(json.dumps(record))
    table.to_csv(out / "scores.csv", index=False)
    return out


@pytest.fixture
def two_methods(bicubic_run, tmp_path) -> tuple[Path, Path, Path]:
    """bicubic (real run) and 'sharper' (crafted): better PSNR, worse SSIM, worse (higher) GMSD, no LPIPS."""
    results, run_dir = bicubic_run
    mine = tmp_path / "results"
    bic = mine / run_dir.relative_to(results)
    shutil.copytree(run_dir, bic)
    other = craft(mine, run_dir, "sharper", {"psnr": 1.5, "ssim": -0.01, "gmsd": 0.02}, "2100-01-01T00:00:10+00:00")
    return mine, bic, other


def expected_row(run_dir: Path) -> dict:
    table = pd.read_csv(run_dir / "scores.csv")
    out = {}
    for metric in ("psnr", "ssim", "gmsd", "lpips"):
        [name] = [c for c in table.columns if c.lower() == metric]
        values = table[name].dropna()
        out[f"{metric}_mean"] = values.mean() if len(values) else None
        out[f"{metric}_std"] = values.std(ddof=1) if len(values) else None
    out["n_slices"] = len(table)
    return out


def csv_rows(text: str) -> dict[str, dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {r["method"]: r for r in rows}


def test_csv_columns_and_values(two_methods, cli):
    results, bic, other = two_methods
    result = cli("leaderboard", "--results-dir", results, "--format", "csv")
    assert result.exit_code == 0, result.output
    header = next(csv.reader(io.StringIO(result.stdout)))
    assert set(REQUIRED) <= set(header)
    rows = csv_rows(result.stdout)
    assert set(rows) == {"bicubic", "sharper"}
    for method, run_dir in (("bicubic", bic), ("sharper", other)):
        row, expected = rows[method], expected_row(run_dir)
        assert (row["dataset"], row["degradation"]) == ("demo", "brain-t1map")
        assert int(row["n_slices"]) == expected["n_slices"] == 32
        for key, value in expected.items():
            if key == "n_slices":
                continue
            if value is None:
                assert row[key] == ""  # unavailable: empty, not 0, not NaN text
            else:
                assert float(row[key]) == pytest.approx(value, rel=1e-9)
        record = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
        assert float(row["sec_per_slice"]) == pytest.approx(record["timings"]["sec_per_slice"])
    assert rows["sharper"]["lpips_mean"] == rows["sharper"]["lpips_std"] == ""
    lpips = next(m for n, m in plugins.get_registry().metrics.items() if n.lower() == "lpips")
    if lpips.unavailable_reason() is not None:
        assert rows["bicubic"]["lpips_mean"] == ""


def markdown_cells(text: str) -> dict[str, dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells["method"]] = cells
    return rows


def column_named(cells: dict, metric: str) -> str:
    [key] = [k for k in cells if k.split()[0].lower() == metric]
    return key


def test_markdown_marks_best_bold_and_second_underlined_with_directions(two_methods, cli):
    results, _, _ = two_methods
    result = cli("leaderboard", "--results-dir", results, "--format", "md")
    assert result.exit_code == 0, result.output
    rows = markdown_cells(result.stdout)
    bic, sharp = rows["bicubic"], rows["sharper"]
    assert column_named(bic, "psnr").endswith("↑") and column_named(bic, "gmsd").endswith("↓")
    # PSNR (higher is better): sharper best. SSIM: bicubic best. GMSD (lower is better): bicubic best.
    not_sig = csv_rows(cli("leaderboard", "--results-dir", results, "--format", "csv").stdout)
    for metric, best, second in (("psnr", sharp, bic), ("ssim", bic, sharp), ("gmsd", bic, sharp)):
        key = column_named(bic, metric)
        assert re.fullmatch(r"\*\*[\d.]+ ± [\d.]+\*\*", best[key]), best[key]
        assert re.fullmatch(r"<u>[\d.]+ ± [\d.]+</u>(<sup>\\\*</sup>)?", second[key]), second[key]
        # the asterisk is there exactly when the statistics found no significant difference from the best
        assert second[key].endswith("<sup>\\*</sup>") == (not_sig[second["method"]][f"{metric}_not_sig_from_best"]
                                                            == "True")
        assert not_sig[best["method"]][f"{metric}_not_sig_from_best"] == "False"
    assert sharp[column_named(sharp, "lpips")] == "—"
    expected = expected_row(two_methods[1])
    assert bic[column_named(bic, "psnr")].startswith(
        f"<u>{expected['psnr_mean']:.2f} ± {expected['psnr_std']:.2f}</u>")
    assert "α = 0.05" in result.stdout and "paper protocol" in result.stdout  # the statistics are stated
    seconds = json.loads((two_methods[1] / "record.json").read_text(encoding="utf-8"))["timings"]["sec_per_slice"]
    assert (bic["s/slice"], bic["params"], bic["steps"]) == (f"{seconds:.3g}", "—", "—")  # bicubic: no weights
    assert sharp["s/slice"] == "0.5"


def html_rows(text: str) -> tuple[list[str], dict[str, list[str]]]:
    header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", text)]
    rows = {}
    body = text.split("<tbody>")[1].split("</tbody>")[0]  # the leaderboard table (the report has others)
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)]
        rows[cells[header.index("method")]] = cells
    return header, rows


def test_html_marks_best_bold_and_second_underlined(two_methods, cli):
    results, _, _ = two_methods
    result = cli("leaderboard", "--results-dir", results, "--format", "html")
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("<!doctype html>") and "sortable" in result.stdout
    header, rows = html_rows(result.stdout)
    col = {m: next(i for i, h in enumerate(header) if h.lower().startswith(m)) for m in ("psnr", "ssim", "gmsd")}
    assert rows["sharper"][col["psnr"]].startswith("<b>") and rows["bicubic"][col["psnr"]].startswith("<u>")
    assert rows["bicubic"][col["gmsd"]].startswith("<b>") and rows["sharper"][col["gmsd"]].startswith("<u>")
    assert rows["bicubic"][col["ssim"]].startswith("<b>") and rows["sharper"][col["ssim"]].startswith("<u>")


def test_newest_run_of_a_method_is_shown_whole(two_methods, cli):
    """An older run of 'sharper' with LPIPS must not lend its values to the newer run that has none."""
    results, bic, other = two_methods
    older = craft(results, bic, "sharper", {"psnr": -5.0}, "2000-01-01T00:00:00+00:00")
    record = json.loads((older / "record.json").read_text(encoding="utf-8"))
    lpips = next(n for n in record["summary"]["per_slice"] if n.lower() == "lpips")
    record["summary"]["per_slice"][lpips] = {"mean": 0.123, "std": 0.01, "n": 32}
    (older / "record.json").write_text(json.dumps(record))
    rows = csv_rows(cli("leaderboard", "--results-dir", results, "--format", "csv").stdout)
    assert float(rows["sharper"]["psnr_mean"]) == pytest.approx(expected_row(other)["psnr_mean"])
    assert rows["sharper"]["lpips_mean"] == ""
    assert rows["sharper"]["run_id"] == other.name


def test_filters_and_output_file(two_methods, cli):
    results, bic, _ = two_methods
    craft(results, bic, "coarse", {}, "2100-01-01T00:00:20+00:00", degradation="prostate-t2w")
    rows = csv_rows(cli("leaderboard", "--results-dir", results, "--format", "csv").stdout)
    assert set(rows) == {"bicubic", "sharper", "coarse"}
    rows = csv_rows(cli("leaderboard", "--results-dir", results, "--format", "csv",
                        "--degradation", "prostate-t2w").stdout)
    assert set(rows) == {"coarse"}
    assert csv_rows(cli("leaderboard", "--results-dir", results, "--format", "csv", "--dataset", "other").stdout) == {}
    out_dir = results.parent / "exports"
    out_dir.mkdir()
    for fmt in ("csv", "md", "html", "latex"):
        printed = cli("leaderboard", "--results-dir", results, "--format", fmt).stdout
        target = out_dir / f"board.{fmt}"
        result = cli("leaderboard", "--results-dir", results, "--format", fmt, "-o", target)
        assert result.exit_code == 0 and result.stdout == ""
        assert target.read_text(encoding="utf-8") == printed
    assert sorted(p.name for p in out_dir.iterdir()) == ["board.csv", "board.html", "board.latex", "board.md"]


def test_empty_results_dir_is_an_error_on_the_cli_and_a_header_in_python(cli, results_dir):
    from conftest import assert_one_line_error
    from srbench import leaderboard as lb
    from srbench import leaderboard_export as lx

    assert_one_line_error(cli("leaderboard", "--results-dir", results_dir, "--format", "csv"), "folder not found")
    results_dir.mkdir()
    assert_one_line_error(cli("leaderboard", "--results-dir", results_dir, "--format", "csv"), "no runs here")
    text = lx.to_csv(lb.load_table(results_dir))
    assert set(REQUIRED) <= set(next(csv.reader(io.StringIO(text))))
    assert len(text.strip().splitlines()) == 1
