"""The statistics of the validation study, implemented with NumPy/SciPy and checked against scikit-learn, SciPy
and the published DeLong example of the R package pROC (see tests/reports/test_study_statistics.py).

Correlation
    Pearson r and Spearman r_s (Pearson r of average ranks), two-sided p-values from Student's t with n - 2
    degrees of freedom (as SciPy), 95 % confidence intervals by Fisher's z transformation: standard error
    1/sqrt(n - 3) for Pearson (Fisher 1921), sqrt(1.06/(n - 3)) for Spearman (Fieller, Hartley & Pearson,
    Biometrika 1957;44:470-481).

ROC
    Empirical ROC curve at every distinct score (as ``sklearn.metrics.roc_curve(drop_intermediate=False)``); the
    area under it equals the Mann-Whitney statistic with ties counted one half.

DeLong
    Variance and covariance of correlated AUCs by DeLong, DeLong & Clarke-Pearson (Biometrics 1988;44:837-845),
    computed with the midrank algorithm of Sun & Xu (IEEE Signal Process Lett 2014;21(11):1389-1393). Confidence
    interval AUC +- z * SE, clipped to [0, 1] (as pROC ``ci.auc``); paired test of two AUCs
    z = (A1 - A2) / sqrt(V1 + V2 - 2 C12) (as pROC ``roc.test(method="delong")``).

Cut-off
    The Youden index J = sensitivity + specificity - 1 (Youden, Cancer 1950;3:32-35) over all empirical
    cut-offs; ties go to the higher sensitivity (a screening test). Sensitivity and specificity with Wilson score
    intervals (Wilson, JASA 1927;22:209-212).

Direction: in this study *low* SMI indicates low muscle mass, so ROC functions that take ``low_is_positive``
score ``-value``; everything else follows the usual convention "higher score = positive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "CorrelationResult",
    "DeLongResult",
    "Descriptive",
    "LinearFit",
    "PairedTest",
    "RocCurve",
    "YoudenPoint",
    "auc_confidence_interval",
    "delong",
    "delong_paired_test",
    "describe",
    "linear_fit",
    "pearson",
    "roc_curve",
    "spearman",
    "trapezoid_auc",
    "wilson_interval",
    "youden",
]

Z_95 = float(stats.norm.ppf(0.975))


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level} must be between 0 and 1")
    return float(stats.norm.ppf(0.5 + level / 2))


# --- descriptive -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptive:
    n: int
    mean: float | None
    sd: float | None
    """Sample standard deviation (n - 1)."""

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return "n/a"
        sd = "n/a" if self.sd is None else f"{self.sd:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {sd}"


def describe(values: Sequence[float] | np.ndarray) -> Descriptive:
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Descriptive(0, None, None)
    return Descriptive(n, float(x.mean()), float(x.std(ddof=1)) if n > 1 else None)


# --- correlation -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationResult:
    method: str
    """``pearson`` or ``spearman``."""
    n: int
    r: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    level: float = 0.95
    note: str = ""


def _pearson_r(x: np.ndarray, y: np.ndarray) -> float | None:
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0:
        return None
    return float(np.clip(float(dx @ dy) / denominator, -1.0, 1.0))


def _t_p_value(r: float, n: int) -> float:
    if abs(r) >= 1.0:
        return 0.0
    t = r * math.sqrt((n - 2) / (1.0 - r * r))
    return float(2.0 * stats.t.sf(abs(t), n - 2))


def _fisher_ci(r: float, n: int, se_factor: float, level: float) -> tuple[float | None, float | None]:
    if n < 4:
        return None, None
    if abs(r) >= 1.0:
        return r, r
    z = math.atanh(r)
    half = _z(level) * math.sqrt(se_factor / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def _correlation(method: str, x: np.ndarray, y: np.ndarray, se_factor: float, level: float) -> CorrelationResult:
    n = int(x.size)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D arrays of the same length")
    if n < 3:
        return CorrelationResult(method, n, None, None, None, None, level, "fewer than 3 pairs")
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    r = _pearson_r(x, y)
    if r is None:
        return CorrelationResult(method, n, None, None, None, None, level, "a variable is constant")
    low, high = _fisher_ci(r, n, se_factor, level)
    note = "" if low is not None else "fewer than 4 pairs: no confidence interval"
    return CorrelationResult(method, n, r, _t_p_value(r, n), low, high, level, note)


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
            level: float = 0.95) -> CorrelationResult:
    """Pearson's r, t-test p-value, Fisher-z confidence interval (SE = 1/sqrt(n-3))."""
    return _correlation("pearson", np.asarray(x, float), np.asarray(y, float), 1.0, level)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
             level: float = 0.95) -> CorrelationResult:
    """Spearman's r_s (average ranks for ties), t-approximation p-value, Fisher-z interval with the
    Fieller-Hartley-Pearson standard error sqrt(1.06/(n-3))."""
    return _correlation("spearman", np.asarray(x, float), np.asarray(y, float), 1.06, level)


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares y = intercept + slope * x."""

    slope: float
    intercept: float
    r_squared: float
    n: int


def linear_fit(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LinearFit | None:
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if xa.size < 2 or float(np.ptp(xa)) == 0:
        return None
    dx = xa - xa.mean()
    slope = float(dx @ (ya - ya.mean()) / (dx @ dx))
    intercept = float(ya.mean() - slope * xa.mean())
    residual = ya - (intercept + slope * xa)
    total = float(((ya - ya.mean()) ** 2).sum())
    r2 = 1.0 - float(residual @ residual) / total if total > 0 else 1.0
    return LinearFit(slope, intercept, r2, int(xa.size))


# --- ROC -------------------------------------------------------------------------------------------------------


def _labels_and_scores(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                       low_is_positive: bool) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError("labels and scores must be 1-D arrays of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(bool), (-s if low_is_positive else s)


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC curve: the point i classifies ``score >= thresholds[i]`` as positive (on the original
    scale with ``low_is_positive``: ``value <= values[i]``)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    """On the scoring scale (``-value`` when low is positive); the first is +inf (nothing positive)."""
    n_positive: int
    n_negative: int
    low_is_positive: bool

    @property
    def values(self) -> np.ndarray:
        """The thresholds on the original scale of the measurement."""
        return -self.thresholds if self.low_is_positive else self.thresholds


def roc_curve(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, *,
              low_is_positive: bool = False) -> RocCurve:
    """The ROC curve at every distinct score (no intermediate point dropped)."""
    y, s = _labels_and_scores(labels, scores, low_is_positive)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve needs at least one positive and one negative")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last_of_tie]]
    return RocCurve(fpr, tpr, thresholds, n_pos, n_neg, low_is_positive)


def trapezoid_auc(curve: RocCurve) -> float:
    """Area under the empirical ROC curve by the trapezoidal rule."""
    dx = np.diff(curve.fpr)
    return float((dx * (curve.tpr[1:] + curve.tpr[:-1]) / 2.0).sum())


# --- DeLong ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeLongResult:
    """AUCs of k predictors on the same subjects and their DeLong covariance matrix."""

    aucs: np.ndarray
    covariance: np.ndarray
    n_positive: int
    n_negative: int

    def variance(self, i: int = 0) -> float:
        return float(self.covariance[i, i])

    def se(self, i: int = 0) -> float:
        return math.sqrt(max(self.variance(i), 0.0))


def delong(labels: Sequence[int] | np.ndarray, predictors: Sequence[Sequence[float]] | np.ndarray, *,
           low_is_positive: bool = False) -> DeLongResult:
    """AUCs and their DeLong covariance, by the midrank algorithm of Sun & Xu (2014).

    `predictors` is ``(k, n)`` (or one predictor of length n). With m positives and n negatives, for predictor r:
    V10_i (each positive: share of negatives scored lower, ties 1/2) = (Tz_i - Tx_i) / n and
    V01_j (each negative: share of positives scored higher) = 1 - (Tz_j - Ty_j) / m, where Tz are midranks in
    the pooled sample and Tx, Ty midranks within each class; AUC = mean(V10); S = S10/m + S01/n with S10, S01
    the sample covariance matrices (n - 1) of the V10 and V01 components.
    """
    y = np.asarray(labels)
    p = np.atleast_2d(np.asarray(predictors, dtype=float))
    if p.shape[1] != y.size:
        raise ValueError(f"predictors of shape {p.shape} do not match {y.size} labels")
    scored = [_labels_and_scores(y, row, low_is_positive) for row in p]
    positive = scored[0][0]
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's variance needs at least two positives and two negatives")
    k = len(scored)
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    for r, (_, s) in enumerate(scored):
        x_scores, y_scores = s[positive], s[~positive]
        tx = stats.rankdata(x_scores)
        ty = stats.rankdata(y_scores)
        tz = stats.rankdata(np.r_[x_scores, y_scores])
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return DeLongResult(aucs, s10 / m + s01 / n, m, n)


def auc_confidence_interval(auc: float, variance: float, level: float = 0.95) -> tuple[float, float]:
    """AUC +- z * sqrt(variance), clipped to [0, 1]."""
    half = _z(level) * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


@dataclass(frozen=True)
class PairedTest:
    """DeLong's test of two correlated AUCs (difference first - second)."""

    auc_1: float
    auc_2: float
    difference: float
    se: float
    z: float | None
    p_value: float
    ci_low: float
    ci_high: float
    level: float = 0.95


