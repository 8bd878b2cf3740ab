"""DESIGN §3's optional columns of issue 15 (days_observed, pre_start_mrr/pre_end_mrr,
enrolled_on): the exact reader words every error with its line, the fast reader never
accepts a file the exact one refuses and reads valid files identically, old files load."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.accounts_csv.exact import read_exact
from experiments.accounts_csv.fast import read_fast
from tests.experiments.nrr_figures_data import accounts, to_csv

OPTIONAL = ("days_observed", "pre_start_cents", "pre_end_cents", "enrolled_on")


def errors_of(data: bytes) -> list[str]:
    with pytest.raises(ImportValidationError) as caught:
        read_accounts(data)
    # The fast path must have declined: only the exact reader reports.
    assert read_fast(data, None) is None
    return str(caught.value).splitlines()


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.dtype.kind == "M":
        return a.dtype == b.dtype and a.astype("int64").tolist() == b.astype("int64").tolist()
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def test_generated_file_reads_identically_in_both_readers():
    columns = accounts(300, seed=11)
    data = to_csv(columns)
    fast, exact = read_fast(data, None), read_exact(data, None, 50)
    assert fast is not None  # a clean file takes the fast path
    for name in (*OPTIONAL, "days_to_value", "start_cents"):
        assert same(getattr(fast, name), getattr(exact, name)), name
    # Exact money: integer cents held exactly; dates as days.
    assert exact.pre_start_cents.tolist() == columns["pre_start"].astype(float).tolist()
    assert exact.pre_end_cents.tolist() == columns["pre_end"].astype(float).tolist()
    assert exact.days_observed.tolist() == columns["days_observed"].tolist()
    assert exact.enrolled_on.tolist() == columns["enrolled_on"].astype("datetime64[D]").tolist()
    assert exact.has_pre_period


def test_blanks_are_nan_and_nat_in_both_readers():
    data = (
        b"account_id,variant,start_mrr,days_to_value,days_observed,pre_start_mrr,pre_end_mrr,"
        b"enrolled_on\n"
        b"a,control,100,,,,,\n"
        b"b,treatment,100.5,2,30, 99.99 ,101.01,2026-11-02\n"
    )
    fast, exact = read_fast(data, None), read_exact(data, None, 50)
    assert fast is not None
    for table in (fast, exact):
        assert np.isnan(table.days_observed[0]) and table.days_observed[1] == 30
        assert np.isnan(table.pre_start_cents[0]) and table.pre_start_cents[1] == 9999
        assert table.pre_end_cents[1] == 10101
        assert np.isnat(table.enrolled_on[0])
        assert str(table.enrolled_on[1]) == "2026-11-02"


def test_old_files_load_without_the_new_columns():
    table = read_accounts(b"account_id,variant,start_mrr\na,control,100\nb,treatment,200\n")
    assert all(getattr(table, name) is None for name in OPTIONAL)
    assert not table.has_pre_period


@pytest.mark.parametrize("present", ["pre_start_mrr", "pre_end_mrr"])
def test_pre_period_columns_come_in_pairs(present):
    data = f"account_id,variant,start_mrr,{present}\na,control,100,90\n".encode()
    assert errors_of(data) == [
        f"line 1, {present}: comes with "
        f"{'pre_end_mrr' if present == 'pre_start_mrr' else 'pre_start_mrr'}: the pre-period "
        "needs both columns (or neither)"
    ]


def test_every_bad_value_is_reported_with_its_line_and_column():
    data = (
        b"account_id,variant,start_mrr,days_to_value,days_observed,pre_start_mrr,pre_end_mrr,"
        b"enrolled_on\n"
        b"a,control,100,3,10,90,95,2026-11-01\n"
        b"b,control,100,30,10,90,95,2026-11-01\n"
        b"c,control,100,,-1,90,95,2026-11-01\n"
        b"d,control,100,,soon,90,95,2026-11-01\n"
        b"e,control,100,,,-5,95,2026-11-01\n"
        b"f,control,100,,,90,1.234,2026-11-01\n"
        b"g,control,100,,,90,95,2026-02-30\n"
        b"h,control,100,,,90,95,01/11/2026\n"
        b"i,control,100,,,90,99999999999999,\n"
    )
    assert errors_of(data) == [
        "line 3, days_to_value: (30) must not exceed days_observed (10): value cannot be "
        "reached after the account stopped being followed",
        "line 4, days_observed: must be 0 or greater",
        'line 5, days_observed: "soon" is not a plain number (use digits with an optional '
        "decimal point, e.g. 12.5)",
        "line 6, pre_start_mrr: must be 0 or greater",
        "line 7, pre_end_mrr: must have at most 2 decimal places",
        'line 8, enrolled_on: "2026-02-30" is not a calendar date',
        'line 9, enrolled_on: "01/11/2026" is not a date such as 2026-12-01 (YYYY-MM-DD)',
        "line 10, pre_end_mrr: is too large (at most 99999999999.99)",
    ]


def test_days_to_value_may_equal_days_observed_and_a_blank_observed_is_no_bound():
    data = (
        b"account_id,variant,start_mrr,days_to_value,days_observed\n"
        b"a,control,100,10,10\n"
        b"b,treatment,100,12,\n"
    )
    table = read_accounts(data)
    assert table.days_to_value.tolist() == [10.0, 12.0]


def test_a_control_character_in_a_date_is_refused_not_stored():
    data = b"account_id,variant,start_mrr,enrolled_on\na,control,100,2026-11-01\x00\n"
    (message,) = errors_of(data)
    assert message.startswith("line 2, enrolled_on:")
