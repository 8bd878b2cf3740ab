"""The exact reader: row by row with Python's :mod:`csv` module.

It is the single source of truth for error messages and line numbers, and it also reads
valid files, so the tests can check that both readers build identical tables.
"""

from __future__ import annotations

import csv
import io
import math
import re
from array import array
from collections.abc import Iterator
from datetime import date

import numpy as np

from experiments.accounts_csv.contract import (
    MAX_CENTS,
    MAX_TEXT_LENGTH,
    MONEY_COLUMNS,
    WHITESPACE,
    AccountTable,
    ImportValidationError,
    RowError,
    account_table,
    object_array,
    resolve_header,
    show,
)
from experiments.input_rules import cell_problem

_MAX_WHOLE_DIGITS = len(str(MAX_CENTS // 100))
_PLAIN_NUMBER_HINT = "use digits with an optional decimal point, e.g. 1234.50"
_DAYS_HINT = "use digits with an optional decimal point, e.g. 12.5"

# Regexes are ASCII-only on purpose: in Python ``\d`` also matches other scripts' digits.
_MONEY = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")
_MONEY_TOO_PRECISE = re.compile(r"[0-9]+\.[0-9]{3,}")
_NEGATIVE_NUMBER = re.compile(r"-[0-9]+(?:\.[0-9]+)?")
_DAYS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_HINT = "is not a date such as 2026-12-01 (YYYY-MM-DD)"


def _format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ---------------------------------------------------------------------- exact reader


class _ErrorSink:
    """Collects problems, grouping identical ones (same column and message) into one entry.

    At most ``max_errors`` distinct entries are kept; a problem matching a kept entry
    extends it, any other is only counted.
    """

    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self.total = 0
        # (column, message) -> [first line, last line, count], in order of first appearance
        self._groups: dict[tuple[str | None, str], list[int]] = {}

    def add(self, line: int, column: str | None, message: str) -> None:
        self.total += 1
        group = self._groups.get((column, message))
        if group is not None:
            group[1] = line
            group[2] += 1
        elif len(self._groups) < self.max_errors:
            self._groups[(column, message)] = [line, line, 1]

    @property
    def errors(self) -> list[RowError]:
        return [
            RowError(first, column, message, last if count > 1 else None, count)
            for (column, message), (first, last, count) in self._groups.items()
        ]

    def fail(self) -> ImportValidationError:
        return ImportValidationError(self.errors, self.total)



def check_loss_within_start(start: int | None, contraction: int | None, churned: int | None,
                            line: int, sink: _ErrorSink, *, has_contraction: bool,
                            has_churned: bool) -> None:
    """DESIGN §3: contraction + churned ≤ start, reported under the column(s) the file has.

    Shared by the account reader and the revenue ledger's reader (§3b applies the same rule).
    """
    if start is None or contraction is None or churned is None or contraction + churned <= start:
        return
    if has_contraction and has_churned:
        lost, what = contraction + churned, "contraction_mrr + churned_mrr"
    elif has_churned:
        lost, what = churned, "churned_mrr"
    else:
        lost, what = contraction, "contraction_mrr"
    sink.add(line, "churned_mrr" if has_churned else "contraction_mrr",
             f"{what} ({_format_cents(lost)}) must not exceed start_mrr"
             f" ({_format_cents(start)})")


def read_exact(data: bytes, allowed: tuple[str, ...] | None, max_errors: int) -> AccountTable:
    """Read row by row with the csv module; the reference for every error message."""
    sink = _ErrorSink(max_errors)
    _check_utf8(data, sink)
    if sink.total:
        raise sink.fail()

    rows = _numbered_rows(data, sink)
    header_line, header = next(rows, (1, None))
    if sink.total:  # the header row itself could not be read
        raise sink.fail()
    if header is None:
        raise ImportValidationError([RowError(1, None, "the file is empty")])
    layout, header_errors = resolve_header(header, header_line)
    if header_errors:
        raise ImportValidationError(header_errors)

    col = layout.index
    i_id, i_variant = col["account_id"], col["variant"]
    i_start = col["start_mrr"]
    i_expansion = col.get("expansion_mrr")
    i_contraction = col.get("contraction_mrr")
    i_churned = col.get("churned_mrr")
    i_segment = col.get("segment")
    i_days = col.get("days_to_value")
    i_observed = col.get("days_observed")
    i_pre_start = col.get("pre_start_mrr")
    i_pre_end = col.get("pre_end_mrr")
    i_enrolled = col.get("enrolled_on")
    allowed_set = frozenset(allowed) if allowed is not None else None
    # In file order, so without duplicates its keys are the account_id column.
    first_line_of: dict[str, int] = {}
    shared: dict[str, str] = {}  # one str object per distinct variant/segment
    variants: list[str] = []
    segments: list[str | None] = []
    cents = {name: array("q") for name in MONEY_COLUMNS}
    days_to_value = array("d")
    days_observed = array("d")
    pre_start_cents = array("d")  # whole cents, NaN for a blank (exact below 2**53)
    pre_end_cents = array("d")
    enrolled_on: list[str] = []
    data_rows = 0

    for line, fields in rows:
        data_rows += 1
        if not _width_ok(fields, layout.width, line, sink):
            continue
        account_id = fields[i_id].strip(WHITESPACE)
        if _text_field(account_id, "account_id", line, sink) is None:
            pass
        elif account_id in first_line_of:
            sink.add(line, "account_id", f"duplicate of line {first_line_of[account_id]}")
        else:
            first_line_of[account_id] = line

        variant = fields[i_variant].strip(WHITESPACE)
        if _text_field(variant, "variant", line, sink) is None:
            pass
        elif allowed_set is not None and variant not in allowed_set:
            sink.add(
                line,
                "variant",
                f"{show(variant)} is not one of the experiment's variants"
                f" ({', '.join(allowed or ())})",
            )

        start = _cents_field(fields[i_start], "start_mrr", line, sink, required=True)
        expansion = _cents_field(
            fields[i_expansion] if i_expansion is not None else "", "expansion_mrr", line, sink
        )
        contraction = _cents_field(
            fields[i_contraction] if i_contraction is not None else "",
            "contraction_mrr",
            line,
            sink,
        )
        churned = _cents_field(
            fields[i_churned] if i_churned is not None else "", "churned_mrr", line, sink
        )
        check_loss_within_start(start, contraction, churned, line, sink,
                                has_contraction=i_contraction is not None,
                                has_churned=i_churned is not None)

        segment = None
        if i_segment is not None:
            segment = fields[i_segment].strip(WHITESPACE) or None
            if segment is not None and len(segment) > MAX_TEXT_LENGTH:
                sink.add(line, "segment", _too_long(segment))
            elif segment is not None and (problem := cell_problem(segment)):
                sink.add(line, "segment", problem)

        days = math.nan
        if i_days is not None:
            days = _days_field(fields[i_days], line, sink)
        observed = math.nan
        if i_observed is not None:
            observed = _days_field(fields[i_observed], line, sink, column="days_observed")
            if days is not None and observed is not None and days > observed:
                sink.add(
                    line,
                    "days_to_value",
                    f"({days:g}) must not exceed days_observed ({observed:g}): value cannot "
                    "be reached after the account stopped being followed",
                )
        pre_start = pre_end = math.nan
        if i_pre_start is not None and i_pre_end is not None:
            pre_start = _optional_cents(fields[i_pre_start], "pre_start_mrr", line, sink)
            pre_end = _optional_cents(fields[i_pre_end], "pre_end_mrr", line, sink)
        enrolled = ""
        if i_enrolled is not None:
            enrolled = _date_field(fields[i_enrolled], line, sink)

        if not sink.total:  # after the first error only errors are collected
            variants.append(shared.setdefault(variant, variant))
            segments.append(segment and shared.setdefault(segment, segment))
            cents["start_mrr"].append(start)
            cents["expansion_mrr"].append(expansion)
            cents["contraction_mrr"].append(contraction)
            cents["churned_mrr"].append(churned)
            days_to_value.append(days)
            days_observed.append(observed)
            pre_start_cents.append(pre_start)
            pre_end_cents.append(pre_end)
            enrolled_on.append(enrolled)

    _raise_row_errors(sink, data_rows, header_line)
    return account_table(
        account_id=object_array(list(first_line_of)),
        variant=object_array(variants),
        start_cents=np.array(cents["start_mrr"], dtype=np.int64),
        expansion_cents=np.array(cents["expansion_mrr"], dtype=np.int64),
        contraction_cents=np.array(cents["contraction_mrr"], dtype=np.int64),
        churned_cents=np.array(cents["churned_mrr"], dtype=np.int64),
        segment=object_array(segments) if i_segment is not None else None,
        days_to_value=np.array(days_to_value, dtype=np.float64) if i_days is not None else None,
        notes=layout.notes,
        days_observed=(
            np.array(days_observed, dtype=np.float64) if i_observed is not None else None
        ),
        pre_start_cents=(
            np.array(pre_start_cents, dtype=np.float64) if i_pre_start is not None else None
        ),
        pre_end_cents=np.array(pre_end_cents, dtype=np.float64) if i_pre_end is not None else None,
        # "" (blank) becomes NaT
        enrolled_on=(
            np.array([d or "NaT" for d in enrolled_on], dtype="datetime64[D]")
            if i_enrolled is not None
            else None
        ),
    )


def _check_utf8(data: bytes, sink: _ErrorSink) -> None:
    """Report each line that holds bytes which are not UTF-8."""
    try:
        data.decode("utf-8")
        return
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="surrogateescape")
    line, counted_to, last_reported = 1, 0, 0
    for match in _NOT_UTF8.finditer(text):
        line += _line_breaks(text, counted_to, match.start())
        counted_to = match.start()
        if line != last_reported:
            last_reported = line
            byte = ord(match.group()) - 0xDC00
            sink.add(
                line,
                None,
                f"is not valid UTF-8 text (byte 0x{byte:02X}); save the file as CSV UTF-8",
            )


def _line_breaks(text: str, start: int, end: int) -> int:
    """Line breaks as the csv reader counts them: LF, CRLF and a lone CR."""
    return (
        text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)
    )