def delong_paired_test(result: DeLongResult, i: int = 0, j: int = 1, level: float = 0.95) -> PairedTest:
    """z = (A_i - A_j) / sqrt(V_i + V_j - 2 C_ij); two-sided p from the normal distribution."""
    a1, a2 = float(result.aucs[i]), float(result.aucs[j])
    c = result.covariance
    variance = float(c[i, i] + c[j, j] - 2.0 * c[i, j])
    difference = a1 - a2
    se = math.sqrt(max(variance, 0.0))
    if se == 0.0:
        # Identical curves (or no variation): no evidence of a difference, as pROC reports (Z = 0, p = 1).
        z = 0.0 if difference == 0.0 else None
        p = 1.0 if difference == 0.0 else 0.0
        return PairedTest(a1, a2, difference, 0.0, z, p, difference, difference, level)
    z = difference / se
    half = _z(level) * se
    return PairedTest(a1, a2, difference, se, z, float(2.0 * stats.norm.sf(abs(z))), difference - half,
                      difference + half, level)


# --- cut-off ---------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion."""
    if total <= 0:
        return None
    z = _z(level)
    p = successes / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class YoudenPoint:
    """The cut-off maximising Youden's J, on the original scale of the measurement."""

    cutoff: float
    """With ``low_is_positive``: positive when ``value < cutoff`` (midway between the highest value called
    positive and the next higher observed value); otherwise positive when ``value > cutoff``."""
    sensitivity: float
    specificity: float
    youden_j: float
    true_positive: int
    false_negative: int
    true_negative: int
    false_positive: int
    sensitivity_ci: tuple[float, float] | None
    specificity_ci: tuple[float, float] | None
    curve_index: int
    """The point of the `RocCurve` it corresponds to."""


