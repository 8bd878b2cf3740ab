"""Read and validate a revenue ledger CSV (DESIGN §3b).

One row per account and period::

    account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,customer_since,
    days_to_value,<dimension columns declared at upload>

The same reporting as an account upload (DESIGN §3, :mod:`experiments.accounts_csv`):
headers case-insensitive in any order, UTF-8 with or without BOM, money parsed into exact
integer cents, every problem listed by physical file line (the header is line 1) and
column, identical problems grouped, and any problem rejects the whole file. The ledger's
own rules:

* ``period`` is exactly ``YYYY-MM``; (account_id, period) is unique — a duplicate is
  reported at its later line;
* ``start_mrr`` is required and ≥ 0 (0 = not a customer at period start);
  contraction + churned ≤ start on every row, start-0 rows included;
* ``customer_since`` (ISO date) and ``days_to_value`` (≥ 0) are account attributes: the
  same on every row of an account, else an error naming both lines;
* dimension columns are declared at upload; a header column that is neither a ledger
  column nor declared is an error naming it, and so is a declared one that is missing.
  A blank dimension value is allowed (shown as ``(blank)``).

Two readers, as for account files: :func:`_read_fast` (pyarrow, column-wise) can only
accept a file; :func:`_read_exact` (row by row) is the reference for every message.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from experiments.accounts_csv import (
    MAX_TEXT_LENGTH,
    WHITESPACE,
    ImportValidationError,
    RowError,
)
from experiments.accounts_csv.contract import object_array, show
from experiments.accounts_csv.exact import (
    _cents_field,
    _check_utf8,
    _days_field,
    _ErrorSink,
    _numbered_rows,
    _raise_row_errors,
    _text_field,
    _too_long,
    _width_ok,
    check_loss_within_start,
)
from experiments.accounts_csv.fast import (
    _FAST_BLOCK_SIZE,
    _fast_cents,
    _fast_days,
    _fast_header,
    _fast_text,
    _matching,
    _to_numpy,
)
from experiments.input_rules import cell_problem
from experiments.ledger_models import MAX_DIMENSIONS

__all__ = [
    "BLANK_LABEL",
    "LEDGER_COLUMNS",
    "ImportValidationError",
    "LedgerTable",
    "RowError",
    "month_label",
    "parse_dimensions",
    "read_ledger",
]

LEDGER_COLUMNS = (
    "account_id",
    "period",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "customer_since",
    "days_to_value",
)
REQUIRED_COLUMNS = ("account_id", "period", "start_mrr")
#: How a blank dimension value is shown and grouped.
BLANK_LABEL = "(blank)"
MAX_DIMENSION_NAME = 64
MAX_DECLARATION_CHARS = 500
_NAT = np.iinfo(np.int64).min  # datetime64's NaT as an integer
_FIRST_DATE = (date.min - date(1970, 1, 1)).days

# ASCII only on purpose (Python's \d matches other scripts' digits).
_PERIOD = re.compile(r"([1-9][0-9]{3})-(0[1-9]|1[0-2])")
_PERIOD_RE2 = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_RE2 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DIMENSION_NAME = re.compile(r"[a-z][a-z0-9_]*")


def month_label(month: int) -> str:
    """``YYYY-MM`` of a month number (``year * 12 + month - 1``)."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


