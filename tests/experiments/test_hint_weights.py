"""The registration hint reads the variant weights leniently, but a weight the registry
form would refuse (above plan_input.MAX_WEIGHT, e.g. 1e308) made the ratio overflow in
the sizing: a 500 on a keystroke. It is "not usable yet" now, like a blank weight."""

from __future__ import annotations

import pytest

from experiments.plan_input import MAX_WEIGHT
from experiments.planning import sample_size_hint

pytestmark = pytest.mark.db


def _hint(session, admin, weights):
    return sample_size_hint(session, admin, {
        "mde": "0.02", "alpha": "0.05", "power": "0.8", "control": "0",
        "variants": [{"key": "control", "weight": weights[0]},
                     {"key": "treat", "weight": weights[1]}]})


@pytest.mark.parametrize("huge", ["1e308", str(MAX_WEIGHT + 1)])
def test_a_weight_the_form_refuses_is_sized_as_equal_weights_not_a_crash(session, admin,
                                                                         huge):
    even = _hint(session, admin, ["", ""])  # not usable yet: equal weights
    hint = _hint(session, admin, ["1", huge])
    assert hint.allocation == even.allocation
    assert hint.allocation.control == 2454  # 0.02 at sigma 0.25 (stats doctest)


def test_the_largest_weight_the_form_takes_is_still_sized(session, admin):
    hint = _hint(session, admin, ["1", str(MAX_WEIGHT)])
    assert hint.allocation.ratios == (MAX_WEIGHT,)
