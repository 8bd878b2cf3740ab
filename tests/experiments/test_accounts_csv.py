"""Tests for the account CSV reader (DESIGN §3).

Error tests assert the exact text a user sees. Expected money totals are computed
independently with ``csv`` + ``decimal``; the fast (pyarrow) and slow (csv module) readers
are checked against each other on samples, generated files and random input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import pickle
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from experiments.accounts_csv import (
    WHITESPACE,
    AccountTable,
    ImportValidationError,
    RowError,
    read_accounts,
)
from experiments.accounts_csv.exact import read_exact as _read_slow
from experiments.accounts_csv.fast import read_fast as _read_fast

DATA = Path(__file__).resolve().parents[1] / "data"  # the shared sample files
GOOD_SAMPLE = DATA / "accounts_example.csv"
BAD_SAMPLE = DATA / "accounts_bad_example.csv"
HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
FULL_HEADER = (
    "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,days_to_value\n"
)
PLAIN_NUMBER_HINT = "(use digits with an optional decimal point, e.g. 1234.50)"
COLUMN_FIELDS = (
    "account_id",
    "variant",
    "start_cents",
    "expansion_cents",
    "contraction_cents",
    "churned_cents",
    "segment",
    "days_to_value",
)


def _generate_csv(rows: int, *, seed: int = 0) -> bytes:
    """A realistic two-arm upload shaped like the sample (for benchmarks and path checks).

    About 64 bytes a row: ``_generate_csv(1_000_000)`` is the 60 MB file of the speed
    target.
    """
    rng = np.random.default_rng(seed)
    start = np.maximum(np.round(np.exp(rng.normal(6.3, 1.0, rows)), 2), 1.0)
    expansion = np.where(rng.random(rows) < 0.3, np.round(start * rng.random(rows) / 2, 2), 0)
    outcome = rng.random(rows)
    churned = np.where(outcome < 0.08, start, 0.0)
    contraction = np.where(
        (outcome >= 0.08) & (outcome < 0.2), np.round(start * rng.random(rows) / 2, 2), 0.0
    )
    segments = np.array(["Mid-Market", "SMB", '"Enterprise, EMEA"', '"Enterprise ""Strategic"""'])
    segment = segments[rng.integers(0, len(segments), rows)]
    days = np.round(rng.exponential(20, rows), 1)
    variant = np.where(rng.random(rows) < 0.5, "control", "treatment")
    lines = [FULL_HEADER]
    for i in range(rows):
        reached = "" if days[i] > 60 else f"{days[i]:.1f}"
        lines.append(
            f"acme-{i:07d},{variant[i]},{start[i]:.2f},{expansion[i]:.2f},"
            f"{contraction[i]:.2f},{churned[i]:.2f},{segment[i]},{reached}\n"
        )
    return "".join(lines).encode()


def _errors(data: bytes | str, **options) -> list[str]:
    """The error lines a user would see for this upload."""
    if isinstance(data, str):
        data = data.encode()
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(data, **options)
    return [str(error) for error in raised.value.errors]


def _cents(text: str) -> int:
    return int(Decimal(text or "0") * 100)


def assert_same_table(left: AccountTable, right: AccountTable) -> None:
    for name in COLUMN_FIELDS:
        a, b = getattr(left, name), getattr(right, name)
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        assert a.dtype == b.dtype, name
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert a.tolist() == b.tolist(), name
    assert left.notes == right.notes


# ------------------------------------------------------------------------- samples


