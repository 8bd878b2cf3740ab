"""The upload's analysis inputs come from the arrays it has just stored, not a GROUP BY read
back: they must equal what SQL reads from the stored rows (issue 18, item 3)."""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest
from sqlmodel import func, select

from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.analysis import active_dataset, analyse_dataset
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AccountRow, AnalysisSnapshot, Dataset, UploadJob
from tests import factories
from tests.experiments.test_nrr_figures_paths import assert_close

VARIANTS = ["control", "treatment", "b"]
SUM_FIELDS = ("n", "start", "expansion", "contraction", "churned", "sum_x", "sum_y", "sum_xx",
              "sum_yy", "sum_xy")


def random_csv(rows: int, *, seed: int, segments: bool = True, observed: bool = False,
               large: bool = True) -> bytes:
    """Accounts with blank segments, blank days and (``large``) a large account every 97
    rows."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    header = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"
    header += ",segment" if segments else ""
    header += ",days_to_value,days_observed" if observed else ""
    out.write(header + "\n")
    names = ["SMB", "Mid", "", "Ent, \"big\""]
    for i in range(rows):
        start = int(rng.integers(1, 2_000_000)) if i % 97 or not large else 123_456_789_00
        contraction = int(rng.integers(0, start // 3 + 1)) if rng.random() < 0.2 else 0
        churned = start - contraction if rng.random() < 0.1 else 0
        expansion = int(rng.integers(0, 50_000)) if rng.random() < 0.3 else 0
        cells = [f"acct-{i}", VARIANTS[int(rng.integers(0, 3))],
                 *(f"{c // 100}.{c % 100:02d}" for c in (start, expansion, contraction, churned))]
        if segments:
            name = names[int(rng.integers(0, 4))]
            cells.append(f'"{name.replace(chr(34), chr(34) * 2)}"' if "," in name else name)
        if observed:
            seen = int(rng.integers(1, 60))
            cells += ["" if rng.random() < 0.4 else str(int(rng.integers(0, seen))), str(seen)]
        out.write(",".join(cells) + "\n")
    return out.getvalue().encode()


def assert_rows_equal(ours, theirs) -> None:
    assert [row.variant for row in ours] == [row.variant for row in theirs]
    for a, b in zip(ours, theirs, strict=True):
        for name in SUM_FIELDS:
            assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-12,
                                abs_tol=1e-9), (a.variant, name)


@pytest.mark.db
@pytest.mark.parametrize("segments", [True, False])
def test_sums_from_the_arrays_equal_the_sql_group_by(session, segments):
    table = read_accounts(random_csv(3000, seed=5, segments=segments), variants=VARIANTS)
    experiment = factories.make_experiment(session, "speed", variants=VARIANTS)
    dataset = datasets.store_dataset(session, experiment, table, filename="a.csv", actor=None)
    session.commit()

    by_segment, sums = datasets.sums_from_table(table)

    assert_rows_equal(sums, sorted(datasets.arm_sums(session, dataset.id),
                                   key=lambda row: row.variant))
    if not segments:
        assert by_segment is None
        return
    stored = datasets.arm_sums_by_segment(session, dataset.id)
    assert set(by_segment) == set(stored) == {"SMB", "Mid", None, 'Ent, "big"'}
    for name, rows in stored.items():
        assert_rows_equal(by_segment[name], rows)


def test_sums_from_the_arrays_match_a_hand_computation():
    data = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment\n"
            b"a1,control,100.10,5.05,0,0,SMB\n"
            b"a2,treatment,200,0,20.5,0,\n"
            b"a3,control,50,,,50,\n"
            b"a4,control,1234567.89,0,0,0,SMB\n")
    by_segment, sums = datasets.sums_from_table(read_accounts(data, variants=VARIANTS))
    control, treatment = sums
    # control: a1 (100.10 → 105.15), a3 (50 → 0), a4 (1234567.89 → 1234567.89)
    x, y = [105.15, 0.0, 1234567.89], [100.10, 50.0, 1234567.89]
    assert (control.variant, control.n, treatment.variant, treatment.n) == (
        "control", 3, "treatment", 1)
    assert control.start == 1234718.0 - 0.01 and control.expansion == 5.05
    assert control.churned == 50.0 and treatment.contraction == 20.5
    assert math.isclose(control.sum_x, sum(x), rel_tol=1e-15)
    assert math.isclose(control.sum_xx, sum(v * v for v in x), rel_tol=1e-15)
    assert math.isclose(control.sum_xy, sum(a * b for a, b in zip(x, y, strict=True)),
                        rel_tol=1e-15)
    assert {name: [(r.variant, r.n) for r in rows] for name, rows in by_segment.items()} == {
        "SMB": [("control", 2)], None: [("control", 1), ("treatment", 1)]}


@pytest.mark.db
@pytest.mark.parametrize("by_segment", [True, False])
def test_moments_and_time_tables_from_the_arrays_equal_sql(session, by_segment):
    table = read_accounts(random_csv(2000, seed=9, observed=True), variants=VARIANTS)
    experiment = factories.make_experiment(session, "speed2", variants=VARIANTS)
    dataset = datasets.store_dataset(session, experiment, table, filename="a.csv", actor=None)
    session.commit()

    ours = datasets.extras_from_table(table, by_segment=by_segment)
    theirs = datasets.arm_extras(session, dataset, by_segment=by_segment)
    assert set(ours) == set(theirs) and len(ours) == (12 if by_segment else 3)
    for key, extra in ours.items():
        other = theirs[key]
        assert (extra.moments.n, extra.logo_churned, extra.expanded) == (
            other.moments.n, other.logo_churned, other.expanded), key
        # SQL's shifted float sums lose a few digits to the large accounts
        np.testing.assert_allclose(extra.moments.mean, other.moments.mean, rtol=1e-10)
        np.testing.assert_allclose(extra.moments.comoment, other.moments.comoment, rtol=1e-9,
                                   atol=1e-6)
    times = datasets.time_tables_from_table(table, by_segment=by_segment)
    stored = datasets.time_tables(session, dataset, by_segment=by_segment)
    assert set(times) == set(stored)
    for key, value in times.items():
        assert value == stored[key], key


# --- the background job: rows stored while the analysis runs (PostgreSQL) ----------------


def spool(session, experiment, folder, data: bytes) -> int:
    job = create_upload_job(session, experiment, filename="speed.csv", actor=None)
    session.commit()
    upload_file_path(folder, job.id).write_bytes(data)
    return job.id


@pytest.mark.parametrize("chunk", [1000, 100_000])
def test_the_job_stores_every_row_and_its_snapshot_equals_one_read_back(
        db_engine, session, tmp_path, monkeypatch, chunk):
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", chunk)  # many transactions, or one
    experiment = factories.make_experiment(session, "speed3", variants=VARIANTS)
    # no large accounts: SQL's shifted sums would lose digits the arrays keep (see above)
    data = random_csv(4000, seed=11, observed=True, large=False)
    job_id = spool(session, experiment, tmp_path, data)

    run_upload_job(db_engine, job_id, tmp_path)

    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert (job.state, job.phase, job.rows_read, job.rows_stored) == ("done", "", 4000, 4000)
    dataset = session.get(Dataset, job.dataset_id)
    assert dataset.status == "ready" and active_dataset(session, experiment).id == dataset.id
    stored = session.exec(select(AccountRow.account_id, AccountRow.start_cents)
                          .where(AccountRow.dataset_id == dataset.id)).all()
    table = read_accounts(data, variants=VARIANTS)
    assert sorted(stored) == sorted(zip(table.account_id.tolist(),
                                        table.start_cents.tolist(), strict=True))
    (snapshot,) = session.exec(select(AnalysisSnapshot)
                               .where(AnalysisSnapshot.dataset_id == dataset.id)).all()
    # the same analysis with every input read back from the stored rows by SQL
    read_back = analyse_dataset(session, experiment, dataset)
    assert snapshot.verdict == read_back.verdict
    assert_close(snapshot.result, read_back.result)
    assert_close(snapshot.segments, read_back.segments)
    assert not upload_file_path(tmp_path, job_id).exists()


@pytest.mark.parametrize("fails", ["analysis", "storage"])
def test_a_failure_on_either_side_of_the_job_keeps_nothing(db_engine, session, tmp_path,
                                                          monkeypatch, fails):
    import experiments.analysis as analysis
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 500)
    experiment = factories.make_experiment(session, "speed4", variants=VARIANTS)
    earlier = spool(session, experiment, tmp_path, random_csv(300, seed=1))
    run_upload_job(db_engine, earlier, tmp_path)
    if fails == "analysis":
        def broken(*args, **kwargs):
            raise RuntimeError("analysis bug")

        monkeypatch.setattr(analysis, "analyse_dataset", broken)
    else:
        real, calls = imports.bulk_insert_rows, []

        def broken(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("disk full")
            return real(*args, **kwargs)

        monkeypatch.setattr(imports, "bulk_insert_rows", broken)
    job_id = spool(session, experiment, tmp_path, random_csv(3000, seed=2))

    run_upload_job(db_engine, job_id, tmp_path)

    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert job.state == "failed" and "unexpected error" in job.message
    versions = session.exec(select(Dataset.version, Dataset.status)
                            .where(Dataset.experiment_id == experiment.id)).all()
    assert versions == [(1, "ready")]
    assert session.exec(select(func.count()).select_from(AccountRow)).one() == 300
    assert not upload_file_path(tmp_path, job_id).exists()


def _segment_per_pair(n: int):
    """Two accounts (one per variant) in each segment, every seventh account without one."""
    rows = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment"]
    rows += [f"a{i},{VARIANTS[i % 2]},10,1,0,0,{'' if i % 7 == 0 else f's{i // 2}'}"
             for i in range(n)]
    return read_accounts(("\n".join(rows) + "\n").encode(), variants=VARIANTS)


def test_many_segments_are_grouped_in_linear_time():
    # A segment per account or two: one comparison pass per segment was rows x segments
    # (40,000 rows: ~8 s of CPU; a million: hours) in the upload's analysis.
    table = _segment_per_pair(40_000)
    started = time.process_time()
    grouping = datasets._grouping(table, True)
    assert time.process_time() - started < 1.0
    assert len(grouping.keys) == len(set(grouping.keys)) > 20_000


def test_the_look_up_and_the_comparison_passes_group_alike(monkeypatch):
    table = _segment_per_pair(3000)
    by_look_up = datasets._grouping(table, True)
    monkeypatch.setattr(datasets, "_COMPARISON_PASSES", 10**9)
    by_passes = datasets._grouping(table, True)
    assert by_look_up.keys == by_passes.keys and (None, "control") in by_look_up.keys
    assert np.array_equal(by_look_up.code, by_passes.code)
    assert np.array_equal(by_look_up.order, by_passes.order)
