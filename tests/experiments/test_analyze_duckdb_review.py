"""Review of `nrrlab analyze`'s one-pass DuckDB read (experiments/accounts_csv/duck.py):
the cases the fuzzing (test_analyze_duckdb_fuzz.py) cannot reach with small files.

Each keeps the promise of duck.py: a file DuckDB accepts is one the exact reader accepts
with the same numbers; anything else is declined and read_accounts words the errors.
"""

from __future__ import annotations

import pytest

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv import ImportValidationError, read_accounts

HEADER = b"account_id,variant,start_mrr,notes\n"


def _rows_until(body: bytearray, end: int, serial: int) -> int:
    """Valid rows appended to ``body`` while a row of ~30 bytes still fits before ``end``."""
    while len(body) < end - 60:
        body += f"a{serial},{('control', 'treatment')[serial % 2]},5,x\n".encode()
        serial += 1
    return serial


def _cut_character_file(chunk: int) -> bytes:
    """A file whose 'é' (C3 A9) is cut in two by a whole chunk of ASCII: C3 is the last byte
    of the first chunk, A9 the first of the third. Neither byte is UTF-8 on its own."""
    body = bytearray(HEADER)
    serial = _rows_until(body, chunk, 0)
    line = f"b{serial},control,5,".encode()
    body += line + b"y" * (chunk - 1 - len(body) - len(line)) + b"\xc3z\n"
    serial = _rows_until(body, 2 * chunk, serial + 1)
    line = f"c{serial},treatment,5,".encode()
    body += line + b"q" * (2 * chunk - len(body) - len(line)) + b"\xa9\n"
    _rows_until(body, 2 * chunk + 1_000, serial + 1)
    assert body[chunk - 1 : chunk] == b"\xc3" and body[2 * chunk : 2 * chunk + 1] == b"\xa9"
    assert body[chunk : 2 * chunk].isascii()
    return bytes(body)


def test_a_character_cut_by_an_ascii_chunk_is_not_utf8(tmp_path):
    # The byte scan decodes only the chunks that are not ASCII; the decoder kept C3 from
    # the first chunk and took A9 of the third as its end: a valid 'é' that is not there.
    path = tmp_path / "cut.csv"
    path.write_bytes(_cut_character_file(duck._SCAN_CHUNK))
    with pytest.raises(ImportValidationError) as refused:
        read_accounts(path, for_storage=False)
    assert "is not valid UTF-8 text (byte 0xC3)" in str(refused.value)
    assert duck.read_columns(path) is None
    # The upload's DuckDB reader shares the byte scan: it words the exact reader's errors.
    with pytest.raises(ImportValidationError) as upload:
        duck.read_upload(path, ["control", "treatment"], 50, "")
    assert str(upload.value) == str(refused.value)
