"""R4 review of H8's ArrowText (the fast reader's account ids in one pyarrow array).

Everything that reads ``AccountTable.account_id`` must see what the object array of str
it replaced gave. The PostgreSQL cases store random ids (1-4 byte characters, 1 to 255
characters) twice: through ``rows_postgres.copy_rows`` (the arrow buffers) and through
psycopg's own ``write_row`` (one Python str per id), and compare the stored rows. The
ids come from an array of several pyarrow chunks (sliced, one empty) and from a file
the CSV reader splits into several blocks.
"""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pyarrow as pa
import pytest

import experiments.accounts_csv.fast as fast
from experiments import rows_postgres
from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.accounts_csv.contract import ArrowText, account_table, object_array
from tests.experiments.test_h8_arrow_ids import scratch as scratch
from tests.experiments.test_upload_pg_binary import reference_copy, stored

VARIANTS = ("control", "treatment")
# Characters of 1, 2, 3 and 4 bytes in UTF-8 (none is a CSV quote, comma or blank).
ALPHABET = ["a", "Z", "7", "-", "_", "é", "ß", "Ω", "ж", "日", "本", "€", "≈", "😀", "𝄞", "🀄"]


def _random_ids(count: int, seed: int, max_bytes: int = 4 * 255) -> list[str]:
    """Distinct ids of 1 to 255 characters (every fifth as long as ``max_bytes`` UTF-8
    bytes allow); the fast reader takes ids of up to 255 bytes, longer ones are the exact
    reader's."""
    rng = random.Random(seed)
    ids: dict[str, None] = {}
    while len(ids) < count:
        size = 255 if len(ids) % 5 == 0 else rng.randint(1, 254)
        value = "".join(rng.choice(ALPHABET) for _ in range(size))
        while len(value.encode()) > max_bytes:
            value = value[:-1]
        ids.setdefault(value)
    return list(ids)


def _chunks_read(monkeypatch) -> list[int]:
    """The number of pyarrow chunks each ArrowText the fast reader makes is built from."""
    seen: list[int] = []

    def spy(values):
        seen.append(values.num_chunks)
        return ArrowText(values)

    monkeypatch.setattr(fast, "ArrowText", spy)
    return seen


def _table(ids) -> object:
    count = len(ids)
    return account_table(
        account_id=ids,
        variant=object_array([VARIANTS[i % 2] for i in range(count)]),
        start_cents=np.arange(count, dtype=np.int64) * 3 + 100,
        expansion_cents=np.arange(count, dtype=np.int64) % 5,
        contraction_cents=np.zeros(count, dtype=np.int64),
        churned_cents=np.ones(count, dtype=np.int64),
        segment=None,
        days_to_value=None,
        notes=(),
    )


def _chunked(ids: list[str], kind: pa.DataType) -> pa.ChunkedArray:
    """``ids`` in several chunks: a slice of a larger array (non-zero offset), an empty
    chunk, a one-value chunk and the rest."""
    cut = len(ids) // 3
    first = pa.array(["before", *ids[:cut], "after"], type=kind).slice(1, cut)
    return pa.chunked_array([first, pa.array([], type=kind), pa.array(ids[cut:cut + 1], type=kind),
                             pa.array(ids[cut + 1:], type=kind)])


def _csv(ids: list[str]) -> bytes:
    lines = ["account_id,variant,start_mrr"]
    lines += [f"{value},{VARIANTS[i % 2]},{i}.5" for i, value in enumerate(ids)]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------ no database

IDS = ["b", "a", "日", "😀", "c", "ß" * 255]


def _pair():
    return ArrowText(pa.array(IDS)), object_array(IDS)


@pytest.mark.parametrize("key", [
    np.array([True, False, True, False, True, True]), np.array([4, 0, 2]), [3, 3],
    slice(1, None), slice(-3, -1), slice(None, None, -2), slice(4, 1)])
def test_indexing_gives_the_object_arrays_values(key):
    ours, theirs = _pair()
    assert list(ours[key]) == list(theirs[key])
    if not (isinstance(key, np.ndarray) and key.dtype == bool):
        assert list(ours[1:][key]) == list(theirs[1:][key])  # a slice, indexed again


def test_a_slice_of_a_slice_and_single_values():
    ours, theirs = _pair()
    assert ours[1:][2:4].tolist() == theirs[1:][2:4].tolist() == ["😀", "c"]
    assert ours[1:][-1] == theirs[-1] and ours[np.int64(2)] == "日"
    assert len(ours[3:1]) == 0 and ours[3:1].tolist() == []
    with pytest.raises(IndexError):
        ours[6]


