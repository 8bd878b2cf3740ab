"""Plain formatting of report figures, shared by the web pages, exports and the CLI.

Light on purpose (no database, no templates): ``nrrlab analyze`` imports it on its
fast path.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

#: Every report format the web downloads and ``nrrlab export`` offer.
EXPORT_FORMATS: tuple[str, ...] = ("json", "csv", "md", "html", "zip")
#: Cell beginnings a spreadsheet treats as a formula (OWASP "CSV injection").
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_REVERSIBLE_START = (*FORMULA_START, "'")


def as_number(value: Any) -> float | None:
    """The value when it is a finite real number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def as_pair(value: Any) -> tuple[Any, Any]:
    """A two-element list or tuple as a pair; anything else as ``(None, None)``."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return None, None


def neutralise(cell: Any, *, reversible: bool = False) -> Any:
    """A CSV cell safe to open in a spreadsheet: formula-like text gets a leading apostrophe.

    This is the one formula guard (OWASP "CSV injection"): every CSV the app writes
    goes through it. Only text is touched: numbers (negative ones too) stay numbers.
    With ``reversible=True`` text that already starts with ``'`` gets one more, so a
    reader that strips exactly one leading apostrophe gets every value back (the
    reproduce bundle's data file).

    >>> neutralise("=HYPERLINK(1)"), neutralise("-2+3"), neutralise(-0.5), neutralise("plain")
    ("'=HYPERLINK(1)", "'-2+3", -0.5, 'plain')
    >>> neutralise("'quoted"), neutralise("'quoted", reversible=True)
    ("'quoted", "''quoted")
    """
    starts = _REVERSIBLE_START if reversible else FORMULA_START
    if isinstance(cell, str) and cell.startswith(starts):
        return "'" + cell
    return cell


#: Markdown syntax in user text, escaped with a backslash (CommonMark "backslash escapes"):
#: no link, image, raw HTML, entity, emphasis or table cell break can come from user text.
_MD_SYNTAX = re.compile(r"([\\`*_\[\]<>|!&~])")


def md(value: Any) -> str:
    """User text as literal Markdown on one line, safe inside a table cell.

    Markdown syntax is backslash-escaped rather than turned into HTML entities, so the
    file reads as typed: ``[x](javascript:1)`` can never become a link.

    >>> md("R&D <b> [x](javascript:1) ![](http://a/b.png) a|b")
    'R\\\\&D \\\\<b\\\\> \\\\[x\\\\](javascript:1) \\\\!\\\\[\\\\](http://a/b.png) a\\\\|b'
    """
    if value is None:
        return "—"
    text = _MD_SYNTAX.sub(r"\\\1", " ".join(str(value).split()))
    if re.match(r"[#+=-]+(\s|$)", text):
        text = "\\" + text  # no heading, list item or setext underline at a line start
    return text or "—"


def pts(value: Any, digits: int = 2) -> str:
    """0.021 → '+2.10 pts' (NRR points)."""
    number = as_number(value)
    return "—" if number is None else f"{number * 100:+.{digits}f} pts"


def points(value: Any, digits: int = 2) -> str:
    """0.02 → '2.00 pts' (a size, unsigned)."""
    number = as_number(value)
    return "—" if number is None else f"{number * 100:.{digits}f} pts"


def pct(value: Any, digits: int = 2) -> str:
    number = as_number(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def pvalue(value: Any, digits: int = 4) -> str:
    """A p-value to ``digits`` decimals; below the last shown decimal as '< 0.0001'."""
    number = as_number(value)
    if number is None:
        return "—"
    floor = 10.0**-digits
    return f"< {floor:.{digits}f}" if number < floor else f"{number:.{digits}f}"


def money(value: Any) -> str:
    number = as_number(value)
    return "—" if number is None else f"{number:,.2f}"


def count(value: Any) -> str:
    number = as_number(value)
    return "—" if number is None else f"{int(number):,}"


def interval(pair: Any, fmt=pts) -> str:
    low, high = as_pair(pair)
    if as_number(low) is None or as_number(high) is None:
        return "—"
    return f"{fmt(low)} to {fmt(high)}"


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: numbers stay numbers, booleans read true/false, NaN and
    ``None`` are blank, and text is neutralised against spreadsheet formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, int | float | Decimal):
        return value  # a Decimal is written exactly (money)
    return neutralise(str(value))


def csv_text(header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV document (RFC 4180 line ends) of ``rows`` in the column order of ``header``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in header])
    return out.getvalue()