def test_good_sample_reads_400_accounts_with_exact_totals():
    table = read_accounts(GOOD_SAMPLE, variants=["control", "treatment"])

    with GOOD_SAMPLE.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(table) == len(rows) == 400
    for column, field in [
        ("start_mrr", "start_cents"),
        ("expansion_mrr", "expansion_cents"),
        ("contraction_mrr", "contraction_cents"),
        ("churned_mrr", "churned_cents"),
    ]:
        expected = sum(_cents(row[column]) for row in rows)
        array = getattr(table, field)
        assert array.dtype == np.int64
        assert int(array.sum()) == expected, column
    assert table.account_id.tolist() == [row["account_id"] for row in rows]
    assert table.variants() == ["control", "treatment"]
    assert table.segment.tolist() == [row["segment"] or None for row in rows]
    assert table.segment[1] == 'Enterprise "Strategic"'
    assert table.segment[5] == "Enterprise, EMEA"
    blank_days = [row["days_to_value"] == "" for row in rows]
    assert np.isnan(table.days_to_value).tolist() == blank_days
    assert table.days_to_value[0] == 0.8
    assert table.sha256 == hashlib.sha256(GOOD_SAMPLE.read_bytes()).hexdigest()
    assert table.notes == ()


def test_bad_sample_lists_each_error_by_line_and_column():
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(BAD_SAMPLE)

    error = raised.value
    assert error.total == 5
    assert [(e.line, e.column) for e in error.errors] == [
        (3, "start_mrr"),
        (4, "expansion_mrr"),
        (5, "churned_mrr"),
        (6, "account_id"),
        (7, "variant"),
    ]
    assert str(error).splitlines() == [
        "line 3, start_mrr: must be greater than 0",
        f'line 4, expansion_mrr: "abc" is not a plain number {PLAIN_NUMBER_HINT}',
        "line 5, churned_mrr: contraction_mrr + churned_mrr (600.00) must not exceed"
        " start_mrr (500.00)",
        "line 6, account_id: duplicate of line 2",
        "line 7, variant: is required",
    ]


def test_fast_and_slow_paths_agree_on_the_good_sample():
    data = GOOD_SAMPLE.read_bytes()

    fast = _read_fast(data, ("control", "treatment"))
    slow = _read_slow(data, ("control", "treatment"), 50)

    assert fast is not None  # otherwise the comparison proves nothing
    assert_same_table(fast, slow)


def test_fast_and_slow_paths_agree_on_a_generated_file():
    data = _generate_csv(5_000, seed=7)

    fast = _read_fast(data, None)
    slow = _read_slow(data, None, 50)

    assert fast is not None
    assert_same_table(fast, slow)
    assert len(fast) == 5_000


# ------------------------------------------------------------- header and encoding


def test_a_byte_order_mark_is_ignored():
    plain = read_accounts(GOOD_SAMPLE.read_bytes())
    with_bom = read_accounts(b"\xef\xbb\xbf" + GOOD_SAMPLE.read_bytes())

    assert_same_table(plain, with_bom)
    assert plain.sha256 != with_bom.sha256  # the hash is of the bytes as uploaded


def test_spreadsheet_exports_with_bom_and_crlf_take_the_fast_path():
    data = b"\xef\xbb\xbf" + GOOD_SAMPLE.read_bytes().replace(b"\n", b"\r\n")

    fast = _read_fast(data, None)

    assert fast is not None
    assert_same_table(fast, read_accounts(GOOD_SAMPLE))


def test_header_names_ignore_case_order_and_whitespace():
    table = read_accounts(
        b" Start_MRR ,VARIANT,\tAccount_Id\r\n100.5,control,a1\r\n7,treatment,a2\r\n"
    )

    assert table.account_id.tolist() == ["a1", "a2"]
    assert table.variant.tolist() == ["control", "treatment"]
    assert table.start_cents.tolist() == [10050, 700]
    assert table.expansion_cents.tolist() == [0, 0]
    assert table.contraction_cents.tolist() == [0, 0]
    assert table.churned_cents.tolist() == [0, 0]
    assert table.segment is None
    assert table.days_to_value is None


def test_unknown_columns_are_ignored_and_noted():
    table = read_accounts(b"account_id,variant,start_mrr,Region,,plan\na1,control,5,EU,x,pro\n")

    assert len(table) == 1
    assert table.notes == (
        'ignored unknown columns: "Region", "plan"',
        "ignored 1 column without a name",
    )