@dataclass(frozen=True, eq=False)
class LedgerTable:
    """A validated ledger upload, one entry per row, as read-only numpy columns.

    ``period`` holds month numbers (``year * 12 + month - 1``); money is in integer
    cents; ``account_code`` numbers the accounts 0, 1, … in order of first appearance;
    ``customer_since`` is ``datetime64[D]`` with NaT for blank and
    ``days_to_value`` float with NaN for blank (either ``None`` when the file has no
    such column); ``dimensions`` pairs each declared name with its values (``None`` for
    blank), in the declared order. ``dimension_codes`` (fast reader only) pairs each
    dimension's values, in the same order, with ``(codes, distinct)``: ``distinct[codes]``
    equals the values, so the figures need not hash a million strings again.
    """

    account_id: np.ndarray
    account_code: np.ndarray
    period: np.ndarray
    start_cents: np.ndarray
    expansion_cents: np.ndarray
    contraction_cents: np.ndarray
    churned_cents: np.ndarray
    customer_since: np.ndarray | None
    days_to_value: np.ndarray | None
    dimensions: tuple[tuple[str, np.ndarray], ...]
    sha256: str = ""
    notes: tuple[str, ...] = ()
    dimension_codes: tuple[tuple[np.ndarray, tuple[str | None, ...]], ...] | None = None

    def __len__(self) -> int:
        return len(self.start_cents)

    @property
    def account_count(self) -> int:
        return int(self.account_code.max()) + 1 if len(self.account_code) else 0

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dimensions)

    def months(self) -> list[int]:
        """The distinct periods (month numbers), in order."""
        return np.unique(self.period).tolist()

    def periods(self) -> list[str]:
        """The distinct periods as ``YYYY-MM``, in order."""
        return [month_label(month) for month in self.months()]


def parse_dimensions(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """Declared dimension names from ``"plan,region"`` or a list: trimmed, lower case.

    Raises
    ------
    ImportValidationError
        A name is blank, malformed, a ledger column, repeated, or there are too many
        (reported at line 1, the header the names must match).
    """
    if raw is None:
        return ()
    if isinstance(raw, str) and len(raw) > MAX_DECLARATION_CHARS:
        raise ImportValidationError([RowError(
            1, None, f"the dimension names are too long ({len(raw):,} characters; at most"
            f" {MAX_DECLARATION_CHARS})"
        )])
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names: list[str] = []
    errors: list[RowError] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"dimension names must be strings, not {item!r}")
        name = item.strip(WHITESPACE).lower()
        if not name:
            if isinstance(raw, str) and not raw.strip(WHITESPACE):
                return ()
            errors.append(RowError(1, None, "a declared dimension name is blank"))
        elif name in LEDGER_COLUMNS:
            errors.append(RowError(
                1, name, "is a ledger column and cannot also be declared as a dimension"
            ))
        elif len(name) > MAX_DIMENSION_NAME or not _DIMENSION_NAME.fullmatch(name):
            errors.append(RowError(
                1, None,
                f"dimension name {show(name)} must start with a letter and hold only letters,"
                f" digits and _ (at most {MAX_DIMENSION_NAME} characters)",
            ))
        elif name in names:
            errors.append(RowError(1, name, "is declared as a dimension more than once"))
        else:
            names.append(name)
    if len(names) > MAX_DIMENSIONS:
        errors.append(RowError(
            1, None, f"at most {MAX_DIMENSIONS} dimensions can be declared, not {len(names)}"
        ))
    if errors:
        raise ImportValidationError(errors)
    return tuple(names)


def read_ledger(
    data: bytes, *, dimensions: Sequence[str] = (), max_errors: int = 50
) -> LedgerTable:
    """Read and validate a ledger CSV given as bytes, with the declared dimension names.

    Raises
    ------
    ImportValidationError
        The file (or the declaration) breaks the contract; every problem is counted and
        the first ``max_errors`` distinct ones are listed by line and column.
    """
    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
        raise ValueError(f"max_errors must be a positive integer, got {max_errors!r}")
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    names = parse_dimensions(dimensions)
    table = _read_fast(data, names)
    if table is None:
        table = _read_exact(data, names, max_errors)
    return replace(table, sha256=hashlib.sha256(data).hexdigest())


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class _Layout:
    width: int
    index: dict[str, int]
    dimensions: tuple[tuple[str, int], ...]
    notes: tuple[str, ...]


