"""Parsed stored analyses kept per process (experiments.stored_analyses, issue 18).

The results page and the documents read a snapshot's JSON once per process; a new
snapshot (an upload, a recompute) must be seen by the very next read, a reused id must
never serve another row's analysis, and the cache must stay within its bound.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import event
from sqlmodel import select

from experiments import stored_analyses
from experiments.accounts_csv import read_accounts
from experiments.analysis import load_results, recompute, refresh_snapshot
from experiments.datasets import store_dataset
from experiments.demo import Behaviour, generate_accounts_csv
from experiments.documents import document_now
from experiments.models import AnalysisSnapshot, Variant, utcnow
from tests.factories import make_experiment


@pytest.fixture(autouse=True)
def empty_cache():
    stored_analyses.clear()
    yield
    stored_analyses.clear()


def _upload(session, experiment, seed: int):
    keys = [v.key for v in session.exec(select(Variant).where(
        Variant.experiment_id == experiment.id)).all()]
    data = generate_accounts_csv(np.random.default_rng(seed),
                                 {"control": (200, Behaviour()), "treatment": (200, Behaviour())},
                                 prefix="acct")
    dataset = store_dataset(session, experiment, read_accounts(data, variants=keys),
                            filename=f"{seed}.csv", actor=None)
    return refresh_snapshot(session, experiment, dataset)


def _result_reads(session) -> tuple[list[str], callable]:
    statements: list[str] = []
    engine = session.get_bind()

    def record(conn, cursor, statement, parameters, context, executemany):
        if "analysis_snapshot" in statement and "CAST" in statement.upper():
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def test_a_second_read_parses_nothing_and_equals_the_stored_row(session):
    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=3))
    snapshot = _upload(session, experiment, 1)
    first = load_results(session, experiment)
    reads, stop = _result_reads(session)
    try:
        again = load_results(session, experiment)
        document = document_now(session, experiment)
    finally:
        stop()
    assert reads == []  # the stored JSON came from the cache both times
    assert again.result == first.result
    row = session.get(AnalysisSnapshot, snapshot.id)
    session.refresh(row)
    assert document.snapshot_id == snapshot.id
    assert document.result["comparisons"] == row.result["comparisons"]
    assert again.segment_names == tuple(sorted(row.segments))


def test_a_new_snapshot_is_seen_by_the_next_read(session):
    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=3))
    _upload(session, experiment, 1)
    assert load_results(session, experiment).result.mde == 0.02
    assert document_now(session, experiment).result["mde"] == 0.02

    experiment.mde = 0.05
    session.add(experiment)
    session.flush()
    recompute(session, experiment, actor=None)
    assert load_results(session, experiment).result.mde == 0.05
    assert document_now(session, experiment).result["mde"] == 0.05

    newest = _upload(session, experiment, 2)
    results = load_results(session, experiment)
    assert results.dataset.version == 2
    assert sum(arm.accounts for arm in results.result.arms) == 400
    assert document_now(session, experiment).snapshot_id == newest.id


def test_a_reused_id_never_serves_the_old_row(session):
    """SQLite gives a deleted row's id to the next insert: the key's moment tells them apart."""
    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=3))
    snapshot = _upload(session, experiment, 1)
    assert document_now(session, experiment).result["mde"] == 0.02
    old = session.get(AnalysisSnapshot, snapshot.id)
    replacement = AnalysisSnapshot(
        id=old.id, experiment_id=old.experiment_id, dataset_id=old.dataset_id,
        computed_at=old.computed_at - timedelta(seconds=1), verdict=old.verdict,
        result={**old.result, "mde": 0.07}, segments=old.segments)
    session.delete(old)
    session.flush()
    session.add(replacement)
    session.flush()
    session.expire_all()
    assert document_now(session, experiment).result["mde"] == 0.07
    assert load_results(session, experiment).result.mde == 0.07


def test_the_cache_keeps_within_its_bound_and_drops_the_least_recent():
    # Each entry costs its charged text plus ENTRY_OVERHEAD: room for three 30-byte texts.
    per_entry = 30 * stored_analyses.PARSED_BYTES_PER_TEXT_BYTE + stored_analyses.ENTRY_OVERHEAD
    bound = 3 * per_entry + 10
    cache = stored_analyses._ParsedCache(max_bytes=bound)
    key = lambda i: (stored_analyses.snapshot_key(i, "2026-11-30T00:00:00+00:00", 1), "result")  # noqa: E731
    for i in range(5):
        cache.put(key(i), {"i": i}, 30)
        assert cache.size <= bound
    assert len(cache) == 3  # 3 entries fit, a fourth does not
    assert cache.get(key(0)) == (False, None) and cache.get(key(1)) == (False, None)
    assert cache.get(key(2)) == (True, {"i": 2})  # now the most recent
    cache.put(key(5), {"i": 5}, 30)
    assert cache.get(key(3)) == (False, None) and cache.get(key(2)) == (True, {"i": 2})
    cache.put(key(6), {"too": "big"}, bound)  # charged more than the bound
    assert cache.get(key(6)) == (False, None) and cache.size <= bound


def test_naive_and_aware_moments_make_one_key():
    from datetime import UTC, datetime

    naive = datetime(2026, 11, 30, 9, 0, 0, 123456)
    assert stored_analyses.snapshot_key(1, naive, 2) == \
        stored_analyses.snapshot_key(1, naive.replace(tzinfo=UTC), 2)


def test_a_full_cache_holds_about_its_bound_in_memory(session):
    """The bound is of memory, not of JSON text: parsed analyses cost several times their
    text (dicts, floats, short strings), so a bound charged by text alone held ~3.8× its
    figure per worker. Filled with real stored analyses, the cache's parsed values now
    take at most its bound (and not far below it: the charge is not wildly pessimistic)."""
    import json
    import tracemalloc

    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=3))
    snapshot = _upload(session, experiment, 1)
    texts = [json.dumps(snapshot.result), json.dumps(snapshot.segments)]
    bound = 2 * 1024 * 1024
    cache = stored_analyses._ParsedCache(bound)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for n in range(4 * bound // min(len(t) for t in texts)):
            text = texts[n % 2]
            key = stored_analyses.snapshot_key(n, "2026-11-30T00:00:00+00:00", n)
            cache.put((key, "result" if n % 2 == 0 else "segments"), json.loads(text), len(text))
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert cache.size <= bound
    assert 0.5 * bound <= held <= 1.1 * bound, f"{len(cache)} entries hold {held:,} bytes"
