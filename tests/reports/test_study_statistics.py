"""The validation study's statistics against scikit-learn, SciPy, brute force, and published reference values.

DeLong reference: the aSAH data set of the R package pROC (Robin X, Turck N, Hainard A, et al. pROC: an
open-source package for R and S+ to analyze and compare ROC curves. BMC Bioinformatics 2011;12:77), 113 patients
with aneurysmal subarachnoid haemorrhage, outcome "Poor" (41) vs "Good" (72), from Turck N, Vutskits L,
Sanchez-Pena P, et al. A multiparameter panel method for outcome prediction following aneurysmal subarachnoid
hemorrhage. Intensive Care Med 2010;36(1):107-115. The three predictors are embedded below in the data set's row
order (wfns: WFNS grade 1-5 as a number; s100b: S100B, ug/l; ndka: NDKA, ng/ml); checked against pROC's own
per-patient DeLong placements (tests/testthat/helper-deLongPlacementsCpp-expected.R in github.com/xrobin/pROC).

Published values reproduced:

* pROC documentation of ``roc.test`` (example ``roc.test(roc(aSAH$outcome, aSAH$s100b),
  roc(aSAH$outcome, aSAH$wfns))``): "DeLong's test for two correlated ROC curves: Z = -2.209, p-value = 0.02718",
  AUCs 0.7314 and 0.8237;
* pROC ``ci.auc`` of s100b: "95% CI: 0.6301-0.8326 (DeLong)", ``var`` 0.002668682 (also Stata ``roctab``:
  area 0.7314, std. err. 0.0517, 95% CI 0.63012-0.83262);
* pROC's test suite (tests/testthat/test-roc.test.R and test-cov.R): roc.test Z, p and CI of the difference for
  the three pairs and the three DeLong covariances, printed to 15 significant digits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from sarcoscreen.reports.study.statistics import (
    auc_confidence_interval,
    delong,
    delong_paired_test,
    describe,
    linear_fit,
    pearson,
    roc_curve,
    spearman,
    trapezoid_auc,
    wilson_interval,
    youden,
)

# --- the aSAH data (pROC), row order of the data set ----------------------------------------------------------

ASAH_POOR = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0,
]
ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2, 1, 1, 3, 4, 2, 1, 4, 5, 4, 1,
    4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1, 2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4, 5, 2, 4, 4, 1, 4, 1, 2,
    1, 4, 2, 1, 2, 3, 2, 4, 2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2, 2, 5, 5, 5, 2, 4, 4, 5, 1, 1, 1,
]
ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71, 0.04, 0.08, 0.49, 0.04, 0.07,
    0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48,
    0.09, 0.96, 0.25, 0.5, 0.46, 0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1,
    0.14, 0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09, 0.27, 0.71, 0.08, 0.26, 0.08,
    0.16, 0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15,
    0.08, 0.14, 0.1, 0.07, 0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5, 0.48,
]
ASAH_NDKA = [
    3.01, 8.54, 8.09, 10.42, 17.4, 12.75, 6.0, 13.2, 15.54, 6.01, 15.96, 17.86, 5.18, 8.9, 13.41, 20.75, 11.6,
    16.11, 32.37, 54.82, 32.41, 49.94, 40.34, 9.47, 6.29, 12.53, 6.54, 6.3, 80.3, 12.8, 9.8, 9.81, 9.85, 18.21,
    5.03, 14.04, 21.93, 8.02, 7.42, 8.38, 6.59, 9.63, 13.12, 7.96, 14.34, 41.43, 7.63, 7.06, 12.59, 13.56, 3.87,
    9.44, 7.66, 12.98, 419.19, 27.19, 22.27, 9.95, 21.22, 11.73, 10.4, 58.83, 6.39, 11.09, 12.22, 13.67, 17.21,
    22.63, 12.9, 9.7, 21.57, 8.23, 72.57, 15.54, 10.51, 10.6, 14.57, 5.19, 9.63, 4.61, 21.48, 17.3, 12.71, 9.44,
    11.07, 19.46, 10.83, 5.37, 11.97, 7.75, 9.83, 10.55, 28.49, 8.53, 12.57, 12.9, 46.83, 11.68, 12.67, 9.01, 9.57,
    34.06, 11.72, 14.26, 47.61, 11.67, 24.58, 10.33, 13.87, 15.89, 22.43, 6.79, 13.45,
]


@pytest.fixture(scope="module")
def asah() -> object:
    """DeLong on (wfns, s100b, ndka), in pROC's order of the test suite's r.wfns, r.s100b, r.ndka."""
    assert (len(ASAH_POOR), sum(ASAH_POOR), len(ASAH_WFNS), len(ASAH_S100B), len(ASAH_NDKA)) == (113, 41, 113, 113,
                                                                                               113)
    return delong(ASAH_POOR, [ASAH_WFNS, ASAH_S100B, ASAH_NDKA])


def test_delong_reproduces_the_proc_documentation_example(asah: object) -> None:
    # roc.test(roc1 = s100b, roc2 = wfns): "Z = -2.209, p-value = 0.02718"; AUC of roc1 0.7314, roc2 0.8237.
    test = delong_paired_test(asah, 1, 0)  # type: ignore[arg-type]
    assert round(test.z, 3) == -2.209
    assert round(test.p_value, 5) == 0.02718
    assert (round(test.auc_1, 4), round(test.auc_2, 4)) == (0.7314, 0.8237)
    # ci.auc(s100b): "95% CI: 0.6301-0.8326 (DeLong)"; var() 0.002668682; Stata roctab std. err. 0.0517.
    variance = asah.variance(1)  # type: ignore[attr-defined]
    low, high = auc_confidence_interval(float(asah.aucs[1]), variance)  # type: ignore[attr-defined]
    assert (round(low, 4), round(high, 4)) == (0.6301, 0.8326)
    assert round(variance, 9) == 0.002668682
    assert round(math.sqrt(variance), 4) == 0.0517


def test_delong_reproduces_proc_test_suite_values(asah: object) -> None:
    aucs, cov = asah.aucs, asah.covariance  # type: ignore[attr-defined]
    # AUCs (theta of the placements in pROC's helper-deLongPlacementsCpp-expected.R).
    np.testing.assert_allclose(aucs, [0.823678861788618, 0.731368563685637, 0.611957994579946], rtol=1e-12)
    # test-cov.R: cov(r.wfns, r.ndka), cov(r.ndka, r.s100b), cov(r.s100b, r.wfns).
    assert cov[0, 2] == pytest.approx(-0.000532967856762438, rel=1e-12)
    assert cov[2, 1] == pytest.approx(-0.000756164938056579, rel=1e-12)
    assert cov[1, 0] == pytest.approx(0.00119615567376754, rel=1e-12)
    # test-roc.test.R: t1 = roc.test(r.wfns, r.s100b), t2 = (r.wfns, r.ndka), t3 = (r.ndka, r.s100b).
    expected = {
        (0, 1): (2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        (0, 2): (2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        (2, 1): (-1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    }
    for (i, j), (z, p, low, high) in expected.items():
        test = delong_paired_test(asah, i, j)  # type: ignore[arg-type]
        assert test.z == pytest.approx(z, rel=1e-12)
        assert test.p_value == pytest.approx(p, rel=1e-10)
        assert (test.ci_low, test.ci_high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
        reverse = delong_paired_test(asah, j, i)  # type: ignore[arg-type]
        assert reverse.z == pytest.approx(-z, rel=1e-12)
        assert reverse.p_value == pytest.approx(p, rel=1e-10)


def test_delong_identical_curves_give_z_zero_and_p_one() -> None:
    result = delong(ASAH_POOR, [ASAH_WFNS, ASAH_WFNS])
    test = delong_paired_test(result)
    assert (test.z, test.p_value, test.difference) == (0.0, 1.0, 0.0)


def _brute_force(labels: np.ndarray, predictors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong 1988 from its definition: psi(X, Y) = 1, 1/2, 0; O(m n) structural components."""
    positive = labels == 1
    v10, v01 = [], []
    for p in predictors:
        x, y = p[positive], p[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = positive.sum(), (~positive).sum()
    return np.array([v.mean() for v in v10]), np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_the_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=90) < 0.35).astype(int)
    a = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties within and across classes
    b = np.round(0.6 * a + rng.normal(0, 0.7, 90), 1)
    c = rng.integers(0, 4, 90).astype(float)
    result = delong(labels, [a, b, c])
    aucs, cov = _brute_force(labels, np.array([a, b, c]))
    np.testing.assert_allclose(result.aucs, aucs, atol=1e-13)
    np.testing.assert_allclose(result.covariance, cov, rtol=1e-10, atol=1e-16)
    for i, predictor in enumerate((a, b, c)):
        assert result.aucs[i] == pytest.approx(roc_auc_score(labels, predictor), abs=1e-13)


