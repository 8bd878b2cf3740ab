"""R3's review of 4be5efc: `nrrlab analyze`'s DuckDB read checks the numeric rules in
blocks of 65,536 rows, sorts the id hashes in place and closes DuckDB first.

Every file here is compared with a reading of its own: the csv module and the rules of
DESIGN §3 written out again below (``_reference``), not the exact reader. Files have 0, 1,
65,535, 65,536, 65,537 and 131,073 rows (none, less than a block, one block, one row
more, a last block of one row) and a broken row at a block's edge.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.analyze_file import AnalysisRequest, analyze_file

BLOCK = 65_536
HEADER = ("account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,"
          "days_to_value,days_observed,pre_start_mrr,pre_end_mrr")
KEYS = ("start", "expansion", "contraction", "churned", "pre_start", "pre_end",
        "days_to_value", "days_observed")
CAP_CENTS = 10**13  # DESIGN's money cap: below 100,000,000,000.00
MONEY_TEXT = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
DAYS_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")


# ------------------------------------------------------------------ the reference


def _cents(text: str) -> int:
    whole, _, fraction = text.partition(".")
    return int(whole) * 100 + int(fraction.ljust(2, "0"))


MONEY_NAMES = ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr",
               "pre_start_mrr", "pre_end_mrr")
DAY_NAMES = ("days_to_value", "days_observed")


def _reference(data: bytes):
    """``(columns, problems)`` by the csv module: each variant's columns (units, NaN for a
    blank day or pre-period value) in file order, and each broken rule as ``(line,
    column)``. Only for the files of this module: no quotes, no blank or padded values."""
    rows = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    names = [name.strip().lower() for name in next(rows)]
    at = {name: names.index(name) for name in (*MONEY_NAMES, *DAY_NAMES)}
    problems: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    columns: dict[str, list[list[float]]] = {}
    for line, fields in enumerate(rows, start=2):
        assert len(fields) == len(names)
        if fields[0] in first_line:
            problems.append((line, "account_id"))
        first_line.setdefault(fields[0], line)
        cents = []
        for name in MONEY_NAMES:
            text = fields[at[name]]
            if text == "":
                cents.append(None)
            elif not MONEY_TEXT.fullmatch(text) or (value := _cents(text)) >= CAP_CENTS:
                problems.append((line, name))
                cents.append(None)
            else:
                cents.append(value)
        start, expansion, contraction, churned, pre_start, pre_end = cents
        if start is not None and start <= 0:
            problems.append((line, "start_mrr"))
        if start and (contraction or 0) + (churned or 0) > start:
            problems.append((line, "churned_mrr"))
        days = []
        for name in DAY_NAMES:
            text = fields[at[name]]
            value = float(text) if DAYS_TEXT.fullmatch(text) else math.nan
            if text and (not DAYS_TEXT.fullmatch(text) or math.isinf(value)):
                problems.append((line, name))
                value = math.nan
            days.append(value)
        if days[0] > days[1]:  # NaN: False
            problems.append((line, "days_to_value"))
        arm = columns.setdefault(fields[1], [[] for _ in KEYS])
        for values, value in zip(arm, (
                (start or 0) / 100, (expansion or 0) / 100, (contraction or 0) / 100,
                (churned or 0) / 100, math.nan if pre_start is None else pre_start / 100,
                math.nan if pre_end is None else pre_end / 100, *days), strict=True):
            values.append(value)
    return ({name: {key: np.array(values, dtype=np.float64)
                    for key, values in zip(KEYS, arm, strict=True)}
             for name, arm in columns.items()}, problems)


def _same_columns(found, expected) -> None:
    """Each variant (in order of first appearance) and each column, bit for bit."""
    assert found is not None, "DuckDB declined a valid file"
    assert list(found) == list(expected)
    for name, arm in expected.items():
        for key, values in arm.items():
            got = getattr(found[name], key)
            assert got.dtype == np.float64, (name, key)
            assert got.tobytes() == values.tobytes() or (
                np.array_equal(got, values, equal_nan=True)
                and np.array_equal(np.signbit(got), np.signbit(values))), (name, key)


# ------------------------------------------------------------------------ files

ARMS = ("control", "treatment", "b")


def _money(cents: int, style: int) -> str:
    if style == 0 and cents % 100 == 0:
        return str(cents // 100)
    if style == 1 and cents % 10 == 0:
        return f"{cents // 100}.{cents % 100 // 10}"
    return f"{cents // 100}.{cents % 100:02d}"


def _lines(rows: int, seed: int = 18) -> list[str]:
    """Valid data lines, many at a rule's edge: all of start lost, days_to_value equal to
    days_observed, money a cent below the cap, blanks in every optional column."""
    rng = np.random.default_rng(seed)
    start = rng.integers(1, 10**7, rows)
    start[::97] = CAP_CENTS - 1
    start[::89] = 1
    contraction = (start * rng.random(rows) * (rng.random(rows) < 0.3)).astype(np.int64)
    rest = start - contraction
    churned = np.where(rng.random(rows) < 0.1, rest, 0)
    expansion = rng.integers(0, 10**6, rows) * (rng.random(rows) < 0.4)
    observed = rng.integers(0, 120, rows)
    reached = rng.integers(0, 120, rows)
    style = rng.integers(0, 3, (rows, 6))
    lines = []
    for i in range(rows):
        s = style[i]
        days = ("" if reached[i] > observed[i] else
                f"{observed[i]}.0" if i % 7 == 0 else f"{reached[i]}")
        pre_end = "" if i % 11 == 0 else _money(int(start[i]) // 2, int(s[5]))
        lines.append(
            f"id-{i},{ARMS[i % 3] if i > 2 else ARMS[i]},{_money(int(start[i]), int(s[0]))},"
            f"{'' if i % 13 == 0 else _money(int(expansion[i]), int(s[1]))},"
            f"{'' if contraction[i] == 0 and i % 2 else _money(int(contraction[i]), int(s[2]))},"
            f"{_money(int(churned[i]), int(s[3]))},{'SMB' if i % 4 else ''},{days},"
            f"{'' if i % 31 == 0 else observed[i]},"
            f"{_money(int(start[i]) * 9 // 10, int(s[4]))},{pre_end}"
        )
    return lines


BIG = 2 * BLOCK + 1
_BASE: list[str] = []


def _base(rows: int) -> list[str]:
    if len(_BASE) < BIG:
        _BASE[:] = _lines(BIG)
    return _BASE[:rows]


def _write(tmp_path, lines: list[str], name: str = "accounts.csv"):
    path = tmp_path / name
    path.write_bytes(("\n".join([HEADER, *lines]) + "\n").encode())
    return path


# ----------------------------------------------------------------- valid files

SIZES = [1, 2, 4_000, BLOCK - 1, BLOCK, BLOCK + 1, BIG]


@pytest.mark.parametrize("rows", SIZES)
def test_valid_files_of_every_size_read_as_the_csv_module_reads_them(tmp_path, rows):
    path = _write(tmp_path, _base(rows))
    expected, problems = _reference(path.read_bytes())
    assert problems == []
    _same_columns(duck.read_columns(path), expected)


def test_a_file_sorted_by_variant_reads_the_same(tmp_path):
    """The arrays of the third pass (a variant first seen past the first chunk)."""
    lines = sorted(_base(BLOCK + 1), key=lambda line: line.split(",")[1])
    path = _write(tmp_path, lines)
    expected, problems = _reference(path.read_bytes())
    assert problems == [] and list(expected) == ["b", "control", "treatment"]
    _same_columns(duck.read_columns(path), expected)


def test_a_header_without_rows_is_declined_and_analyze_says_so(tmp_path):
    path = _write(tmp_path, [])
    assert duck.read_columns(path) is None
    with pytest.raises(ImportValidationError) as raised:
        analyze_file(AnalysisRequest(str(path)))
    assert str(raised.value) == "line 1: the file has a header but no data rows"


# ---------------------------------------------------------- one broken row


def _break(line: str, fault: str, first_id: str) -> str:
    cells = line.split(",")
    start = _cents(cells[2])
    if fault == "start-zero":
        cells[2] = "0.00"
    elif fault == "loss-a-cent-over":
        cells[4], cells[5] = "", _money(start + 1, 2)
    elif fault == "money-at-cap":
        cells[3] = "100000000000"
    elif fault == "pre-end-at-cap":
        cells[10] = "100000000000.00"
    elif fault == "days-infinite":
        cells[7], cells[8] = "", "9" * 400
    elif fault == "days-after-observed":
        cells[7], cells[8] = "30.5", "30"
    elif fault == "duplicate-id":
        cells[0] = first_id
    return ",".join(cells)


FAULTS = {  # the column the error is reported under
    "start-zero": "start_mrr", "loss-a-cent-over": "churned_mrr",
    "money-at-cap": "expansion_mrr", "pre-end-at-cap": "pre_end_mrr",
    "days-infinite": "days_observed", "days-after-observed": "days_to_value",
    "duplicate-id": "account_id",
}


@pytest.mark.parametrize("at", [0, BLOCK - 1, BLOCK])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_row_broken_at_a_block_edge_is_declined(tmp_path, fault, at):
    """The first row, the last of the first block, the last block's only row."""
    lines = _base(BLOCK + 1)
    first_id = lines[0 if at else 1].split(",")[0]
    lines[at] = _break(lines[at], fault, first_id)
    path = _write(tmp_path, lines)
    _, problems = _reference(path.read_bytes())
    line = max(at, 1) + 2 if fault == "duplicate-id" else at + 2
    assert problems == [(line, FAULTS[fault])]
    assert duck.read_columns(path) is None


