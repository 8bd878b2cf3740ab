"""Read and validate an account-level CSV upload (DESIGN §3).

One row per enrolled account::

    account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,days_to_value

Header names are matched case-insensitively after trimming, in any order; unknown
columns are ignored and mentioned in ``AccountTable.notes``. Money is parsed into exact
integer cents. Any invalid value rejects the whole file with an
:class:`ImportValidationError` that lists every problem by physical file line (the
header is line 1) and column.

Two readers implement the contract:

* the **fast path** parses with pyarrow (every column read as a string, so nothing is
  guessed) and validates whole columns at once. It can only *accept* a file: at the
  first thing it is unsure about it gives up and returns ``None``;
* the **slow path** reads row by row with Python's :mod:`csv` module. It is the single
  source of truth for error messages and line numbers, and it also reads valid files,
  so the tests can check that both paths build identical tables.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import threading
from array import array
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

__all__ = [
    "COLUMNS",
    "MAX_CENTS",
    "MAX_TEXT_LENGTH",
    "REQUIRED_COLUMNS",
    "AccountTable",
    "ImportValidationError",
    "RowError",
    "read_accounts",
]

COLUMNS = (
    "account_id",
    "variant",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "segment",
    "days_to_value",
)
REQUIRED_COLUMNS = ("account_id", "variant", "start_mrr")
MONEY_COLUMNS = ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")

# 10^13 cents is 100 billion a month for one account: anything that large is a unit or
# export mistake. Below the cap every value is exact in float64 (the fast path relies on
# it), though a sum of a million such values would no longer fit in int64.
MAX_CENTS = 10**13
MAX_TEXT_LENGTH = 255
# Trimmed around every header name and value. An explicit set (rather than "Unicode
# whitespace") so that both readers trim exactly the same characters; the no-break
# spaces and the BOM are what spreadsheets and concatenated exports leave behind.
WHITESPACE = " \t\r\n\v\f\u00a0\u2007\u202f\u3000\ufeff"

_MAX_WHOLE_DIGITS = len(str(MAX_CENTS // 100))
_BOM = b"\xef\xbb\xbf"
_SHOWN_CHARS = 40
_FAST_BLOCK_SIZE = 4 << 20
# The fast path's blocks are no larger than the csv field size limit (see _read_fast);
# if someone lowered that limit this far, blocks would be too small to be fast.
_MIN_FAST_BLOCK_SIZE = 64 << 10

_PLAIN_NUMBER_HINT = "use digits with an optional decimal point, e.g. 1234.50"
_DAYS_HINT = "use digits with an optional decimal point, e.g. 12.5"

# Regexes are ASCII-only on purpose: in Python ``\d`` also matches other scripts' digits.
_MONEY = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")
_MONEY_TOO_PRECISE = re.compile(r"[0-9]+\.[0-9]{3,}")
_NEGATIVE_NUMBER = re.compile(r"-[0-9]+(?:\.[0-9]+)?")
_DAYS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")

# The same formats for pyarrow's RE2 engine (blank values arrive there as nulls).
_MONEY_RE2 = r"^[0-9]+(\.[0-9]{1,2})?$"
_DAYS_RE2 = r"^[0-9]+(\.[0-9]+)?$"
# Bytes that can start or end a UTF-8 encoded WHITESPACE character.
_PADDING_FIRST_BYTE = np.zeros(256, dtype=bool)
_PADDING_FIRST_BYTE[[char.encode()[0] for char in WHITESPACE]] = True
_PADDING_LAST_BYTE = np.zeros(256, dtype=bool)
_PADDING_LAST_BYTE[[char.encode()[-1] for char in WHITESPACE]] = True


@dataclass(frozen=True)
class RowError:
    """One problem in an uploaded file, at a physical line (the header is line 1)."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        if self.column is None:
            return f"line {self.line}: {self.message}"
        return f"line {self.line}, {self.column}: {self.message}"


