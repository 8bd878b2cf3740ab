"""The data contract of an account CSV upload (DESIGN §3), shared by both readers.

One row per enrolled account::

    account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,days_to_value

and, optionally, ``days_observed`` (days followed since enrolment; a blank days_to_value is
censored there), ``pre_start_mrr`` and ``pre_end_mrr`` (both or neither: the CUPED
covariate) and ``enrolled_on`` (an ISO date). Header names are matched case-insensitively
after trimming, in any order; unknown columns are ignored and mentioned in
``AccountTable.notes``. Money is parsed into exact integer cents. Text values (ids,
variants, segments) hold no control characters. Any invalid value rejects the whole file
with an :class:`ImportValidationError` that lists every problem by physical file line
(the header is line 1) and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.input_rules import CONTROL_ONE_LINE

COLUMNS = (
    "account_id",
    "variant",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "segment",
    "days_to_value",
    "days_observed",
    "pre_start_mrr",
    "pre_end_mrr",
    "enrolled_on",
)
REQUIRED_COLUMNS = ("account_id", "variant", "start_mrr")
MONEY_COLUMNS = ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
#: The pre-period money columns: optional, but a file has both or neither (DESIGN §3).
PRE_PERIOD_COLUMNS = ("pre_start_mrr", "pre_end_mrr")

# 10^13 cents is 100 billion a month for one account: anything that large is a unit or
# export mistake. Below the cap every value is exact in float64 (the fast path relies on
# it), though a sum of a million such values would no longer fit in int64.
MAX_CENTS = 10**13
MAX_TEXT_LENGTH = 255
# Trimmed around every header name and value. An explicit set (rather than "Unicode
# whitespace") so that both readers trim exactly the same characters; the no-break
# spaces and the BOM are what spreadsheets and concatenated exports leave behind.
WHITESPACE = " \t\r\n\v\f\u00a0\u2007\u202f\u3000\ufeff"

SHOWN_CHARS = 40


@dataclass(frozen=True)
class RowError:
    """One problem in an uploaded file, at a physical line (the header is line 1).

    Identical problems (same column, same message) on several lines are one entry:
    ``line`` is the first of them, ``last_line`` the last and ``count`` how many there are,
    so that 2,503 rows with the same wrong variant read as one line, not 2,503.
    """

    line: int
    column: str | None
    message: str
    last_line: int | None = None
    count: int = 1

    @property
    def where(self) -> str:
        """The lines in words: "line 7", "lines 2–2,504" or "12 lines from 2 to 90"."""
        last = self.last_line if self.last_line is not None else self.line
        if self.count <= 1 or last == self.line:
            return f"line {self.line:,}"
        if self.count == last - self.line + 1:
            return f"lines {self.line:,}\u2013{last:,}"
        return f"{self.count:,} lines from {self.line:,} to {last:,}"

    def to_list(self) -> list:
        """A JSON-ready list (what an upload job stores): [line, column, message] for one
        line, with [last_line, count] appended for a group."""
        entry: list = [self.line, self.column, self.message]
        if self.count > 1:
            entry += [self.last_line, self.count]
        return entry

    @classmethod
    def from_list(cls, entry: list) -> RowError:
        """The inverse of :meth:`to_list`."""
        line, column, message, *group = entry
        if group:
            return cls(int(line), column, str(message), int(group[0]), int(group[1]))
        return cls(int(line), column, str(message))

    def __str__(self) -> str:
        if self.column is None:
            return f"{self.where}: {self.message}"
        return f"{self.where}, {self.column}: {self.message}"


class ImportValidationError(ValueError):
    """The upload was rejected.

    ``errors`` holds the first distinct problems, each grouping every line it occurs on;
    ``total`` counts all problems (every line of every group, and those not listed).
    """

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        errors = list(errors)
        total = sum(error.count for error in errors) if total is None else total
        super().__init__(errors, total)
        self.errors = errors
        self.total = total

    @property
    def unlisted(self) -> int:
        """How many problems are counted in ``total`` but belong to no listed entry."""
        return max(0, self.total - sum(error.count for error in self.errors))

    def __str__(self) -> str:
        lines = [str(error) for error in self.errors]
        if self.unlisted:
            lines.append(f"\u2026 and {self.unlisted:,} more")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class AccountTable:
    """A validated upload, one entry per account, as read-only numpy columns.

    ``account_id`` is an object array of str, or (from the fast reader) an
    :class:`ArrowText` that reads like one. Money is in integer cents. ``segment`` holds
    ``None`` for a blank value and ``days_to_value`` holds NaN for a blank one (value
    not reached); either column is
    ``None`` when the file does not have it. The optional columns of issue 15 follow the
    same rule: ``days_observed`` (float days, NaN = blank), ``pre_start_cents`` and
    ``pre_end_cents`` (whole cents held in float64 so that a blank can be NaN; exact, as
    every value is below ``MAX_CENTS`` < 2**53) and ``enrolled_on`` (``datetime64[D]``,
    NaT = blank) are ``None`` when the file lacks them.
    """

    account_id: np.ndarray | ArrowText | None
    variant: np.ndarray
    start_cents: np.ndarray
    expansion_cents: np.ndarray
    contraction_cents: np.ndarray
    churned_cents: np.ndarray
    segment: np.ndarray | None
    days_to_value: np.ndarray | None
    sha256: str
    notes: tuple[str, ...] = ()
    days_observed: np.ndarray | None = None
    pre_start_cents: np.ndarray | None = None
    pre_end_cents: np.ndarray | None = None
    enrolled_on: np.ndarray | None = None

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

    @property
    def has_pre_period(self) -> bool:
        """Whether the file carries the pre-period columns (both, by the contract)."""
        return self.pre_start_cents is not None and self.pre_end_cents is not None



@dataclass(frozen=True)
class Layout:
    """Where each known column sits in a row of ``width`` fields."""

    width: int
    index: dict[str, int]
    notes: tuple[str, ...]


def account_table(
    *,
    account_id: np.ndarray | ArrowText | None,
    variant: np.ndarray,
    start_cents: np.ndarray,
    expansion_cents: np.ndarray,
    contraction_cents: np.ndarray,
    churned_cents: np.ndarray,
    segment: np.ndarray | None,
    days_to_value: np.ndarray | None,
    notes: tuple[str, ...],
    days_observed: np.ndarray | None = None,
    pre_start_cents: np.ndarray | None = None,
    pre_end_cents: np.ndarray | None = None,
    enrolled_on: np.ndarray | None = None,
) -> AccountTable:
    """An AccountTable over read-only arrays; read_accounts fills in the hash."""
    optional = (days_observed, pre_start_cents, pre_end_cents, enrolled_on)
    for column in optional:
        if column is not None:
            column.flags.writeable = False
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
        if isinstance(column, np.ndarray):  # an ArrowText is read-only already
            column.flags.writeable = False
    return AccountTable(*columns, "", notes, *optional)


def resolve_header(fields: list[str], line: int) -> tuple[Layout, list[RowError]]:
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
            unknown.append(show(name))
        else:
            unnamed += 1
    missing = [name for name in REQUIRED_COLUMNS if name not in index]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        errors.insert(
            0, RowError(line, None, f"missing required column{plural}: {', '.join(missing)}")
        )
    pre = [name for name in PRE_PERIOD_COLUMNS if name in index]
    if len(pre) == 1:
        (present,) = pre
        (absent,) = (name for name in PRE_PERIOD_COLUMNS if name != present)
        errors.append(
            RowError(
                line,
                present,
                f"comes with {absent}: the pre-period needs both columns (or neither)",
            )
        )
    notes = []
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        notes.append(f"ignored unknown column{plural}: {', '.join(unknown)}")
    if unnamed:
        plural = "s" if unnamed > 1 else ""
        notes.append(f"ignored {unnamed} column{plural} without a name")
    return Layout(len(fields), index, tuple(notes)), errors


def show(value: str) -> str:
    """Quote a user's value for a message, shortened and with control characters escaped."""
    if len(value) > SHOWN_CHARS:
        value = value[:SHOWN_CHARS] + "…"
    return '"' + CONTROL_ONE_LINE.sub(lambda m: f"\\x{ord(m.group()):02x}", value) + '"'