@pytest.mark.parametrize(("rows", "at"), [(1, 0), (BLOCK, BLOCK - 1), (BLOCK + 1, BLOCK)])
@pytest.mark.parametrize("fault", ["loss-a-cent-over", "days-after-observed", "duplicate-id"])
def test_analyze_reports_the_broken_row_on_its_line(tmp_path, rows, at, fault):
    """The last row of a short file, of one block and of one row more: analyze's error
    is the exact reader's, on the line the csv module finds."""
    lines = _base(rows)
    if fault == "duplicate-id" and rows == 1:
        lines = [*lines, lines[0]]
        at = 1
    else:
        lines[at] = _break(lines[at], fault, lines[0].split(",")[0])
    path = _write(tmp_path, lines)
    _, problems = _reference(path.read_bytes())
    assert len(problems) == 1
    with pytest.raises(ImportValidationError) as by_analyze:
        analyze_file(AnalysisRequest(str(path)))
    with pytest.raises(ImportValidationError) as by_read_accounts:
        read_accounts(str(path), for_storage=False)
    assert str(by_analyze.value) == str(by_read_accounts.value)
    (error,) = by_analyze.value.errors
    assert (error.line, error.column) == problems[0] == (at + 2, FAULTS[fault])


# ------------------------------------------------- random rows at the edges

