"""H8: the fast reader keeps the account ids in one pyarrow string array (ArrowText), and
PostgreSQL's binary COPY sends that array's bytes as they are (no Python str per id).

Each PostgreSQL case stores the rows a second time through psycopg's own ``write_row``
(:func:`tests.experiments.test_upload_pg_binary.reference_copy`, one Python str per
id, encoded by the driver) and expects identical stored rows: non-ASCII ids of 1-4 byte
characters, ids of 255 characters, one-character ids, ids in a sliced array (non-zero
offset) and in a ``large_string`` array. The SQLite writer (which needs Python strings)
and the uniqueness check are checked on the same ids.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import text

from experiments import rows_postgres
from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.accounts_csv.contract import ArrowText, account_table, object_array
from experiments.accounts_csv.fast import read_fast
from experiments.datasets import bulk_insert_rows, reserve_dataset
from tests import factories
from tests.experiments.test_upload_pg_binary import reference_copy, stored

VARIANTS = ("control", "treatment")
# 1, 2, 3 and 4 bytes a character in UTF-8, alone and mixed; ids of one character.
ODD_IDS = ["a", "0", "ß", "日", "😀", "x y", "kunde-ä-日本-😀", "\u00e9\u0301", "Ω≈ç√",
           "z" * 255, "ä" * 255, "日" * 255, "😀" * 255, "a" + "😀" * 254]


def _arrow(values: list[str], kind: pa.DataType | None = None) -> pa.Array:
    return pa.array(values, type=kind or pa.string())


def _table(ids) -> object:
    count = len(ids)
    return account_table(
        account_id=ids,
        variant=object_array([VARIANTS[i % 2] for i in range(count)]),
        start_cents=np.arange(count, dtype=np.int64) + 100,
        expansion_cents=np.arange(count, dtype=np.int64) % 7,
        contraction_cents=np.zeros(count, dtype=np.int64),
        churned_cents=np.ones(count, dtype=np.int64),
        segment=object_array([None if i % 3 else "SMB" for i in range(count)]),
        days_to_value=None,
        notes=(),
    )


def _csv(ids: list[str]) -> bytes:
    lines = ["account_id,variant,start_mrr"]
    lines += [f'"{value}",{VARIANTS[i % 2]},{10 + i}.25' for i, value in enumerate(ids)]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------ no database


def test_the_fast_reader_keeps_the_ids_in_pyarrow_and_they_read_as_strings():
    ids = [f"acct-{i}-ä日😀" for i in range(50)]
    table = read_fast(_csv(ids), VARIANTS)
    assert isinstance(table.account_id, ArrowText)
    assert len(table.account_id) == 50
    assert table.account_id.tolist() == ids
    assert table.account_id[7] == ids[7] and table.account_id[-1] == ids[-1]
    assert table.account_id[10:13].tolist() == ids[10:13]
    assert table.account_id[::5].tolist() == ids[::5]
    assert np.asarray(table.account_id).tolist() == ids
    assert table.account_id.dtype == np.dtype(object)


def test_a_duplicate_id_is_still_refused_by_line():
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(_csv(["a", "😀", "b", "😀"]), variants=VARIANTS)
    assert "line 5" in str(raised.value) and "duplicate" in str(raised.value)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_copy_blocks_from_arrow_buffers_equal_those_from_python_strings(kind):
    """Byte for byte, one block per chunk, against the str path (''.encode per value)."""
    ids = ["", *ODD_IDS, "", "end"]
    whole = _arrow(["skip-1", "skip-2", *ids, "tail"], kind)
    sliced = whole.slice(2, len(ids))  # a non-zero offset into the buffers
    assert sliced.offset == 2
    arrow_table, str_table = _table(ArrowText(sliced)), _table(object_array(ids))
    for start, stop in [(0, len(ids)), (0, 1), (3, 9), (len(ids) - 2, len(ids))]:
        ours = rows_postgres._binary_block(9, arrow_table, start, stop, ids_by_line=True)
        theirs = rows_postgres._binary_block(9, str_table, start, stop, ids_by_line=True)
        assert bytes(ours) == bytes(theirs), (start, stop)


def test_a_chunked_array_is_one_array_and_nulls_are_refused():
    chunked = pa.chunked_array([_arrow(["a", "b"]), _arrow([]), _arrow(["日"])])
    assert ArrowText(chunked).tolist() == ["a", "b", "日"]
    with pytest.raises(ValueError, match="no NULL"):
        ArrowText(_arrow(["a", None]))
    with pytest.raises(TypeError, match="string"):
        ArrowText(pa.array([1, 2]))


# ------------------------------------------------------------------ both backends


def test_stored_ids_are_the_files_on_either_backend(session):
    """SQLite turns them into Python strings per chunk; PostgreSQL sends the buffers.
    Ascending ids (SQLite's many-rows statement) and descending ones (one a row)."""
    experiment = factories.make_experiment(session, "h8 ids", variants=VARIANTS)
    for name, ids in [("up", sorted(f"id-{i:04d}-ü" for i in range(300))),
                      ("down", sorted((f"id-{i:04d}-😀" for i in range(300)), reverse=True))]:
        table = read_accounts(_csv(ids), variants=VARIANTS)
        assert isinstance(table.account_id, ArrowText)
        dataset = reserve_dataset(session, experiment, table, filename=f"{name}.csv",
                                  actor=None).dataset
        bulk_insert_rows(session, dataset.id, table)
        got = session.execute(text("SELECT account_id, start_cents FROM account_row"
                                   " WHERE dataset_id = :d"), {"d": dataset.id}).all()
        assert sorted(got) == sorted(zip(ids, (1025 + 100 * i for i in range(300)),
                                         strict=True)), name


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def scratch(session, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("binary COPY is PostgreSQL's")
    connection = session.connection()
    connection.execute(text("CREATE TEMP TABLE account_row"
                            " (LIKE public.account_row INCLUDING DEFAULTS) ON COMMIT DROP"))
    return connection, connection.connection.driver_connection


def _same_as_psycopg(scratch, table, expected_ids: list[str]) -> None:
    connection, raw = scratch
    rows_postgres.copy_rows(raw, 1, table, 0, len(table), ids_by_line=True)
    reference_copy(raw, 2, table)
    ours = stored(connection, 1)
    assert ours == stored(connection, 2)
    assert [row[1] for row in ours] == expected_ids


def test_a_files_non_ascii_ids_are_stored_as_psycopg_stores_them(scratch, monkeypatch):
    monkeypatch.setattr(rows_postgres, "COPY_CHUNK", 4)  # blocks start inside the buffers
    ids = [value for value in ODD_IDS if len(value.encode()) <= 255]  # the fast path's
    ids += [f"n-{i}-{'ü日😀'[i % 3]}" for i in range(30)]
    table = read_accounts(_csv(ids), variants=VARIANTS)
    assert isinstance(table.account_id, ArrowText)
    _same_as_psycopg(scratch, table, ids)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_ids_of_255_characters_in_a_sliced_array(scratch, monkeypatch, kind):
    monkeypatch.setattr(rows_postgres, "COPY_CHUNK", 3)
    ids = ODD_IDS * 2
    whole = _arrow(["before", *ids, "after"], kind)
    _same_as_psycopg(scratch, _table(ArrowText(whole.slice(1, len(ids)))), ids)


def test_a_slice_of_the_table_from_a_later_row(scratch):
    """A writer's chunk starts inside the array: ids and their lines stay together."""
    connection, raw = scratch
    ids = [f"{i}-{ODD_IDS[i % len(ODD_IDS)]}"[:255] for i in range(40)]
    table = _table(ArrowText(_arrow(ids)))
    rows_postgres.copy_rows(raw, 1, table, 17, 29, ids_by_line=True)
    got = stored(connection, 1)
    assert [(row[0], row[1]) for row in got] == [(i, ids[i]) for i in range(17, 29)]
