"""The DuckDB reader of ``nrrlab analyze``: per-variant numeric columns straight from a file.

DuckDB parses the file on every core and checks the data contract (DESIGN §3); for
``nrrlab analyze`` (:func:`read_columns`) that is one pass over the file: a row whose text
breaks a format rule is dropped by the query's ``WHERE`` (so fewer rows than lines means
"declined"), and only the numeric columns the statistics need come back to Python, with
a 64-bit hash of each account id and a one-byte variant code. The numeric rules (money
below the cap, start above 0, the loss rule in whole cents, days finite and within
days_observed) and id uniqueness (on the hashes) are checked on those arrays in numpy,
where they cost next to nothing: in blocks of 65,536 rows, on the calling thread, once
DuckDB is closed (its ~40 MB go first; issue 18's peak RSS). No text column is turned
into Python objects (a million account ids would cost ~80 MB), no table is materialised
inside DuckDB, and pyarrow is not imported. The query runs on a thread of its own
(DuckDB releases the GIL), so the byte scan and the caller's ``meanwhile`` work (the
CLI's statistics imports) overlap it.

Like :mod:`~experiments.accounts_csv.fast`, it can only *accept* a file: at the first
thing it is unsure about :func:`read_columns` returns ``None``, and the caller reads the
file with :func:`~experiments.accounts_csv.read_accounts`, whose exact reader words every
error with its line. Accepting a file is a promise that ``read_accounts`` would accept it
too and give the same numbers. To keep that promise cheaply the reader declines more
than the contract refuses:

* a byte scan of the whole file: not UTF-8, a double quote anywhere (DuckDB and the csv module
  differ on odd quoting, e.g. ``x, "5"``), a control character other than the line
  breaks, or line breaks other than all-LF or all-CRLF;
* a value with padding (``" acct-1"``), which the contract trims; a text value over 255
  bytes; any row DuckDB cannot read (a wrong number of values, a line longer than the
  csv module's field size limit); an empty line (DuckDB must give one row per line);
* two account ids with the same 64-bit hash (uniqueness is checked on the hashes);
* more than 64 variants (the variant code is a byte; such a file is no experiment).

Every value is read as text and checked against the contract's own format (the regular
expressions of ``exact.py``) before its typed value is used: DuckDB's casts accept
``+5``, ``1e2``, ``5.``, `` 5``, ``1_000`` and round ``5.123``, which the contract refuses.
In the expansion, contraction and churn columns the exact texts ``0``, ``0.0`` and
``0.00`` (most rows) skip the regular expression, which they match.

The upload's reader, :func:`read_upload`, uses it where it pays: pyarrow's fast reader
accepts a good file for less CPU than DuckDB's full table (:func:`read_table`: ~1.1 s
against ~1.35 s for a million rows), but a file with a bad row costs the exact reader
~8 s to word; DuckDB finds the broken rows in ~1.3 s and the exact reader words those
lines alone.
"""

from __future__ import annotations

import codecs
import csv
import os
import tempfile
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

import numpy as np

from experiments.accounts_csv.contract import (
    MAX_CENTS,
    MONEY_COLUMNS,
    PRE_PERIOD_COLUMNS,
    WHITESPACE,
    AccountTable,
    Layout,
    account_table,
    object_array,
    resolve_header,
)
from experiments.accounts_csv.exact import read_exact

_SCAN_CHUNK = 1 << 20
# Deleted from a chunk by the byte scan: what is left over is a line break (counted, as
# there are only a few per hundred bytes) or a byte this reader declines.
_PLAIN_BYTES = bytes(b for b in range(0x20, 0x100) if b not in (0x22, 0x7F))
# The contract's formats (exact.py) for DuckDB's RE2 engine; NULL (blank) is handled apart.
_MONEY = r"[0-9]+(\.[0-9]{1,2})?"
_DAYS = r"[0-9]+(\.[0-9]+)?"
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
# The usual spellings of zero, each of which keeps _MONEY's format: in the columns where
# zero is the common value (_MOSTLY_ZERO) the query skips the regular expression for them
# (~0.13 s of DuckDB's CPU on a million rows, a third of its text checks).
_ZEROS = "('0', '0.0', '0.00')"
_MOSTLY_ZERO = ("expansion_mrr", "contraction_mrr", "churned_mrr")
# A value starting or ending with a character the contract trims (control characters are
# already refused by the byte scan, so only the spaces are left).
_PADDED = "^[{0}]|[{0}]$".format("".join(ch for ch in WHITESPACE if ch >= " "))
# DuckDB's memory: the parsed table (~65 MB for a million rows of the eight standard
# columns) and its read buffers. Above the limit DuckDB spills to a private temporary
# directory rather than failing. Measured on a million rows (2026-11-30, quiet machine,
# 4 alternating runs): 128 MB spills (wall 1.50–1.64 s), 160 MB does not (1.20–1.29 s)
# at the same peak RSS (~250 MiB); 192/256 MB only keep spent read buffers (+25/+45 MiB).
_MEMORY_LIMIT = "160MB"
# At most this many variants in a file read_columns accepts: the code is one byte, and the
# rows are matched against the names in SQL (list_position), which costs per name.
_MAX_VARIANTS = 64
# Lines sampled across a file for its variant names (_head).
_SAMPLES = 256
# Rows per block of the numeric checks (_numbers_keep_the_rules).
_CHECK_ROWS = 1 << 16


