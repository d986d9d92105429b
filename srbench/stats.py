"""Statistics of a benchmark: which methods differ, per metric, and which are as good as the best.

Two protocols; scipy and scikit-posthocs do the arithmetic, srbench decides and reports.

**paper** (the paper's protocol; methods compared as independent groups), per metric:

1. fit the one-way model score ~ method; residual = score minus its method's mean;
2. Shapiro-Wilk (``scipy.stats.shapiro``) on the pooled residuals; normal when p > alpha;
3. normal: one-way ANOVA (``scipy.stats.f_oneway``) + Tukey HSD (``scipy.stats.tukey_hsd``, Tukey-Kramer for
   unequal n); otherwise Kruskal-Wallis (``scipy.stats.kruskal``) + Dunn's test with Bonferroni adjustment
   (``scikit_posthocs.posthoc_dunn(p_adjust="bonferroni")``).

**paired** (every method scores the same slices), per metric: rows aligned on (case, slice), or on case for
the per-volume unit; slices not scored by every method are dropped and counted. Friedman
(``scipy.stats.friedmanchisquare``) + pairwise Wilcoxon signed-rank with Holm adjustment
(``scikit_posthocs.posthoc_wilcoxon(p_adjust="holm")``, i.e. ``scipy.stats.wilcoxon`` defaults then
``statsmodels`` ``multipletests(method="holm")``). Friedman needs 3 methods: with exactly 2 the omnibus test is
the Wilcoxon signed-rank test itself.

Unit: ``slice`` (the paper's unit: one score per test slice) or ``volume`` (the mean over each case's slices
first, NaN ignored). alpha = 0.05 unless told.

The best method of a metric is the one with the best mean in the metric's direction (Table 1's bold); the
methods whose pairwise p-value against the best is >= alpha are "not significantly different from the best"
(Table 1's asterisk).

Rules for data that cannot be tested (stated in the result's ``note``; the omnibus test is then ``None``):

- a metric with no score at all (NaN-only column) is skipped as unavailable (:attr:`StatsReport.skipped`);
- a method with no score for a metric is left out of that metric (:attr:`MetricStats.excluded`);
- fewer than 2 methods: no test;
- a method with fewer than 2 scores (paired: fewer than 2 aligned rows): no test;
- identical scores (paper: every score equal; paired: every method equal on every aligned row): no test, since
  nothing can differ;
- with no test, every other method counts as not significantly different from the best (no difference shown).

Normality is not testable (``normal is None``), and the non-parametric branch is taken, when there are fewer
than 3 residuals or every residual is zero (each method's scores constant: Shapiro-Wilk on constant data means
nothing, and ANOVA would divide by a zero within-group variance).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats as ss

from .errors import SRBenchError
from .stats_options import ALPHA, PROTOCOLS, UNITS  # noqa: F401 - part of this module's interface

DEFAULT_DIRECTIONS = {"psnr": "higher", "ssim": "higher", "gmsd": "lower", "lpips": "lower"}
ID_COLUMNS = ("method", "case", "patient", "slice")
SHAPIRO = "Shapiro-Wilk on residuals of score ~ method"


@dataclass
class Normality:
    """Shapiro-Wilk on the residuals of the one-way model; ``normal`` is None when not testable."""

    test: str
    n: int
    statistic: float | None = None
    pvalue: float | None = None
    normal: bool | None = None
    note: str | None = None


@dataclass
class MetricStats:
    """One metric's statistics under one protocol and unit."""

    metric: str
    direction: str  # "higher" or "lower" is better
    protocol: str  # "paper" or "paired"
    unit: str  # "slice" or "volume"
    alpha: float
    n: dict[str, int]  # method -> number of scores tested
    means: dict[str, float]  # method -> mean score
    normality: Normality | None = None  # paper protocol only
    omnibus: str | None = None  # "one-way ANOVA", "Kruskal-Wallis", "Friedman", "Wilcoxon signed-rank"; None: no test
    statistic: float | None = None
    pvalue: float | None = None
    posthoc: str | None = None  # "Tukey HSD", "Dunn (Bonferroni)", "Wilcoxon signed-rank (Holm)"
    pairwise: pd.DataFrame | None = None  # methods x methods adjusted p-values, diagonal 1
    best: str | None = None
    not_different_from_best: list[str] = field(default_factory=list)  # the best itself excluded
    excluded: list[str] = field(default_factory=list)  # methods without any score for this metric
    dropped: int = 0  # paired: rows (slices or volumes) not scored by every method
    note: str | None = None  # why no test was run

    @property
    def tested(self) -> bool:
        return self.omnibus is not None

    @property
    def significant(self) -> bool | None:
        """Whether the omnibus test rejects "all methods alike" at alpha (None: no test)."""
        return None if self.pvalue is None else bool(self.pvalue < self.alpha)

    def to_dict(self) -> dict:
        out = {k: _plain(v) for k, v in self.__dict__.items() if k not in ("pairwise", "normality")}
        nm = self.normality
        out["normality"] = None if nm is None else {k: _plain(v) for k, v in nm.__dict__.items()}
        out["pairwise"] = None if self.pairwise is None else {
            r: {c: _plain(self.pairwise.loc[r, c]) for c in self.pairwise.columns} for r in self.pairwise.index}
        out.update(tested=self.tested, significant=self.significant)
        return out