def _resolve_header(
    fields: list[str], line: int, declared: tuple[str, ...]
) -> tuple[_Layout, list[RowError]]:
    index: dict[str, int] = {}
    found: dict[str, int] = {}
    errors: list[RowError] = []
    unnamed = 0
    for position, field in enumerate(fields):
        name = field.strip(WHITESPACE)
        key = name.lower()
        if key in LEDGER_COLUMNS or key in declared:
            target = index if key in LEDGER_COLUMNS else found
            if key in target:
                errors.append(RowError(line, key, "appears more than once in the header"))
            else:
                target[key] = position
        elif name:
            hint = ", ".join(declared) if declared else "none"
            errors.append(RowError(
                line, None,
                f"unknown column {show(name)}: declare it as a dimension or remove it"
                f" (declared dimensions: {hint})",
            ))
        else:
            unnamed += 1
    missing = [name for name in REQUIRED_COLUMNS if name not in index]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        errors.insert(
            0, RowError(line, None, f"missing required column{plural}: {', '.join(missing)}")
        )
    for name in declared:
        if name not in found:
            errors.append(RowError(
                line, name, "is declared as a dimension but the header has no such column"
            ))
    notes = []
    if unnamed:
        plural = "s" if unnamed > 1 else ""
        notes.append(f"ignored {unnamed} column{plural} without a name")
    dims = tuple((name, found[name]) for name in declared if name in found)
    return _Layout(len(fields), index, dims, tuple(notes)), errors


def _ledger_table(**columns) -> LedgerTable:
    for key, column in columns.items():
        if isinstance(column, np.ndarray):
            column.flags.writeable = False
        elif key == "dimensions":
            for _, values in column:
                values.flags.writeable = False
        elif key == "dimension_codes" and column is not None:
            for codes, _ in column:
                codes.flags.writeable = False
    return LedgerTable(**columns)


# ----------------------------------------------------------------------- exact reader