class ImportValidationError(ValueError):
    """The upload was rejected; ``errors`` holds the first problems, ``total`` counts all."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        errors = list(errors)
        total = len(errors) if total is None else total
        super().__init__(errors, total)
        self.errors = errors
        self.total = total

    def __str__(self) -> str:
        lines = [str(error) for error in self.errors]
        if self.total > len(self.errors):
            lines.append(f"… and {self.total - len(self.errors)} more")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class AccountTable:
    """A validated upload, one entry per account, as read-only numpy columns.

    Money is in integer cents. ``segment`` holds ``None`` for a blank value and
    ``days_to_value`` holds NaN for a blank one (value not reached); either column is
    ``None`` when the file does not have it.
    """

    account_id: np.ndarray | None
    variant: np.ndarray
    start_cents: np.ndarray
    expansion_cents: np.ndarray
    contraction_cents: np.ndarray
    churned_cents: np.ndarray
    segment: np.ndarray | None
    days_to_value: np.ndarray | None
    sha256: str
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.start_cents)

    def variants(self) -> list[str]:
        """The variant keys in order of first appearance."""
        return list(dict.fromkeys(self.variant.tolist()))

    def money(self) -> dict[str, np.ndarray]:
        """The money columns as float64 arrays in currency units (cents / 100)."""
        return {
            "start": self.start_cents / 100,
            "expansion": self.expansion_cents / 100,
            "contraction": self.contraction_cents / 100,
            "churned": self.churned_cents / 100,
        }


def read_accounts(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    variants: Collection[str] | None = None,
    max_errors: int = 50,
    for_storage: bool = True,
) -> AccountTable:
    """Read and validate an account CSV from a path, raw bytes or a binary file object.

    When ``variants`` is given, every row's variant must be one of them. At most
    ``max_errors`` errors are kept, but all of them are counted. With
    ``for_storage=False`` (an analysis that stores nothing) the table skips what only
    storage needs: ``account_id`` is ``None`` (ids are still checked for uniqueness)
    and ``sha256`` is empty — a million ids as Python strings cost ~80 MB.

    Raises
    ------
    ImportValidationError
        If the file breaks the data contract in any way (all problems are listed).
    TypeError, ValueError
        If the arguments themselves are unusable.
    """
    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
        raise ValueError(f"max_errors must be a positive integer, got {max_errors!r}")
    allowed = _allowed_variants(variants)
    data = _read_source(source)

    # Hashing 60 MB takes a while; hashlib releases the GIL, so overlap it with parsing.
    digest: list[str] = [""]
    hasher = threading.Thread(target=lambda: digest.__setitem__(0, hashlib.sha256(data).hexdigest()))
    if for_storage:
        hasher.start()
    try:
        table = _read_fast(data, allowed, keep_ids=for_storage)
        if table is None:
            table = _read_slow(data, allowed, max_errors)
            if not for_storage:
                table = replace(table, account_id=None)
    finally:
        if for_storage:
            hasher.join()
    return replace(table, sha256=digest[0])


# --------------------------------------------------------------------------- sources


def _read_source(source: str | os.PathLike[str] | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return file.read()
    read = getattr(source, "read", None)
    if read is None:
        raise TypeError(
            f"source must be a path, bytes or a binary file, not {type(source).__name__}"
        )
    data = read()
    if isinstance(data, str):
        raise TypeError("source must be opened in binary mode ('rb'), not text mode")
    return bytes(data)


def _allowed_variants(variants: Collection[str] | None) -> tuple[str, ...] | None:
    if variants is None:
        return None
    if isinstance(variants, (str, bytes)):
        raise TypeError(f"variants must be a collection of variant keys, not {variants!r}")
    keys = sorted(variants) if isinstance(variants, (set, frozenset)) else list(variants)
    if not keys or not all(isinstance(key, str) and key for key in keys):
        raise ValueError(f"variants must be non-empty strings, got {variants!r}")
    return tuple(dict.fromkeys(keys))


# --------------------------------------------------------------------- shared pieces


@dataclass(frozen=True)
class _Layout:
    """Where each known column sits in a row of ``width`` fields."""

    width: int
    index: dict[str, int]
    notes: tuple[str, ...]


def _account_table(
    *,
    account_id: np.ndarray,
    variant: np.ndarray,
    start_cents: np.ndarray,
    expansion_cents: np.ndarray,
    contraction_cents: np.ndarray,
    churned_cents: np.ndarray,
    segment: np.ndarray | None,
    days_to_value: np.ndarray | None,
    notes: tuple[str, ...],
) -> AccountTable:
    """An AccountTable over read-only arrays; read_accounts fills in the hash."""
    columns = (
        account_id,
        variant,
        start_cents,
        expansion_cents,
        contraction_cents,
        churned_cents,
        segment,
        days_to_value,
    )
    for column in columns:
        if column is not None:
            column.flags.writeable = False
    return AccountTable(*columns, sha256="", notes=notes)


def _resolve_header(fields: list[str], line: int) -> tuple[_Layout, list[RowError]]:
    index: dict[str, int] = {}
    errors: list[RowError] = []
    unknown: list[str] = []
    unnamed = 0
    for position, field in enumerate(fields):
        name = field.strip(WHITESPACE)
        key = name.lower()
        if key in COLUMNS:
            if key in index:
                errors.append(RowError(line, key, "appears more than once in the header"))
            else:
                index[key] = position
        elif name:
            unknown.append(_show(name))
        else:
            unnamed += 1
    missing = [name for name in REQUIRED_COLUMNS if name not in index]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        errors.insert(
            0, RowError(line, None, f"missing required column{plural}: {', '.join(missing)}")
        )
    notes = []
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        notes.append(f"ignored unknown column{plural}: {', '.join(unknown)}")
    if unnamed:
        plural = "s" if unnamed > 1 else ""
        notes.append(f"ignored {unnamed} column{plural} without a name")
    return _Layout(len(fields), index, tuple(notes)), errors


def _show(value: str) -> str:
    """Quote a user's value for a message, shortened and with control characters escaped."""
    if len(value) > _SHOWN_CHARS:
        value = value[:_SHOWN_CHARS] + "…"
    return '"' + _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", value) + '"'