def test_missing_required_column_is_one_error_at_line_1():
    assert _errors("account_id,segment\na1,SMB\n") == [
        "line 1: missing required columns: variant, start_mrr"
    ]
    assert _errors("account_id,start_mrr\na1,5\n") == ["line 1: missing required column: variant"]


def test_a_column_named_twice_is_an_error():
    assert _errors("account_id,variant,start_mrr,Variant\na1,control,5,control\n") == [
        "line 1, variant: appears more than once in the header"
    ]


def test_empty_file():
    assert _errors(b"") == ["line 1: the file is empty"]
    assert _errors(b"\xef\xbb\xbf\r\n  \n") == ["line 1: the file is empty"]


def test_header_only():
    assert _errors(HEADER) == ["line 1: the file has a header but no data rows"]
    assert _errors(HEADER + "\n\n") == ["line 1: the file has a header but no data rows"]


def test_invalid_utf8_is_reported_at_its_line():
    data = (HEADER + "a1,control,5,0,0,0\n").encode() + b"a2,contr\xe9le,5,0,0,0\n"

    assert _errors(data) == [
        "line 3: is not valid UTF-8 text (byte 0xE9); save the file as CSV UTF-8"
    ]


def test_a_latin1_file_reports_every_line_with_invalid_bytes_once():
    data = (
        FULL_HEADER + "a1,control,5,0,0,0,Métier Öl,1\na2,control,5,0,0,0,SMB,1\n"
        "a3,control,5,0,0,0,Café,1\n"
    ).encode("latin-1")

    assert _errors(data) == [
        "2 lines from 2 to 4: is not valid UTF-8 text (byte 0xE9); save the file as CSV UTF-8",
    ]


# ------------------------------------------------------------------- row errors


def test_start_mrr_zero():
    assert _errors(HEADER + "a1,control,0.00,0,0,0\n") == [
        "line 2, start_mrr: must be greater than 0"
    ]


def test_negative_money():
    assert _errors(HEADER + "a1,control,-5,0,0,0\na2,control,5,-1.50,0,0\n") == [
        "line 2, start_mrr: must be greater than 0",
        "line 3, expansion_mrr: must be 0 or greater",
    ]


def test_non_numeric_money():
    assert _errors(HEADER + "a1,control,5,abc,0,0\n") == [
        f'line 2, expansion_mrr: "abc" is not a plain number {PLAIN_NUMBER_HINT}'
    ]


def test_thousands_separator_is_rejected_not_guessed():
    assert _errors(HEADER + 'a1,control,"1,234.50",0,0,0\n') == [
        f'line 2, start_mrr: "1,234.50" is not a plain number {PLAIN_NUMBER_HINT}'
    ]


@pytest.mark.parametrize("value", ["$12", "1e3", "12.", ".5", "+5", "1 234", "١٢", "NaN"])
def test_other_number_formats_are_rejected(value):
    assert _errors(HEADER + f"a1,control,{value},0,0,0\n") == [
        f'line 2, start_mrr: "{value}" is not a plain number {PLAIN_NUMBER_HINT}'
    ]


def test_more_than_two_decimal_places():
    assert _errors(HEADER + "a1,control,10.125,0,0,0\n") == [
        "line 2, start_mrr: must have at most 2 decimal places"
    ]


def test_absurdly_large_money():
    assert _errors(HEADER + "a1,control,100000000000,0,0,0\n") == [
        "line 2, start_mrr: is too large (at most 99999999999.99)"
    ]
    table = read_accounts((HEADER + "a1,control,99999999999.99,0,0,0\n").encode())
    assert table.start_cents.tolist() == [9_999_999_999_999]


def test_contraction_plus_churned_above_start():
    assert _errors(HEADER + "a1,control,100,0,60,40.01\n") == [
        "line 2, churned_mrr: contraction_mrr + churned_mrr (100.01) must not exceed"
        " start_mrr (100.00)"
    ]