# (Hypothesis tries the first of each list most: the rows around the first block's end.)
EDGE_ROWS = [BLOCK - 1, BLOCK, 0, 1, BLOCK - 2]
# Cells that keep the rules whatever the row's other values: (column position, text).
GOOD_CELLS = st.one_of(
    st.tuples(st.sampled_from([3, 9, 10]), st.sampled_from(
        ["", "0", "0.0", "000000.01", "99999999999.99", "99999999999.9"])),
    st.tuples(st.just(8), st.just("")),
    st.tuples(st.just(1), st.sampled_from(ARMS)),
)
# ... and cells that break one (with the row's days_observed made blank for days_to_value).
BAD_CELLS = st.one_of(
    st.tuples(st.just(2), st.sampled_from(["0", "0.00", "100000000000", "1" + "0" * 400])),
    st.tuples(st.sampled_from([3, 4, 5, 9, 10]), st.sampled_from(
        ["100000000000.00", "100000000000", "1" + "0" * 400, "1e3", "-0"])),
    st.tuples(st.sampled_from([7, 8]), st.sampled_from(["9" * 400, "1e3", "-0", "inf"])),
    st.tuples(st.just(5), st.just("loss+0.01")),
    st.tuples(st.just(7), st.just("observed+0.5")),
    st.tuples(st.just(0), st.sampled_from(["id-0", "id-1", "id-65534", "id-65535"])),
)