@dataclass
class StatsReport:
    """Every metric's statistics; metrics without any score are in ``skipped`` (metric -> reason)."""

    protocol: str
    unit: str
    alpha: float
    methods: list[str]
    metrics: dict[str, MetricStats]
    skipped: dict[str, str]

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "unit": self.unit, "alpha": self.alpha, "methods": self.methods,
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()}, "skipped": self.skipped}


def _plain(v):
    """JSON-ready scalars: numpy to Python, NaN/inf to None."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# --- data: unit, metric columns, groups ------------------------------------------------------------------


def metric_columns(scores: pd.DataFrame) -> list[str]:
    """The numeric columns that are not identifiers (method, case, patient, slice)."""
    return [c for c in scores.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(scores[c])]


def per_volume(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per method x case: the mean of each metric over that case's slices (NaN ignored)."""
    _require(scores, ("method", "case"))
    return scores.groupby(["method", "case"], sort=False)[metric_columns(scores)].mean().reset_index()


def _keys(unit: str) -> list[str]:
    return ["case", "slice"] if unit == "slice" else ["case"]


def _unit_frame(scores: pd.DataFrame, unit: str) -> pd.DataFrame:
    if unit not in UNITS:
        raise SRBenchError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    _require(scores, ("method", *_keys("slice")) if unit == "slice" else ("method", "case"))
    return scores if unit == "slice" else per_volume(scores)


def _require(scores: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in scores.columns]
    if missing:
        raise SRBenchError(f"score table lacks column(s) {', '.join(missing)}")


