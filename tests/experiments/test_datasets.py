"""Dataset storage: the bulk insert round-trips exactly on both backends; sums and ratios read
back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlmodel import Session, func, select

from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.analysis import active_dataset
from experiments.models import AccountRow, Dataset, Experiment
from tests import factories

CSV = (
    b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,days_to_value\n"
    b"a1,control,100.10,5.05,0,0,SMB,3.5\n"
    b'a2,treatment,200,0,20.5,0,"Ent, ""Strategic""",\n'
    b"a3,control,50,,,50,,0\n"
    b"a4,treatment,75.99,10,0,0,SMB,12\n"
    b"a5,control,1234567.89,0,0,0,Mid,1.25\n"
)


def make_experiment(session: Session) -> Experiment:
    return factories.make_experiment(session, "ds", name="Datasets")


@pytest.fixture
def stored(session):
    experiment = make_experiment(session)
    table = read_accounts(CSV, variants=["control", "treatment"])
    dataset = datasets.store_dataset(session, experiment, table, filename="x.csv", actor=None)
    session.commit()
    return experiment, table, dataset


def test_rows_round_trip_exactly_with_nulls(session, stored):
    _, _, dataset = stored
    rows = {
        r.account_id: r
        for r in session.exec(select(AccountRow).where(AccountRow.dataset_id == dataset.id))
    }
    assert set(rows) == {"a1", "a2", "a3", "a4", "a5"}
    assert (rows["a1"].start_cents, rows["a1"].expansion_cents, rows["a1"].days_to_value) == (
        10010,
        505,
        3.5,
    )
    assert rows["a2"].segment == 'Ent, "Strategic"' and rows["a2"].days_to_value is None
    assert rows["a2"].contraction_cents == 2050
    assert (
        rows["a3"].segment is None
        and rows["a3"].churned_cents == 5000
        and rows["a3"].days_to_value == 0
    )
    assert rows["a5"].start_cents == 123456789 and rows["a5"].segment == "Mid"
    assert (
        dataset.version == 1
        and dataset.row_count == 5
        and dataset.has_segment
        and dataset.has_days_to_value
    )


def test_next_version_counts_up(session, stored):
    experiment, _, _ = stored
    other = read_accounts(CSV + b"a6,treatment,10,0,0,0,,\n", variants=["control", "treatment"])
    assert (
        datasets.store_dataset(session, experiment, other, filename="y.csv", actor=None).version
        == 2
    )


def test_the_same_bytes_are_refused_as_a_second_version(session, stored):
    experiment, table, first = stored
    with pytest.raises(datasets.DuplicateContent) as caught:
        datasets.store_dataset(session, experiment, table, filename="again.csv", actor=None)
    assert caught.value.dataset.id == first.id
    assert session.exec(select(func.count()).select_from(Dataset)).one() == 1


def test_an_importing_dataset_is_invisible_until_activated(session, stored):
    experiment, _, first = stored
    other = read_accounts(CSV + b"a6,treatment,10,0,0,0,,\n", variants=["control", "treatment"])
    reservation = datasets.reserve_dataset(session, experiment, other, filename="z.csv", actor=None)
    datasets.bulk_insert_rows(session, reservation.dataset.id, other)
    session.commit()
    assert reservation.created and reservation.dataset.version == 2
    assert active_dataset(session, experiment).id == first.id
    datasets.activate_dataset(session, reservation.dataset)
    session.commit()
    assert active_dataset(session, experiment).id == reservation.dataset.id


def test_arm_sums_match_hand_computation(session, stored):
    _, _, dataset = stored
    sums = {row.variant: row for row in datasets.arm_sums(session, dataset.id)}
    control = sums["control"]
    # control: a1 (100.10 → 105.15), a3 (50 → 0), a5 (1234567.89 → 1234567.89)
    x = [105.15, 0.0, 1234567.89]
    y = [100.10, 50.0, 1234567.89]
    assert control.n == 3
    assert math.isclose(control.sum_x, sum(x), rel_tol=1e-12)
    assert math.isclose(control.sum_y, sum(y), rel_tol=1e-12)
    assert math.isclose(
        control.sum_xy, sum(a * b for a, b in zip(x, y, strict=True)), rel_tol=1e-12
    )
    assert math.isclose(control.churned, 50.0) and math.isclose(control.expansion, 5.05)
    assert sums["treatment"].n == 2 and math.isclose(sums["treatment"].contraction, 20.5)