@dataclass(frozen=True, eq=False)
class VariantColumns:
    """One variant's accounts, in file order, as ``stats.arm_from_arrays`` takes them.

    Money is in currency units (cents / 100); ``pre_start``/``pre_end``,
    ``days_to_value`` and ``days_observed`` are ``None`` when the file lacks the column
    and hold NaN for a blank value.
    """

    start: np.ndarray
    expansion: np.ndarray
    contraction: np.ndarray
    churned: np.ndarray
    pre_start: np.ndarray | None = None
    pre_end: np.ndarray | None = None
    days_to_value: np.ndarray | None = None
    days_observed: np.ndarray | None = None


@dataclass(frozen=True)
class _Scan:
    header: list[str]
    ascii: bool
    spaces: bool
    rows: int
    #: The file's first chunk (up to 1 MiB): its complete lines name the first variants.
    head: bytes = b""
    #: Lines sampled across the rest of the file, LF-separated: more variant names.
    samples: bytes = b""


def read_columns(
    path: str | os.PathLike[str], *, meanwhile: Callable[[], object] | None = None
) -> dict[str, VariantColumns] | None:
    """Each variant's columns, in order of first appearance; ``None``: "ask read_accounts".

    ``meanwhile`` (e.g. the caller's imports) runs once on the calling thread while
    DuckDB reads the file on a thread of its own (or before returning, if no read
    starts). The query starts from the file's first chunk (the header, the first
    variants); the byte scan of the whole file runs beside it and decides at the end.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    head = _head(path)
    layout = None
    if head is not None:
        layout, header_errors = resolve_header(head.header, 1)
        if header_errors:
            layout = None
    if layout is None:
        if meanwhile is not None:
            meanwhile()
        return None
    import duckdb

    path = os.fspath(path)
    with tempfile.TemporaryDirectory(prefix="nrrlab-duckdb-") as spill:
        query = _Query(spill, lambda connection: _fetch(connection, path, layout, head))
        query.start()
        try:
            scan = _scan(path)
            if meanwhile is not None:
                meanwhile()
            query.join()
        except BaseException:  # an error or ^C here: stop DuckDB before the spill goes
            # DuckDB forgets an interrupt sent between two queries (the thread runs
            # Python there): sent again until the thread ends, it stops the next one too.
            query.cancel()
            while query.is_alive():
                query.join(0.01)
                query.cancel()
            raise
        if isinstance(query.error, duckdb.Error):
            return None  # DuckDB could not read it: read_accounts words why
        if query.error is not None:
            raise query.error
        # The thread keeps no reference: _checked frees each fetched array once used.
        fetched, query.found = query.found, None
        if scan is None or scan.header != head.header:
            return None
        if (scan.spaces and not head.spaces) or (head.ascii and not scan.ascii):
            # The query checked padding as the first chunk allowed (no space, or ASCII
            # only, makes it cheaper): the rest of the file needs the full check.
            fetched = None
            connection = _connect(spill)
            try:
                fetched = _fetch(connection, path, layout, scan)
            except duckdb.Error:
                return None
            finally:
                connection.close()
    if fetched is None:
        return None
    # Every line after the header must be a row that kept every rule: a row that broke
    # one is not in the result (the WHERE dropped it), and a blank line is no row.
    if fetched[0]["variant"].size != scan.rows:
        return None
    # On this thread, after DuckDB is closed (its memory is gone by then): the arrays
    # built here are freed into this thread's malloc arena, where the statistics'
    # temporaries reuse them (freed on DuckDB's thread, they would stay resident beside).
    return _checked(*fetched)


def _connect(spill: str):
    """A private DuckDB on every core the process may use, spilling into ``spill``."""
    import duckdb

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    connection = duckdb.connect(
        config={"threads": cores or 1, "memory_limit": _MEMORY_LIMIT, "temp_directory": spill}
    )
    # DuckDB would print its progress bar into the CLI's report on stdout.
    connection.execute("SET enable_progress_bar = false")
    return connection


class _Query(threading.Thread):
    """``reader(connection)`` on a private DuckDB (``_connect(spill)``), on a thread of its
    own; the connection is closed after.

    DuckDB releases the GIL while a query runs (and for most of its connect), so the calling
    thread can do other Python work (the byte scan, imports) meanwhile. ``found`` is the
    reader's result, ``error`` what it raised (kept for the calling thread).
    """

    def __init__(self, spill: str, reader) -> None:
        super().__init__(name="nrrlab-duckdb", daemon=True)
        self._spill = spill
        self._reader = reader
        self._lock = threading.Lock()
        self._connection = None
        self._cancelled = False
        self.found = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = _connect(self._spill)
            with self._lock:
                self._connection, cancelled = connection, self._cancelled
            try:
                if not cancelled:
                    self.found = self._reader(connection)
            finally:
                with self._lock:
                    self._connection = None
                connection.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self.error = exc

    def cancel(self) -> None:
        """Interrupt the running query, or skip it if it has not started yet."""
        with self._lock:
            self._cancelled = True
            if self._connection is not None:
                self._connection.interrupt()  # DuckDB allows this from another thread


def read_upload(path: str | os.PathLike[str], variants: Collection[str], max_errors: int,
                sha256: str) -> AccountTable:
    """``read_accounts(path, variants=..., max_errors=...)`` for an upload, given the hash.

    The same table (``sha256`` the caller's hash of the file) and the same errors, read
    by pyarrow's fast reader when it accepts the file, else by :func:`read_table` (which
    words the errors of the rows it finds broken), else by the exact reader.

    Raises
    ------
    ImportValidationError
        If the file breaks the data contract (the exact reader's errors, word for word).
    OSError
        If the file cannot be read.
    """
    from experiments.accounts_csv import _allowed_variants  # as read_accounts orders them
    from experiments.accounts_csv.fast import read_fast

    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
        raise ValueError(f"max_errors must be a positive integer, got {max_errors!r}")
    allowed = _allowed_variants(variants)
    with open(path, "rb") as file:
        table = read_fast(file.read(), allowed, keep_ids=True)
    if table is None:
        table = read_table(path, allowed, max_errors)
    if table is None:
        with open(path, "rb") as file:
            table = read_exact(file.read(), allowed, max_errors)
    return replace(table, sha256=sha256)


def read_table(
    path: str | os.PathLike[str], allowed: Collection[str], max_errors: int
) -> AccountTable | None:
    """The upload's table (``sha256`` left empty), as ``read_accounts`` would build it.

    ``None``: "ask read_accounts". When the contract SQL finds rows that break a rule and
    every account id is plain and unique, the exact reader words the errors from those
    lines alone (the others blanked out, which it skips, so every line keeps its number);
    if it finds nothing wrong in them, ``None``.

    Raises
    ------
    ImportValidationError
        The file breaks the data contract (the exact reader's errors, word for word).
    OSError
        If the file cannot be read.
    """
    from experiments.accounts_csv import _allowed_variants  # as read_accounts orders them

    keys = _allowed_variants(allowed)
    return _with_duckdb(
        path, lambda connection, path, layout, scan: _read_table(
            connection, path, layout, scan, keys, max_errors)
    )


def _with_duckdb(path: str | os.PathLike[str], reader):
    """``reader(connection, path, layout, scan)`` on a private DuckDB, or ``None``."""
    scan = _scan(path)
    if scan is None:
        return None
    layout, header_errors = resolve_header(scan.header, 1)
    if header_errors:
        return None
    import duckdb

    with tempfile.TemporaryDirectory(prefix="nrrlab-duckdb-") as spill:
        connection = _connect(spill)
        try:
            return reader(connection, os.fspath(path), layout, scan)
        except duckdb.Error:
            return None  # DuckDB could not read it: read_accounts words why
        finally:
            connection.close()


def _head(path: str | os.PathLike[str]) -> _Scan | None:
    """The first chunk's header and text, enough to start the query (``rows``: -1).

    Only a start: :func:`_scan` checks the whole file, this chunk included.
    """
    samples = []
    with open(path, "rb") as file:
        first = file.read(_SCAN_CHUNK)
        size = os.fstat(file.fileno()).st_size
        if size > len(first):
            # One line at each of 255 evenly spaced places (~1 ms): in a file sorted by
            # variant, any variant on more than 1/256 of the lines is named here, and the
            # query needs no second pass to find it.
            for k in range(1, _SAMPLES):
                file.seek(size * k // _SAMPLES)
                piece = file.read(4096)
                start = piece.find(b"\n") + 1
                end = piece.find(b"\n", start)
                if 0 < start <= end:
                    samples.append(piece[start:end])
    header = _header(first)
    if header is None:
        return None
    return _Scan(header, first.isascii(), b" " in first, -1, first, b"\n".join(samples))


def _header(first: bytes) -> list[str] | None:
    """The header's fields from the file's first chunk (``None``: none to read)."""
    first = first.removeprefix(codecs.BOM_UTF8)
    header_end = first.find(b"\n")
    if header_end < 0:
        return None
    try:
        header = first[:header_end].removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(header) > csv.field_size_limit():
        return None
    return header.split(",")


def _scan(path: str | os.PathLike[str]) -> _Scan | None:
    """The header's fields if the whole file passes the byte scan (module docstring)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    ascii_only = True
    spaces = False
    returns = line_feeds = crlf = 0
    first = last = b""
    with open(path, "rb") as file:
        while chunk := file.read(_SCAN_CHUNK):
            if chunk.endswith(b"\r"):
                chunk += file.read(1)  # keep a CRLF in one chunk
            if not first:
                first = chunk
            # What the translation leaves is a line break or a byte this reader declines:
            # one pass finds both (bytes.count is slower than this delete).
            breaks = chunk.translate(None, _PLAIN_BYTES)
            if breaks.translate(None, b"\n\r"):
                return None
            spaces = spaces or b" " in chunk
            if not chunk.isascii():
                ascii_only = False
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    return None
            elif decoder.getstate()[0]:
                # A character begun at the end of the last chunk and never finished: the
                # decoder, which skips ASCII chunks, would finish it in a later one.
                return None
            line_feeds += breaks.count(b"\n")
            if b"\r" in breaks:  # most files have none
                returns += breaks.count(b"\r")
                crlf += chunk.count(b"\r\n")
            last = chunk
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    if returns and not (returns == line_feeds == crlf):
        return None  # CR-only or mixed line breaks
    header = _header(first)
    if header is None:
        return None
    # Without quotes a CSV row is its line split at the commas, and every line after the
    # header is a row: DuckDB must give as many (a blank line among them is declined).
    rows = line_feeds - 1 + (not last.endswith(b"\n"))
    return _Scan(header, ascii_only, spaces, rows, first)


def _source(width: int, *, small_buffers: bool = False) -> str:
    """SQL: the file's rows, every field as text (``$path`` is a parameter).

    ``small_buffers``: read 4 MiB at a time rather than DuckDB's default; measured on a
    million rows (2026-11-30, 3 runs each, load ~6): peak RSS of ``nrrlab analyze``
    241–307 → 226–240 MB at the same CPU (1 MiB buffers cost ~0.15 s more CPU).
    """
    limit = csv.field_size_limit()
    columns = ", ".join(f"'c{position}': 'VARCHAR'" for position in range(width))
    buffers = f", buffer_size = {max(1 << 22, 2 * limit)}" if small_buffers else ""
    return (
        f"read_csv($path, header = true, columns = {{{columns}}}, auto_detect = false,"
        " delim = ',', quote = '\"', escape = '\"', strict_mode = true,"
        f" max_line_size = {limit}, encoding = 'utf-8'{buffers})"
    )


def _column(index: dict[str, int], name: str) -> str | None:
    return f"c{index[name]}" if name in index else None


def _plain(text: str, scan: _Scan) -> str:
    """SQL: a text value the exact reader keeps as it is (no padding, <= 255 bytes)."""
    if not scan.ascii:
        return f"strlen({text}) <= 255 AND NOT regexp_matches({text}, '{_PADDED}')"
    if scan.spaces:
        return f"strlen({text}) <= 255 AND trim({text}) = {text}"
    return f"strlen({text}) <= 255"  # no space in the file: nothing can be padded


def _contract(index: dict[str, int], scan: _Scan) -> tuple[list[str], list[str]]:
    """SQL: what the inner query parses (each value once) and the per-row rules.

    Each money column ``name`` parses to ``<key>_units`` (exact DECIMAL(18, 2), key
    without ``_mrr``), each day count to ``<name>_value``. A rule the exact reader might
    not agree with is broken too, so a row that passes every rule is one it accepts.
    """
    parsed: list[str] = []
    checks: list[str] = []
    account_id, variant = _column(index, "account_id"), _column(index, "variant")
    parsed += [account_id, variant]
    checks += [f"{account_id} IS NOT NULL AND {_plain(account_id, scan)}",
               f"{variant} IS NOT NULL"]
    if "segment" in index:
        segment = _column(index, "segment")
        parsed.append(segment)
        checks.append(f"{segment} IS NULL OR ({_plain(segment, scan)})")

    for name in MONEY_COLUMNS + PRE_PERIOD_COLUMNS:
        text, key = _column(index, name), name.removesuffix("_mrr")
        if text is None:
            continue
        parsed += [text, f"TRY_CAST({text} AS DECIMAL(18, 2)) AS {key}_units"]
        valid = (
            f"regexp_full_match({text}, '{_MONEY}')"
            f" AND {key}_units IS NOT NULL AND {key}_units < {MAX_CENTS // 100}"
        )
        checks.append(f"{text} IS NOT NULL AND {valid}" if name == "start_mrr"
                      else f"{text} IS NULL OR ({valid})")
    # DESIGN §3 in exact decimals: start > 0 and contraction + churned <= start.
    losses = [f"coalesce({name.removesuffix('_mrr')}_units, 0)"
              for name in ("contraction_mrr", "churned_mrr") if name in index]
    checks.append("start_units > 0" + (f" AND {' + '.join(losses)} <= start_units"
                                       if losses else ""))
    for name in ("days_to_value", "days_observed"):
        text = _column(index, name)
        if text is None:
            continue
        parsed += [text, f"TRY_CAST({text} AS DOUBLE) AS {name}_value"]
        checks.append(
            f"{text} IS NULL OR (regexp_full_match({text}, '{_DAYS}')"
            f" AND isfinite({name}_value))"
        )
    if "days_to_value" in index and "days_observed" in index:
        # NULL (blank) makes this unknown, hence true; DuckDB's NaN is above every number.
        checks.append("NOT coalesce(days_to_value_value > days_observed_value, false)")
    if "enrolled_on" in index:
        text = _column(index, "enrolled_on")
        parsed.append(text)
        checks.append(
            f"{text} IS NULL OR (regexp_full_match({text}, '{_DATE}')"
            f" AND NOT starts_with({text}, '0000') AND TRY_CAST({text} AS DATE) IS NOT NULL)"
        )
    return parsed, checks


def _valid(checks: list[str]) -> str:
    # NULL (a rule on a value that did not parse) is a failure too: bool_and skips NULLs
    return f"coalesce({' AND '.join(f'({check})' for check in checks)}, false) AS valid"


def _fetch(connection, path: str, layout: Layout,
           scan: _Scan) -> tuple[dict[str, np.ndarray], list[str]] | None:
    """One pass: the rows whose text keeps the contract's formats, their numbers, id
    hashes and variant codes, and the variant names the codes stand for; ``None``: no
    row. The numeric rules are then checked on the arrays (:func:`_checked`), once the
    connection is closed.

    The variant code is the 1-based position of the row's variant among ``names`` (0:
    not among them). The names are first taken from the file's first chunk, so the
    query needs no pass of its own to find them; a file with a variant beyond it (one
    sorted by variant) costs a second pass for the full list and a third for the codes.
    """
    index = layout.index
    names = _first_variants(scan, layout)
    found = _rows(connection, path, layout, scan, names)
    codes = found["variant"]
    if not codes.size:
        return None
    if not codes.all():  # a variant first seen after the first chunk
        del found, codes  # the first pass's arrays go before the third pass's come
        names = [name for (name,) in connection.execute(
            f"SELECT {_column(index, 'variant')} FROM {_source(layout.width)}"  # noqa: S608
            f" WHERE {_column(index, 'variant')} IS NOT NULL GROUP BY 1"
            f" LIMIT {_MAX_VARIANTS + 1}",
            {"path": path},
        ).fetchall()]
        if len(names) > _MAX_VARIANTS:
            return None
        found = _rows(connection, path, layout, scan, names)
        if not found["variant"].all():  # the file changed between the passes
            return None
    return found, names


def _checked(found: dict[str, np.ndarray],
             names: list[str]) -> dict[str, VariantColumns] | None:
    """Each variant's columns of :func:`_fetch`'s arrays (``found`` is emptied as it
    goes); ``None`` if a numeric rule is broken, two ids share a hash or a variant name
    is one the exact reader would not keep as it is."""
    if not _numbers_keep_the_rules(found):
        return None
    # Equal hashes of different ids would only send the file to the exact reader. The
    # sort (~0.05 s for a million, in place: nothing else reads the hashes) releases the
    # GIL: it runs beside the grouping below.
    hashes = found.pop("id_hash")
    distinct: list[bool] = []
    uniqueness = threading.Thread(target=lambda: distinct.append(_all_distinct(hashes)))
    uniqueness.start()
    try:
        columns = _grouped(found, found.pop("variant"), names)
    finally:
        uniqueness.join()
    if columns is None or distinct != [True]:
        return None
    return columns


def _all_distinct(values: np.ndarray) -> bool:
    """Whether ``values`` (sorted in place) are all different."""
    values.sort()
    return not np.any(values[1:] == values[:-1])


def _grouped(found: dict[str, np.ndarray], codes: np.ndarray,
             names: list[str]) -> dict[str, VariantColumns] | None:
    """Each variant's columns of ``found`` (emptied as it goes); ``None``: a variant name
    the exact reader would not keep as it is."""
    # Rows grouped by variant, each group in file order (a stable sort of one-byte codes
    # is a radix sort); a group's first row tells the order in which the variants appear.
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(names) + 1))
    groups = sorted(
        (int(order[ends[code - 1]]), names[code - 1], order[ends[code - 1]:ends[code]])
        for code in range(1, len(names) + 1) if ends[code] > ends[code - 1]
    )
    if not all(_plain_text(name) for _, name, _ in groups):
        return None
    columns: dict[str, dict[str, np.ndarray]] = {name: {} for _, name, _ in groups}
    for key in list(found):
        values = found.pop(key)
        for _, name, rows in groups:
            columns[name][key] = values[rows]
    for _, name, rows in groups:
        for key in ("start", "expansion", "contraction", "churned"):
            columns[name].setdefault(key, np.zeros(rows.size))  # a column the file lacks
    return {name: VariantColumns(**arrays) for name, arrays in columns.items()}


