"""Issue 15's optional account columns stored exactly, and the per-arm inputs read back with
SQL (moments, incidence counts, time-to-value tables) equal to numpy on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.models import AccountRow
from tests import factories
from tests.experiments.nrr_figures_data import accounts, to_csv

pytestmark = pytest.mark.db

COLUMNS = ("start", "expansion", "contraction", "churned", "pre_start", "pre_end")


@pytest.fixture
def generated():
    return accounts(500, seed=3)


@pytest.fixture
def stored(session, generated):
    experiment = factories.make_experiment(session, "nrr-store", name="Store")
    table = read_accounts(to_csv(generated))
    dataset = datasets.store_dataset(session, experiment, table, filename="a.csv", actor=None)
    session.commit()
    return dataset


def test_new_columns_round_trip_exactly_with_blanks(session, stored, generated):
    assert (stored.has_days_observed, stored.has_pre_period, stored.has_enrolled_on) == (
        True,
        True,
        True,
    )
    rows = {
        r.account_id: r
        for r in session.exec(select(AccountRow).where(AccountRow.dataset_id == stored.id))
    }
    for i in (0, 1, 2, 99, 499):
        row = rows[str(generated["account_id"][i])]
        assert row.pre_start_cents == int(generated["pre_start"][i])
        assert row.pre_end_cents == int(generated["pre_end"][i])
        assert row.days_observed == generated["days_observed"][i]
        assert row.enrolled_on.isoformat() == str(generated["enrolled_on"][i])
        days = generated["days_to_value"][i]
        assert (row.days_to_value is None) == bool(np.isnan(days))


def test_blank_optional_values_are_null(session):
    experiment = factories.make_experiment(session, "nrr-blank", name="Blank")
    csv = (
        b"account_id,variant,start_mrr,days_to_value,days_observed,pre_start_mrr,pre_end_mrr,"
        b"enrolled_on\n"
        b"a,control,100,,,,,\n"
        b"b,treatment,100.50,2,30,99.99,101.01,2026-11-02\n"
    )
    dataset = datasets.store_dataset(
        session, experiment, read_accounts(csv), filename="b.csv", actor=None
    )
    session.commit()
    rows = {
        r.account_id: r
        for r in session.exec(select(AccountRow).where(AccountRow.dataset_id == dataset.id))
    }
    a, b = rows["a"], rows["b"]
    assert (a.days_observed, a.pre_start_cents, a.pre_end_cents, a.enrolled_on) == (
        None,
        None,
        None,
        None,
    )
    assert (b.days_observed, b.pre_start_cents, b.pre_end_cents, str(b.enrolled_on)) == (
        30.0,
        9999,
        10101,
        "2026-11-02",
    )


def test_old_files_store_without_the_new_columns(session):
    experiment = factories.make_experiment(session, "nrr-old", name="Old")
    csv = b"account_id,variant,start_mrr\na,control,100\nb,treatment,200\n"
    dataset = datasets.store_dataset(
        session, experiment, read_accounts(csv), filename="c.csv", actor=None
    )
    session.commit()
    assert (dataset.has_days_observed, dataset.has_pre_period, dataset.has_enrolled_on) == (
        False,
        False,
        False,
    )
    assert datasets.time_tables(session, dataset) == {}
    extras = datasets.pool_extras(datasets.arm_extras(session, dataset))
    assert extras["control"].moments.names == ("start", "expansion", "contraction", "churned")


@pytest.mark.parametrize("by_segment", [False, True])
def test_sql_moments_and_counts_equal_numpy(session, stored, generated, by_segment):
    extras = datasets.pool_extras(datasets.arm_extras(session, stored, by_segment=by_segment))
    assert set(extras) == {"control", "treatment"}
    for variant, got in extras.items():
        mask = generated["variant"] == variant
        # Independent: numpy's two-pass covariance of the same rows in currency units.
        data = np.vstack([generated[name][mask] / 100 for name in COLUMNS])
        expected_cov = np.cov(data, ddof=1)
        assert got.moments.names == COLUMNS
        assert got.moments.n == mask.sum()
        np.testing.assert_allclose(got.moments.mean, data.mean(axis=1), rtol=1e-12)
        cov = np.array(got.moments.comoment) / (got.moments.n - 1)
        np.testing.assert_allclose(cov, expected_cov, rtol=1e-9, atol=1e-9 * expected_cov.max())
        churned = generated["churned"][mask] == generated["start"][mask]
        assert got.logo_churned == int(churned.sum())
        assert got.expanded == int((generated["expansion"][mask] > 0).sum())


def test_a_blank_pre_period_value_drops_the_pre_columns_of_its_arm(session):
    experiment = factories.make_experiment(session, "nrr-pre", name="Pre")
    csv = (
        b"account_id,variant,start_mrr,pre_start_mrr,pre_end_mrr\n"
        b"a,control,100,90,95\n"
        b"b,control,120,,100\n"
        b"c,treatment,100,80,85\n"
        b"d,treatment,140,130,150\n"
    )
    dataset = datasets.store_dataset(
        session, experiment, read_accounts(csv), filename="d.csv", actor=None
    )
    session.commit()
    extras = datasets.pool_extras(datasets.arm_extras(session, dataset))
    assert not extras["control"].moments.has("pre_start")
    assert extras["treatment"].moments.has("pre_start", "pre_end")