def test_delong_refuses_a_class_with_fewer_than_two() -> None:
    with pytest.raises(ValueError, match="two positives and two negatives"):
        delong([1, 0, 0, 0], [0.3, 0.1, 0.2, 0.4])
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        delong([2, 0, 1, 1], [0.3, 0.1, 0.2, 0.4])


# --- ROC against scikit-learn --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_roc_curve_and_auc_agree_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=70) < 0.4).astype(int)
    scores = np.round(rng.normal(labels, 1.0), 1 if seed % 2 else 6)
    ours = roc_curve(labels, scores)
    fpr, tpr, thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(ours.fpr, fpr)
    np.testing.assert_allclose(ours.tpr, tpr)
    np.testing.assert_allclose(ours.thresholds[1:], thresholds[1:])
    assert trapezoid_auc(ours) == pytest.approx(roc_auc_score(labels, scores), abs=1e-13)
    # "Low is positive" is the ROC of the negated scores (SMI: lower means low muscle mass).
    low = roc_curve(labels, -scores, low_is_positive=True)
    np.testing.assert_allclose(low.fpr, fpr)
    np.testing.assert_allclose(low.tpr, tpr)
    np.testing.assert_allclose(low.values[1:], -thresholds[1:])
    assert float(delong(labels, -scores, low_is_positive=True).aucs[0]) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-13)


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        roc_curve([1, 1, 1], [0.2, 0.3, 0.4])