def _numbered_rows(data: bytes, sink: _ErrorSink) -> Iterator[tuple[int, list[str]]]:
    """Yield (first physical line, fields) for each non-blank row of valid UTF-8 ``data``.

    A quoted value may span several lines, so a row's line is one past the line where
    the previous row ended. A row the csv module cannot read (a value longer than its
    field size limit) becomes an error and reading goes on with the next line.
    """
    # Decoded as it is read (a str of the whole file would take up to 4 bytes a
    # character); newline="" splits lines at LF, CRLF and CR, as the csv module expects.
    with io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        ended = 0
        while True:
            line = ended + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                ended = reader.line_num
                if "field larger than field limit" in str(error):
                    limit = csv.field_size_limit()
                    sink.add(line, None, f"has a value longer than {limit:,} characters")
                else:
                    sink.add(line, None, f"cannot be read as CSV ({error})")
                continue
            ended = reader.line_num
            if "".join(fields).strip(WHITESPACE):  # skip blank rows, such as ",,,"
                yield line, fields


def _raise_row_errors(sink: _ErrorSink, data_rows: int, header_line: int) -> None:
    """After the rows: raise the collected §3 errors, or the error for a file without rows."""
    if sink.total:
        raise sink.fail()
    if not data_rows:
        raise ImportValidationError(
            [RowError(header_line, None, "the file has a header but no data rows")]
        )


