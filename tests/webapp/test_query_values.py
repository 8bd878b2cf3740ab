"""Query-string values go through the validation kit: an id too large for any id column or
a malformed date is a clear answer (422 or the value ignored), never a 500 — PostgreSQL
refuses integers beyond 32 bits, where SQLite quietly compares them."""

from __future__ import annotations

import pytest

from tests.webapp.test_results import analyst, experiment  # noqa: F401 (fixtures)
from tests.webapp.test_review import world  # noqa: F401 (fixture)

pytestmark = pytest.mark.db


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("branch=99999999999", "branch", "unknown driver-tree node"),
        ("branch=abc", "branch", "unknown driver-tree node"),
        ("from=2026-13-01", "from", "must be a date such as 2026-12-01"),
        ("from=20261201", "from", "must be a date such as 2026-12-01"),
        ("from=2026-12-08&to=2026-12-01", "to", "must not be before the start date"),
    ],
)
def test_review_filters_refuse_bad_values_by_field(world, query, field, message):  # noqa: F811
    _, clients = world
    response = clients["admin"].get(f"/review/2026-W48?{query}")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize("value", ["99999999999", "-1", "x", "1e3"])
def test_a_dataset_version_out_of_range_is_ignored_not_a_500(analyst, experiment, value):  # noqa: F811
    for path in (f"/experiments/{experiment.key}", f"/experiments/{experiment.key}/results"):
        response = analyst.get(f"{path}?dataset={value}")
        assert response.status_code in (200, 404), (path, response.status_code)
