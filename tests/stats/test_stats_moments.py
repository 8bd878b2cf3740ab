"""stats.moments.Moments against numpy on generated account columns.

Every expected value is numpy's own two-pass computation (``np.cov``, ``np.var``) on the
full arrays, never a Moments result.
"""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stats.moments import MOMENT_COLUMNS, Moments


def columns(rng, n, offset=0.0):
    start = rng.lognormal(6.0, 1.2, n) + offset
    expansion = np.where(rng.random(n) < 0.2, rng.gamma(1.0, 40.0, n), 0.0)
    contraction = np.where(rng.random(n) < 0.1, rng.uniform(0, 50, n), 0.0)
    churned = np.where(rng.random(n) < 0.06, start - contraction, 0.0)
    pre_start = start * rng.uniform(0.8, 1.2, n)
    pre_end = pre_start * rng.uniform(0.7, 1.4, n)
    values = (start, expansion, contraction, churned, pre_start, pre_end)
    return dict(zip(MOMENT_COLUMNS, values, strict=True))


def numpy_cov(data):
    return np.cov(np.vstack(list(data.values())), ddof=1)


def moments_cov(m: Moments):
    return np.array([[m.cov(a, b) for b in m.names] for a in m.names])


def test_from_arrays_equals_numpy():
    data = columns(np.random.default_rng(1), 2_000)
    m = Moments.from_arrays(data)
    assert m.n == 2_000 and m.names == MOMENT_COLUMNS
    np.testing.assert_allclose(moments_cov(m), numpy_cov(data), rtol=1e-12)
    for name, values in data.items():
        assert m.total(name) == pytest.approx(values.sum(), rel=1e-13)


@pytest.mark.parametrize("pieces", [2, 7, 50])
def test_chunk_merges_equal_numpy_on_the_whole(pieces):
    rng = np.random.default_rng(pieces)
    data = columns(rng, 3_001)
    cuts = np.sort(rng.choice(np.arange(1, 3_001), pieces - 1, replace=False))
    chunks = [
        Moments.from_arrays({k: v[lo:hi] for k, v in data.items()})
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, 3_001], strict=True)
    ]
    pooled = sum(chunks, Moments.empty(MOMENT_COLUMNS))
    assert pooled.n == 3_001
    np.testing.assert_allclose(moments_cov(pooled), numpy_cov(data), rtol=1e-10)
    np.testing.assert_allclose(pooled.mean, [v.mean() for v in data.values()], rtol=1e-12)
    # the builtin sum (starting at 0) works too
    assert sum(chunks).n == 3_001


def test_large_offsets_keep_every_digit_of_the_spread():
    # Money in cents around 1e9 with a spread of a few cents: raw sums of squares (1e18 · n)
    # would cancel every digit; the reference is numpy on the shifted (small) values.
    rng = np.random.default_rng(7)
    small = columns(rng, 4_000)
    small = {k: np.round(v / 50.0, 2) for k, v in small.items()}
    shifted = {k: v + 1e9 for k, v in small.items()}
    chunks = [Moments.from_arrays({k: v[i::3] for k, v in shifted.items()}) for i in range(3)]
    pooled = chunks[0] + chunks[1] + chunks[2]
    np.testing.assert_allclose(moments_cov(pooled), numpy_cov(small), rtol=1e-6, atol=1e-6)
    u = small["expansion"] - 0.3 * small["start"]
    assert pooled.linear_var({"expansion": 1.0, "start": -0.3}) == pytest.approx(
        np.var(u, ddof=1), rel=1e-6
    )


def test_from_sums_with_integer_cents_is_exact_at_large_offsets():
    # SQL hands back exact integer sums of cents: the centred sums are computed exactly.
    rng = np.random.default_rng(11)
    cents = {
        "start": rng.integers(0, 500, 5_000) + 10**11,
        "churned": rng.integers(0, 300, 5_000) + 10**11,
    }
    as_int = {k: [int(x) for x in v] for k, v in cents.items()}
    sums = {k: sum(v) for k, v in as_int.items()}
    products = {
        (a, b): sum(x * y for x, y in zip(as_int[a], as_int[b], strict=True))
        for a in as_int
        for b in as_int
        if a <= b
    }
    m = Moments.from_sums(5_000, sums, products)
    small = {k: (v - 10**11).astype(float) for k, v in cents.items()}
    np.testing.assert_allclose(moments_cov(m), numpy_cov(small), rtol=1e-12)
    # PostgreSQL's SUM(bigint) is numeric: Decimal sums take the same exact path
    as_decimal = Moments.from_sums(
        5_000,
        {k: Decimal(v) for k, v in sums.items()},
        {k: Decimal(v) for k, v in products.items()},
    )
    assert as_decimal.comoment == m.comoment


def test_from_sums_with_floats_equals_numpy_and_snaps_noise():
    data = columns(np.random.default_rng(3), 1_500)
    sums = {k: float(v.sum()) for k, v in data.items()}
    products = {(a, b): float(np.dot(data[a], data[b])) for a in data for b in data}
    m = Moments.from_sums(1_500, sums, products)
    np.testing.assert_allclose(moments_cov(m), numpy_cov(data), rtol=1e-8)
    # every account with the same MRR: a true zero, not rounding noise
    same = np.full(1_000, 123.45)
    flat = Moments.from_sums(
        1_000, {"start": float(same.sum())}, {("start", "start"): float(np.dot(same, same))}
    )
    assert flat.cov("start", "start") == 0.0


