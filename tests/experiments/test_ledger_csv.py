"""The revenue ledger CSV contract (DESIGN §3b): every rule's message at its line, and the
fast (pyarrow) and exact (csv module) readers building identical tables.

Expected money totals come from ``csv`` + ``decimal``; error tests assert the exact text
a user sees.
"""

from __future__ import annotations

import csv
import io
import random
from decimal import Decimal

import numpy as np
import pytest

from experiments.ledger_csv import (
    ImportValidationError,
    LedgerTable,
    _read_exact,
    _read_fast,
    parse_dimensions,
    read_ledger,
)
from tests.ledger_gen import write_csv

HEADER = "account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
FULL = (
    "account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,"
    "customer_since,days_to_value,plan\n"
)


def errors_of(data: str, dimensions: str = "") -> list[str]:
    with pytest.raises(ImportValidationError) as caught:
        read_ledger(data.encode(), dimensions=dimensions)
    return [str(error) for error in caught.value.errors]


def assert_same_tables(a: LedgerTable, b: LedgerTable) -> None:
    for name in ("account_id", "account_code", "period", "start_cents", "expansion_cents",
                 "contraction_cents", "churned_cents"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("customer_since", "days_to_value"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            if name == "customer_since":
                x, y = x.view(np.int64), y.view(np.int64)
            assert np.array_equal(x, y, equal_nan=name == "days_to_value"), name
    assert a.dimension_names == b.dimension_names
    for (_, x), (_, y) in zip(a.dimensions, b.dimensions, strict=True):
        assert x.tolist() == y.tolist()
    assert a.notes == b.notes


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ledger") / "ledger.csv"
    write_csv(path, n_accounts=400, months=14, seed=3, shuffle_seed=4)
    return path.read_bytes()


# ------------------------------------------------------------------ valid files


def test_a_generated_ledger_reads_with_exact_cents_and_both_readers_agree(generated):
    table = read_ledger(generated, dimensions="plan,region,size")
    rows = list(csv.DictReader(io.StringIO(generated.decode())))
    assert len(table) == len(rows)
    for column, cents in (("start_mrr", table.start_cents), ("churned_mrr", table.churned_cents),
                          ("expansion_mrr", table.expansion_cents)):
        expected = sum(Decimal(row[column]) for row in rows) * 100  # decimal, by hand
        assert int(cents.sum()) == int(expected)
    assert table.periods() == sorted({row["period"] for row in rows})
    assert table.account_count == len({row["account_id"] for row in rows})
    fast = _read_fast(generated, ("plan", "region", "size"))
    assert fast is not None, "a clean generated file takes the fast path"
    assert_same_tables(fast, _read_exact(generated, ("plan", "region", "size"), 50))


def test_start_zero_rows_blank_optional_values_and_blank_dimensions_are_accepted():
    data = FULL + (
        "a,2025-01,100.5,,,,2024-12-01,5,pro\n"
        "a,2025-02,0,0,0,0,2024-12-01,5,\n"
        "b,2025-01,20,1.05,0.10,0.2,,,basic\n"
    )
    table = read_ledger(data.encode(), dimensions="plan")
    assert table.start_cents.tolist() == [10050, 0, 2000]
    assert table.expansion_cents.tolist() == [0, 0, 105]
    assert table.contraction_cents.tolist() == [0, 0, 10]
    assert table.churned_cents.tolist() == [0, 0, 20]
    assert table.period.tolist() == [2025 * 12, 2025 * 12 + 1, 2025 * 12]
    assert table.customer_since.astype(str).tolist() == ["2024-12-01", "2024-12-01", "NaT"]
    assert np.isnan(table.days_to_value[2]) and table.days_to_value[0] == 5
    assert table.dimensions[0][1].tolist() == ["pro", None, "basic"]
    assert table.account_code.tolist() == [0, 0, 1]
    fast = _read_fast(data.encode(), ("plan",))
    assert fast is not None
    assert_same_tables(fast, _read_exact(data.encode(), ("plan",), 50))


def test_bom_crlf_header_case_and_order_and_padding():
    data = "\ufeffPeriod , Account_ID,START_MRR\r\n 2025-03 ,x , 10.00\r\n2025-04,x,12\r\n"
    table = read_ledger(data.encode())
    assert table.account_id.tolist() == ["x", "x"]
    assert table.periods() == ["2025-03", "2025-04"]
    assert table.start_cents.tolist() == [1000, 1200]


def test_a_quoted_newline_keeps_line_numbers_physical():
    data = HEADER + '"a\nb",2025-01,1,0,0,0\nc,2025-13,1,0,0,0\n'
    assert errors_of(data) == [
        "line 2, account_id: contains a control character (U+000A)",
        'line 4, period: "2025-13" is not a month written YYYY-MM (e.g. 2025-01)',
    ]


# ------------------------------------------------------------------ each rule


@pytest.mark.parametrize("period", ["2025-1", "2025/01", "25-01", "2025-00", "2025-13",
                                    "2025-01-01", "0999-01", "Jan 2025", "２０２５-01"])
def test_period_must_be_exactly_yyyy_mm(period):
    shown = period
    assert errors_of(HEADER + f"a,{period},1,0,0,0\n") == [
        f'line 2, period: "{shown}" is not a month written YYYY-MM (e.g. 2025-01)'
    ]


def test_required_values():
    assert errors_of(HEADER + ",,,0,0,0\n") == [
        "line 2, account_id: is required",
        "line 2, period: is required",
        "line 2, start_mrr: is required (0 for an account that is not a customer)",
    ]


def test_duplicate_account_and_period_is_reported_at_the_later_line():
    data = HEADER + "a,2025-01,1,0,0,0\nb,2025-01,1,0,0,0\na,2025-02,1,0,0,0\na,2025-01,2,0,0,0\n"
    assert errors_of(data) == ["line 5, period: duplicate of line 2 (same account_id and period)"]


def test_money_rules_and_losses_within_start_also_for_start_zero_rows():
    data = HEADER + (
        "a,2025-01,-1,0,0,0\n"
        "b,2025-01,0,0,0,5\n"
        "c,2025-01,10,0,6,5\n"
        "d,2025-01,1.234,x,0,0\n"
    )
    assert errors_of(data) == [
        "line 2, start_mrr: must be 0 or greater",
        "line 3, churned_mrr: contraction_mrr + churned_mrr (5.00) must not exceed start_mrr"
        " (0.00)",
        "line 4, churned_mrr: contraction_mrr + churned_mrr (11.00) must not exceed start_mrr"
        " (10.00)",
        "line 5, start_mrr: must have at most 2 decimal places",
        'line 5, expansion_mrr: "x" is not a plain number (use digits with an optional'
        " decimal point, e.g. 1234.50)",
    ]


def test_account_attributes_must_agree_and_the_error_names_both_lines():
    head = "account_id,period,start_mrr,customer_since,days_to_value\n"
    data = head + (
        "a,2025-01,1,2024-01-01,3\n"
        "b,2025-01,1,,\n"
        "a,2025-02,1,2024-02-01,3\n"
        "b,2025-02,1,,7\n"
        "a,2025-03,1,2024-01-01,3\n"
    )
    assert errors_of(data) == [
        "line 4, customer_since: 2024-02-01 differs from 2024-01-01 on line 2 for the same"
        " account (an account attribute: the same on every row)",
        "line 5, days_to_value: 7 differs from blank on line 3 for the same account (an account"
        " attribute: the same on every row)",
    ]
    assert _read_fast(data.encode(), ()) is None


def test_customer_since_must_be_an_iso_date():
    head = "account_id,period,start_mrr,customer_since\n"
    for value in ("2024-02-30", "01/02/2024", "2024-1-1", "0000-01-01"):
        assert errors_of(head + f"a,2025-01,1,{value}\n") == [
            f'line 2, customer_since: "{value}" is not a date written YYYY-MM-DD'
            " (e.g. 2024-03-01)"
        ]


def test_an_undeclared_column_is_an_error_naming_it():
    assert errors_of(FULL.replace(",plan", ",plan,Region") + "a,2025-01,1,0,0,0,,,pro,eu\n",
                     "plan") == [
        'line 1: unknown column "Region": declare it as a dimension or remove it'
        " (declared dimensions: plan)"
    ]
    assert errors_of(HEADER.replace("\n", ",plan\n") + "a,2025-01,1,0,0,0,pro\n") == [
        'line 1: unknown column "plan": declare it as a dimension or remove it'
        " (declared dimensions: none)"
    ]


def test_a_declared_dimension_missing_from_the_header_is_an_error():
    assert errors_of(HEADER + "a,2025-01,1,0,0,0\n", "plan, region") == [
        "line 1, plan: is declared as a dimension but the header has no such column",
        "line 1, region: is declared as a dimension but the header has no such column",
    ]


def test_declared_names_are_checked():
    assert parse_dimensions(" Plan , region ") == ("plan", "region")
    assert parse_dimensions("") == ()
    with pytest.raises(ImportValidationError) as caught:
        parse_dimensions("plan,,period,plan,9x")
    assert [str(e) for e in caught.value.errors] == [
        "line 1: a declared dimension name is blank",
        "line 1, period: is a ledger column and cannot also be declared as a dimension",
        "line 1, plan: is declared as a dimension more than once",
        'line 1: dimension name "9x" must start with a letter and hold only letters, digits'
        " and _ (at most 64 characters)",
    ]
    with pytest.raises(ImportValidationError, match="at most 6 dimensions can be declared, not 7"):
        parse_dimensions("a,b,c,d,e,f,g")


def test_dimension_values_reject_control_characters():
    data = FULL + "a,2025-01,1,0,0,0,,,pro\x07\n"
    assert errors_of(data, "plan") == ["line 2, plan: contains a control character (U+0007)"]


def test_identical_problems_on_many_lines_are_one_grouped_entry():
    data = HEADER + "".join(f"a{i},2025-13,1,0,0,0\n" for i in range(100))
    with pytest.raises(ImportValidationError) as caught:
        read_ledger(data.encode())
    assert caught.value.total == 100
    assert [str(e) for e in caught.value.errors] == [
        'lines 2–101, period: "2025-13" is not a month written YYYY-MM (e.g. 2025-01)'
    ]


def test_empty_file_and_header_only():
    assert errors_of("") == ["line 1: the file is empty"]
    assert errors_of(HEADER) == ["line 1: the file has a header but no data rows"]


def test_missing_required_columns():
    assert errors_of("account_id,start_mrr\na,1\n") == ["line 1: missing required column: period"]


# ------------------------------------------------------------------ readers agree


def test_random_mutations_never_make_the_fast_reader_accept_what_the_exact_one_rejects(
    generated,
):
    """Single-cell mutations of a valid file: the fast reader either defers (None) or
    builds the exact reader's table; it never accepts a file the exact reader rejects."""
    rng = random.Random(16)
    lines = generated.decode().splitlines()
    header, body = lines[0], lines[1:60]
    values = ["", " ", "-1", "1.234", "2025-13", "2025-01", "0", "x", "1e3", "2024-02-30",
              "2024-12-01", "\x01", "7", "3.5", "pro", '"a,b"']
    accepted = rejected = 0
    for _ in range(150):
        rows = [row.split(",") for row in body]
        row = rng.randrange(len(rows))
        rows[row][rng.randrange(len(rows[row]))] = rng.choice(values)
        data = ("\n".join([header, *(",".join(r) for r in rows)]) + "\n").encode()
        dims = ("plan", "region", "size")
        try:
            exact = _read_exact(data, dims, 50)
        except ImportValidationError:
            rejected += 1
            assert _read_fast(data, dims) is None
            continue
        accepted += 1
        fast = _read_fast(data, dims)
        if fast is not None:
            assert_same_tables(fast, exact)
    assert accepted > 20 and rejected > 20


def test_an_overlong_declaration_is_one_error_not_one_per_comma():
    with pytest.raises(ImportValidationError) as caught:
        parse_dimensions("," * 100_000)
    assert [str(e) for e in caught.value.errors] == [
        "line 1: the dimension names are too long (100,000 characters; at most 500)"
    ]