def test_churned_above_start_without_a_contraction_column():
    assert _errors("account_id,variant,start_mrr,churned_mrr\na1,control,100,150\n") == [
        "line 2, churned_mrr: churned_mrr (150.00) must not exceed start_mrr (100.00)"
    ]


def test_duplicate_account_id_is_reported_at_its_later_line():
    data = HEADER + "a1,control,5,0,0,0\na2,control,5,0,0,0\n a1 ,treatment,5,0,0,0\n"

    assert _errors(data) == ["line 4, account_id: duplicate of line 2"]


def test_blank_account_id():
    assert _errors(HEADER + '"  ",control,5,0,0,0\n') == ["line 2, account_id: is required"]


def test_blank_variant():
    assert _errors(HEADER + "a1,control,5,0,0,0\na2, ,5,0,0,0\n") == [
        "line 3, variant: is required"
    ]


def test_unknown_variant_lists_the_allowed_ones():
    data = HEADER + "a1,control,5,0,0,0\na2,treatmnt,5,0,0,0\n"

    assert _errors(data, variants=["control", "treatment"]) == [
        'line 3, variant: "treatmnt" is not one of the experiment\'s variants (control, treatment)'
    ]


def test_days_to_value_rules():
    data = FULL_HEADER + "a1,control,5,0,0,0,SMB,-3\na2,control,5,0,0,0,SMB,soon\n"

    assert _errors(data) == [
        "line 2, days_to_value: must be 0 or greater",
        'line 3, days_to_value: "soon" is not a plain number'
        " (use digits with an optional decimal point, e.g. 12.5)",
    ]


def test_blank_optional_values():
    table = read_accounts((FULL_HEADER + "a1,control,5,,,, ,\n").encode())

    assert table.expansion_cents.tolist() == [0]
    assert table.contraction_cents.tolist() == [0]
    assert table.churned_cents.tolist() == [0]
    assert table.segment.tolist() == [None]
    assert np.isnan(table.days_to_value[0])


def test_stray_whitespace_is_trimmed():
    data = FULL_HEADER + " a1 ,\tcontrol , 5.50 ,\u00a01\u00a0, 0 ,0, SMB , 2.5 \n"

    table = read_accounts(data.encode())

    assert_same_table(table, _read_fast(data.encode(), None))  # no need for the slow path
    assert table.account_id.tolist() == ["a1"]
    assert table.variant.tolist() == ["control"]
    assert table.start_cents.tolist() == [550]
    assert table.expansion_cents.tolist() == [100]
    assert table.segment.tolist() == ["SMB"]
    assert table.days_to_value.tolist() == [2.5]


def test_too_long_text():
    assert _errors(HEADER + "a" * 256 + ",control,5,0,0,0\n") == [
        "line 2, account_id: is too long (256 characters; at most 255)"
    ]


def test_a_row_with_the_wrong_number_of_values():
    assert _errors(HEADER + "a1,control,5,0,0\na2,control,5,0,0,0,extra\n") == [
        "line 2: has 5 values but the header has 6 columns",
        "line 3: has 7 values but the header has 6 columns",
    ]


def test_all_errors_of_a_row_and_of_the_file_are_listed_in_order():
    data = HEADER + ",,abc,-1,0,0\na2,control,5,0,0,0\na3,control,0,0,1.001,0\n"

    assert _errors(data) == [
        "line 2, account_id: is required",
        "line 2, variant: is required",
        f'line 2, start_mrr: "abc" is not a plain number {PLAIN_NUMBER_HINT}',
        "line 2, expansion_mrr: must be 0 or greater",
        "line 4, start_mrr: must be greater than 0",
        "line 4, contraction_mrr: must have at most 2 decimal places",
    ]