def _rows(connection, path: str, layout: Layout, scan: _Scan,
          names: list[str]) -> dict[str, np.ndarray]:
    """Per row whose text keeps the formats: id_hash, variant (code), the numbers.

    Money is in currency units, 0 for a blank (NaN in the pre-period columns); day
    counts are NaN for a blank. Only the text rules are SQL (a regular expression per
    value, the cost of the pass beside the parse itself); the numeric ones are numpy's,
    on the arrays (:func:`_numbers_keep_the_rules`), where they cost next to nothing.
    """
    index = layout.index
    account_id, variant = _column(index, "account_id"), _column(index, "variant")
    rules = [f"{account_id} IS NOT NULL AND {_plain(account_id, scan)}",
             f"{variant} IS NOT NULL"]
    selected = [f"hash({account_id}) AS id_hash",
                f"coalesce(list_position($names, {variant}), 0)::UTINYINT AS variant"]
    if "segment" in index:
        segment = _column(index, "segment")
        rules.append(f"{segment} IS NULL OR ({_plain(segment, scan)})")
    for name in MONEY_COLUMNS + PRE_PERIOD_COLUMNS:
        text, key = _column(index, name), name.removesuffix("_mrr")
        if text is None:
            continue
        money = f"regexp_full_match({text}, '{_MONEY}')"
        if name in _MOSTLY_ZERO:
            # Most accounts neither expand, contract nor churn: a zero written as usual
            # keeps the format, and CASE runs the regular expression on the other rows
            # only (an OR would run it on every row: the filter is one expression).
            money = f"CASE WHEN {text} IN {_ZEROS} THEN true ELSE {money} END"
        rules.append(f"{text} IS NOT NULL AND {money}" if name == "start_mrr" else
                     f"{text} IS NULL OR {money}")
        # A digit string with at most two decimals read as DOUBLE is its value correctly
        # rounded, as whole cents / 100 in float64 is (AccountTable.money()). A plain CAST:
        # text that does not parse fails the query (declined), it never becomes a blank.
        blank = "0.0" if name in MONEY_COLUMNS else "'NaN'"
        selected.append(f"coalesce(CAST({text} AS DOUBLE), {blank}::DOUBLE) AS {key}")
    for name in ("days_to_value", "days_observed"):
        text = _column(index, name)
        if text is not None:
            rules.append(f"{text} IS NULL OR regexp_full_match({text}, '{_DAYS}')")
            selected.append(f"coalesce(CAST({text} AS DOUBLE), 'NaN'::DOUBLE) AS {name}")
    if "enrolled_on" in index:
        text = _column(index, "enrolled_on")
        rules.append(
            f"{text} IS NULL OR (regexp_full_match({text}, '{_DATE}')"
            f" AND NOT starts_with({text}, '0000') AND TRY_CAST({text} AS DATE) IS NOT NULL)"
        )
    # Built from this module's constants and column positions only: no header name or
    # value of the file reaches the SQL text (the path and the names are parameters).
    # In file order: DuckDB keeps insertion order unless told otherwise (the default
    # preserve_insertion_order), so the sums add up in the same order as read_accounts'.
    # One expression (coalesce keeps the optimizer from splitting it and pushing copies
    # of its parts below the projection: that evaluated some rules twice).
    query = (
        f"SELECT {', '.join(selected)} FROM {_source(layout.width, small_buffers=True)}"  # noqa: S608
        f" WHERE coalesce({' AND '.join(f'({rule})' for rule in rules)}, false)"
    )
    # An empty list would be typed INTEGER[]; [""] matches no row (a blank value is NULL).
    return connection.execute(query, {"path": path, "names": names or [""]}).fetchnumpy()