def _set(fields: list[str], position: int, text: str) -> None:
    if text == "loss+0.01":
        fields[4], text = "", _money(_cents(fields[2]) + 1, 2)
    elif text == "observed+0.5":
        fields[8] = fields[8] or "7"
        text = f"{fields[8]}.5"
    elif position == 7:
        fields[8] = ""
    fields[position] = text


@settings(max_examples=25, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: ~20 s per try
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(rows=st.sampled_from([BLOCK, BLOCK + 1, BLOCK - 1]),
       fault=st.one_of(st.none(), st.tuples(st.sampled_from(EDGE_ROWS), BAD_CELLS)),
       others=st.lists(st.tuples(st.sampled_from(EDGE_ROWS), GOOD_CELLS), max_size=3))
def test_random_cells_at_block_edges_agree_with_the_csv_module(tmp_path, rows, fault,
                                                               others):
    """DuckDB accepts exactly the files the csv module finds valid (these files have no
    quotes, padding or blank lines, which it declines), with the same numbers."""
    lines = _base(rows)
    for at, (position, text) in [*others, *([fault] if fault else [])]:
        if at < rows:
            fields = lines[at].split(",")
            _set(fields, position, text)
            lines[at] = ",".join(fields)
    path = _write(tmp_path, lines)
    expected, problems = _reference(path.read_bytes())
    found = duck.read_columns(path)
    if problems:
        assert found is None, f"DuckDB accepted a file with {problems}"
    else:
        _same_columns(found, expected)


# ------------------------------------------------ interrupted or failed reads


@pytest.fixture
def spill_root(tmp_path, monkeypatch):
    """Where DuckDB's private temporary directories go, and the connections it opened."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    opened = []
    real = duck._connect

    def connect(spill):
        connection = real(spill)
        opened.append(connection)
        return connection

    monkeypatch.setattr(duck, "_connect", connect)
    return root, opened


def _left_over(root, opened) -> list[str]:
    import duckdb

    open_ = 0
    for connection in opened:
        try:
            connection.execute("SELECT 1")
            open_ += 1
        except duckdb.ConnectionException:
            pass
    return ([f"{open_} connection(s) open"] * bool(open_)
            + [path.name for path in root.iterdir()]
            + [thread.name for thread in threading.enumerate()
               if thread is not threading.main_thread() and thread.is_alive()
               and thread.name.startswith(("nrrlab-duckdb", "Thread-"))])


def test_ctrl_c_while_duckdb_reads_leaves_nothing_behind(tmp_path, spill_root):
    path = _write(tmp_path, _base(BLOCK + 1))
    before = set(threading.enumerate())

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        duck.read_columns(path, meanwhile=interrupt)
    assert set(threading.enumerate()) <= before | {threading.main_thread()}
    assert _left_over(*spill_root) == []


@pytest.mark.parametrize("where", ["_grouped", "_numbers_keep_the_rules"])
def test_ctrl_c_while_the_arrays_are_checked_leaves_nothing_behind(tmp_path, monkeypatch,
                                                                   spill_root, where):
    path = _write(tmp_path, _base(BLOCK + 1))

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(duck, where, interrupted)
        with pytest.raises(KeyboardInterrupt):
            duck.read_columns(path)
    assert _left_over(*spill_root) == []
    expected, _ = _reference(path.read_bytes())
    _same_columns(duck.read_columns(path), expected)  # the next read is whole


def test_an_error_on_duckdbs_thread_reaches_the_caller(tmp_path, monkeypatch, spill_root):
    path = _write(tmp_path, _base(10))

    def failing(connection, *args):
        connection.execute("SELECT 1")
        raise MemoryError("fetch")

    monkeypatch.setattr(duck, "_fetch", failing)
    with pytest.raises(MemoryError, match="fetch"):
        duck.read_columns(path)
    assert _left_over(*spill_root) == []