# -------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    ("char", "code"),
    [("\x00", "U+0000"), ("\x01", "U+0001"), ("\x1b", "U+001B"), ("\x7f", "U+007F"),
     ("\t", "U+0009"), ("\n", "U+000A"), ("\r", "U+000D"), ("\x0b", "U+000B")],
)
@pytest.mark.parametrize("column", ["account_id", "variant", "segment"])
def test_a_control_character_inside_a_text_value_is_a_line_numbered_error(char, code, column):
    values = {"account_id": "a2", "variant": "control", "segment": "SMB"}
    values[column] = f"x{char}y"
    cells = ",".join(f'"{values[name]}"' for name in ("account_id", "variant"))
    data = (FULL_HEADER + "a1,control,5,0,0,0,SMB,1\n"
            + f'{cells},5,0,0,0,"{values["segment"]}",1\n').encode()

    # PostgreSQL cannot store NUL in text: the whole file is refused, by line and column.
    assert _errors(data) == [f"line 3, {column}: contains a control character ({code})"]
    assert _read_fast(data, None) is None  # the fast path hands over to the exact reader


def test_control_characters_are_refused_on_a_large_file_that_takes_the_fast_path():
    data = _generate_csv(20_000)
    assert _read_fast(data, None) is not None
    lines = data.split(b"\n")
    last = len(lines) - 2  # the last data row (the file ends with a line break)
    lines[last] = b"acct\x00nul" + lines[last][lines[last].index(b","):]
    bad = b"\n".join(lines)

    assert _read_fast(bad, None) is None
    assert _errors(bad) == [f"line {last + 1:,}, account_id: contains a control character (U+0000)"]


def test_whitespace_padding_around_a_value_is_still_trimmed_not_refused():
    data = FULL_HEADER + 'a1,"\tcontrol\r\n",5,0,0,0," SMB\t",1\n'

    table = read_accounts(data.encode())
    assert table.variant.tolist() == ["control"] and table.segment.tolist() == ["SMB"]


# -------------------------------------------------------------------- line numbers


def test_quoted_newline_shifts_the_line_of_a_later_error():
    data = (
        FULL_HEADER.replace("\n", ",note\n")
        + 'a1,control,5,0,0,0,SMB,1,"Enterprise,\nEMEA\nNorth"\n'  # lines 2-4
        + "a2,control,0,0,0,0,SMB,1,\n"  # line 5
    )

    assert _errors(data) == ["line 5, start_mrr: must be greater than 0"]


def test_a_multi_line_row_is_reported_at_its_first_line():
    data = (FULL_HEADER.replace("\n", ",note\r\n") + "a1,control,5,0,0,0,SMB,1,\r\n"
            + 'a2,control,0,0,0,0,SMB,1,"a\r\nb"\r\n')

    assert _errors(data) == ["line 3, start_mrr: must be greater than 0"]


def test_blank_lines_are_skipped_but_counted():
    data = HEADER + "\na1,control,5,0,0,0\n\n,,,,,\na2,control,0,0,0,0\n"

    assert _errors(data) == ["line 6, start_mrr: must be greater than 0"]


@pytest.mark.parametrize("line_end", ["\r\n", "\r"])
def test_line_numbers_with_windows_and_old_mac_line_ends(line_end):
    # Thousands of rows, so that some line ends straddle the reader's buffer boundaries.
    rows = [f"account-{i:05d},control,{i + 1}.{i % 100:02d},0,0,0" for i in range(5_000)]
    rows[3_999] = "account-03999,control,0,0,0,0"
    data = line_end.join([HEADER.strip(), *rows]) + line_end

    assert _errors(data) == ["line 4,001, start_mrr: must be greater than 0"]
    assert len(read_accounts(data.replace(",0,0,0,0", ",1,0,0,0").encode())) == 5_000


@pytest.fixture
def default_field_size_limit():
    """The csv module's limit is process-wide: pin it to its default for the test."""
    previous = csv.field_size_limit(131072)
    yield
    csv.field_size_limit(previous)


def test_a_10_mb_line_is_a_clean_error_at_its_line(default_field_size_limit):
    giant = "9" * (10 * 2**20)
    data = (
        HEADER
        + "a1,control,5,0,0,0\n"
        + f"a2,control,{giant},0,0,0\n"  # line 3
        + "a3,control,0,0,0,0\n"  # line 4: reading goes on after the giant line
    )

    assert _errors(data) == [
        "line 3: has a value longer than 131,072 characters",
        "line 4, start_mrr: must be greater than 0",
    ]


