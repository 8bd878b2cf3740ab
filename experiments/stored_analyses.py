"""Parsed stored analyses, kept per process (issue 18: a read page parses no stored JSON).

An :class:`~experiments.models.AnalysisSnapshot` is written once, by the upload or a
recompute, and never updated: a new analysis is a new row. So the parsed JSON of its
``result`` and ``segments`` can be kept and shared by every later request of the
process (the dashboard, the review, the results page and the exports read the same
few documents over and over; parsing them was a fifth of the dashboard's CPU).

The key is ``(id, computed_at, dataset_id)``, never the id alone: SQLite hands a
deleted row's id to the next insert, a rolled-back insert's id comes back, and one
process (the tests) can talk to several databases; none of those repeats the moment
of computation too (to the microsecond). Only emptying every table and storing new
snapshots at the same fixed moments would — the test suite does that, and calls
:func:`clear` when it empties the tables. A snapshot the cache has not seen is read in
one statement with the others it misses, so a new snapshot is seen by the next request
that asks for it.

The cache is bounded by the memory its parsed values take (:data:`MAX_BYTES`, least
recently used out first): each entry is charged :data:`PARSED_BYTES_PER_TEXT_BYTE` times
the length of its JSON text, as parsing it costs about that much. It is safe to share
between the threads of a worker. The parsed values are shared: callers must not change them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Text, cast
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot

#: Memory the parsed analyses of one process may take, in bytes. A 100-accounts-per-arm
#: analysis is ~5 kB of JSON text, the demo's ~4–20 kB: about a thousand analyses.
MAX_BYTES = 16 * 1024 * 1024
#: What parsed JSON costs in memory per character of its text: measured with tracemalloc
#: on stored analyses (results and segment breakdowns: dicts, floats, short strings),
#: 3.3–3.8; charged as 4 so the bound holds. Charging the text alone let the cache hold
#: ~3.8 × its bound (tests/experiments/test_stored_analyses.py measures it).
PARSED_BYTES_PER_TEXT_BYTE = 4

Part = Literal["result", "segments"]
SnapshotKey = tuple[int, str, int]


def snapshot_key(snapshot_id: int, computed_at: datetime | str, dataset_id: int) -> SnapshotKey:
    """The cache key of one stored snapshot (see the module docstring); a naive moment
    is UTC (SQLite hands back naive UTC), so both spellings give one key."""
    if isinstance(computed_at, datetime):
        if computed_at.tzinfo is None:
            computed_at = computed_at.replace(tzinfo=UTC)
        computed_at = computed_at.astimezone(UTC).isoformat()
    return (int(snapshot_id), str(computed_at), int(dataset_id))


#: Bytes charged per entry beyond its JSON text (key tuple, ISO moment, slot).
ENTRY_OVERHEAD = 256


class _ParsedCache:
    """A thread-safe LRU of parsed JSON, bounded by the memory it is charged for."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[SnapshotKey, Part], tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[SnapshotKey, Part]) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            self._entries.move_to_end(key)
            return True, entry[0]

    def put(self, key: tuple[SnapshotKey, Part], value: Any, text_length: int) -> None:
        """Keep ``value``, parsed from ``text_length`` characters of JSON."""
        # Each entry also costs its key and slot: an empty part (NULL or '{}') must not be
        # free, or the entries would grow with the snapshots read.
        size = PARSED_BYTES_PER_TEXT_BYTE * text_length + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.max_bytes:
                _key, (_value, dropped) = self._entries.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._size


_CACHE = _ParsedCache(MAX_BYTES)


def stored_parts(session: Session, keys: Iterable[SnapshotKey], part: Part = "result"
                 ) -> dict[int, Any]:
    """``{snapshot_id: parsed part}`` of the snapshots ``keys`` name.

    ``part`` is ``"result"`` (a dict; ``{}`` when the stored value is not one) or
    ``"segments"`` (a dict or ``None``). Snapshots not cached are read in one statement;
    a key whose row no longer exists (or was replaced) is left out.
    """
    found: dict[int, Any] = {}
    missing: dict[int, SnapshotKey] = {}
    for key in keys:
        hit, value = _CACHE.get((key, part))
        if hit:
            found[key[0]] = value
        else:
            missing[key[0]] = key
    if not missing:
        return found
    column = AnalysisSnapshot.result if part == "result" else AnalysisSnapshot.segments
    rows = session.exec(
        select(AnalysisSnapshot.id, AnalysisSnapshot.computed_at, AnalysisSnapshot.dataset_id,
               cast(column, Text))
        .where(AnalysisSnapshot.id.in_(sorted(missing)))
    ).all()
    for snapshot_id, computed_at, dataset_id, text in rows:
        key = snapshot_key(snapshot_id, computed_at, dataset_id)
        if key != missing[snapshot_id]:
            continue  # the caller's head is of another row that had this id
        value = json.loads(text) if text is not None else None
        if part == "result" and not isinstance(value, dict):
            value = {}
        _CACHE.put((key, part), value, len(text or ""))
        found[snapshot_id] = value
    return found


def clear() -> None:
    """Forget every parsed analysis (tests; never needed for correctness)."""
    _CACHE.clear()