def object_array(items: list) -> np.ndarray:
    return np.fromiter(items, dtype=object, count=len(items))


class ArrowText:
    """Text values (no NULL) kept in one pyarrow string array, not as a Python str each.

    A million account ids as Python strings cost ~80 MB and their creation; PostgreSQL's
    binary COPY sends the array's bytes as they are (:mod:`experiments.rows_postgres`).
    Everyone else reads it as the object array it stands for: ``len``, ``[i]`` (a str),
    ``[a:b]`` (another ArrowText, no copy), ``tolist()``, ``np.asarray``; ``==``, ``<``
    and the like compare value by value (an object array of bool) and, like an array,
    it is no dictionary key. A pickle holds only its own values, not a sliced-off rest.
    """

    __slots__ = ("arrow",)
    dtype = np.dtype(object)
    ndim = 1
    __hash__ = None  # as an ndarray: == is value by value

    def __init__(self, values) -> None:
        import pyarrow as pa

        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise TypeError(f"ArrowText holds string or large_string, not {values.type}")
        if values.null_count:
            raise ValueError("ArrowText holds no NULL")
        self.arrow = values

    def __len__(self) -> int:
        return len(self.arrow)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.arrow),)

    @property
    def size(self) -> int:
        return len(self.arrow)

    def __reduce__(self):
        import pyarrow as pa

        # A slice shares its parent's buffers; pickled as they are, ten ids of a
        # million-id upload would carry all million (16 MB).
        return ArrowText, (pa.concat_arrays([self.arrow]),)

    # Without these, ``ids == "a"`` was object identity: one False, no error.
    def __eq__(self, other):
        return np.asarray(self) == _operand(other)

    def __ne__(self, other):
        return np.asarray(self) != _operand(other)

    def __lt__(self, other):
        return np.asarray(self) < _operand(other)

    def __le__(self, other):
        return np.asarray(self) <= _operand(other)

    def __gt__(self, other):
        return np.asarray(self) > _operand(other)

    def __ge__(self, other):
        return np.asarray(self) >= _operand(other)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self.arrow))
            if step == 1:
                return ArrowText(self.arrow.slice(start, max(0, stop - start)))
        elif isinstance(key, int | np.integer):
            return self.arrow[int(key)].as_py()
        return np.asarray(self)[key]

    def __iter__(self):
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        return self.arrow.to_pylist()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = object_array(self.tolist())
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ArrowText({len(self.arrow):,} values)"


def _operand(other):
    return np.asarray(other) if isinstance(other, ArrowText) else other
