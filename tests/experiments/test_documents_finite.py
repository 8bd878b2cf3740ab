"""``documents.finite`` (fast exact-type paths, issue 18) gives what the plain recursive
definition gives, for any nesting of the values stored documents hold."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.documents import finite


def _reference(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _reference(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference(v) for v in value]
    return value


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                     st.floats(allow_nan=True, allow_infinity=True))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=4)),
    max_leaves=25)


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True,
                                                                       default=repr)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_finite_equals_the_plain_definition(value):
    assert _same(finite(value), _reference(value))


def test_finite_handles_numpy_floats_and_other_mappings():
    value = {"nan": np.float64("nan"), "one": np.float64(1.5), "ro": MappingProxyType(
        {"inf": float("inf")}), 3: (float("-inf"), True)}
    out = finite(value)
    assert out == {"nan": None, "one": 1.5, "ro": {"inf": None}, "3": [None, True]}
    assert _same(out, _reference(value))