def test_a_10_mb_line_without_any_newline(default_field_size_limit):
    assert _errors("x" * (10 * 2**20)) == ["line 1: has a value longer than 131,072 characters"]


def test_a_10_mb_value_with_a_raised_csv_limit_is_still_rejected():
    previous = csv.field_size_limit(sys.maxsize)
    try:
        giant = "9" * (10 * 2**20)
        errors = _errors(FULL_HEADER + f"a1,control,{giant},0,0,0,{giant},1\n")
    finally:
        csv.field_size_limit(previous)

    assert errors == [
        "line 2, start_mrr: is too large (at most 99999999999.99)",
        "line 2, segment: is too long (10,485,760 characters; at most 255)",
    ]


def test_long_values_are_shortened_in_messages():
    assert _errors(HEADER + "a1,control," + "x" * 1000 + ",0,0,0\n") == [
        'line 2, start_mrr: "' + "x" * 40 + f'…" is not a plain number {PLAIN_NUMBER_HINT}'
    ]


# ------------------------------------------------------------------ error limits


def test_identical_errors_are_one_entry_with_their_line_range():
    # 2,503 rows with the same wrong variant: one entry, not 2,503 (issue 14, item 1)
    rows = "".join(f"a{i},treatment,10,0,0,0\n" for i in range(2503))
    with pytest.raises(ImportValidationError) as raised:
        read_accounts((HEADER + rows).encode(), variants=("control", "upsell-prompt"))

    error = raised.value
    assert error.total == 2503
    assert len(error.errors) == 1
    assert (error.errors[0].line, error.errors[0].last_line, error.errors[0].count) == (
        2, 2504, 2503)
    assert str(error) == (
        "lines 2\u20132,504, variant: \"treatment\" is not one of the experiment's variants"
        " (control, upsell-prompt)"
    )


def test_identical_errors_on_scattered_lines_say_how_many():
    data = HEADER + "a1,control,0,0,0,0\na2,control,5,0,0,0\na3,control,0,0,0,0\n"
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(data.encode())

    assert str(raised.value) == "2 lines from 2 to 4, start_mrr: must be greater than 0"


def test_distinct_errors_are_capped_but_all_counted():
    # 60 distinct problems (each a duplicate of a different line), 50 listed
    data = HEADER + "".join(f"a{i},control,1,0,0,0\n" for i in range(60)) * 2

    with pytest.raises(ImportValidationError) as raised:
        read_accounts(data.encode())

    error = raised.value
    assert error.total == 60
    assert len(error.errors) == 50
    assert error.errors[-1] == RowError(111, "account_id", "duplicate of line 51")
    lines = str(error).splitlines()
    assert len(lines) == 51
    assert lines[-1] == "\u2026 and 10 more"


def test_max_errors_option():
    data = HEADER + "".join(f"a{i},control,0,0,0,0\n" for i in range(5))
    data += "a0,control,5,0,0,0\n" + "b1,,5,0,0,0\n" + "b2,control,0,0,0,0\n"

    with pytest.raises(ImportValidationError) as raised:
        read_accounts(data.encode(), max_errors=2)

    # entries are distinct (column, message) pairs; a later identical one still joins them
    assert str(raised.value) == (
        "6 lines from 2 to 9, start_mrr: must be greater than 0\n"
        "line 7, account_id: duplicate of line 2\n"
        "\u2026 and 1 more"
    )


def test_row_error_and_exception_formats():
    error = RowError(12, "start_mrr", "must be greater than 0")
    assert str(error) == "line 12, start_mrr: must be greater than 0"
    assert str(RowError(1, None, "the file is empty")) == "line 1: the file is empty"

    raised = ImportValidationError([error], total=1)
    assert isinstance(raised, ValueError)
    copy = pickle.loads(pickle.dumps(raised))
    assert copy.errors == [error] and copy.total == 1


