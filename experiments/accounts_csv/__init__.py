"""Read and validate an account-level CSV upload (DESIGN §3).

The package is split by responsibility:

* :mod:`~experiments.accounts_csv.contract` — the columns and limits, the errors and the
  validated :class:`AccountTable`;
* :mod:`~experiments.accounts_csv.fast` — the fast path: pyarrow, column-wise, can only
  accept a file (``None`` means "let the exact reader decide");
* :mod:`~experiments.accounts_csv.exact` — the exact reader: row by row, the reference for
  every error message and line number;
* :mod:`~experiments.accounts_csv.duck` — DuckDB with the contract as SQL: ``nrrlab
  analyze``'s first reader (per-variant numeric columns only), and the upload's second
  (``read_upload``: the fast reader first, DuckDB for what it declines — a bad file's
  broken lines are found in SQL and only those go to the exact reader for their wording —
  then the exact reader whole for anything DuckDB declines). It can only accept a file or
  point at lines; every message comes from the exact reader.

:func:`read_accounts` is the entry point for bytes and the fallback of both DuckDB paths.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Collection
from dataclasses import replace
from typing import BinaryIO

from experiments.accounts_csv.contract import (
    COLUMNS,
    MAX_CENTS,
    MAX_TEXT_LENGTH,
    REQUIRED_COLUMNS,
    WHITESPACE,
    AccountTable,
    ImportValidationError,
    RowError,
)
from experiments.accounts_csv.exact import read_exact

# fast.py (pyarrow, ~0.15 s to import) is imported by read_accounts when first used, so
# that importing this package for its errors and constants (as `nrrlab analyze` does,
# whose reader is duck.py) does not load pyarrow.

__all__ = [
    "COLUMNS",
    "MAX_CENTS",
    "MAX_TEXT_LENGTH",
    "REQUIRED_COLUMNS",
    "WHITESPACE",
    "AccountTable",
    "ImportValidationError",
    "RowError",
    "read_accounts",
]

# Pickles and reprs name the public home of these classes, not the module that defines them.
for _public in (AccountTable, ImportValidationError, RowError):
    _public.__module__ = __name__


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
    and ``sha256`` is empty. (Kept for storage, the fast path holds the ids in their
    pyarrow array, ~20 MB a million, wrapped as :class:`~experiments.accounts_csv.contract.
    ArrowText`; as Python strings they cost ~80 MB.)

    Raises
    ------
    ImportValidationError
        If the file breaks the data contract in any way (all problems are listed).
    TypeError, ValueError
        If the arguments themselves are unusable.
    """
    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
        raise ValueError(f"max_errors must be a positive integer, got {max_errors!r}")
    from experiments.accounts_csv.fast import read_fast

    allowed = _allowed_variants(variants)
    data = _read_source(source)

    # Hashing 60 MB takes a while; hashlib releases the GIL, so overlap it with parsing.
    digest: list[str] = [""]

    def hash_data() -> None:
        digest[0] = hashlib.sha256(data).hexdigest()

    hasher = threading.Thread(target=hash_data)
    if for_storage:
        hasher.start()
    try:
        table = read_fast(data, allowed, keep_ids=for_storage)
        if table is None:
            table = read_exact(data, allowed, max_errors)
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