def _groups(data: pd.DataFrame, metric: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """method -> its scores (NaN dropped), in order of appearance; and the methods with no score."""
    groups, excluded = {}, []
    for method in pd.unique(data["method"]):
        values = data.loc[data["method"] == method, metric].dropna().to_numpy(float)
        if len(values):
            groups[method] = values
        else:
            excluded.append(method)
    return groups, excluded


def _aligned(data: pd.DataFrame, metric: str, keys: list[str]) -> tuple[pd.DataFrame, list[str], int]:
    """Rows (keys) x methods, only rows every method scored; methods with no score; rows dropped."""
    series = data.set_index(keys + ["method"])[metric]
    if series.index.duplicated().any():
        first = series.index[series.index.duplicated()][0]
        raise SRBenchError(f"{metric}: {dict(zip(keys + ['method'], first))} is scored more than once")
    wide = series.unstack("method")[list(pd.unique(data["method"]))]
    excluded = [m for m in wide.columns if wide[m].isna().all()]
    wide = wide.drop(columns=excluded)
    full = wide.dropna()
    return full, excluded, len(wide) - len(full)


# --- the protocols ----------------------------------------------------------------------------------------


def paper_protocol(scores: pd.DataFrame, metric: str, direction: str, unit: str = "slice",
                   alpha: float = ALPHA) -> MetricStats:
    """The paper's protocol for one metric: Shapiro-Wilk on the one-way residuals (normal when p > alpha), then
    one-way ANOVA + Tukey HSD if normal, else Kruskal-Wallis + Dunn (Bonferroni)."""
    groups, excluded = _groups(_unit_frame(scores, unit), metric)
    res = _start(metric, direction, "paper", unit, alpha, groups, excluded)
    why = _untestable(groups, paired=False)
    if why:
        return _untested(res, why)
    res.normality = normality(groups, alpha)
    (_anova_tukey if res.normality.normal else _kruskal_dunn)(res, groups)
    return _finish(res)


def paired_protocol(scores: pd.DataFrame, metric: str, direction: str, unit: str = "slice",
                    alpha: float = ALPHA) -> MetricStats:
    """The paired protocol for one metric: rows aligned on (case, slice) (or case), rows not scored by every
    method dropped and counted; Friedman + pairwise Wilcoxon signed-rank with Holm adjustment."""
    wide, excluded, dropped = _aligned(_unit_frame(scores, unit), metric, _keys(unit))
    groups = {m: wide[m].to_numpy(float) for m in wide.columns}
    res = _start(metric, direction, "paired", unit, alpha, groups, excluded)
    res.dropped = dropped
    why = _untestable(groups, paired=True)
    if why:
        return _untested(res, why)
    _friedman_wilcoxon(res, wide)
    return _finish(res)


def normality(groups: dict[str, np.ndarray], alpha: float = ALPHA) -> Normality:
    """Shapiro-Wilk on the residuals of score ~ method (each score minus its method's mean); normal if p > alpha.

    Not testable (``normal`` None) with fewer than 3 residuals or when every residual is zero."""
    residuals = np.concatenate([g - g.mean() for g in groups.values()])
    out = Normality(test=SHAPIRO, n=len(residuals))
    if len(residuals) < 3:
        out.note = f"not testable: {len(residuals)} residuals (Shapiro-Wilk needs 3)"
    elif all(np.ptp(g) == 0 for g in groups.values()):
        out.note = "not testable: every residual is zero (each method's scores are constant)"
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = ss.shapiro(residuals)
        out.statistic, out.pvalue = float(result.statistic), float(result.pvalue)
        out.normal = out.pvalue > alpha
        out.note = "; ".join(str(w.message) for w in caught) or None
    return out


def _anova_tukey(res: MetricStats, groups: dict[str, np.ndarray]) -> None:
    arrays = list(groups.values())
    omnibus = ss.f_oneway(*arrays)
    _omnibus(res, "one-way ANOVA", omnibus.statistic, omnibus.pvalue)
    res.posthoc = "Tukey HSD"
    res.pairwise = _matrix(ss.tukey_hsd(*arrays).pvalue, list(groups))


def _kruskal_dunn(res: MetricStats, groups: dict[str, np.ndarray]) -> None:
    omnibus = ss.kruskal(*groups.values())
    _omnibus(res, "Kruskal-Wallis", omnibus.statistic, omnibus.pvalue)
    res.posthoc = "Dunn (Bonferroni)"
    long = _long(groups)
    p = sp.posthoc_dunn(long, val_col="score", group_col="method", p_adjust="bonferroni")
    res.pairwise = _matrix(p.reindex(index=list(groups), columns=list(groups)).to_numpy(), list(groups))


def _friedman_wilcoxon(res: MetricStats, wide: pd.DataFrame) -> None:
    columns = [wide[m].to_numpy(float) for m in wide.columns]
    if len(columns) >= 3:
        omnibus = ss.friedmanchisquare(*columns)
        _omnibus(res, "Friedman", omnibus.statistic, omnibus.pvalue)
    else:  # Friedman needs 3 methods; with 2 the omnibus question is the one pairwise comparison
        omnibus = ss.wilcoxon(*columns)
        _omnibus(res, "Wilcoxon signed-rank", omnibus.statistic, omnibus.pvalue)
    res.posthoc = "Wilcoxon signed-rank (Holm)"
    # Each method's rows in the same (aligned) order: posthoc_wilcoxon pairs them by position.
    p = sp.posthoc_wilcoxon(_long(dict(zip(wide.columns, columns))), val_col="score", group_col="method",
                            p_adjust="holm", sort=False)
    res.pairwise = _matrix(p.reindex(index=list(wide.columns), columns=list(wide.columns)).to_numpy(),
                           list(wide.columns))


# --- decisions and bookkeeping ----------------------------------------------------------------------------


def _start(metric, direction, protocol, unit, alpha, groups, excluded) -> MetricStats:
    if direction not in ("higher", "lower"):
        raise SRBenchError(f"metric {metric!r}: direction must be 'higher' or 'lower', got {direction!r}")
    means = {m: float(g.mean()) for m, g in groups.items()}
    res = MetricStats(metric=metric, direction=direction, protocol=protocol, unit=unit, alpha=alpha,
                      n={m: int(len(g)) for m, g in groups.items()}, means=means, excluded=list(excluded))
    if means:
        pick = max if direction == "higher" else min
        res.best = pick(means, key=means.get)  # ties: the first method in order
    return res


def _untestable(groups: dict[str, np.ndarray], paired: bool) -> str | None:
    if len(groups) < 2:
        return f"no test: {len(groups)} method(s) with scores (need 2)"
    if min(len(g) for g in groups.values()) < 2:
        rows = "aligned rows" if paired else "scores per method"
        return f"no test: fewer than 2 {rows}"
    if paired:
        stacked = np.vstack(list(groups.values()))
        return "no test: every method scores every aligned row identically" if (stacked == stacked[0]).all() else None
    return "no test: every score is identical" if np.ptp(np.concatenate(list(groups.values()))) == 0 else None


def _untested(res: MetricStats, why: str) -> MetricStats:
    res.note = why
    res.not_different_from_best = [m for m in res.means if m != res.best]
    return res


def _finish(res: MetricStats) -> MetricStats:
    p = res.pairwise
    res.not_different_from_best = [m for m in p.columns if m != res.best and not p.loc[res.best, m] < res.alpha]
    return res


def _omnibus(res: MetricStats, name: str, statistic, pvalue) -> None:
    res.omnibus, res.statistic, res.pvalue = name, float(statistic), float(pvalue)


def _matrix(values, methods: list[str]) -> pd.DataFrame:
    values = np.array(values, dtype=float)  # a copy
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values, index=methods, columns=methods)