def _format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ------------------------------------------------------------------------- slow path


class _ErrorSink:
    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self.errors: list[RowError] = []
        self.total = 0

    def add(self, line: int, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(line, column, message))

    def fail(self) -> ImportValidationError:
        return ImportValidationError(self.errors, self.total)


def _read_slow(data: bytes, allowed: tuple[str, ...] | None, max_errors: int) -> AccountTable:
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
    layout, header_errors = _resolve_header(header, header_line)
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
    allowed_set = frozenset(allowed) if allowed is not None else None
    # In file order, so without duplicates its keys are the account_id column.
    first_line_of: dict[str, int] = {}
    shared: dict[str, str] = {}  # one str object per distinct variant/segment
    variants: list[str] = []
    segments: list[str | None] = []
    cents = {name: array("q") for name in MONEY_COLUMNS}
    days_to_value = array("d")
    data_rows = 0

    for line, fields in rows:
        data_rows += 1
        if len(fields) != layout.width:
            sink.add(
                line, None, f"has {len(fields)} values but the header has {layout.width} columns"
            )
            continue
        account_id = fields[i_id].strip(WHITESPACE)
        if not account_id:
            sink.add(line, "account_id", "is required")
        elif len(account_id) > MAX_TEXT_LENGTH:
            sink.add(line, "account_id", _too_long(account_id))
        elif account_id in first_line_of:
            sink.add(line, "account_id", f"duplicate of line {first_line_of[account_id]}")
        else:
            first_line_of[account_id] = line

        variant = fields[i_variant].strip(WHITESPACE)
        if not variant:
            sink.add(line, "variant", "is required")
        elif len(variant) > MAX_TEXT_LENGTH:
            sink.add(line, "variant", _too_long(variant))
        elif allowed_set is not None and variant not in allowed_set:
            sink.add(
                line,
                "variant",
                f"{_show(variant)} is not one of the experiment's variants"
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
        if (
            start is not None
            and contraction is not None
            and churned is not None
            and contraction + churned > start
        ):
            if i_contraction is not None and i_churned is not None:
                lost, what = contraction + churned, "contraction_mrr + churned_mrr"
            elif i_churned is not None:
                lost, what = churned, "churned_mrr"
            else:
                lost, what = contraction, "contraction_mrr"
            sink.add(
                line,
                "churned_mrr" if i_churned is not None else "contraction_mrr",
                f"{what} ({_format_cents(lost)}) must not exceed start_mrr"
                f" ({_format_cents(start)})",
            )

        segment = None
        if i_segment is not None:
            segment = fields[i_segment].strip(WHITESPACE) or None
            if segment is not None and len(segment) > MAX_TEXT_LENGTH:
                sink.add(line, "segment", _too_long(segment))

        days = math.nan
        if i_days is not None:
            days = _days_field(fields[i_days], line, sink)

        if not sink.total:  # after the first error only errors are collected
            variants.append(shared.setdefault(variant, variant))
            segments.append(segment and shared.setdefault(segment, segment))
            cents["start_mrr"].append(start)
            cents["expansion_mrr"].append(expansion)
            cents["contraction_mrr"].append(contraction)
            cents["churned_mrr"].append(churned)
            days_to_value.append(days)

    if sink.total:
        raise sink.fail()
    if not data_rows:
        raise ImportValidationError(
            [RowError(header_line, None, "the file has a header but no data rows")]
        )
    return _account_table(
        account_id=_object_array(list(first_line_of)),
        variant=_object_array(variants),
        start_cents=np.array(cents["start_mrr"], dtype=np.int64),
        expansion_cents=np.array(cents["expansion_mrr"], dtype=np.int64),
        contraction_cents=np.array(cents["contraction_mrr"], dtype=np.int64),
        churned_cents=np.array(cents["churned_mrr"], dtype=np.int64),
        segment=_object_array(segments) if i_segment is not None else None,
        days_to_value=np.array(days_to_value, dtype=np.float64) if i_days is not None else None,
        notes=layout.notes,
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
            sink.add(line, column, f"{_show(text)} is not a plain number ({_PLAIN_NUMBER_HINT})")
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


def _days_field(raw: str, line: int, sink: _ErrorSink) -> float | None:
    text = raw.strip(WHITESPACE)
    if not text:
        return math.nan
    if _DAYS.fullmatch(text):
        days = float(text)
        if math.isinf(days):
            sink.add(line, "days_to_value", "is too large")
            return None
        return days
    if _NEGATIVE_NUMBER.fullmatch(text):
        sink.add(line, "days_to_value", "must be 0 or greater")
    else:
        sink.add(line, "days_to_value", f"{_show(text)} is not a plain number ({_DAYS_HINT})")
    return None


def _object_array(items: list) -> np.ndarray:
    return np.fromiter(items, dtype=object, count=len(items))


# ------------------------------------------------------------------------- fast path


def _read_fast(data: bytes, allowed: tuple[str, ...] | None, *, keep_ids: bool = True) -> AccountTable | None:
    """Parse and validate column-wise with pyarrow; None means "let the slow path decide".

    Returning a table is a promise that the slow path would build an identical one.
    pyarrow and the csv module split fields the same way (non-strict quoting, doubled
    quotes, quoted newlines, blank lines), which the tests check against random input;
    every rule is checked again here, and any doubt falls through to the slow path.
    """
    field_limit = csv.field_size_limit()
    if field_limit < _MIN_FAST_BLOCK_SIZE:
        return None
    start = len(_BOM) if data.startswith(_BOM) else 0
    header_end = data.find(b"\n", start)
    if header_end < 0 or not _is_utf8(data):
        return None
    header = _single_line_row(data[start:header_end].decode("utf-8"))
    if header is None:
        return None
    layout, header_errors = _resolve_header(header, 1)
    if header_errors:
        return None

    names = [f"f{position}" for position in range(layout.width)]
    wanted = {names[position]: key for key, position in layout.index.items()}
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data)[header_end + 1 :],
            read_options=pa_csv.ReadOptions(
                column_names=names,
                # A row longer than a block is an error for pyarrow, so no field the
                # csv module would refuse as too large can get through here.
                block_size=min(_FAST_BLOCK_SIZE, field_limit),
                use_threads=True,  # parse blocks in parallel; the columns are then checked two at a time
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(wanted),
                column_types={name: pa.string() for name in wanted},
                null_values=[""],  # unquoted blanks arrive as nulls
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=False,  # the whole buffer was checked above
            ),
        )
    except pa.ArrowException:
        return None
    rows = table.num_rows
    if rows == 0:
        return None
    raw = {wanted[name]: table.column(name) for name in table.column_names}
    del table  # each column is released as soon as it has been converted
    # The allocator keeps freed blocks for reuse; hand them back so that the peak
    # memory is closer to what is live (about 190 MB less for a million rows).
    release_memory = pa.default_memory_pool().release_unused
    release_memory()

    checks = {
        "variant": lambda values: _fast_variants(values, allowed),
        "start_mrr": lambda values: _fast_cents(values, required=True),
        "expansion_mrr": _fast_cents,
        "contraction_mrr": _fast_cents,
        "churned_mrr": _fast_cents,
        "segment": _fast_segments,
        "days_to_value": _fast_days,
    }
    # pyarrow kernels release the GIL, so two columns are checked at a time; the
    # account ids (whose uniqueness check needs a large hash table) go last.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {
            key: pool.submit(check, raw.pop(key)) for key, check in checks.items() if key in raw
        }
        pending["account_id"] = pool.submit(_fast_account_ids, raw.pop("account_id"))
        result = {key: future.result() for key, future in pending.items()}
    if any(value is None for value in result.values()):
        return None
    start_cents = result["start_mrr"]
    zeros = np.zeros(rows, dtype=np.int64)
    contraction = result.get("contraction_mrr", zeros)
    churned = result.get("churned_mrr", zeros)
    if not (start_cents > 0).all() or not (contraction + churned <= start_cents).all():
        return None
    # Now that the worker threads are gone their freed memory can be handed back,
    # before the account ids become a million Python strings. to_pylist, not
    # to_numpy: pyarrow's to_numpy() imports pandas (~0.15 s).
    release_memory()
    ids = result.pop("account_id")
    account_id = _object_array(ids.to_pylist()) if keep_ids else None
    return _account_table(
        account_id=account_id,
        variant=result["variant"],
        start_cents=start_cents,
        expansion_cents=result.get("expansion_mrr", zeros.copy()),
        contraction_cents=contraction.copy() if contraction is zeros else contraction,
        churned_cents=churned.copy() if churned is zeros else churned,
        segment=result.get("segment"),
        days_to_value=result.get("days_to_value"),
        notes=layout.notes,
    )