def _numbers_keep_the_rules(found: dict[str, np.ndarray]) -> bool:
    """:func:`_block_keeps_the_rules` on every block of ``_CHECK_ROWS`` rows: each rule
    is one row's, and a block's temporaries (~0.5 MiB each) cost no memory to speak of,
    where a million rows' cost ~40 MiB at once."""
    rows = found["start"].size
    return all(
        _block_keeps_the_rules({key: values[first:first + _CHECK_ROWS]
                                for key, values in found.items()})
        for first in range(0, rows, _CHECK_ROWS)
    )


def _block_keeps_the_rules(found: dict[str, np.ndarray]) -> bool:
    """DESIGN §3's numeric rules on :func:`_rows`' arrays, exactly as the exact reader's.

    Money below ``MAX_CENTS`` (a DOUBLE of a value below 10^11 is below 10^11: rounding
    is monotonic and 10^11 is a double), start above 0, contraction + churned at most
    start in whole cents (``round(units * 100)`` is the exact cent count below 10^13, and
    sums of such integers are exact in float64), day counts finite (a digit string too
    long for a double reads as inf), days_to_value at most days_observed.
    """
    limit = MAX_CENTS / 100
    for key in ("start", "expansion", "contraction", "churned", "pre_start", "pre_end"):
        if key in found and np.any(found[key] >= limit):  # NaN (a blank) compares False
            return False
    start = found["start"]
    if not np.all(start > 0):
        return False
    losses = [np.round(found[key] * 100) for key in ("contraction", "churned") if key in found]
    if losses and np.any(sum(losses) > np.round(start * 100)):
        return False
    for key in ("days_to_value", "days_observed"):
        if key in found and np.any(np.isinf(found[key])):
            return False
    if "days_to_value" in found and "days_observed" in found:
        return not np.any(found["days_to_value"] > found["days_observed"])  # NaN: False
    return True


