"""The validation kit: reading user input into typed values, one message per field.

Every form, query string and service that takes plain values reads them here, so a
bad value becomes a field message in :class:`~experiments.errors.ValidationFailed`
(a 422 with the form kept) instead of a database error. PostgreSQL refuses NUL
characters in text and ids beyond a 32-bit integer, so those are caught before they
reach it; the web layer adds a request-wide guard for routes that forget
(``webapp/input_guard.py``), built on :func:`control_character` below.

How to use it::

    errors = FieldErrors()
    name = read_text(form, "name", errors, max_length=NAME_MAX, required=True)
    team_id = read_id(form, "team_id", errors, required=True, what="team")
    errors.raise_if_any()          # ValidationFailed({field: message, ...})

``data`` is any mapping (a form, ``request.args``, a dict from code or tests). Each
reader returns the typed value (or ``None``/a default) and records at most one
message per field, so several readers can share one :class:`FieldErrors`.

=======================  ==================================================================
reader                   gives
=======================  ==================================================================
:func:`read_text`        trimmed one-line text; ``multiline=True`` keeps tabs and line ends
:func:`read_email`       a normalised (lower-case) email address
:func:`read_slug`        a lower-case key such as ``customer-success``
:func:`read_password`    a password as typed (not trimmed), length-capped
:func:`read_number`      a finite float
:func:`read_int`         a whole number within bounds
:func:`read_page`        a page number (1 when blank)
:func:`read_id`          a positive database id (``parse_id`` for lenient query filters)
:func:`read_date`        an ISO date (``read_date_range`` for since/until pairs)
:func:`read_choice`      one of a tuple of choices
:func:`read_flag`        a checkbox as a bool
:func:`cell_problem`     why one CSV cell is refused (control characters), else ``None``
=======================  ==================================================================

Control characters: C0 (U+0000–U+001F) and DEL (U+007F) are refused everywhere, except
tab and line ends in multi-line fields (hypotheses, notes, reasons). One-line text also
refuses the bidirectional embeddings, overrides and isolates (:data:`BIDI_CONTROL`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from typing import Any

from experiments.errors import ValidationFailed

#: The longest free text (hypotheses, rationales, reasons) a field accepts.
LONG_TEXT_MAX = 10_000
#: Names, titles, metric labels.
NAME_MAX = 200
#: The longest email address (RFC 5321 path limit) and its local part.
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64
#: What a password field reads at most (longer input is cut, never hashed whole).
PASSWORD_READ_MAX = 1024
#: The largest id an integer primary key can hold on every supported database.
MAX_ID = 2**31 - 1
#: What a form answered with 422 puts back of a one-line field, at most: above every such
#: field's limit, so a value refused as too long comes back still too long (cut at the
#: limit it would come back valid, and a resubmit would store it cut without a word).
ECHO_MAX = 10_000

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# An unquoted RFC 5322 local part (atext and dots) at a dotted host name. Stricter
# than the RFC on purpose: no quoting, no comments, no IP literals, nothing a page
# or a CSV cell could mistake for markup.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+$")
EMAIL_MESSAGE = "must be an email address such as ana@example.com"

#: Control characters refused in multi-line text (tab, LF and CR are allowed there).
CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Control characters refused in one-line text: every C0 character and DEL.
CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_MESSAGE = "must not contain control characters"
#: Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069),
#: refused in one-line text: a name or title is shown inside sentences, table rows and
#: email subjects, where U+202E would show what follows it reversed ("Decision by
#: <name>: ship" could read as something else). Right-to-left text needs none of them
#: (the Unicode bidi algorithm orders it); the marks U+200E/U+200F stay allowed.
BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def control_character(text: str, *, multiline: bool = False) -> str | None:
    """The first refused control character in ``text`` as ``U+0000``, else ``None``.

    >>> control_character("a\\x00b"), control_character("a\\tb")
    ('U+0000', 'U+0009')
    >>> control_character("a\\tb", multiline=True) is None
    True
    """
    match = (CONTROL_MULTILINE if multiline else CONTROL_ONE_LINE).search(text)
    return None if match is None else f"U+{ord(match.group()):04X}"


def bidi_problem(text: str) -> str | None:
    """Why one-line ``text`` is refused for a direction control (:data:`BIDI_CONTROL`).

    >>> bidi_problem("Ana"), bidi_problem("שרה Levi") is None
    (None, True)
    >>> bidi_problem("Ana\u202e pihs").split(":")[0]
    'must not contain an invisible direction-changing character (U+202E)'
    """
    found = BIDI_CONTROL.search(text)
    if found is None:
        return None
    return ("must not contain an invisible direction-changing character"
            f" (U+{ord(found.group()):04X}): it would reorder the text around it")


def cell_problem(value: str) -> str | None:
    """Why one (trimmed) CSV text cell is refused, else ``None``.

    >>> cell_problem("acct-1"), cell_problem("acct\\x001")
    (None, 'contains a control character (U+0000)')
    """
    found = control_character(value)
    return None if found is None else f"contains a control character ({found})"


class FieldErrors(dict[str, str]):
    """``{field: message}``, keeping the first message of each field."""

    def add(self, field: str, message: str) -> None:
        self.setdefault(field, message)

    def raise_if_any(self) -> None:
        if self:
            raise ValidationFailed(dict(self))


def _raw_text(data: Mapping[str, Any], field: str) -> str:
    raw = data.get(field)
    return "" if raw is None else str(raw)


def read_text(data: Mapping[str, Any], field: str, errors: FieldErrors, *, max_length: int,
              required: bool = False, multiline: bool = False) -> str:
    """The trimmed text of ``field`` ('' when absent); line ends normalised to ``\\n``."""
    value = _raw_text(data, field).replace("\r\n", "\n").replace("\r", "\n").strip()
    if control_character(value, multiline=multiline):
        errors.add(field, CONTROL_MESSAGE + ("" if multiline else " or line breaks"))
    elif len(value) > max_length:
        errors.add(field, f"must be at most {max_length:,} characters (this is {len(value):,})")
    elif required and not value:
        errors.add(field, "is required")
    elif required and not any(_visible(c) for c in value):
        # Only format characters and spaces (U+200B, U+202E, U+3000 …): it reads as blank.
        errors.add(field, "is required (this has only invisible characters)")
    elif not multiline and (problem := bidi_problem(value)):
        errors.add(field, problem)
    return value


def _visible(char: str) -> bool:
    """Whether ``char`` shows as something: not a space, separator or format character
    (zero-width space, bidirectional controls, BOM)."""
    return not char.isspace() and unicodedata.category(char) not in ("Cf", "Zs", "Zl", "Zp")


def read_email(data: Mapping[str, Any], field: str, errors: FieldErrors, *,
               required: bool = True) -> str:
    """A trimmed, lower-cased email address ('' when blank and not required)."""
    value = _raw_text(data, field).strip().lower()
    if control_character(value):
        errors.add(field, CONTROL_MESSAGE)
    elif not value:
        if required:
            errors.add(field, "is required")
    elif (len(value) > EMAIL_MAX or len(value.partition("@")[0]) > EMAIL_LOCAL_MAX
          or not EMAIL_PATTERN.match(value)):
        errors.add(field, EMAIL_MESSAGE)
    return value


def read_slug(data: Mapping[str, Any], field: str, errors: FieldErrors, *, max_length: int = 64,
              required: bool = True, example: str = "customer-success") -> str:
    """A trimmed, lower-cased key of letters, digits and single hyphens."""
    value = _raw_text(data, field).strip().lower()
    if not value:
        if required:
            errors.add(field, f"is required, e.g. {example}")
    elif len(value) > max_length or not SLUG_PATTERN.match(value):
        errors.add(field, f"must be 1-{max_length} lowercase letters, digits or single hyphens,"
                          f" e.g. {example}")
    return value


def read_password(data: Mapping[str, Any], field: str, errors: FieldErrors, *,
                  max_length: int = PASSWORD_READ_MAX) -> str:
    """A password exactly as typed (spaces count), cut at ``max_length``.

    Strength rules live with the accounts; here only what no password may hold.
    """
    value = _raw_text(data, field)[:max_length]
    if control_character(value):
        errors.add(field, CONTROL_MESSAGE)
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


def _whole_number(raw: Any) -> int | None:
    """``raw`` as a non-negative int when it is one (digits only, at most 10), else ``None``."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = "" if raw is None else str(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    return int(text)