def youden(labels: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, *,
           low_is_positive: bool = True, level: float = 0.95) -> YoudenPoint | None:
    """The empirical cut-off with the largest J = sensitivity + specificity - 1; ``None`` when no cut-off does
    better than chance (J <= 0).

    Among cut-offs with the same J the one with the higher sensitivity is chosen. The cut-off lies midway
    between two adjacent observed values, so that "value < cutoff" (the node's screening rule) reproduces
    exactly the sensitivity and specificity reported here.
    """
    curve = roc_curve(labels, values, low_is_positive=low_is_positive)
    j = curve.tpr - curve.fpr
    # Exclude the two trivial corners (nothing / everything positive); they have J = 0.
    inner = np.arange(1, j.size - 1)
    if inner.size == 0:
        return None
    best = float(j[inner].max())
    if best <= 0:
        return None
    candidates = inner[np.isclose(j[inner], best, rtol=0, atol=1e-12)]
    index = int(candidates[np.argmax(curve.tpr[candidates])])
    here, beyond = float(curve.values[index]), float(curve.values[index + 1])
    cutoff = (here + beyond) / 2.0
    tp = round(curve.tpr[index] * curve.n_positive)
    fp = round(curve.fpr[index] * curve.n_negative)
    fn, tn = curve.n_positive - tp, curve.n_negative - fp
    return YoudenPoint(cutoff, float(curve.tpr[index]), 1.0 - float(curve.fpr[index]), best, tp, fn, tn, fp,
                       wilson_interval(tp, curve.n_positive, level), wilson_interval(tn, curve.n_negative, level),
                       index)