def _long(groups: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({"method": np.repeat(list(groups), [len(g) for g in groups.values()]),
                         "score": np.concatenate(list(groups.values()))})


def analyse(scores: pd.DataFrame, directions: dict[str, str] | None = None, protocol: str = "paper",
            unit: str = "slice", alpha: float = ALPHA, metrics: list[str] | None = None) -> StatsReport:
    """Run ``protocol`` ("paper" or "paired") on every metric column of ``scores`` (long format: method, case,
    slice, one column per metric). ``directions``: metric -> "higher"/"lower" (defaults for psnr, ssim, gmsd,
    lpips). NaN-only metrics are skipped as unavailable."""
    if protocol not in PROTOCOLS:
        raise SRBenchError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if not 0 < alpha < 1:
        raise SRBenchError(f"alpha must be between 0 and 1, got {alpha}")
    metrics = list(metrics or metric_columns(scores))
    _require(scores, ("method", *metrics))
    direction = {**DEFAULT_DIRECTIONS, **(directions or {})}
    run = paper_protocol if protocol == "paper" else paired_protocol
    results, skipped = {}, {}
    for metric in metrics:
        if scores[metric].isna().all():
            skipped[metric] = "unavailable: no scores in any run"
            continue
        if metric not in direction:
            raise SRBenchError(f"metric {metric!r}: direction unknown (higher or lower is better?)")
        results[metric] = run(scores, metric, direction[metric], unit, alpha)
    return StatsReport(protocol, unit, alpha, [str(m) for m in pd.unique(scores["method"])], results, skipped)


# --- marks and limits -----------------------------------------------------------------------------------


def not_different_from(res: MetricStats, anchor: str | None) -> list[str]:
    """Methods whose pairwise difference from ``anchor`` (the best, or a reference method such as the proposed
    one in the paper's Table 1) is NOT significant at ``res.alpha``, ``anchor`` excluded. Untested: every other
    method (no difference shown). Empty when ``anchor`` has no scores for this metric."""
    if anchor is None or anchor not in res.means:
        return []
    if res.pairwise is None:
        return [m for m in res.means if m != anchor]
    p = res.pairwise
    return [m for m in p.columns if m != anchor and not p.loc[anchor, m] < res.alpha]


def smallest_attainable_p(protocol: str, methods: int, n: int, unit: str = "slice") -> float | None:
    """The smallest adjusted pairwise p-value the protocol's post-hoc test can give with ``methods`` methods and
    ``n`` units each (None: no useful bound, i.e. a parametric test that can reach any p once n >= 2).

    paired: exact two-sided Wilcoxon signed-rank (scipy's method for n <= 50 without ties), at best 2 / 2^n,
    times the Holm factor of the first step, k(k - 1) / 2. paper: the non-parametric branch, Dunn's z for two
    groups of n with every rank of one below every rank of the other, Bonferroni over k(k - 1) / 2 pairs (the
    ANOVA + Tukey branch has no such floor)."""
    if methods < 2 or n < 1:
        return None
    pairs = methods * (methods - 1) / 2
    if protocol == "paired":
        return min(1.0, pairs * 2.0 / 2.0 ** n) if n <= 50 else None
    total = methods * n
    z = (total - n) / math.sqrt(total * (total + 1) / 12 * (2 / n))
    return min(1.0, pairs * 2 * ss.norm.sf(z))


from .callable_module import make_callable  # noqa: E402 - srbench.stats(...) calls srbench.api.stats

make_callable(__name__, "srbench.api:stats")