def test_comparisons_are_value_by_value_as_on_the_object_array():
    """Before: ``ids == 'a'`` was the single False of object identity (and != True)."""
    ours, theirs = _pair()
    assert (ours == "a").tolist() == (theirs == "a").tolist() == [False, True] + [False] * 4
    assert (ours != "a").tolist() == (theirs != "a").tolist()
    assert (ours == theirs).all() and not (ours != theirs).any()
    assert (ours[:-1] < ours[1:]).tolist() == (theirs[:-1] < theirs[1:]).tolist()
    assert (ours >= "b").tolist() == (theirs >= "b").tolist()
    with pytest.raises(TypeError):
        hash(ours)  # an array is no dictionary key


def test_sorting_unique_membership_iteration():
    ours, theirs = _pair()
    assert np.sort(ours).tolist() == np.sort(theirs).tolist() == sorted(IDS)
    assert np.argsort(ours).tolist() == np.argsort(theirs).tolist()
    values, inverse = np.unique(ours, return_inverse=True)
    assert values[inverse].tolist() == IDS
    assert "日" in ours and "x" not in ours
    assert list(ours) == IDS and dict.fromkeys(ours) == dict.fromkeys(IDS)
    assert np.isin(ours, ["a", "c"]).tolist() == np.isin(theirs, ["a", "c"]).tolist()
    assert ours.size == theirs.size == 6


def test_copies_and_pickles_hold_only_their_own_values():
    """A pickled 10-id slice of a million ids held all million (16 MB, not ~300 bytes)."""
    ours, _ = _pair()
    assert copy.copy(ours).tolist() == IDS and copy.deepcopy(ours).tolist() == IDS
    assert pickle.loads(pickle.dumps(ours[2:4])).tolist() == IDS[2:4]
    many = ArrowText(pa.array([f"acct-{i:07d}" for i in range(1_000_000)]))
    small = pickle.dumps(many[10:20])
    assert len(small) < 2_000
    assert pickle.loads(small).tolist() == [f"acct-{i:07d}" for i in range(10, 20)]


def test_np_asarray_makes_one_object_array():
    ours, _ = _pair()
    values = np.asarray(ours, dtype=object)
    assert values.dtype == object and values.tolist() == IDS
    assert np.asarray(ours, dtype=str).tolist() == IDS


def test_a_blank_id_is_refused_by_the_contract():
    """So no id is '' in a table to store: the COPY encoder never has to tell '' from NULL."""
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(b"account_id,variant,start_mrr\na,control,1\n\"\",treatment,2\n",
                      variants=VARIANTS)
    assert "line 3" in str(raised.value) and "account_id" in str(raised.value)


def test_a_file_in_several_reader_blocks_keeps_every_id(monkeypatch):
    monkeypatch.setattr(fast, "_FAST_BLOCK_SIZE", fast._MIN_FAST_BLOCK_SIZE)
    chunks = _chunks_read(monkeypatch)
    ids = _random_ids(1_500, seed=4, max_bytes=255)
    table = fast.read_fast(_csv(ids), VARIANTS)
    assert isinstance(table.account_id, ArrowText) and chunks[0] > 3
    assert table.account_id.tolist() == ids


# ------------------------------------------------------------------ PostgreSQL


def _same_as_psycopg(scratch, table, ids: list[str], start: int = 0) -> None:
    connection, raw = scratch
    rows_postgres.copy_rows(raw, 1, table, start, len(table), ids_by_line=True)
    reference_copy(raw, 2, table)
    ours, theirs = stored(connection, 1), stored(connection, 2)
    assert ours == theirs[start:]
    assert [row[1] for row in ours] == ids[start:]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_ids_from_several_chunks_stored_as_psycopg_stores_them(scratch, monkeypatch,
                                                                      kind, seed):
    monkeypatch.setattr(rows_postgres, "COPY_CHUNK", 37)  # blocks start inside each chunk
    ids = _random_ids(400, seed)
    _same_as_psycopg(scratch, _table(ArrowText(_chunked(ids, kind))), ids, start=seed * 11)


def test_a_file_in_several_reader_blocks_stored_as_psycopg_stores_it(scratch, monkeypatch):
    monkeypatch.setattr(fast, "_FAST_BLOCK_SIZE", fast._MIN_FAST_BLOCK_SIZE)
    monkeypatch.setattr(rows_postgres, "COPY_CHUNK", 251)
    chunks = _chunks_read(monkeypatch)
    ids = _random_ids(1_500, seed=3, max_bytes=255)
    table = fast.read_fast(_csv(ids), VARIANTS)
    assert isinstance(table.account_id, ArrowText) and chunks[0] > 3
    _same_as_psycopg(scratch, table, ids)