# ---------------------------------------------------------------- sources and API


def test_sources_path_str_bytes_and_binary_file():
    data = GOOD_SAMPLE.read_bytes()
    tables = [
        read_accounts(GOOD_SAMPLE),
        read_accounts(str(GOOD_SAMPLE)),
        read_accounts(data),
        read_accounts(io.BytesIO(data)),
    ]
    for table in tables[1:]:
        assert_same_table(tables[0], table)
        assert table.sha256 == tables[0].sha256


def test_a_text_mode_file_is_refused():
    with GOOD_SAMPLE.open(encoding="utf-8") as file, pytest.raises(TypeError, match="binary"):
        read_accounts(file)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_errors_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_errors"):
        read_accounts(GOOD_SAMPLE, max_errors=bad)


def test_variants_must_be_a_collection_not_a_string():
    with pytest.raises(TypeError, match="variants"):
        read_accounts(GOOD_SAMPLE, variants="control")


def test_account_table_helpers():
    table = read_accounts((HEADER + "a1,treatment,10.05,1,2,3\na2,control,5,0,0,0\n").encode())

    assert len(table) == 2
    assert table.variants() == ["treatment", "control"]
    money = table.money()
    assert money["start"].tolist() == [10.05, 5.0]
    assert money["expansion"].tolist() == [1.0, 0.0]
    assert money["contraction"].tolist() == [2.0, 0.0]
    assert money["churned"].tolist() == [3.0, 0.0]
    with pytest.raises(ValueError, match="read-only"):
        table.start_cents[0] = 1


# -------------------------------------------------------- fast path == slow path

_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs",))


def _no_control(text: str) -> bool:
    """Text values hold no C0 control character or DEL once trimmed (DESIGN §3)."""
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text.strip(WHITESPACE))