def _first_variants(head: _Scan, layout: Layout) -> list[str]:
    """The variants on the complete lines of the first 256 KiB (~4,000 rows), then on the
    lines sampled across the file, as DuckDB reads them.

    Only a head start: the query checks every row against these names exactly. Splitting
    the whole first MiB in Python would take ~9 ms before the query can start; an arm
    of 1 % is missing from 4,000 random rows with a chance of ~4e-18.
    """
    first = head.head[: 1 << 18]
    first = first[: first.rfind(b"\n")].removeprefix(codecs.BOM_UTF8)
    lines = (first.split(b"\n")[1:] if first else []) + head.samples.split(b"\n")
    position, width = layout.index["variant"], layout.width
    names: dict[str, None] = {}
    for line in lines:  # the header is not among them
        fields = line.decode("utf-8", "replace").removesuffix("\r").split(",")
        if len(fields) == width and fields[position]:
            names[fields[position]] = None
            if len(names) == _MAX_VARIANTS:
                break
    return list(names)


def _read_table(connection, path: str, layout: Layout, scan: _Scan,
                allowed: tuple[str, ...], max_errors: int) -> AccountTable | None:
    index = layout.index
    parsed, checks = _contract(index, scan)
    account_id, variant = _column(index, "account_id"), _column(index, "variant")
    checks.append(f"list_contains($allowed, {variant})")
    selected = [f"{account_id} AS account_id", f"hash({account_id}) AS id_hash",
                f"{variant} AS variant",
                # A blank id is an error of its own row; a padded one might be a duplicate.
                f"coalesce({account_id} IS NULL OR ({_plain(account_id, scan)}), false)"
                " AS id_plain"]
    stored = ["account_id", "variant"]
    for name in MONEY_COLUMNS + PRE_PERIOD_COLUMNS:
        key = name.removesuffix("_mrr")
        if name not in index:
            continue
        stored.append(key)
        if name in MONEY_COLUMNS:  # whole cents, exact: the units are DECIMAL(18, 2)
            selected.append(f"coalesce(CAST({key}_units * 100 AS BIGINT), 0) AS {key}")
        else:  # whole cents in float64, NaN for a blank (exact below 2**53)
            selected.append(f"coalesce(CAST({key}_units * 100 AS DOUBLE), 'NaN'::DOUBLE)"
                            f" AS {key}")
    for name in ("days_to_value", "days_observed"):
        if name in index:
            stored.append(name)
            selected.append(f"coalesce({name}_value, 'NaN'::DOUBLE) AS {name}")
    if "segment" in index:
        stored.append("segment")
        selected.append(f"{_column(index, 'segment')} AS segment")
    if "enrolled_on" in index:
        stored.append("enrolled_on")
        # Whole days since 1970-01-01 (exact in float64), NaN for a blank.
        selected.append(
            f"coalesce(CAST(TRY_CAST({_column(index, 'enrolled_on')} AS DATE)"
            " - DATE '1970-01-01' AS DOUBLE), 'NaN'::DOUBLE) AS enrolled_on"
        )

    # Built from this module's constants and column positions only (see _rows).
    connection.execute(
        f"CREATE TEMP TABLE accounts AS SELECT {', '.join(selected)}, {_valid(checks)}"  # noqa: S608
        f" FROM (SELECT {', '.join(parsed)} FROM {_source(layout.width)})",
        {"path": path, "allowed": list(allowed)},
    )
    rows, ids, distinct_ids, ids_plain, all_valid = connection.execute(
        "SELECT count(*), count(account_id),"
        " count(DISTINCT id_hash) FILTER (WHERE account_id IS NOT NULL),"
        " bool_and(id_plain), bool_and(valid) FROM accounts"
    ).fetchone()
    # Equal hashes of different ids would only send the file to read_accounts.
    if not rows or rows != scan.rows or distinct_ids != ids:
        return None
    if not all_valid:
        if ids_plain:  # no id can be a duplicate of another: each row's errors are its own
            broken = connection.execute(
                "SELECT rowid FROM accounts WHERE NOT valid ORDER BY rowid"
            ).fetchnumpy()["rowid"]
            _raise_line_errors(path, broken + 2, allowed, max_errors)  # the header is line 1
        return None

    # Each distinct variant and segment becomes one str object that its rows share.
    connection.execute(
        "CREATE TYPE variant_keys AS ENUM"
        " (SELECT variant FROM accounts GROUP BY variant ORDER BY min(rowid))"
    )
    codes = {"variant": "enum_code(variant::variant_keys)::INTEGER AS variant"}
    if "segment" in index:
        connection.execute(
            "CREATE TYPE segment_names AS ENUM (SELECT segment FROM accounts"
            " WHERE segment IS NOT NULL GROUP BY segment ORDER BY min(rowid))"
        )
        codes["segment"] = "coalesce(enum_code(segment::segment_names)::INTEGER, -1) AS segment"
    variants = connection.execute("SELECT enum_range(NULL::variant_keys)").fetchone()[0]
    if not all(_plain_text(name) for name in variants):
        return None
    segments = None
    if "segment" in index:
        segments = connection.execute("SELECT enum_range(NULL::segment_names)").fetchone()[0]
    # In file order: DuckDB keeps insertion order (the default preserve_insertion_order).
    fetched = connection.execute(
        f"SELECT {', '.join(codes.get(name, name) for name in stored)} FROM accounts"  # noqa: S608
    ).fetchnumpy()
    connection.execute("DROP TABLE accounts")  # DuckDB's copy goes before the arrays are built

    zeros = np.zeros(rows, dtype=np.int64)

    def cents(key: str) -> np.ndarray:
        return np.asarray(fetched[key], dtype=np.int64) if key in fetched else zeros.copy()

    def floats(key: str) -> np.ndarray | None:
        return np.asarray(fetched[key], dtype=np.float64) if key in fetched else None

    enrolled_on = None
    if "enrolled_on" in fetched:
        days = np.asarray(fetched["enrolled_on"], dtype=np.float64)
        enrolled_on = np.full(rows, np.datetime64("NaT"), dtype="datetime64[D]")
        known = ~np.isnan(days)
        enrolled_on[known] = days[known].astype(np.int64).astype("datetime64[D]")
    return account_table(
        account_id=np.asarray(fetched["account_id"], dtype=object),
        variant=object_array(list(variants))[np.asarray(fetched["variant"], dtype=np.intp)],
        start_cents=cents("start"),
        expansion_cents=cents("expansion"),
        contraction_cents=cents("contraction"),
        churned_cents=cents("churned"),
        # -1 (a blank) picks the None at the end
        segment=(None if segments is None else object_array([*segments, None])[
            np.asarray(fetched["segment"], dtype=np.intp)]),
        days_to_value=floats("days_to_value"),
        notes=layout.notes,
        days_observed=floats("days_observed"),
        pre_start_cents=floats("pre_start"),
        pre_end_cents=floats("pre_end"),
        enrolled_on=enrolled_on,
    )