def read_int(data: Mapping[str, Any], field: str, errors: FieldErrors, *, minimum: int = 0,
             maximum: int = MAX_ID, default: int | None = None) -> int | None:
    """A whole number in ``[minimum, maximum]``; blank gives ``default`` (required if ``None``)."""
    raw = data.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if default is None:
            errors.add(field, "is required (a whole number)")
        return default
    value = _whole_number(raw)
    if value is None or not minimum <= value <= maximum:
        errors.add(field, f"must be a whole number from {minimum:,} to {maximum:,}")
        return default
    return value


def read_page(data: Mapping[str, Any], errors: FieldErrors, field: str = "page") -> int:
    """A 1-based page number from a query string (1 when blank)."""
    raw = data.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 1
    value = _whole_number(raw)
    if value is None or not 0 < value <= MAX_ID:
        errors.add(field, "must be a positive whole number")
        return 1
    return value


def read_id(data: Mapping[str, Any], field: str, errors: FieldErrors, *, required: bool = False,
            what: str = "item") -> int | None:
    """A positive integer id, or ``None`` when blank (an error when ``required``)."""
    raw = data.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            errors.add(field, f"choose a {what}")
        return None
    value = _whole_number(raw)
    if value is None or not 0 < value <= MAX_ID:
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


def read_date_range(data: Mapping[str, Any], start: str, end: str,
                    errors: FieldErrors) -> tuple[date | None, date | None]:
    """Two optional ISO dates; ``end`` before ``start`` is an error on ``end``."""
    first, last = read_date(data, start, errors), read_date(data, end, errors)
    if first and last and last < first:
        errors.add(end, "must not be before the start date")
    return first, last


def read_choice(data: Mapping[str, Any], field: str, errors: FieldErrors,
                choices: tuple[str, ...], *, default: str | None = None) -> str | None:
    """One of ``choices``; blank gives ``default`` (an error when there is none)."""
    value = _raw_text(data, field).strip()
    if not value:
        if default is None:
            errors.add(field, f"choose one of: {', '.join(choices)}")
        return default
    if value not in choices:
        errors.add(field, f"must be one of: {', '.join(choices)}")
        return default
    return value


def read_flag(data: Mapping[str, Any], field: str) -> bool:
    """A checkbox: true for ``on``/``true``/``1``/``yes`` (what browsers and code send)."""
    raw = data.get(field)
    if isinstance(raw, bool):
        return raw
    return _raw_text(data, field).strip().lower() in {"on", "true", "1", "yes"}