def test_from_centred_matches_from_arrays():
    data = columns(np.random.default_rng(5), 800)
    names = tuple(data)
    reference = Moments.from_arrays(data)
    mean = {k: float(v.mean()) for k, v in data.items()}
    centred = {
        (a, b): float(np.dot(data[a] - mean[a], data[b] - mean[b]))
        for i, a in enumerate(names)
        for b in names[i:]
    }
    m = Moments.from_centred(800, mean, centred)
    np.testing.assert_allclose(moments_cov(m), moments_cov(reference), rtol=1e-12)


def test_linear_var_equals_numpy_and_snaps_a_constant_combination():
    data = columns(np.random.default_rng(9), 1_200)
    m = Moments.from_arrays(data)
    end = data["start"] + data["expansion"] - data["contraction"] - data["churned"]
    ratio = end.sum() / data["start"].sum()
    coef = {"start": 1.0 - ratio, "expansion": 1.0, "contraction": -1.0, "churned": -1.0}
    assert m.linear_var(coef) == pytest.approx(np.var(end - ratio * data["start"], ddof=1))
    # expansion exactly 10 % of start everywhere: x - 0.1 y is zero up to float noise
    start = data["start"]
    proportional = Moments.from_arrays({"start": start, "expansion": start * 0.1})
    assert proportional.linear_var({"expansion": 1.0, "start": -0.1}) == 0.0


def test_merge_accepts_other_column_order_and_empty_is_neutral():
    data = columns(np.random.default_rng(2), 300)
    a = Moments.from_arrays({k: data[k][:100] for k in MOMENT_COLUMNS[:4]})
    b = Moments.from_arrays({k: data[k][100:] for k in reversed(MOMENT_COLUMNS[:4])})
    pooled = a + b + Moments.empty()
    reference = Moments.from_arrays({k: data[k] for k in MOMENT_COLUMNS[:4]})
    assert pooled.names == reference.names
    np.testing.assert_allclose(moments_cov(pooled), moments_cov(reference), rtol=1e-12)
    assert Moments.empty() + a == a


def test_small_and_invalid_inputs():
    one = Moments.from_arrays({"start": [5.0]})
    assert one.cov("start", "start") is None and one.linear_var({"start": 1.0}) is None
    with pytest.raises(ValueError, match="start must hold finite numbers; got nan at index 1"):
        Moments.from_arrays({"start": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="same length"):
        Moments.from_arrays({"start": [1.0, 2.0], "churned": [1.0]})
    with pytest.raises(ValueError, match="products is missing"):
        Moments.from_sums(2, {"start": 3.0, "churned": 1.0}, {("start", "start"): 5.0})
    with pytest.raises(ValueError, match="cannot pool moments of different columns"):
        Moments.from_arrays({"start": [1.0, 2.0]}) + Moments.from_arrays({"churned": [1.0]})
    with pytest.raises(ValueError, match="unknown column 'pre_start'"):
        one.total("pre_start")
    assert one.has("start") and not one.has("start", "pre_start")


def test_dict_round_trip_through_json():
    m = Moments.from_arrays(columns(np.random.default_rng(4), 50))
    again = Moments.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    with pytest.raises(ValueError, match="not a Moments document"):
        Moments.from_dict({"n": 3})


def test_from_sums_of_shifted_values_keeps_a_tiny_spread_at_a_huge_mean():
    # The shifted-data algorithm a SQL aggregate uses: sum (a - shift) in floats. Around
    # 1e9 cents with a spread of one cent, expansion - 0.1·start has variance ≈ 1 that must
    # survive; an exactly proportional column must still come out as 0.
    rng = np.random.default_rng(17)
    n = 5_000
    start = 1e9 + np.round(rng.uniform(0, 500, n))
    noisy = 0.1 * start + rng.normal(0, 1, n)
    exact = start * 0.1
    data = {"start": start, "expansion": noisy, "contraction": exact}
    shift = {k: float(v[0]) for k, v in data.items()}
    d = {k: v - shift[k] for k, v in data.items()}
    sums = {k: float(v.sum()) for k, v in d.items()}
    products = {(a, b): float(np.dot(d[a], d[b])) for a in d for b in d}
    m = Moments.from_sums(n, sums, products, shift=shift)
    small = {k: v - 1e9 for k, v in data.items()}
    np.testing.assert_allclose(moments_cov(m), numpy_cov(small), rtol=1e-7)
    np.testing.assert_allclose(m.mean, [v.mean() for v in data.values()], rtol=1e-15)
    expected = np.var(noisy - 0.1 * start, ddof=1)
    assert m.linear_var({"expansion": 1.0, "start": -0.1}) == pytest.approx(expected, rel=1e-6)
    assert m.linear_var({"contraction": 1.0, "start": -0.1}) == 0.0
    # cents to currency units: variances scale by 1e-4, and the floor scales with them
    units = m.scaled(0.01)
    assert units.linear_var({"expansion": 1.0, "start": -0.1}) == pytest.approx(
        expected * 1e-4, rel=1e-6
    )
    assert units.linear_var({"contraction": 1.0, "start": -0.1}) == 0.0
    with pytest.raises(ValueError, match="shift names unknown column 'pre_end'"):
        Moments.from_sums(n, sums, products, shift={"pre_end": 1.0})


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
)
def test_any_split_pools_to_the_whole(seed, sizes):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    data = columns(rng, n)
    cuts = np.cumsum([0, *sizes])
    parts = [
        Moments.from_arrays({k: v[lo:hi] for k, v in data.items()})
        for lo, hi in itertools.pairwise(cuts)
    ]
    pooled = sum(parts, Moments.empty(MOMENT_COLUMNS))
    assert pooled.n == n
    if n >= 2:
        np.testing.assert_allclose(moments_cov(pooled), numpy_cov(data), rtol=1e-9, atol=1e-9)
