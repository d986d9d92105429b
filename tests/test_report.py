"""Leaderboard significance marks, LaTeX export, the self-contained HTML report and the runs' examples.npz.

Fixtures here are shared with ``test_report_browser.py`` (it imports them).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from srbench import panels, plugins
from srbench import scores as sc
from srbench import stats as st
from srbench.method import Method

ODD_NAME = "twin_b 10%"  # a method name LaTeX must escape


class Nearest(Method):
    """Nearest-neighbour interpolation (the paper's LR-to-HR-grid rule) as a method: a second real run."""

    name = "nearest"
    version = "1.0.0"
    summary = "LR put back on the HR grid by nearest-neighbour interpolation, unchanged."
    input_interpolator = "nearest"

    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return lr


def craft(results: Path, source: Path, method: str, shift: dict, finished_at: str) -> Path:
    """A record of ``method`` copied from the run in ``source`` (examples.npz included), every score of metric
    m shifted by ``shift[m]`` (0 when not named: identical scores)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", method)
    out = results / "demo" / "brain-t1map" / slug / f"seed0-{slug}"
    shutil.copytree(source, out)
    record = json.loads((out / "record.json").read_text(encoding="utf-8"))
    table = pd.read_csv(out / "scores.csv")
    summary = {}
    for name, old in record["summary"]["per_slice"].items():
        if old is None or table[name].isna().all():
            summary[name] = None
            continue
        table[name] = table[name] + shift.get(name.lower(), 0.0)
        summary[name] = {"mean": table[name].mean(), "std": table[name].std(ddof=1), "n": len(table)}
    record["summary"]["per_slice"] = summary
    record["method_card"]["name"] = method
    record["config"]["method"] = method
    record.update(run_id=out.name, finished_at=finished_at)
    (out / "record.json").write_text(json.dumps(record))
    table.to_csv(out / "scores.csv", index=False)
    return out


@pytest.fixture
def three_methods(bicubic_run, tmp_path) -> Path:
    """bicubic (real), ODD_NAME (the very same scores) and 'worse' (PSNR -3 dB, SSIM -0.05, GMSD +0.05)."""
    results, run_dir = bicubic_run
    mine = tmp_path / "results"
    bic = mine / run_dir.relative_to(results)
    shutil.copytree(run_dir, bic)
    craft(mine, bic, ODD_NAME, {}, "2100-01-01T00:00:01+00:00")
    craft(mine, bic, "worse", {"psnr": -3.0, "ssim": -0.05, "gmsd": 0.05}, "2100-01-01T00:00:02+00:00")
    return mine


_RUNS: dict = {}


@pytest.fixture(scope="session")
def two_runs(bicubic_run, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(results, bicubic run dir, nearest run dir): two REAL runs on the demo (nearest scored without LPIPS)."""
    if "two" not in _RUNS:
        from srbench.runner import RunOptions, run

        results, run_dir = bicubic_run
        mine = tmp_path_factory.mktemp("report") / "results"
        shutil.copytree(results, mine)
        plugins.reset()
        try:
            reg = plugins.get_registry()
            reg.methods.add("nearest", Nearest)
            for name in [n for n in reg.metrics if n.lower() == "lpips"]:
                reg.metrics.pop(name)
            near, ran = run(RunOptions(method="nearest", dataset="demo", results_dir=mine))
            assert ran
        finally:
            plugins.reset()
        _RUNS["two"] = (mine, mine / run_dir.relative_to(results), near)
    return _RUNS["two"]


def csv_rows(text: str) -> dict[str, dict]:
    return {r["method"]: r for r in csv.DictReader(io.StringIO(text))}


# --- examples.npz ---------------------------------------------------------------------------------------------


def test_example_slices_rule():
    assert panels.example_slices(range(92, 124)) == [100, 108, 115]  # 32 slices: positions 8, 16, 23
    assert panels.example_slices([5, 9, 7]) == [7, 9]  # sorted first; positions 1, 1 (0.5 -> 1), 2 -> 7, 9
    assert panels.example_slices([4]) == [4]
    assert panels.example_slices([]) == []


def test_examples_npz_written_by_a_real_run(bicubic_run):
    _, run_dir = bicubic_run
    path = run_dir / panels.EXAMPLES
    assert path.is_file() and path.stat().st_size < 1_000_000
    scores = pd.read_csv(run_dir / "scores.csv")
    first_case = scores["case"].iloc[0]  # rows are written case by case, in test-split order
    usable = scores.loc[scores["case"] == first_case, "slice"].tolist()
    with np.load(path, allow_pickle=False) as z:
        assert str(z["case"]) == first_case
        assert z["slices"].tolist() == panels.example_slices(usable) == [8, 16, 23]  # of the 32-slice test slab
        full = tuple(z["full_shape"])
        assert full == (233, 197)  # the demo's axial slices
        r0, c0 = z["origin"]
        shape = z["hr"].shape  # the stored window: the brain's bounding box plus a margin
        assert shape[0] == 3 and r0 + shape[1] <= full[0] and c0 + shape[2] <= full[1]
        assert shape[1] * shape[2] <= panels.MAX_PIXELS
        for key in ("sr", "hr", "lr"):
            assert z[key].dtype == np.float16 and z[key].shape == shape
            assert 0 <= float(z[key].min()) and float(z[key].max()) <= 1
        assert z["mask"].dtype == bool and z["mask"].shape == shape and bool(z["has_mask"])
        m = z["mask"]
        assert m.any() and not (m[:, :panels.MARGIN].any() or m[:, -panels.MARGIN:].any()
                                or m[:, :, :panels.MARGIN].any() or m[:, :, -panels.MARGIN:].any())
        assert str(z["interpolator"]) == "cubic"
        sr, hr, mask = (z[k].astype(np.float64) for k in ("sr", "hr", "mask"))
    # The kept arrays are the scored ones: PSNR recomputed on them (masked, as scored, over the whole slice:
    # outside the kept window both are masked to 0) matches scores.csv.
    psnr_col = next(c for c in scores.columns if c.lower() == "psnr")
    for i, k in enumerate([8, 16, 23]):
        mse = np.sum((sr[i] * mask[i] - hr[i] * mask[i]) ** 2) / (full[0] * full[1])
        expected = scores.loc[(scores["case"] == first_case) & (scores["slice"] == k), psnr_col].item()
        assert 10 * np.log10(1 / mse) == pytest.approx(expected, abs=0.02)


def test_same_slices_for_every_method(two_runs):
    _, bic, near = two_runs
    a, b = panels.load_examples(bic), panels.load_examples(near)
    assert (a.case, a.slices) == (b.case, b.slices)
    np.testing.assert_array_equal(a.hr, b.hr)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.origin, a.full_shape) == (b.origin, b.full_shape)
    assert (a.interpolator, b.interpolator) == ("cubic", "nearest")
    np.testing.assert_array_equal(b.sr, b.lr)  # nearest returns its input
    assert not np.array_equal(a.sr, b.sr)