def _read_exact(data: bytes, declared: tuple[str, ...], max_errors: int) -> LedgerTable:
    sink = _ErrorSink(max_errors)
    _check_utf8(data, sink)
    if sink.total:
        raise sink.fail()
    rows = _numbered_rows(data, sink)
    header_line, header = next(rows, (1, None))
    if sink.total:
        raise sink.fail()
    if header is None:
        raise ImportValidationError([RowError(1, None, "the file is empty")])
    layout, header_errors = _resolve_header(header, header_line, declared)
    if header_errors:
        raise ImportValidationError(header_errors)

    col = layout.index
    i_id, i_period, i_start = col["account_id"], col["period"], col["start_mrr"]
    i_expansion = col.get("expansion_mrr")
    i_contraction = col.get("contraction_mrr")
    i_churned = col.get("churned_mrr")
    i_since = col.get("customer_since")
    i_days = col.get("days_to_value")
    seen: dict[tuple[str, int], int] = {}  # (account, month) -> line
    # account -> (first line, customer_since text, days_to_value) as on its first row
    attributes: dict[str, tuple[int, date | None, float]] = {}
    shared: dict[str, str] = {}
    ids: list[str] = []
    codes: dict[str, int] = {}
    months = array("q")
    cents = {name: array("q") for name in ("start", "expansion", "contraction", "churned")}
    since_days = array("q")
    days_to_value = array("d")
    dim_values: list[list[str | None]] = [[] for _ in layout.dimensions]
    data_rows = 0

    for line, fields in rows:
        data_rows += 1
        if not _width_ok(fields, layout.width, line, sink):
            continue
        account_id = _text_field(fields[i_id].strip(WHITESPACE), "account_id", line, sink)

        month = _period_field(fields[i_period], line, sink)
        if account_id is not None and month is not None:
            key = (account_id, month)
            if key in seen:
                sink.add(
                    line, "period",
                    f"duplicate of line {seen[key]:,} (same account_id and period)",
                )
            else:
                seen[key] = line

        start = _start_field(fields[i_start], line, sink)
        expansion = _optional_cents(fields, i_expansion, "expansion_mrr", line, sink)
        contraction = _optional_cents(fields, i_contraction, "contraction_mrr", line, sink)
        churned = _optional_cents(fields, i_churned, "churned_mrr", line, sink)
        check_loss_within_start(start, contraction, churned, line, sink,
                                has_contraction=i_contraction is not None,
                                has_churned=i_churned is not None)

        since: date | None = None
        since_ok = True
        if i_since is not None:
            since, since_ok = _date_field(fields[i_since], line, sink)
        days: float | None = float("nan")
        if i_days is not None:
            days = _days_field(fields[i_days], line, sink)
        if account_id is not None and since_ok and days is not None:
            first = attributes.get(account_id)
            if first is None:
                attributes[account_id] = (line, since, days)
            else:
                first_line, first_since, first_days = first
                if since != first_since:
                    sink.add(
                        line, "customer_since",
                        f"{_shown_date(since)} differs from {_shown_date(first_since)} on line"
                        f" {first_line:,} for the same account (an account attribute: the same"
                        " on every row)",
                    )
                if not _same_days(days, first_days):
                    sink.add(
                        line, "days_to_value",
                        f"{_shown_days(days)} differs from {_shown_days(first_days)} on line"
                        f" {first_line:,} for the same account (an account attribute: the same"
                        " on every row)",
                    )

        values: list[str | None] = []
        for name, position in layout.dimensions:
            value = fields[position].strip(WHITESPACE) or None
            if value is not None and len(value) > MAX_TEXT_LENGTH:
                sink.add(line, name, _too_long(value))
            elif value is not None and (problem := cell_problem(value)):
                sink.add(line, name, problem)
            values.append(value)

        if not sink.total:  # after the first error only errors are collected
            ids.append(shared.setdefault(account_id, account_id))
            codes.setdefault(account_id, len(codes))
            months.append(month)
            cents["start"].append(start)
            cents["expansion"].append(expansion)
            cents["contraction"].append(contraction)
            cents["churned"].append(churned)
            since_days.append(_NAT if since is None else (since - date(1970, 1, 1)).days)
            days_to_value.append(days)
            for bucket, value in zip(dim_values, values, strict=True):
                bucket.append(value and shared.setdefault(value, value))

    _raise_row_errors(sink, data_rows, header_line)
    return _ledger_table(
        account_id=object_array(ids),
        account_code=np.fromiter((codes[i] for i in ids), dtype=np.int64, count=len(ids)),
        period=np.array(months, dtype=np.int32),
        start_cents=np.array(cents["start"], dtype=np.int64),
        expansion_cents=np.array(cents["expansion"], dtype=np.int64),
        contraction_cents=np.array(cents["contraction"], dtype=np.int64),
        churned_cents=np.array(cents["churned"], dtype=np.int64),
        customer_since=(
            np.array(since_days, dtype=np.int64).view("datetime64[D]")
            if i_since is not None else None
        ),
        days_to_value=np.array(days_to_value, dtype=np.float64) if i_days is not None else None,
        dimensions=tuple(
            (name, object_array(bucket))
            for (name, _), bucket in zip(layout.dimensions, dim_values, strict=True)
        ),
        notes=layout.notes,
    )


def _period_field(raw: str, line: int, sink: _ErrorSink) -> int | None:
    text = raw.strip(WHITESPACE)
    if not text:
        sink.add(line, "period", "is required")
        return None
    match = _PERIOD.fullmatch(text)
    if match is None:
        sink.add(line, "period", f"{show(text)} is not a month written YYYY-MM (e.g. 2025-01)")
        return None
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def _start_field(raw: str, line: int, sink: _ErrorSink) -> int | None:
    if not raw.strip(WHITESPACE):
        sink.add(line, "start_mrr", "is required (0 for an account that is not a customer)")
        return None
    return _cents_field(raw, "start_mrr", line, sink)