def _width_ok(fields: list[str], width: int, line: int, sink: _ErrorSink) -> bool:
    """Whether a row has as many values as the header has columns (a §3 error if not)."""
    if len(fields) == width:
        return True
    sink.add(line, None, f"has {len(fields)} values but the header has {width} columns")
    return False


def _text_field(value: str, column: str, line: int, sink: _ErrorSink) -> str | None:
    """A stripped required text cell, or None after recording why it is not valid (§3)."""
    if not value:
        sink.add(line, column, "is required")
    elif len(value) > MAX_TEXT_LENGTH:
        sink.add(line, column, _too_long(value))
    elif problem := cell_problem(value):
        sink.add(line, column, problem)
    else:
        return value
    return None


def _too_long(value: str) -> str:
    return f"is too long ({len(value):,} characters; at most {MAX_TEXT_LENGTH})"


def _cents_field(
    raw: str, column: str, line: int, sink: _ErrorSink, *, required: bool = False
) -> int | None:
    """Parse one money value into cents, or report it and return None."""
    text = raw.strip(WHITESPACE)
    if not text:
        if required:
            sink.add(line, column, "is required")
            return None
        return 0
    match = _MONEY.fullmatch(text)
    if match is None:
        if _NEGATIVE_NUMBER.fullmatch(text):
            sink.add(line, column, "must be greater than 0" if required else "must be 0 or greater")
        elif _MONEY_TOO_PRECISE.fullmatch(text):
            sink.add(line, column, "must have at most 2 decimal places")
        else:
            sink.add(line, column, f"{show(text)} is not a plain number ({_PLAIN_NUMBER_HINT})")
        return None
    whole, fraction = match.groups()
    # Count digits before int(): a megabyte of digits must not reach int().
    if len(whole) > _MAX_WHOLE_DIGITS and len(whole.lstrip("0")) > _MAX_WHOLE_DIGITS:
        cents = MAX_CENTS
    elif fraction is None:
        cents = int(whole) * 100
    else:
        cents = int(whole) * 100 + int(fraction) * (10 if len(fraction) == 1 else 1)
    if cents >= MAX_CENTS:
        sink.add(line, column, f"is too large (at most {_format_cents(MAX_CENTS - 1)})")
        return None
    if required and cents == 0:
        sink.add(line, column, "must be greater than 0")
        return None
    return cents