def test_zoom_regions_pick_the_highest_gradient_energy_and_do_not_overlap():
    hr = np.zeros((100, 120))
    hr[10:30, 70:90] = (np.arange(20) // 2 % 2)[:, None]  # strongest texture: stripes 2 pixels wide
    hr[60:80, 10:30] = np.eye(20)  # weaker texture (a diagonal line)
    (r1, c1, s1), (r2, c2, s2) = panels.zoom_regions(hr)
    assert s1 == s2 == panels.window_side(hr.shape) == 20
    assert abs(r1 - 10) <= 2 and abs(c1 - 70) <= 2  # on the stripes
    assert abs(r2 - r1) >= s1 or abs(c2 - c1) >= s1  # no overlap
    assert 40 < r2 + s2 / 2 < 100 and c2 + s2 / 2 < 50  # on the diagonal line
    mask = np.zeros_like(hr, bool)
    mask[50:, :60] = True  # outside the mask the stripes count for nothing
    (r, c, _), _ = panels.zoom_regions(hr, mask)
    assert r >= 40 and c < 60


def test_storage_box_is_the_mask_box_or_a_centred_crop_within_the_limit():
    mask = np.zeros((400, 500), bool)
    mask[100:150, 200:260] = True
    assert panels.storage_box(mask) == (96, 154, 196, 264)
    r0, r1, c0, c1 = panels.storage_box(np.ones((400, 500), bool))  # too big: centred, same aspect
    assert (r1 - r0) * (c1 - c0) <= panels.MAX_PIXELS
    assert abs((r0 + r1) / 2 - 200) <= 1 and abs((c0 + c1) / 2 - 250) <= 1
    assert abs((c1 - c0) / (r1 - r0) - 1.25) < 0.02


def test_panel_slice_is_the_best_methods_median():
    ex = panels.Examples("c", [10, 20, 30], *(np.zeros((3, 4, 4)),) * 4, "nearest")
    assert panels.panel_slice({"a": ex, "b": ex}, {"a": {10: 30.0, 20: 28.0, 30: 35.0}, "b": {}}, "a") == 0
    assert panels.panel_slice({"a": ex}, {"a": {10: 30.0}}, "a") == 1  # missing scores: the middle one


# --- significance marks ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # Wilcoxon of identical twins
@pytest.mark.parametrize("protocol,unit", [("paper", "slice"), ("paired", "slice"), ("paper", "volume")])
def test_marks_are_the_stats_decision(three_methods, cli, protocol, unit):
    result = cli("leaderboard", "--results-dir", three_methods, "--format", "csv", "--protocol", protocol,
                 "--unit", unit)
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    assert set(rows) == {"bicubic", ODD_NAME, "worse"}
    runs = sc.select_runs(three_methods, "demo")
    report = st.analyse(sc.scores_of(runs), sc.directions_of(runs), protocol, unit)
    for metric in ("psnr", "ssim", "gmsd"):
        res = report.metrics[metric]
        assert res.best == "bicubic"  # tie with its twin: the first in table order
        for method, row in rows.items():
            assert row[f"{metric}_not_sig_from_best"] == str(method in res.not_different_from_best)
        if (protocol, unit) in (("paper", "slice"), ("paired", "slice")):
            assert res.not_different_from_best == [ODD_NAME]  # identical: not significant; worse: significant
        else:  # one test volume per method: no test possible, nobody differs
            assert sorted(res.not_different_from_best) == sorted([ODD_NAME, "worse"]) and not res.tested
    for method in rows:  # LPIPS: no statistics unless its weights are installed
        assert rows[method]["lpips_not_sig_from_best"] in ("", "True", "False")


def test_markdown_and_html_put_the_asterisk_on_the_right_cells(three_methods, cli):
    md = cli("leaderboard", "--results-dir", three_methods, "--format", "md").stdout
    cells = {}
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for ln in lines[2:]:
        row = dict(zip(header, (c.strip() for c in ln.strip("|").split("|"))))
        cells[row["method"]] = row
    for metric in ("PSNR ↑", "SSIM ↑", "GMSD ↓"):
        assert re.fullmatch(r"\*\*[\d.]+ ± [\d.]+\*\*", cells["bicubic"][metric])
        assert re.fullmatch(r"<u>[\d.]+ ± [\d.]+</u><sup>\\\*</sup>", cells[ODD_NAME][metric])
        assert re.fullmatch(r"[\d.]+ ± [\d.]+", cells["worse"][metric])
    assert "α = 0.05" in md and ("Kruskal–Wallis" in md or "ANOVA" in md)
    page = cli("leaderboard", "--results-dir", three_methods, "--format", "html", "--table-only").stdout
    assert "<img" not in page
    body = page.split("<tbody>")[1].split("</tbody>")[0]  # the leaderboard's rows (the runs table follows)
    heads = [re.sub("<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", page.split("<tbody>")[0])]
    first = next(i for i, h in enumerate(heads) if h.startswith("PSNR"))
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        tds = re.findall(r"<td[^>]*>(.*?)</td>", tr)
        marks = [td.endswith("*</sup>") for td in tds[first:first + 3]]  # PSNR, SSIM, GMSD
        assert marks == [tds[2] == ODD_NAME] * 3, tds


def test_a_partial_run_is_left_out_with_a_warning_naming_it(three_methods, cli):
    [worse] = three_methods.glob("demo/brain-t1map/worse/*")
    (worse / "scores.csv").unlink()
    result = cli("leaderboard", "--results-dir", three_methods, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert set(csv_rows(result.stdout)) == {"bicubic", ODD_NAME}
    assert str(worse / "scores.csv") in " ".join(result.stderr.split()) and "incomplete" in result.stderr


def test_a_block_without_scores_gets_no_marks_and_says_why(three_methods, cli):
    from srbench import leaderboard as lb
    from srbench import leaderboard_export as lx

    board = lb.load_table(three_methods)
    [worse] = three_methods.glob("demo/brain-t1map/worse/*")
    (worse / "scores.csv").unlink()  # gone after the table was built: the statistics cannot read it
    df, sig = lb.significance(board)
    assert set(df["psnr_not_sig_from_best"]) == {None}
    md = lx.to_markdown(df, None, sig)
    assert "demo / brain-t1map: no statistics (" in md and "scores.csv: missing" in md
    assert "<sup>" not in md.split("Mean ± SD")[0]


def test_bad_alpha_is_a_one_line_error(three_methods, cli):
    from conftest import assert_one_line_error

    assert_one_line_error(cli("leaderboard", "--results-dir", three_methods, "--alpha", "1.5"), "alpha")


# --- LaTeX ----------------------------------------------------------------------------------------------------


def latex_rows(tex: str) -> dict[str, list[str]]:
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    rows = {}
    for line in body.splitlines():
        line = line.strip()
        if line.endswith("\\\\"):
            cells = [c.strip() for c in re.split(r"(?<!\\)&", line[:-2])]  # an escaped \& is no separator
            rows[cells[1]] = cells
    return rows


def test_latex_structure(three_methods, cli):
    result = cli("leaderboard", "--results-dir", three_methods, "--format", "latex")
    assert result.exit_code == 0, result.output
    tex = result.stdout
    n_cols = 2 + 4 + 7  # block, method; four metrics; s/slice, device, budget (3), params, steps
    for token in ["\\begin{table}", "\\caption{", "\\begin{tabular}{ll" + "r" * (n_cols - 2) + "}", "\\toprule",
                  "\\midrule", "\\bottomrule", "\\end{tabular}", "\\end{table}"]:
        assert tex.count(token) == 1, token
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    rows = latex_rows(tex)
    escaped = "twin\\_b 10\\%"
    assert set(rows) == {"bicubic", escaped, "worse"}
    assert rows["bicubic"][0] == "demo / brain-t1map (1 subjects, 1 volumes, 32 slices, 1 seeds)"
    assert rows["worse"][0] == rows[escaped][0] == ""
    for col in (2, 3, 4):  # PSNR, SSIM, GMSD
        assert re.fullmatch(r"\\textbf\{[\d.]+ \$\\pm\$ [\d.]+\}", rows["bicubic"][col])
        assert re.fullmatch(r"\\underline\{[\d.]+ \$\\pm\$ [\d.]+\}\$\^\{\*\}\$", rows[escaped][col])
        assert re.fullmatch(r"[\d.]+ \$\\pm\$ [\d.]+", rows["worse"][col])
    assert all(len(r) == n_cols for r in rows.values())
    assert rows["bicubic"][7] == "cpu" and rows["bicubic"][8] == "--"  # device; no training budget
    caption = tex.split("\\caption{", 1)[1].split("\\label")[0]
    for text in ("$^{*}$", "$\\alpha$ = 0.05", "paper protocol", "Shapiro--Wilk", "Tukey HSD", "Dunn",
                 "unit: test slice", "demo / brain-t1map: n = 1 subject(s), 1 volume(s), 32 slice(s)", "; PSNR",
                 "slices come from 1 subject(s)", "samples seen = training steps $\\times$ batch"):
        assert text in caption, text
    assert "%" not in tex.replace("\\%", "").split("\n", 1)[1]  # only the leading comment line is a comment
    assert "_" not in tex.replace("\\_", "")


def test_latex_escapes_names_through_pandas():
    from srbench.latex import to_latex

    df = pd.DataFrame([{"method": "a_b & c", "preset": "tiny", "dataset": "d#1", "degradation": "x^2", "n_slices": 1,
                        **{f"{m}_{s}": 1.0 for m in ("psnr", "ssim", "gmsd", "lpips") for s in ("mean", "std")},
                        "sec_per_slice": 0.1, "device": "cuda:0 (A100_x)", "run_id": "r"}])
    tex = to_latex(df, {"psnr": "higher"})
    assert "a\\_b \\& c" in tex and "d\\#1 / x\\textasciicircum 2" in tex and "cuda:0 (A100\\_x)" in tex


def test_latex_escaping():
    from srbench.latex import tex_escape

    assert tex_escape("a_b 5% & #1 $x$ {y} ~^\\") == (
        "a\\_b 5\\% \\& \\#1 \\$x\\$ \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt-get install -y "
                    "texlive-latex-base texlive-latex-recommended)")
def test_latex_compiles(three_methods, cli, tmp_path):
    tex = cli("leaderboard", "--results-dir", three_methods, "--format", "latex").stdout
    doc = tmp_path / "table.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex
                   + "\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert out.returncode == 0, out.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


# --- the HTML report ------------------------------------------------------------------------------------------


def images(page: str) -> list[tuple[str, bytes]]:
    """(class, PNG bytes) of every <img>; fails on an image that is not an embedded PNG."""
    out = []
    for cls, src in re.findall(r'<img class="(\w+)" alt="[^"]*" src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,"), src[:60]
        out.append((cls, base64.b64decode(src.split(",", 1)[1], validate=True)))
    assert len(out) == page.count("<img")
    return out


def test_html_report_is_self_contained_with_decodable_figures(two_runs, cli, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the report's date: 2023-11-14
    results, _, _ = two_runs
    result = cli("leaderboard", "--results-dir", results, "--format", "html")
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert page.lstrip().startswith("<!doctype html>") and 'class="sortable"' in page
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?data:)""", page)  # nothing fetched from anywhere
    assert "<link" not in page and "@import" not in page and "url(" not in page
    imgs = images(page)
    assert [c for c, _ in imgs] == ["boxplot"] * 3 + ["panel"] * 3  # PSNR, SSIM, GMSD; three planes
    for plane in ("axial", "coronal", "sagittal"):
        assert f'alt="{plane} qualitative panel, demo / brain-t1map"' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    import srbench

    assert f'<dd id="version">{srbench.__version__}</dd>' in page and '<dd id="date">2023-11-14</dd>' in page
    assert "x86_64" in page or "CPUs" in page  # the hardware of the runs
    assert page.count('<section class="card">') == 2 and "input interpolator" in page
    for _, png in imgs:
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    assert len(re.findall(r"<tr data-run=", page)) == 2  # one table row per run
    assert "zoom 1 rows" in page and "|SR − HR|" in page and "shared colour bar" in page
    assert "u[floor(f*(len(u)-1)+0.5)]" in page  # the slice rule is stated
    assert cli("leaderboard", "--results-dir", results, "--format", "html").stdout == page  # reproducible
    same = cli("report", "-r", results, "-o", "-", "--case", "test")
    assert same.exit_code == 0, same.output
    assert same.stdout == page  # the demo's one test case is the default


def test_report_without_examples_says_so(three_methods, cli):
    for npz in three_methods.rglob(panels.EXAMPLES):
        npz.unlink()
    page = cli("leaderboard", "--results-dir", three_methods, "--format", "html").stdout
    assert [c for c, _ in images(page)] == ["boxplot"] * 3
    assert "No qualitative panel" in page


def test_report_case_is_checked(two_runs, cli):
    from conftest import assert_one_line_error

    results, bic, _ = two_runs
    assert panels.kept_cases(bic) == ["test"]  # the demo has one test case
    assert_one_line_error(cli("report", "-r", results, "-o", "-", "--case", "tset"), "did you mean 'test'?",
                          "kept: test")


def test_examples_keep_through_plane_images(two_runs):
    _, bic, near = two_runs
    a, b = panels.load_examples(bic), panels.load_examples(near)
    scores = pd.read_csv(bic / "scores.csv")
    for plane in ("coronal", "sagittal"):
        pa, pb = a.planes[plane], b.planes[plane]
        assert pa.sr.shape == pa.hr.shape == pa.mask.shape and pa.sr.shape[0] == len(scores)  # one row per slice
        assert pa.index == pb.index and pa.aspect == pytest.approx(1.0)  # the demo's voxels are isotropic
        np.testing.assert_array_equal(pa.hr, pb.hr)
        np.testing.assert_array_equal(pb.sr, pb.lr)  # nearest returns its input
        assert 0 <= pa.sr.min() and pa.sr.max() <= 1 and pa.mask.any()
    # The axial slices kept are rows of the through-plane images: same values where they cross.
    k = a.slices[0]
    row = sorted(scores["slice"]).index(k)
    cor = a.planes["coronal"]
    r = cor.index - a.origin[0]
    if 0 <= r < a.hr.shape[1]:
        np.testing.assert_allclose(a.hr[0, r, :].max(), cor.hr[row].max(), atol=1e-3)
