"""Sample size and power against statsmodels' independent implementation."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import TTestIndPower

from stats import achieved_power, required_sample_size

CASES = [
    # (mde, sigma, alpha, power)
    (0.02, 0.25, 0.05, 0.8),
    (0.02, 0.6, 0.05, 0.9),
    (0.01, 0.3, 0.01, 0.8),
    (0.05, 0.4, 0.1, 0.95),
    (0.03, 1.5, 0.05, 0.5),
]


def _not_at_integer(value: float) -> bool:
    return abs(value - round(value)) > 1e-6


@pytest.mark.parametrize(("mde", "sigma", "alpha", "power"), CASES)
def test_required_sample_size_equal_arms(mde, sigma, alpha, power):
    # Expected: statsmodels TTestIndPower.solve_power for nobs1 with ratio 1 (noncentral t),
    # rounded up.
    expected = TTestIndPower().solve_power(
        effect_size=mde / sigma, alpha=alpha, power=power, ratio=1.0
    )
    assert _not_at_integer(expected)
    assert required_sample_size(mde, sigma, alpha=alpha, power=power) == math.ceil(expected)


@pytest.mark.parametrize("ratio", [0.5, 2.0, 3.0])
@pytest.mark.parametrize(("mde", "sigma", "alpha", "power"), CASES[:3])
def test_required_sample_size_unequal_arms(mde, sigma, alpha, power, ratio):
    # Expected: statsmodels solve_power for nobs1 (control) with nobs2 = ratio * nobs1, rounded up.
    expected = TTestIndPower().solve_power(
        effect_size=mde / sigma, alpha=alpha, power=power, ratio=ratio
    )
    assert _not_at_integer(expected)
    assert required_sample_size(mde, sigma, alpha=alpha, power=power, ratio=ratio) == math.ceil(
        expected
    )


def test_equal_and_unequal_solvers_agree_at_ratio_one():
    equal = required_sample_size(0.02, 0.3)
    assert required_sample_size(0.02, 0.3, ratio=1.0 + 1e-12) == equal


@pytest.mark.parametrize(
    ("n_control", "n_treatment"), [(50, 50), (1000, 1000), (3000, 1500), (120, 900)]
)
@pytest.mark.parametrize(("mde", "sigma", "alpha"), [(0.02, 0.25, 0.05), (0.05, 0.7, 0.01)])
def test_achieved_power_matches_statsmodels(mde, sigma, alpha, n_control, n_treatment):
    # Expected: statsmodels TTestIndPower.power with nobs1 = control, ratio = n_T / n_C.
    expected = TTestIndPower().power(
        effect_size=mde / sigma, nobs1=n_control, alpha=alpha, ratio=n_treatment / n_control
    )
    assert achieved_power(mde, sigma, n_control, n_treatment, alpha=alpha) == pytest.approx(
        expected, rel=1e-9
    )


@pytest.mark.parametrize(("mde", "sigma", "alpha", "power"), CASES)
def test_required_sample_size_is_the_smallest_sufficient(mde, sigma, alpha, power):
    n = required_sample_size(mde, sigma, alpha=alpha, power=power)
    assert achieved_power(mde, sigma, n, n, alpha=alpha) >= power
    assert achieved_power(mde, sigma, n - 1, n - 1, alpha=alpha) < power


def test_unequal_sample_size_reaches_power_with_rounded_treatment_arm():
    n_control = required_sample_size(0.02, 0.3, ratio=2.5)
    assert achieved_power(0.02, 0.3, n_control, math.ceil(2.5 * n_control)) >= 0.8
    assert achieved_power(0.02, 0.3, n_control - 1, math.ceil(2.5 * (n_control - 1))) < 0.8


def test_huge_effect_needs_the_minimum_two_accounts():
    assert required_sample_size(0.5, 0.01) == 2
    assert required_sample_size(0.5, 0.01, ratio=3.0) == 2
    assert required_sample_size(0.5, 0.01, ratio=0.25) == 8  # so the treatment arm still has 2


def test_unreachable_sample_size_is_none():
    # d = 1e-4 would need about 1.6 billion accounts per arm
    assert required_sample_size(0.0001, 1.0) is None
    assert required_sample_size(0.0001, 1.0, ratio=2.0) is None


def test_no_noise_estimate_gives_none():
    assert required_sample_size(0.02, None) is None
    assert required_sample_size(0.02, 0.0) is None
    assert achieved_power(0.02, None, 100, 100) is None
    assert achieved_power(0.02, 0.0, 100, 100) is None
    assert achieved_power(0.02, 0.3, 1, 100) is None
    assert achieved_power(0.02, 0.3, 100, 0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mde": 0.0}, "mde.*0.0"),
        ({"mde": float("nan")}, "mde.*nan"),
        ({"alpha": 0.6}, "alpha.*0.6"),
        ({"alpha": 0}, "alpha.*0"),
        ({"power": 0.3}, "power.*0.3"),
        ({"power": 1.0}, "power.*1.0"),
        ({"ratio": -1.0}, "ratio.*-1.0"),
        ({"sigma": -0.2}, "sigma.*-0.2"),
        ({"sigma": float("inf")}, "sigma.*inf"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, message):
    arguments = {"mde": 0.02, "sigma": 0.3, "alpha": 0.05, "power": 0.8, "ratio": 1.0}
    arguments.update(kwargs)
    mde, sigma = arguments.pop("mde"), arguments.pop("sigma")
    with pytest.raises(ValueError, match=message):
        required_sample_size(mde, sigma, **arguments)


def test_achieved_power_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"n_control.*-5"):
        achieved_power(0.02, 0.3, -5, 10)
    with pytest.raises(ValueError, match=r"alpha.*0.9"):
        achieved_power(0.02, 0.3, 5, 10, alpha=0.9)