def _days_field(
    raw: str, line: int, sink: _ErrorSink, *, column: str = "days_to_value"
) -> float | None:
    text = raw.strip(WHITESPACE)
    if not text:
        return math.nan
    if _DAYS.fullmatch(text):
        days = float(text)
        if math.isinf(days):
            sink.add(line, column, "is too large")
            return None
        return days
    if _NEGATIVE_NUMBER.fullmatch(text):
        sink.add(line, column, "must be 0 or greater")
    else:
        sink.add(line, column, f"{show(text)} is not a plain number ({_DAYS_HINT})")
    return None


def _optional_cents(raw: str, column: str, line: int, sink: _ErrorSink) -> float | None:
    """A pre-period money value in whole cents (as float), NaN when blank, None when bad."""
    if not raw.strip(WHITESPACE):
        return math.nan
    cents = _cents_field(raw, column, line, sink)
    return None if cents is None else float(cents)


def _date_field(raw: str, line: int, sink: _ErrorSink) -> str | None:
    """An ISO date (YYYY-MM-DD) as its text, "" when blank, None when bad.

    The same rule as the form fields' :func:`experiments.input_rules.read_date`: only the
    extended form, and a real calendar day.
    """
    text = raw.strip(WHITESPACE)
    if not text:
        return ""
    if _ISO_DATE.fullmatch(text):
        try:
            date.fromisoformat(text)
            return text
        except ValueError:
            sink.add(line, "enrolled_on", f"{show(text)} is not a calendar date")
            return None
    sink.add(line, "enrolled_on", f"{show(text)} {_DATE_HINT}")
    return None