@st.composite
def account_tables(draw):
    """Valid tables as (rows, columns present), with the values the reader must return."""
    count = draw(st.integers(1, 25))
    ids = draw(
        st.lists(
            st.text(_TEXT, min_size=1, max_size=12)
            .map(lambda text: text.strip(WHITESPACE))
            .filter(bool)
            .filter(_no_control),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    variant_keys = draw(
        st.lists(
            st.text(_TEXT, min_size=1, max_size=8)
            .map(lambda text: text.strip(WHITESPACE))
            .filter(bool)
            .filter(_no_control),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    rows = []
    for account_id in ids:
        start = draw(st.integers(1, 10**12))
        contraction = draw(st.integers(0, start))
        churned = draw(st.integers(0, start - contraction))
        rows.append(
            {
                "account_id": account_id,
                "variant": draw(st.sampled_from(variant_keys)),
                "start_cents": start,
                "expansion_cents": draw(st.integers(0, 10**12)),
                "contraction_cents": contraction,
                "churned_cents": churned,
                "segment": draw(st.text(_TEXT, max_size=10).filter(_no_control)),
                # An ignored column: quoted line breaks and control characters are
                # split identically by both readers and never looked at.
                "note": draw(st.text(_TEXT, max_size=10)),
                "days_to_value": draw(
                    st.none()
                    | st.floats(0, 1e9).map(lambda x: np.format_float_positional(x, trim="-"))
                    | st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,25})?", fullmatch=True)
                ),
            }
        )
    return rows


def _csv_line(fields: list[str]) -> str:
    # Not csv.writer: with lineterminator="\n" it leaves a lone "\r" unquoted.
    return ",".join(
        '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"\r\n') else field
        for field in fields
    )


def _money_text(cents: int, style: int) -> str:
    if style == 0 and cents % 100 == 0:
        return str(cents // 100)
    if style == 1 and cents % 10 == 0:
        return f"{cents // 100}.{cents % 100 // 10}"
    return f"{cents // 100}.{cents % 100:02d}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=account_tables(),
    order=st.permutations(range(9)),
    style=st.integers(0, 2),
    line_end=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_both_paths_read_generated_tables_exactly(rows, order, style, line_end, bom):
    names = [
        "account_id",
        "variant",
        "start_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "segment",
        "days_to_value",
        "note",
    ]
    lines = [[names[i] for i in order]]
    for row in rows:
        values = [
            row["account_id"],
            row["variant"],
            *(
                _money_text(row[key], style)
                for key in ("start_cents", "expansion_cents", "contraction_cents", "churned_cents")
            ),
            row["segment"],
            row["days_to_value"] or "",
            row["note"],
        ]
        lines.append([values[i] for i in order])
    text = "".join(_csv_line(fields) + line_end for fields in lines)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()

    slow = _read_slow(data, None, 50)
    fast = _read_fast(data, None)

    expected = {
        "account_id": [row["account_id"] for row in rows],
        "variant": [row["variant"] for row in rows],
        "segment": [row["segment"].strip(WHITESPACE) or None for row in rows],
        **{
            key: [row[key] for row in rows]
            for key in ("start_cents", "expansion_cents", "contraction_cents", "churned_cents")
        },
    }
    for key, values in expected.items():
        assert getattr(slow, key).tolist() == values, key
    days = [float(row["days_to_value"] or "nan") for row in rows]
    assert np.array_equal(slow.days_to_value, days, equal_nan=True)
    event("fast path declined" if fast is None else "fast path accepted")
    if fast is not None:  # the fast path may decline; it must never differ
        assert_same_table(fast, slow)


_JUNK = st.sampled_from(
    ['"', ",", "\n", "\r", "\r\n", " ", "\x00", "é", "-", ".", "e", "\n\n", ",,,,,,,\n", '""']
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), _JUNK), min_size=1, max_size=3),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_fast_path_never_accepts_what_the_slow_path_reads_differently(edits, line_end):
    text = FULL_HEADER + (
        'a1,control,10.50,0,1,2,"Enterprise, ""EMEA""",1.5\n'
        "a2,treatment,7,0.5,,,SMB,\n"
        ' a3 , control ,3.25,0,0,3.25,"multi\nline",0\n'
        "a4,treatment,99,1,1,1,,12\n"
    )
    text = text.replace("\n", line_end)
    for position, junk in edits:
        position %= len(text) + 1
        text = text[:position] + junk + text[position:]
    data = text.encode()

    fast = _read_fast(data, None)
    try:
        slow = _read_slow(data, None, 50)
    except ImportValidationError as error:
        assert fast is None, f"fast path accepted a file the slow path rejects: {error}"
        assert error.errors and all(e.line >= 1 for e in error.errors)
    else:
        event("fast path declined" if fast is None else "fast path accepted")
        if fast is not None:
            assert_same_table(fast, slow)


def test_generator_makes_a_valid_two_arm_file():
    table = read_accounts(_generate_csv(300), variants={"control", "treatment"})

    assert len(table) == 300
    assert sorted(table.variants()) == ["control", "treatment"]
    assert (table.contraction_cents + table.churned_cents <= table.start_cents).all()


def test_shared_row_checks_used_by_the_account_and_ledger_readers():
    """One width check and one required-text check serve both §3 readers."""
    from experiments import ledger_csv
    from experiments.accounts_csv import exact

    assert ledger_csv._text_field is exact._text_field
    assert ledger_csv._width_ok is exact._width_ok
    sink = exact._ErrorSink(10)
    assert exact._text_field("a-1", "account_id", 2, sink) == "a-1"
    assert exact._text_field("", "account_id", 3, sink) is None
    assert exact._width_ok(["a", "b"], 2, 4, sink)
    assert not exact._width_ok(["a"], 2, 5, sink)


def test_one_end_of_rows_check_for_the_account_and_ledger_readers():
    from experiments import ledger_csv
    from experiments.accounts_csv import exact

    assert ledger_csv._raise_row_errors is exact._raise_row_errors
    with pytest.raises(exact.ImportValidationError, match="no data rows"):
        exact._raise_row_errors(exact._ErrorSink(5), 0, 1)