def _is_utf8(data: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    as_text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        as_text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _single_line_row(line: str) -> list[str] | None:
    """The header's fields if the first line is one complete CSV row by itself."""
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _fast_text(values: pa.ChunkedArray, *, required: bool) -> pa.ChunkedArray | None:
    """Trimmed text within the length limit (None if a required value is blank)."""
    if required and values.null_count:
        return None
    if _maybe_padded(values):
        values = pc.utf8_trim(values, characters=WHITESPACE)
    lengths = pc.binary_length(values)
    # Bytes >= characters, so a byte count within the limit is enough; longer non-ASCII
    # values go to the slow path, which counts characters.
    if (pc.max(lengths).as_py() or 0) > MAX_TEXT_LENGTH:
        return None
    if required and pc.min(lengths).as_py() == 0:
        return None
    return values


def _maybe_padded(values: pa.ChunkedArray) -> bool:
    """Whether any value starts or ends with a byte that may belong to WHITESPACE.

    Looks only at the first and last byte of each value, which is much cheaper than
    trimming a copy of the column just to find that nothing changed.
    """
    for chunk in values.chunks:
        offsets_buffer, data_buffer = chunk.buffers()[1:3]
        if not len(chunk) or data_buffer is None:
            continue
        offsets = np.frombuffer(
            offsets_buffer, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4
        )
        text = np.frombuffer(data_buffer, dtype=np.uint8)
        starts, ends = offsets[:-1], offsets[1:]
        filled = ends > starts
        if _PADDING_FIRST_BYTE[text[starts[filled]]].any():
            return True
        if _PADDING_LAST_BYTE[text[ends[filled] - 1]].any():
            return True
    return False


def _fast_account_ids(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    values = _fast_text(values, required=True)
    if values is None or len(pc.unique(values)) != len(values):
        return None
    return values


def _fast_variants(values: pa.ChunkedArray, allowed: tuple[str, ...] | None) -> np.ndarray | None:
    values = _fast_text(values, required=True)
    if values is None:
        return None
    if (
        allowed is not None
        and not pc.all(pc.is_in(values, value_set=_string_array(allowed))).as_py()
    ):
        return None
    return _objects_via_dictionary(values)


def _fast_segments(values: pa.ChunkedArray) -> np.ndarray | None:
    values = _fast_text(values, required=False)
    return None if values is None else _objects_via_dictionary(values)


def _all_match(values: pa.ChunkedArray, pattern: str) -> bool:
    """Whether every non-null value matches; an all-null column matches trivially."""
    return pc.all(pc.match_substring_regex(values, pattern)).as_py() is not False


def _fast_cents(values: pa.ChunkedArray, *, required: bool = False) -> np.ndarray | None:
    if required and values.null_count:
        return None
    # Numbers are rarely padded: only trim (a copy) when the untrimmed check fails.
    if not _all_match(values, _MONEY_RE2):
        values = pc.utf8_trim(values, characters=WHITESPACE)
        if not _all_match(values, _MONEY_RE2):
            return None
    try:
        units = pc.cast(values, pa.float64())
    except pa.ArrowInvalid:
        return None
    if (pc.max(units).as_py() or 0) >= MAX_CENTS / 100:
        return None
    # Exact: a value with at most 2 decimals below 10^13 cents parses to within a
    # relative 2^-53 of itself, so units * 100 is within 0.003 of the integer cents.
    return _to_numpy(units, dtype=np.int64, blank=0, scale=100)


def _fast_days(values: pa.ChunkedArray) -> np.ndarray | None:
    if not _all_match(values, _DAYS_RE2):
        values = pc.utf8_trim(values, characters=WHITESPACE)
        if not _all_match(values, _DAYS_RE2):
            return None
    try:
        days = _to_numpy(pc.cast(values, pa.float64()), blank=math.nan)
    except pa.ArrowInvalid:
        return None
    return None if np.isinf(days).any() else days


def _objects_via_dictionary(values: pa.ChunkedArray) -> np.ndarray:
    """A str object array (None for blank) in which repeated values share one object."""
    encoded = pc.dictionary_encode(values.combine_chunks(), null_encoding="encode")
    distinct = [value or None for value in encoded.dictionary.to_pylist()]
    indices = _to_numpy(encoded.indices, dtype=np.intp)
    return _object_array(distinct)[indices]


def _string_array(items: Collection[str]) -> pa.Array:
    """A pyarrow string array built from buffers: pa.array() would import pandas (~0.15 s)."""
    encoded = [item.encode("utf-8") for item in items]
    offsets = np.cumsum([0] + [len(item) for item in encoded], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def _to_numpy(
    values: pa.Array | pa.ChunkedArray,
    *,
    dtype: type[np.generic] = np.float64,
    blank: float = 0.0,
    scale: float | None = None,
) -> np.ndarray:
    """Copy a float64 or int32 column into a new numpy array of ``dtype``.

    Nulls become ``blank``; values are multiplied by ``scale`` and rounded if given.
    Chunk by chunk, so that no column-sized temporaries are left behind in the heap,
    and straight from the buffers because pyarrow's to_numpy() imports pandas (~0.15 s).
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    source_type = np.float64 if values.type == pa.float64() else np.int32
    itemsize = np.dtype(source_type).itemsize
    out = np.empty(len(values), dtype=dtype)
    position = 0
    for chunk in chunks:
        size = len(chunk)
        if not size:
            continue
        validity, numbers = chunk.buffers()[:2]
        part = np.frombuffer(numbers, dtype=source_type, count=size, offset=chunk.offset * itemsize)
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
            part = np.where(bits[chunk.offset : chunk.offset + size].astype(bool), part, blank)
        if scale is not None:
            part = np.rint(part * scale)
        out[position : position + size] = part
        position += size
    return out
