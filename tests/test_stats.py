"""srbench.stats and ``srbench stats``: every p-value against direct scipy / scikit-posthocs / statsmodels calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
import statsmodels.formula.api as smf
from click.testing import CliRunner
from scipy import stats as ss
from statsmodels.stats.multitest import multipletests

from conftest import assert_one_line_error
from srbench import record as rec
from srbench import scores as scores_mod
from srbench import stats
from srbench.errors import SRBenchError

ALPHA = 0.05


# --- fixed data -------------------------------------------------------------------------------------------


def long_frame(groups: dict[str, np.ndarray], metric: str = "psnr", per_case: int = 10) -> pd.DataFrame:
    """Long format: value i of a method is slice i % per_case of case c{i // per_case}."""
    rows = [{"method": m, "case": f"c{i // per_case}", "slice": i % per_case, metric: float(v)}
            for m, values in groups.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def gaussian_groups(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(30.0, 1.0, 40), "b": rng.normal(30.4, 1.0, 35), "c": rng.normal(31.5, 1.0, 45)}


def skewed_groups(seed=1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)  # rounded: ties, so Dunn's tie correction matters
    return {"a": np.round(rng.lognormal(-3.0, 1.0, 40), 3), "b": np.round(rng.exponential(0.06, 36), 3),
            "c": np.round(rng.lognormal(-2.4, 1.0, 44), 3)}


def ols_residuals(groups: dict[str, np.ndarray]) -> np.ndarray:
    """Residuals of score ~ C(method) fitted by statsmodels OLS (independent of srbench's arithmetic)."""
    df = pd.DataFrame({"method": np.repeat(list(groups), [len(g) for g in groups.values()]),
                       "score": np.concatenate(list(groups.values()))})
    return smf.ols("score ~ C(method)", data=df).fit().resid.to_numpy()


def dunn_by_hand(groups: dict[str, np.ndarray]) -> np.ndarray:
    """Dunn (1964) z with the tie correction, two-sided normal p, Bonferroni over k(k-1)/2 pairs."""
    values = np.concatenate(list(groups.values()))
    n, ranks = len(values), ss.rankdata(values)
    sizes = np.array([len(g) for g in groups.values()])
    mean_rank = np.array([r.mean() for r in np.split(ranks, np.cumsum(sizes)[:-1])])
    _, t = np.unique(values, return_counts=True)
    var = n * (n + 1) / 12.0 - (t ** 3 - t).sum() / (12.0 * (n - 1))
    k = len(groups)
    out = np.ones((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                z = abs(mean_rank[i] - mean_rank[j]) / np.sqrt(var * (1 / sizes[i] + 1 / sizes[j]))
                out[i, j] = min(1.0, 2 * ss.norm.sf(z) * k * (k - 1) / 2)
    return out


def assert_paper_matches_direct(res: stats.MetricStats, groups: dict[str, np.ndarray]) -> None:
    """The whole paper protocol redone with direct library calls: decision and every p-value."""
    names, arrays = list(groups), list(groups.values())
    w, p_norm = ss.shapiro(ols_residuals(groups))
    assert res.normality.statistic == pytest.approx(w, rel=1e-9)
    assert res.normality.pvalue == pytest.approx(p_norm, rel=1e-7)
    assert res.normality.normal == (p_norm > ALPHA)
    if p_norm > ALPHA:
        omnibus, pairwise = ss.f_oneway(*arrays), ss.tukey_hsd(*arrays).pvalue
        assert (res.omnibus, res.posthoc) == ("one-way ANOVA", "Tukey HSD")
        df = long_frame(groups, "score")
        other = sp.posthoc_tukey(df, val_col="score", group_col="method").loc[names, names].to_numpy()
        np.testing.assert_allclose(pairwise, other, rtol=1e-6, atol=1e-12)  # the two libraries agree
    else:
        omnibus = ss.kruskal(*arrays)
        pairwise = sp.posthoc_dunn(long_frame(groups, "score"), val_col="score", group_col="method",
                                   p_adjust="bonferroni").loc[names, names].to_numpy()
        assert (res.omnibus, res.posthoc) == ("Kruskal-Wallis", "Dunn (Bonferroni)")
        np.testing.assert_allclose(pairwise, dunn_by_hand(groups), rtol=1e-9, atol=1e-15)
    assert res.statistic == pytest.approx(omnibus.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(omnibus.pvalue, rel=1e-9, abs=1e-300)
    assert list(res.pairwise.index) == names == list(res.pairwise.columns)
    np.testing.assert_allclose(res.pairwise.to_numpy(), pairwise, rtol=1e-9, atol=1e-15)


# --- the paper protocol ------------------------------------------------------------------------------------


def test_gaussian_scores_take_anova_and_tukey():
    groups = gaussian_groups()
    res = stats.paper_protocol(long_frame(groups), "psnr", "higher")
    assert res.normality.normal is True and res.omnibus == "one-way ANOVA"
    assert res.n == {"a": 40, "b": 35, "c": 45} and res.best == "c"
    assert_paper_matches_direct(res, groups)


@pytest.mark.parametrize("seed", [1, 2])
def test_skewed_scores_take_kruskal_and_dunn(seed):
    groups = skewed_groups(seed)
    res = stats.paper_protocol(long_frame(groups, "gmsd"), "gmsd", "lower")
    assert res.normality.normal is False and res.omnibus == "Kruskal-Wallis"
    assert res.best == min(groups, key=lambda m: groups[m].mean())
    assert_paper_matches_direct(res, groups)


def test_nan_scores_are_dropped_per_method():
    groups = gaussian_groups(3)
    df = long_frame(groups)
    df.loc[[0, 5, 50], "psnr"] = np.nan  # two of a's scores, one of b's
    res = stats.paper_protocol(df, "psnr", "higher")
    clean = {m: g.dropna().to_numpy() for m, g in df.groupby("method", sort=False)["psnr"]}
    assert res.n == {"a": 38, "b": 34, "c": 45}
    assert_paper_matches_direct(res, clean)


# --- the paired protocol -----------------------------------------------------------------------------------


def paired_frame(seed=4, k=3, cases=4, slices=10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(0.8, 0.05, (cases, slices))  # a per-slice difficulty every method shares
    rows = []
    for j, method in enumerate("abcd"[:k]):
        noise = rng.standard_t(3, (cases, slices)) * 0.01
        for c in range(cases):
            for s in range(slices):
                rows.append({"method": method, "case": f"c{c}", "slice": s,
                             "ssim": base[c, s] + 0.004 * j + noise[c, s]})
    return pd.DataFrame(rows)


def direct_paired(df: pd.DataFrame, metric: str, keys: list[str]):
    """Aligned table by hand, then scipy Friedman/Wilcoxon and statsmodels Holm."""
    wide = df.pivot(index=keys, columns="method", values=metric).dropna()
    methods = list(wide.columns)
    cols = [wide[m].to_numpy() for m in methods]
    omnibus = ss.friedmanchisquare(*cols) if len(cols) >= 3 else ss.wilcoxon(*cols)
    pairs = [(i, j) for i in range(len(methods)) for j in range(i + 1, len(methods))]
    raw = [ss.wilcoxon(cols[i], cols[j]).pvalue for i, j in pairs]
    adjusted = multipletests(raw, method="holm")[1]
    matrix = np.ones((len(methods), len(methods)))
    for (i, j), p in zip(pairs, adjusted):
        matrix[i, j] = matrix[j, i] = p
    return methods, omnibus, matrix, len(wide)


def test_paired_friedman_and_wilcoxon_holm_match_direct_calls():
    df = paired_frame()
    incomplete = df.drop(index=df.index[(df.method == "b") & (df.case == "c1") & (df.slice < 3)])
    incomplete.loc[(incomplete.method == "c") & (incomplete.case == "c3") & (incomplete.slice == 9), "ssim"] = np.nan
    shuffled = incomplete.sample(frac=1.0, random_state=0)  # alignment must come from (case, slice), not order
    res = stats.paired_protocol(shuffled, "ssim", "higher")
    methods, omnibus, matrix, n = direct_paired(incomplete, "ssim", ["case", "slice"])
    assert res.dropped == 4 and n == 36 and res.n == {m: 36 for m in "abc"}
    assert (res.omnibus, res.posthoc) == ("Friedman", "Wilcoxon signed-rank (Holm)")
    assert res.statistic == pytest.approx(omnibus.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(omnibus.pvalue, rel=1e-9)
    np.testing.assert_allclose(res.pairwise.loc[methods, methods].to_numpy(), matrix, rtol=1e-12)
    assert res.best == "c"


def test_paired_with_two_methods_uses_wilcoxon_as_omnibus():
    df = paired_frame(k=2)
    res = stats.paired_protocol(df, "ssim", "higher")
    methods, omnibus, matrix, _ = direct_paired(df, "ssim", ["case", "slice"])
    assert res.omnibus == "Wilcoxon signed-rank"
    assert res.pvalue == pytest.approx(omnibus.pvalue, rel=1e-12)
    assert res.pairwise.loc["a", "b"] == pytest.approx(matrix[0, 1], rel=1e-12)


def test_posthoc_wilcoxon_holm_equals_scipy_plus_statsmodels_holm():
    # The library call srbench uses, checked against the computation it stands for.
    wide = paired_frame(k=4).pivot(index=["case", "slice"], columns="method", values="ssim")
    long = wide.melt(value_name="score", ignore_index=True)
    lib = sp.posthoc_wilcoxon(long, val_col="score", group_col="method", p_adjust="holm")
    lib = lib.loc[list("abcd"), list("abcd")]
    _, _, matrix, _ = direct_paired(paired_frame(k=4), "ssim", ["case", "slice"])
    np.testing.assert_allclose(lib.to_numpy(), matrix, rtol=1e-12)


# --- unit: per volume -------------------------------------------------------------------------------------


def test_per_volume_means_each_case_first():
    df = paired_frame(cases=6, slices=5)
    df.loc[0, "ssim"] = np.nan  # ignored by the case mean
    vol = stats.per_volume(df)
    assert len(vol) == 18 and "slice" not in vol.columns
    expected = df.groupby(["method", "case"])["ssim"].mean()
    got = vol.set_index(["method", "case"])["ssim"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert got[("a", "c0")] == pytest.approx(df.ssim[1:5].mean())

    paper = stats.paper_protocol(df, "ssim", "higher", unit="volume")
    groups = {m: g.to_numpy() for m, g in expected.groupby(level="method")}
    assert paper.unit == "volume" and paper.n == {m: 6 for m in "abc"}
    assert_paper_matches_direct(paper, groups)

    paired = stats.paired_protocol(df, "ssim", "higher", unit="volume")
    methods, omnibus, matrix, n = direct_paired(vol, "ssim", ["case"])
    assert n == 6 and paired.pvalue == pytest.approx(omnibus.pvalue, rel=1e-12)
    np.testing.assert_allclose(paired.pairwise.loc[methods, methods].to_numpy(), matrix, rtol=1e-12)


# --- not significantly different from the best ------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["paper", "paired"])
def test_not_different_from_best_on_known_data(protocol):
    rng = np.random.default_rng(7)
    n = 60
    shared = rng.normal(0, 1, n)
    good = {"a": 30 + shared + rng.normal(0, 1, n), "b": 30 + shared + rng.normal(0, 1, n),
            "c": 26 + shared + rng.normal(0, 1, n)}
    df = long_frame(good)
    higher = stats.analyse(df, {"psnr": "higher"}, protocol=protocol).metrics["psnr"]
    assert higher.best in ("a", "b")
    assert higher.not_different_from_best == [m for m in "ab" if m != higher.best]
    assert higher.pairwise.loc["a", "b"] >= ALPHA and higher.pairwise.loc[higher.best, "c"] < ALPHA
    lower = stats.analyse(df, {"psnr": "lower"}, protocol=protocol).metrics["psnr"]
    assert lower.best == "c" and lower.not_different_from_best == []


# --- edge cases -------------------------------------------------------------------------------------------


def test_one_method_is_not_tested():
    res = stats.paper_protocol(long_frame({"a": np.arange(10.0)}), "psnr", "higher")
    assert not res.tested and res.pairwise is None and "1 method" in res.note
    assert res.best == "a" and res.not_different_from_best == []


def test_nan_only_metric_is_skipped_and_nan_only_method_left_out():
    groups = gaussian_groups()
    df = long_frame(groups)
    df["lpips"] = np.nan
    df["gmsd"] = np.where(df.method == "b", np.nan, df.psnr / 1000)
    report = stats.analyse(df)
    assert set(report.metrics) == {"psnr", "gmsd"} and "lpips" in report.skipped
    gmsd = report.metrics["gmsd"]
    assert gmsd.excluded == ["b"] and list(gmsd.pairwise.columns) == ["a", "c"]
    paired = stats.analyse(paired_frame().assign(lpips=np.nan), protocol="paired")
    assert "lpips" in paired.skipped


def test_constant_residuals_are_not_testable_and_go_nonparametric():
    groups = {"a": np.full(8, 0.9), "b": np.full(8, 0.8), "c": np.full(8, 0.7)}
    res = stats.paper_protocol(long_frame(groups, "ssim"), "ssim", "higher")
    assert res.normality.normal is None and "residual is zero" in res.normality.note
    assert res.omnibus == "Kruskal-Wallis" and res.best == "a"
    assert res.pvalue == pytest.approx(ss.kruskal(*groups.values()).pvalue)
    names = list(groups)
    dunn = sp.posthoc_dunn(long_frame(groups, "score"), val_col="score", group_col="method",
                           p_adjust="bonferroni").loc[names, names]
    np.testing.assert_allclose(res.pairwise.to_numpy(), dunn.to_numpy(), rtol=1e-12)


def test_identical_scores_are_not_tested():
    groups = {"a": np.full(5, 0.5), "b": np.full(5, 0.5)}
    res = stats.paper_protocol(long_frame(groups, "ssim"), "ssim", "higher")
    assert not res.tested and "identical" in res.note and res.not_different_from_best == ["b"]
    df = paired_frame()
    df["ssim"] = df.groupby(["case", "slice"])["ssim"].transform("first")  # every method equal on every slice
    res = stats.paired_protocol(df, "ssim", "higher")
    assert not res.tested and "identically" in res.note and res.not_different_from_best == ["b", "c"]


def test_too_few_scores():
    res = stats.paper_protocol(long_frame({"a": [1.0], "b": [2.0, 3.0]}), "psnr", "higher")
    assert not res.tested and "fewer than 2" in res.note
    tiny = stats.normality({"a": np.array([1.0]), "b": np.array([2.0])})
    assert tiny.normal is None and "needs 3" in tiny.note and tiny.pvalue is None


def test_bad_arguments_raise_srbench_errors():
    df = long_frame(gaussian_groups())
    with pytest.raises(SRBenchError, match="protocol"):
        stats.analyse(df, protocol="bayes")
    with pytest.raises(SRBenchError, match="unit"):
        stats.analyse(df, unit="patient")
    with pytest.raises(SRBenchError, match="direction"):
        stats.analyse(df.rename(columns={"psnr": "vif"}))
    with pytest.raises(SRBenchError, match="more than once"):
        stats.paired_protocol(pd.concat([df, df]), "psnr", "higher")


def test_report_is_json_ready():
    report = stats.analyse(long_frame(gaussian_groups()).assign(lpips=np.nan))
    d = json.loads(json.dumps(report.to_dict()))
    psnr = d["metrics"]["psnr"]
    assert psnr["omnibus"] == "one-way ANOVA" and psnr["normality"]["normal"] is True
    assert psnr["pairwise"]["a"]["c"] == pytest.approx(report.metrics["psnr"].pairwise.loc["a", "c"])
    assert d["skipped"] == {"lpips": "unavailable: no scores in any run"}


# --- run records and the CLI ------------------------------------------------------------------------------


def write_run(root: Path, method: str, preset: str, scores: dict[str, np.ndarray], finished_at: str,
              dataset: str = "demo", degradation: str = "kspace-x4", per_case: int = 10) -> Path:
    """A minimal, well-formed run as the runner writes it: scores.csv, then record.json."""
    rid = f"seed0-{abs(hash((method, preset, finished_at, dataset, degradation))) % 10 ** 10:010d}"
    out = rec.run_dir(root, dataset, degradation, method, rid)
    n = len(next(iter(scores.values())))
    table = pd.DataFrame({"case": [f"case{i // per_case}" for i in range(n)], "patient": "p0",
                          "slice": [i % per_case for i in range(n)], **{k.upper(): v for k, v in scores.items()},
                          "LPIPS": [None] * n})
    rec.atomic_write_text(out / rec.SCORES, table.to_csv(index=False))
    direction = {"PSNR": "higher", "SSIM": "higher", "GMSD": "lower", "LPIPS": "lower"}
    record = {
        "schema": 1, "run_id": rid, "status": "finished", "finished_at": finished_at,
        "config": {"method": method, "dataset": dataset, "degradation": degradation, "preset": preset, "seed": 0},
        "method_card": {"name": method, "version": "1", "preset": preset},
        "dataset": {"name": dataset, "test_cases": sorted(set(table.case))},
        "metrics": {m: {"direction": d, "unavailable": None if m != "LPIPS" else "no weights"}
                    for m, d in direction.items()},
        "summary": {"per_slice": {}, "per_volume": {}}, "n_slices": n, "skipped_slices": 0,
        "timings": {"sec_per_slice": 0.01},
    }
    rec.atomic_write_json(out / rec.RECORD, record)
    return out


@pytest.fixture
def results(tmp_path) -> tuple[Path, dict]:
    """bicubic (a newer and an older run), res-srdiff tiny and paper; PSNR Gaussian, GMSD skewed."""
    rng = np.random.default_rng(11)
    n = 30
    data = {"bicubic": {"psnr": rng.normal(28, 1, n), "gmsd": np.round(rng.lognormal(-2.5, 1, n), 3)},
            "res-srdiff (paper)": {"psnr": rng.normal(31, 1, n), "gmsd": np.round(rng.lognormal(-3.2, 1, n), 3)},
            "res-srdiff (tiny)": {"psnr": rng.normal(30.7, 1, n), "gmsd": np.round(rng.lognormal(-3.1, 1, n), 3)}}
    root = tmp_path / "results"
    write_run(root, "bicubic", "tiny", {"psnr": np.zeros(n), "gmsd": np.ones(n)}, "2024-01-01T00:00:00+00:00")
    write_run(root, "bicubic", "tiny", data["bicubic"], "2024-06-01T00:00:00+00:00")
    write_run(root, "res-srdiff", "paper", data["res-srdiff (paper)"], "2024-05-01T00:00:00+00:00")
    write_run(root, "res-srdiff", "tiny", data["res-srdiff (tiny)"], "2024-05-02T00:00:00+00:00")
    write_run(root, "bicubic", "tiny", data["bicubic"], "2024-06-01T00:00:00+00:00", dataset="other")
    return root, data


def stats_cli():
    from srbench.cli import Group
    from srbench.stats_cli import register

    group = Group()
    register(group)
    return lambda *args: CliRunner().invoke(group, ["stats", *map(str, args)])


def test_load_scores_latest_run_per_method_and_preset(results):
    root, data = results
    df = scores_mod.load_scores(root, "demo")
    assert list(pd.unique(df.method)) == ["bicubic", "res-srdiff (paper)", "res-srdiff (tiny)"]
    assert list(df.columns) == ["method", "case", "slice", "psnr", "gmsd", "lpips"]
    np.testing.assert_allclose(df[df.method == "bicubic"].psnr, data["bicubic"]["psnr"])  # the newer run
    assert df.lpips.isna().all()


def test_cli_json_matches_direct_calls(results):
    root, data = results
    out = stats_cli()("--results-dir", root, "--dataset", "demo", "--json")
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["dataset"] == "demo" and d["degradation"] == "kspace-x4" and d["protocol"] == "paper"
    assert d["methods"] == list(data) and "lpips" in d["skipped"]
    for metric in ("psnr", "gmsd"):
        groups = {m: v[metric] for m, v in data.items()}
        res = stats.MetricStats(metric=metric, direction=d["metrics"][metric]["direction"], protocol="paper",
                                unit="slice", alpha=ALPHA, n={}, means={})
        got = d["metrics"][metric]
        res.normality = stats.Normality(**got["normality"])
        res.omnibus, res.posthoc = got["omnibus"], got["posthoc"]
        res.statistic, res.pvalue = got["statistic"], got["pvalue"]
        res.pairwise = pd.DataFrame(got["pairwise"]).T
        assert_paper_matches_direct(res, groups)
    assert d["metrics"]["psnr"]["omnibus"] == "one-way ANOVA" and d["metrics"]["gmsd"]["omnibus"] == "Kruskal-Wallis"
    assert d["metrics"]["psnr"]["best"] == "res-srdiff (paper)"
    assert d["metrics"]["gmsd"]["direction"] == "lower"


def test_cli_paired_volume_json(results):
    root, data = results
    out = stats_cli()("--results-dir", root, "-d", "demo", "--protocol", "paired", "--unit", "volume", "--json")
    assert out.exit_code == 0, out.output
    psnr = json.loads(out.stdout)["metrics"]["psnr"]
    assert psnr["omnibus"] == "Friedman" and psnr["n"] == {m: 3 for m in data}
    volumes = [data[m]["psnr"].reshape(3, 10).mean(axis=1) for m in data]
    assert psnr["pvalue"] == pytest.approx(ss.friedmanchisquare(*volumes).pvalue, rel=1e-12)


def test_cli_text_output(results):
    root, _ = results
    out = stats_cli()("--results-dir", root, "--dataset", "demo", "--alpha", "0.01")
    assert out.exit_code == 0, out.output
    for text in ("PSNR", "GMSD", "Shapiro-Wilk", "one-way ANOVA", "Tukey HSD", "Kruskal-Wallis", "Dunn (Bonferroni)",
                 "best: res-srdiff (paper);", "alpha 0.01"):
        assert text in out.stdout, text
    assert "lpips" in out.stderr


def test_cli_errors(results, tmp_path):
    root, _ = results
    run = stats_cli()
    assert_one_line_error(run("--results-dir", root, "--dataset", "nope"), "no runs for dataset 'nope'", "demo")
    assert_one_line_error(run("--results-dir", root, "--dataset", "other"), "only one method")
    assert_one_line_error(run("--results-dir", root, "--dataset", "demo", "--degradation", "blur"),
                          "no runs", "kspace-x4")
    write_run(root, "bicubic", "tiny", {"psnr": np.ones(10), "gmsd": np.ones(10)}, "2024-07-01T00:00:00+00:00",
              degradation="blur")
    assert_one_line_error(run("--results-dir", root, "--dataset", "demo"), "several degradations", "--degradation")
    out = run("--results-dir", root, "--dataset", "demo", "--degradation", "kspace-x4", "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["degradation"] == "kspace-x4"
    assert_one_line_error(run("--results-dir", tmp_path / "empty", "--dataset", "demo"), "no runs")
