"""Reading user input into typed values, collecting one message per field.

The services of the tree, journeys, registry and planner take plain mappings (a
form's values, or typed values from code and tests) and check them here, so a
bad value becomes a field message in :class:`~experiments.errors.ValidationFailed`
instead of a database error: PostgreSQL refuses NUL characters in text and ids
beyond a 32-bit integer, so those are caught before they reach it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from experiments.errors import ValidationFailed

#: The longest free text (hypotheses, rationales, reasons) a field accepts.
LONG_TEXT_MAX = 10_000
#: Names, titles, metric labels.
NAME_MAX = 200
#: The largest id an integer primary key can hold on every supported database.
MAX_ID = 2**31 - 1

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")


class FieldErrors(dict[str, str]):
    """``{field: message}``, keeping the first message of each field."""

    def add(self, field: str, message: str) -> None:
        self.setdefault(field, message)

    def raise_if_any(self) -> None:
        if self:
            raise ValidationFailed(self)


def read_text(data: Mapping[str, Any], field: str, errors: FieldErrors, *, max_length: int,
              required: bool = False, multiline: bool = False) -> str:
    """The trimmed text of ``field`` ('' when absent); line ends normalised to ``\\n``."""
    raw = data.get(field)
    value = "" if raw is None else str(raw)
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if (_CONTROL if multiline else _CONTROL_ONE_LINE).search(value):
        errors.add(field, "must not contain control characters" + ("" if multiline else " or line breaks"))
    elif len(value) > max_length:
        errors.add(field, f"must be at most {max_length:,} characters (this is {len(value):,})")
    elif required and not value:
        errors.add(field, "is required")
    return value


def read_number(data: Mapping[str, Any], field: str, errors: FieldErrors, *,
                required: bool = False, example: str = "0.05") -> float | None:
    """A finite float, or ``None`` when blank and not required."""
    raw = data.get(field)
    if isinstance(raw, bool):
        errors.add(field, f"must be a number, such as {example}")
        return None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            errors.add(field, f"is required (a number, such as {example})")
        return None
    try:
        value = float(raw.strip().replace("_", "") if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        errors.add(field, f"must be a number, such as {example}")
        return None
    if not math.isfinite(value):
        errors.add(field, f"must be a finite number, such as {example}")
        return None
    return value


def read_id(data: Mapping[str, Any], field: str, errors: FieldErrors, *, required: bool = False,
            what: str = "item") -> int | None:
    """A positive integer id, or ``None`` when blank (an error when ``required``)."""
    raw = data.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            errors.add(field, f"choose a {what}")
        return None
    if isinstance(raw, bool):
        errors.add(field, f"unknown {what}")
        return None
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        if not text.isascii() or not text.isdigit() or len(text) > 10:
            errors.add(field, f"unknown {what}")
            return None
        value = int(text)
    if not 0 < value <= MAX_ID:
        errors.add(field, f"unknown {what}")
        return None
    return value


def parse_id(raw: Any) -> int | None:
    """A valid id from a query string value, else ``None`` (filters ignore bad values)."""
    scratch = FieldErrors()
    return read_id({"v": raw}, "v", scratch)


def read_date(data: Mapping[str, Any], field: str, errors: FieldErrors) -> date | None:
    """An ISO date (YYYY-MM-DD), or ``None`` when blank."""
    raw = data.get(field)
    if isinstance(raw, date):
        return raw
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    # Only the extended form: fromisoformat would also take 20261201 and week dates.
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    errors.add(field, "must be a date such as 2026-12-01")
    return None


def read_choice(data: Mapping[str, Any], field: str, errors: FieldErrors, choices: tuple[str, ...], *,
                default: str | None = None) -> str | None:
    """One of ``choices``; blank gives ``default`` (an error when there is none)."""
    raw = data.get(field)
    value = "" if raw is None else str(raw).strip()
    if not value:
        if default is None:
            errors.add(field, f"choose one of: {', '.join(choices)}")
        return default
    if value not in choices:
        errors.add(field, f"must be one of: {', '.join(choices)}")
        return default
    return value


def read_version(raw: Any) -> int | None:
    """The optimistic-locking version a form was rendered with (``None`` when unreadable)."""
    return parse_id(raw)