def test_segment_sums_and_counts(session, stored):
    _, _, dataset = stored
    assert datasets.segment_counts(session, dataset.id) == {
        "SMB": 2,
        'Ent, "Strategic"': 1,
        "Mid": 1,
    }
    assert datasets.segments(session, dataset.id) == ['Ent, "Strategic"', "Mid", "SMB"]
    by_segment = datasets.arm_sums_by_segment(session, dataset.id)
    assert {s: [(r.variant, r.n) for r in rows] for s, rows in by_segment.items()} == {
        'Ent, "Strategic"': [("treatment", 1)],
        "Mid": [("control", 1)],
        "SMB": [("control", 1), ("treatment", 1)],
        None: [("control", 1)],
    }
    pooled = datasets.pool_sums(by_segment.values())
    direct = datasets.arm_sums(session, dataset.id)
    assert [(r.variant, r.n) for r in pooled] == [(r.variant, r.n) for r in direct]
    for a, b in zip(pooled, direct, strict=True):
        for name in (
            "start",
            "expansion",
            "contraction",
            "churned",
            "sum_x",
            "sum_y",
            "sum_xx",
            "sum_yy",
            "sum_xy",
        ):
            assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-12), name
    assert [(r.variant, r.n) for r in datasets.arm_sums(session, dataset.id, segment="SMB")] == [
        ("control", 1),
        ("treatment", 1),
    ]


def test_account_ratios_by_variant_and_segment(session, stored):
    _, _, dataset = stored
    ratios = datasets.account_ratios(session, dataset.id)
    np.testing.assert_allclose(np.sort(ratios["control"]), [0.0, 1.0, 105.15 / 100.10])
    np.testing.assert_allclose(np.sort(ratios["treatment"]), [179.5 / 200, 85.99 / 75.99])
    smb = datasets.account_ratios(session, dataset.id, segment="SMB")
    np.testing.assert_allclose(smb["control"], [105.15 / 100.10])
    assert datasets.account_ratio_rows(session, 10_000).ratio.size == 0


def test_a_failed_insert_leaves_nothing(session):
    experiment = make_experiment(session)
    session.commit()
    table = read_accounts(CSV, variants=["control", "treatment"])
    datasets.store_dataset(session, experiment, table, filename="x.csv", actor=None)
    session.rollback()
    assert session.exec(select(AccountRow)).all() == []


def test_a_chunk_of_rows_is_one_transaction_invisible_until_commit(session, stored, db_engine):
    """The bulk insert that opens a transaction (each chunk of a background upload does)
    writes its rows in ONE transaction: a second connection sees none of them until the
    commit, and a rollback leaves none. (Row by row autocommit was both slower, ~40 µs a
    row on SQLite, and left partial chunks behind a crash.)"""
    _, table, dataset = stored

    def stored_rows() -> int:
        with Session(db_engine) as other:
            return other.exec(
                select(func.count()).where(AccountRow.dataset_id == dataset.id)
            ).one()

    assert stored_rows() == 5
    session.commit()  # a fresh transaction: the bulk insert is its first statement
    datasets.bulk_insert_rows(session, dataset.id, _renamed(table), start=0)
    if session.get_bind().dialect.name == "sqlite":
        assert session.connection().connection.driver_connection.in_transaction
    assert stored_rows() == 5, "rows of an uncommitted chunk are visible to other readers"
    session.rollback()
    assert stored_rows() == 5


def _renamed(table):
    """The fixture's table with other account ids (the (dataset, account) key is unique)."""
    return read_accounts(
        CSV.replace(b"\na", b"\nz"), variants=["control", "treatment"]
    )