def _raise_line_errors(path: str, lines: np.ndarray, allowed: tuple[str, ...],
                       max_errors: int) -> None:
    """Raise the exact reader's errors for a file whose only broken rows are ``lines``.

    The exact reader reads the header and those lines, every other line left empty:
    it skips empty lines but counts them, so each error keeps its line number, and
    as no account id repeats (the caller checked), an error belongs to its own row.
    Returns if the exact reader finds nothing wrong (a row this reader only declined).
    """
    with open(path, "rb") as file:
        data = file.read()
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A) + 1  # after each LF
    bounds = np.concatenate(([0], ends, [len(data)]))  # line n is data[bounds[n-1]:bounds[n]]
    parts = [data[: bounds[1]]]
    previous = 1
    for line in lines.tolist():
        parts.append(b"\n" * (line - previous - 1))
        piece = data[bounds[line - 1] : bounds[line]]
        parts.append(piece if piece.endswith(b"\n") else piece + b"\n")
        previous = line
    read_exact(b"".join(parts), allowed, max_errors)  # raises ImportValidationError


def _plain_text(value: str) -> bool:
    """A variant the exact reader keeps as it is: no padding, at most 255 bytes."""
    return bool(value) and value == value.strip(WHITESPACE) and len(value.encode()) <= 255