def _optional_cents(
    fields: list[str], index: int | None, column: str, line: int, sink: _ErrorSink
) -> int | None:
    return _cents_field(fields[index] if index is not None else "", column, line, sink)


def _date_field(raw: str, line: int, sink: _ErrorSink) -> tuple[date | None, bool]:
    text = raw.strip(WHITESPACE)
    if not text:
        return None, True
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text), True
        except ValueError:
            pass
    sink.add(
        line, "customer_since", f"{show(text)} is not a date written YYYY-MM-DD (e.g. 2024-03-01)"
    )
    return None, False


def _same_days(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN (blank) equals NaN here


def _shown_date(value: date | None) -> str:
    return "blank" if value is None else value.isoformat()


def _shown_days(value: float) -> str:
    if value != value:
        return "blank"
    return f"{value:g}"


# ------------------------------------------------------------------------ fast reader


def _read_fast(data: bytes, declared: tuple[str, ...]) -> LedgerTable | None:
    """Column-wise with pyarrow; ``None`` means "let the exact reader decide".

    The same splitting and trimming as the account reader's fast path
    (:func:`experiments.accounts_csv.fast.read_fast`), whose helpers it uses.
    """
    import csv

    field_limit = csv.field_size_limit()
    found = _fast_header(data, field_limit)
    if found is None:
        return None
    header_end, header = found
    layout, header_errors = _resolve_header(header, 1, declared)
    if header_errors:
        return None
    names = [f"f{position}" for position in range(layout.width)]
    wanted = {names[position]: key for key, position in layout.index.items()}
    wanted.update({names[position]: f"dim:{name}" for name, position in layout.dimensions})
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data)[header_end + 1 :],
            read_options=pa_csv.ReadOptions(
                column_names=names,
                block_size=min(_FAST_BLOCK_SIZE, field_limit),
                use_threads=True,
            ),
            # A line break can only sit inside a quoted value; without any quote the
            # plain splitter is exact and ~0.4 s of CPU per million rows cheaper.
            parse_options=pa_csv.ParseOptions(newlines_in_values=b'"' in data),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(wanted),
                column_types={name: pa.string() for name in wanted},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
    except pa.ArrowException:
        return None
    rows = table.num_rows
    if rows == 0:
        return None
    raw = {wanted[name]: table.column(name) for name in table.column_names}
    del table

    # pyarrow kernels release the GIL: the columns are checked two at a time.
    checks = {
        "account_id": _fast_account_codes,
        "period": _fast_months,
        "start_mrr": lambda values: _fast_cents(values, required=True),
        "expansion_mrr": _fast_cents,
        "contraction_mrr": _fast_cents,
        "churned_mrr": _fast_cents,
        "customer_since": _fast_dates,
        "days_to_value": _fast_days,
    }
    for name, _ in layout.dimensions:
        checks[f"dim:{name}"] = _fast_dimension
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {
            key: pool.submit(check, raw.pop(key)) for key, check in checks.items() if key in raw
        }
        result = {key: future.result() for key, future in pending.items()}
    if any(value is None for value in result.values()):
        return None
    ids, account_code, accounts = result["account_id"]
    month = result["period"]
    # (account, period) unique: one int64 key per row, sorted once.
    span = int(month.max()) - int(month.min()) + 1
    key = account_code * span + (month - month.min())
    key.sort()
    if (key[1:] == key[:-1]).any():
        return None
    zeros = np.zeros(rows, dtype=np.int64)
    money = {
        column: result.get(column, zeros)
        for column in ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
    }
    if not (money["contraction_mrr"] + money["churned_mrr"] <= money["start_mrr"]).all():
        return None
    money = {column: values.copy() if values is zeros else values
             for column, values in money.items()}
    since = result.get("customer_since")
    days = result.get("days_to_value")
    # Account attributes: every row equals its account's first row.
    if since is not None and not _same_per_account(since.view(np.int64), account_code, accounts):
        return None
    if days is not None:
        # NaN (blank) as a number no value can be, so that blank equals blank.
        filled = np.where(np.isnan(days), -1.0, days)
        if not _same_per_account(filled, account_code, accounts):
            return None

    dims = [(name, result[f"dim:{name}"][0]) for name, _ in layout.dimensions]
    return _ledger_table(
        account_id=object_array(ids.to_pylist()),
        account_code=account_code,
        period=month.astype(np.int32),
        start_cents=money["start_mrr"],
        expansion_cents=money["expansion_mrr"],
        contraction_cents=money["contraction_mrr"],
        churned_cents=money["churned_mrr"],
        customer_since=since,
        days_to_value=days,
        dimensions=tuple(dims),
        notes=layout.notes,
        dimension_codes=tuple(result[f"dim:{name}"][1] for name, _ in layout.dimensions),
    )