# --- Youden --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_youden_cutoff_is_the_best_of_all_cutoffs_and_reproduces_its_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=60) < 0.4).astype(int)
    smi = np.round(rng.normal(1.6 - 0.4 * labels, 0.25), 2)  # low SMI = low muscle mass; ties by rounding
    point = youden(labels, smi, low_is_positive=True)
    assert point is not None
    # Brute force over every cut-off between observed values: the node's rule is "SMI < cut-off".
    values = np.unique(smi)
    candidates = np.r_[(values[:-1] + values[1:]) / 2]
    best = max((smi[labels == 1] < c).mean() + (smi[labels == 0] >= c).mean() - 1 for c in candidates)
    assert point.youden_j == pytest.approx(best, abs=1e-12)
    suspected = smi < point.cutoff
    assert point.true_positive == int((suspected & (labels == 1)).sum())
    assert point.false_positive == int((suspected & (labels == 0)).sum())
    assert point.sensitivity == pytest.approx(point.true_positive / labels.sum())
    assert point.specificity == pytest.approx(point.true_negative / (labels == 0).sum())
    assert not np.isclose(smi, point.cutoff).any()  # never on an observed value
    ties = [c for c in candidates
            if np.isclose((smi[labels == 1] < c).mean() + (smi[labels == 0] >= c).mean() - 1, best, atol=1e-12)]
    assert point.sensitivity == pytest.approx(max((smi[labels == 1] < c).mean() for c in ties))


def test_youden_prefers_sensitivity_among_equal_j_and_refuses_uninformative_markers() -> None:
    labels = [1, 1, 0, 1, 0, 0]
    smi = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    point = youden(labels, smi, low_is_positive=True)
    # Cut-offs 2.5 (Se 2/3, Sp 1) and 4.5 (Se 1, Sp 2/3) both give J = 2/3: the sensitive one wins.
    assert point is not None
    assert point.cutoff == pytest.approx(4.5)
    assert (point.sensitivity, point.specificity) == (pytest.approx(1.0), pytest.approx(2 / 3))
    # A marker that runs the wrong way has no cut-off better than chance.
    assert youden([1, 1, 0, 0], [5.0, 6.0, 1.0, 2.0], low_is_positive=True) is None


def test_wilson_interval_reproduces_newcombe_1998() -> None:
    # Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven methods.
    # Stat Med 1998;17:857-872, Table I, method 3 (score interval without continuity correction).
    published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                 (1, 29): (0.0061, 0.1718)}
    for (x, n), (low, high) in published.items():
        interval = wilson_interval(x, n)
        assert interval is not None
        assert (round(interval[0], 4), round(interval[1], 4)) == (low, high)


# --- correlation against SciPy -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_and_spearman_agree_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(8, 2, 40)
    y = 1.5 + 1.05 * x + rng.normal(0, 1.2 + seed, 40)
    if seed == 2:
        x = np.round(x)  # ties for the ranks
    ours_p, ours_s = pearson(x, y), spearman(x, y)
    reference_p = stats.pearsonr(x, y)
    reference_s = stats.spearmanr(x, y)
    assert ours_p.r == pytest.approx(reference_p.statistic, abs=1e-12)
    assert ours_p.p_value == pytest.approx(reference_p.pvalue, rel=1e-8)
    ci = reference_p.confidence_interval(0.95)
    assert (ours_p.ci_low, ours_p.ci_high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert ours_s.r == pytest.approx(reference_s.statistic, abs=1e-12)
    assert ours_s.p_value == pytest.approx(reference_s.pvalue, rel=1e-8)
    # Spearman's interval: Fisher z with the Fieller-Hartley-Pearson standard error sqrt(1.06 / (n - 3)).
    z, half = math.atanh(ours_s.r), 1.959963984540054 * math.sqrt(1.06 / 37)
    assert (ours_s.ci_low, ours_s.ci_high) == (pytest.approx(math.tanh(z - half)), pytest.approx(math.tanh(z + half)))
    assert ours_s.ci_low < ours_s.r < ours_s.ci_high


def test_correlation_edge_cases() -> None:
    assert spearman([1.0, 2.0], [2.0, 1.0]).r is None  # fewer than 3 pairs
    assert pearson([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]).note == "a variable is constant"
    perfect = spearman([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0])
    assert (perfect.r, perfect.p_value, perfect.ci_low, perfect.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_linear_fit_and_describe() -> None:
    fit = linear_fit([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])
    assert fit is not None
    assert (fit.slope, fit.intercept, fit.r_squared) == (pytest.approx(2.0), pytest.approx(1.0), pytest.approx(1.0))
    assert linear_fit([1.0, 1.0], [2.0, 3.0]) is None
    d = describe([1.0, 2.0, 3.0, 4.0])
    assert (d.n, d.mean, d.sd) == (4, 2.5, pytest.approx(np.std([1, 2, 3, 4], ddof=1)))
    assert d.text() == "2.50 ± 1.29"
    assert describe([]).text() == "n/a"
