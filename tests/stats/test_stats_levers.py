"""stats.levers against by-hand numpy/scipy, statsmodels and the NRR identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats import proportion as sm_proportion

from stats.levers import (
    GuardrailSpec,
    LeverFigure,
    Proportions,
    guardrail,
    lever_figures,
    two_proportions,
)
from stats.moments import Moments


def moments(rows) -> Moments:
    return Moments.from_arrays(
        {
            "start": rows.start,
            "expansion": rows.expansion,
            "contraction": rows.contraction,
            "churned": rows.churned,
        }
    )


def by_hand(rows_c, rows_t, part, alpha):
    """Delta method + Welch for one lever, written out with numpy and scipy.stats.t."""

    def x_of(rows):
        if part == "grr":
            return rows.start - rows.contraction - rows.churned
        return {
            "expansion": rows.expansion,
            "contraction": rows.contraction,
            "churn": rows.churned,
        }[part]

    def arm(rows):
        x, y = x_of(rows), rows.start
        r = x.sum() / y.sum()
        v = np.var(x - r * y, ddof=1) / (len(y) * y.mean() ** 2)
        return r, v, len(y)

    (rc, vc, nc), (rt, vt, nt) = arm(rows_c), arm(rows_t)
    diff, var = rt - rc, vt + vc
    df = var**2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
    se = math.sqrt(var)
    q = sps.t.ppf(1 - alpha / 2, df)
    return rc, rt, diff, (diff - q * se, diff + q * se), 2 * sps.t.sf(abs(diff) / se, df), df


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_levers_equal_the_by_hand_delta_method_and_welch(make_rows, alpha):
    rows_c = make_rows(21, 900)
    rows_t = make_rows(22, 700, lift=0.03, churn_rate=0.04)
    figures = lever_figures(moments(rows_c), moments(rows_t), alpha=alpha)
    assert list(figures) == ["expansion", "contraction", "churn", "grr"]
    for part, figure in figures.items():
        rc, rt, diff, ci, p, df = by_hand(rows_c, rows_t, part, alpha)
        assert figure.control == pytest.approx(rc, rel=1e-12)
        assert figure.treatment == pytest.approx(rt, rel=1e-12)
        assert figure.uplift_abs == pytest.approx(diff, rel=1e-10, abs=1e-14)
        assert figure.ci_abs == pytest.approx(ci, rel=1e-9)
        assert figure.p_value == pytest.approx(p, rel=1e-8)
        assert figure.df == pytest.approx(df, rel=1e-9)
        assert figure.to_dict()["ci_abs"] == list(figure.ci_abs)


def test_levers_pool_over_chunks(make_rows):
    rows_c, rows_t = make_rows(31, 600), make_rows(32, 600, lift=0.02)
    whole = lever_figures(moments(rows_c), moments(rows_t), alpha=0.05)
    halves = [
        Moments.from_arrays(
            {k: getattr(rows_c, k)[s] for k in ("start", "expansion", "contraction", "churned")}
        )
        for s in (slice(0, 250), slice(250, None))
    ]
    pooled = lever_figures(halves[0] + halves[1], moments(rows_t), alpha=0.05)
    for part in whole:
        assert pooled[part].p_value == pytest.approx(whole[part].p_value, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_c=st.integers(2, 60),
    n_t=st.integers(2, 60),
    lift=st.floats(-0.2, 0.3),
)
def test_nrr_uplift_is_expansion_minus_contraction_minus_churn(make_rows, seed, n_c, n_t, lift):
    rng = np.random.default_rng(seed)
    rows_c, rows_t = make_rows(rng, n_c), make_rows(rng, n_t, lift=max(lift, 0.0))
    figures = lever_figures(moments(rows_c), moments(rows_t), alpha=0.05)
    # the NRR uplift computed independently, as differences of Σend/Σstart
    nrr_uplift = rows_t.end.sum() / rows_t.start.sum() - rows_c.end.sum() / rows_c.start.sum()
    parts = (
        figures["expansion"].uplift_abs
        - figures["contraction"].uplift_abs
        - figures["churn"].uplift_abs
    )
    assert parts == pytest.approx(nrr_uplift, abs=1e-12)
    assert figures["grr"].uplift_abs == pytest.approx(
        -figures["contraction"].uplift_abs - figures["churn"].uplift_abs, abs=1e-12
    )


def test_zero_variance_lever_has_no_interval_or_p_value(make_rows):
    rows_c, rows_t = make_rows(41, 200, expansion_rate=0.0), make_rows(42, 200, expansion_rate=0.0)
    figures = lever_figures(moments(rows_c), moments(rows_t), alpha=0.05)
    expansion = figures["expansion"]
    assert (expansion.control, expansion.treatment, expansion.uplift_abs) == (0.0, 0.0, 0.0)
    assert expansion.ci_abs == (None, None) and expansion.p_value is None
    assert figures["churn"].p_value is not None


def test_empty_and_single_account_arms():
    one = Moments.from_arrays(
        {"start": [100.0], "expansion": [10.0], "contraction": [0.0], "churned": [0.0]}
    )
    figures = lever_figures(Moments.empty(), one, alpha=0.05)
    assert figures["expansion"] == LeverFigure(None, 0.1, None, (None, None), None, None, None)
    figures = lever_figures(one, one, alpha=0.05)
    assert figures["expansion"].uplift_abs == 0.0 and figures["expansion"].p_value is None
    with pytest.raises(ValueError, match="alpha"):
        lever_figures(one, one, alpha=5)


@pytest.mark.parametrize(
    ("count_c", "n_c", "count_t", "n_t"),
    [(60, 1000, 41, 1000), (3, 40, 9, 55), (0, 30, 4, 25), (120, 800, 120, 800)],
)
def test_two_proportions_equals_statsmodels_wald(count_c, n_c, count_t, n_t):
    result = two_proportions(count_c, n_c, count_t, n_t)
    # statsmodels: unpooled Wald z for the difference (first sample = treatment)
    with np.errstate(divide="ignore"):  # statsmodels also forms the ratio p1/p2
        reference = sm_proportion.test_proportions_2indep(
            count_t, n_t, count_c, n_c, method="wald", compare="diff", correction=False
        )
    assert result.diff == pytest.approx(reference.diff, abs=1e-15)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    se = math.sqrt(
        count_c / n_c * (1 - count_c / n_c) / n_c + count_t / n_t * (1 - count_t / n_t) / n_t
    )
    assert result.se == pytest.approx(se, rel=1e-12)


def test_two_proportions_degenerate_and_bad_counts():
    assert two_proportions(0, 50, 0, 60) == Proportions(0.0, 0.0, 0.0, None, None)
    assert two_proportions(0, 0, 1, 10).diff is None
    with pytest.raises(ValueError, match="treatment count 11 exceeds its 10 accounts"):
        two_proportions(0, 10, 11, 10)
    with pytest.raises(ValueError, match="count_c must be a whole number"):
        two_proportions(-1, 10, 1, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grr", "must look like 'grr:0.01'"),
        ("grr:abc", "margin 'abc' is not a number"),
        ("nps:0.01", "metric must be grr or logo_churn; got 'nps'"),
        ("grr:1", "a fraction between 0 and 1"),
        ("grr:-0.01", "a fraction between 0 and 1"),
        ("grr:nan", "a fraction between 0 and 1"),
        ("gr\x00r:0.01", "metric must be grr or logo_churn"),
    ],
)
def test_guardrail_spec_parse_errors_are_specific(text, message):
    with pytest.raises(ValueError, match=message):
        GuardrailSpec.parse(text)


def test_guardrail_spec_parse_accepts_spacing_and_case():
    assert GuardrailSpec.parse(" Logo_Churn : 0.005 ") == GuardrailSpec("logo_churn", 0.005)
    assert GuardrailSpec.parse("grr:0.01").to_dict() == {"metric": "grr", "margin": 0.01}


def _grr(diff, se, df):
    return LeverFigure(0.9, 0.9 + diff, diff, (None, None), None, se, df)


def _churn(diff, se):
    return Proportions(0.05, 0.05 + diff, diff, None, se)


@settings(max_examples=150, deadline=None)
@given(
    diff=st.floats(-0.05, 0.05),
    se=st.floats(1e-4, 0.03),
    df=st.floats(3, 5000),
    margin=st.floats(0.001, 0.05),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_guardrail_pass_exactly_when_p_below_alpha(diff, se, df, margin, alpha):
    spec_g, spec_c = GuardrailSpec("grr", margin), GuardrailSpec("logo_churn", margin)
    churn = _churn(diff, se)
    g = guardrail(spec_g, grr=_grr(diff, se, df), logo_churn=churn, alpha=alpha)
    c = guardrail(spec_c, grr=_grr(diff, se, df), logo_churn=churn, alpha=alpha)
    # p-values by hand with scipy.stats
    assert g.p_value == pytest.approx(sps.t.sf((diff + margin) / se, df), rel=1e-9, abs=1e-300)
    assert c.p_value == pytest.approx(sps.norm.sf((margin - diff) / se), rel=1e-9, abs=1e-300)
    for result in (g, c):
        if abs(result.p_value - alpha) > 1e-9:
            assert (result.status == "pass") == (result.p_value < alpha)
    # fail ⟺ the opposite one-sided test rejects: the whole interval is beyond the margin
    if abs(sps.t.sf((-margin - diff) / se, df) - alpha) > 1e-9:
        assert (g.status == "fail") == (sps.t.sf((-margin - diff) / se, df) < alpha)
    if abs(sps.norm.sf((diff - margin) / se) - alpha) > 1e-9:
        assert (c.status == "fail") == (sps.norm.sf((diff - margin) / se) < alpha)


def test_guardrail_status_at_the_boundaries():
    alpha, m, se, df = 0.05, 0.01, 0.004, 200
    t = sps.t.ppf(1 - alpha, df)
    spec = GuardrailSpec("grr", m)
    churn = _churn(0.0, 0.01)
    eps = 1e-9

    def status(diff):
        return guardrail(spec, grr=_grr(diff, se, df), logo_churn=churn, alpha=alpha).status

    # lower bound just above -m: pass; just below: inconclusive
    assert status(-m + t * se + eps) == "pass"
    assert status(-m + t * se - eps) == "inconclusive"
    # upper bound just below -m: fail; just above: inconclusive
    assert status(-m - t * se - eps) == "fail"
    assert status(-m - t * se + eps) == "inconclusive"

    z = sps.norm.ppf(1 - alpha)
    spec = GuardrailSpec("logo_churn", m)

    def churn_status(diff):
        return guardrail(spec, grr=_grr(0, se, df), logo_churn=_churn(diff, se), alpha=alpha).status

    assert churn_status(m - z * se - eps) == "pass"
    assert churn_status(m - z * se + eps) == "inconclusive"
    assert churn_status(m + z * se + eps) == "fail"
    assert churn_status(m + z * se - eps) == "inconclusive"


def test_guardrail_without_a_standard_error_has_no_status():
    spec = GuardrailSpec("logo_churn", 0.01)
    result = guardrail(
        spec, grr=_grr(0, None, None), logo_churn=two_proportions(0, 50, 0, 50), alpha=0.05
    )
    assert result.to_dict() == {
        "metric": "logo_churn",
        "margin": 0.01,
        "diff": 0.0,
        "p_value": None,
        "status": None,
    }
    result = guardrail(
        GuardrailSpec("grr", 0.01),
        grr=_grr(0.01, None, None),
        logo_churn=two_proportions(0, 50, 0, 50),
        alpha=0.05,
    )
    assert (result.diff, result.p_value, result.status) == (0.01, None, None)


def test_levers_from_sql_integer_sums_equal_levers_from_rows(make_rows):
    # Cents as a database sums them (exact integers): the same figures as from the rows.
    rows_c, rows_t = make_rows(51, 400), make_rows(52, 380, lift=0.02)
    names = ("start", "expansion", "contraction", "churned")

    def from_sql(rows):
        cents = {name: [round(v * 100) for v in getattr(rows, name).tolist()] for name in names}
        sums = {name: sum(values) for name, values in cents.items()}
        products = {
            (a, b): sum(x * y for x, y in zip(cents[a], cents[b], strict=True))
            for a in names
            for b in names
        }
        return Moments.from_sums(len(cents["start"]), sums, products).scaled(0.01)

    def from_rows(rows):
        return Moments.from_arrays(
            {name: np.round(getattr(rows, name) * 100) / 100 for name in names}
        )

    sql = lever_figures(from_sql(rows_c), from_sql(rows_t), alpha=0.05)
    mem = lever_figures(from_rows(rows_c), from_rows(rows_t), alpha=0.05)
    for part in sql:
        assert sql[part].uplift_abs == pytest.approx(mem[part].uplift_abs, rel=1e-12)
        assert sql[part].p_value == pytest.approx(mem[part].p_value, rel=1e-9)