def _fast_account_codes(
    values: pa.ChunkedArray,
) -> tuple[pa.ChunkedArray, np.ndarray, int] | None:
    """The trimmed ids, each row's account code (order of first appearance), the count."""
    ids = _fast_text(values, required=True)
    if ids is None:
        return None
    encoded = pc.dictionary_encode(ids.combine_chunks())
    return ids, _to_numpy(encoded.indices, dtype=np.int64), len(encoded.dictionary)


def _fast_dimension(
    values: pa.ChunkedArray,
) -> tuple[np.ndarray, tuple[np.ndarray, tuple[str | None, ...]]] | None:
    """A str object array (None for blank; repeated values share one object) and its
    codes into the distinct values."""
    values = _fast_text(values, required=False)
    if values is None:
        return None
    encoded = pc.dictionary_encode(values.combine_chunks(), null_encoding="encode")
    distinct = [value or None for value in encoded.dictionary.to_pylist()]
    codes = _to_numpy(encoded.indices, dtype=np.intp)
    return object_array(distinct)[codes], (codes, tuple(distinct))


def _same_per_account(values: np.ndarray, account: np.ndarray, accounts: int) -> bool:
    """Whether each row's value equals the value on its account's first row."""
    # Codes number accounts in order of first appearance, so an account's first row is
    # where the running maximum of the codes grows.
    running = np.maximum.accumulate(account)
    first_row = np.flatnonzero(np.concatenate(([True], running[1:] > running[:-1])))
    if len(first_row) != accounts:  # not in order of first appearance: let the exact reader
        return False
    return bool((values == values[first_row][account]).all())


def _fast_months(values: pa.ChunkedArray) -> np.ndarray | None:
    if values.null_count:
        return None
    values = _matching(values, _PERIOD_RE2)
    if values is None:
        return None
    # In numpy: arithmetic with a Python scalar in pyarrow imports pandas (~1 s).
    year = _to_numpy(pc.cast(pc.utf8_slice_codeunits(values, 0, 4), pa.int32()), dtype=np.int64)
    month = _to_numpy(pc.cast(pc.utf8_slice_codeunits(values, 5, 7), pa.int32()), dtype=np.int64)
    return year * 12 + month - 1


def _fast_dates(values: pa.ChunkedArray) -> np.ndarray | None:
    values = _matching(values, _DATE_RE2)
    if values is None:
        return None
    try:
        days = pc.cast(pc.cast(pc.cast(values, pa.date32()), pa.int32()), pa.float64())
    except pa.ArrowInvalid:
        return None
    as_float = _to_numpy(days, blank=np.nan)  # exact: |days| < 2^53
    blank = np.isnan(as_float)
    if (as_float[~blank] < _FIRST_DATE).any():  # pyarrow takes year 0, Python does not
        return None
    out = np.where(blank, _NAT, np.nan_to_num(as_float).astype(np.int64))
    return out.view("datetime64[D]")
