"""Review R1 of the writes no cached page shows (``experiments.generation.unseen_write``):
the edges the first tests leave out. A marked write that comes with a visible one still
moves the data generation; an upload that fails after its version was reserved moves it
(the reservation and the clean-up are ordinary writes) and no kept page shows the failure;
an upload refused before any reservation (only the job's state) moves nothing. Runs on
SQLite and in the PostgreSQL pass."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from experiments import imports, rows_postgres, rows_sqlite
from experiments.exports import export_review
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import Dataset, Experiment, ReviewMeeting, UploadJob, User
from experiments.review_weeks import current_week
from tests.experiments.test_generation import generation
from tests.experiments.test_upload_jobs import plain_csv
from tests.webapp.test_page_cache_unseen_writes import Kept, _reader

pytestmark = pytest.mark.db


def _user(engine, email: str) -> User:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(User).where(User.email == email)).one()


def test_a_review_export_that_opens_the_week_moves_the_generation_a_repeat_does_not(
        app, login_as, factory, db_engine):
    """Exporting a week nobody opened yet stores its meeting and rows (what the review page
    then shows): written outside the audit row's mark, so the number moves. A second export
    of the settled week writes only its audit row."""
    reader = _reader(factory, db_engine, login_as)
    user = _user(db_engine, reader.user.email)
    week = current_week()
    with Session(db_engine) as session:
        assert session.exec(select(ReviewMeeting)).first() is None
    before = generation(db_engine)
    with Session(db_engine, expire_on_commit=False) as session:
        export_review(session, user, week.label, "csv")
        session.commit()
    opened = generation(db_engine)
    assert opened != before  # the meeting and its rows are data a kept page shows
    with Session(db_engine) as session:
        assert session.exec(select(ReviewMeeting.iso_week)).all() == [week.label]
    kept = Kept(app, reader, f"/review/{week.label}")
    with Session(db_engine, expire_on_commit=False) as session:
        export_review(session, user, week.label, "md")
        session.commit()
    assert generation(db_engine) == opened
    kept.assert_kept("a second export of a settled week")


def _job(db_engine, tmp_path, body: bytes) -> int:
    with Session(db_engine, expire_on_commit=False) as session:
        experiment = session.exec(select(Experiment)).one()
        job = create_upload_job(session, experiment, filename="up.csv", actor=None)
        session.commit()
    upload_file_path(tmp_path, job.id).write_bytes(body)
    return job.id


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setattr(imports, "STORE_CHUNK", 100)
    monkeypatch.setattr(rows_sqlite, "SQLITE_HOLD_SECONDS", 0.0)  # a commit per chunk
    monkeypatch.setattr(rows_postgres, "WRITERS", 1)


def test_an_upload_failing_after_its_reservation_moves_the_generation_and_shows_nothing(
        app, login_as, factory, db_engine, monkeypatch, tmp_path, chunked, caplog):
    reader = _reader(factory, db_engine, login_as)
    job_id = _job(db_engine, tmp_path, plain_csv(400))
    path = "/experiments/seat-nudge/results"
    kept = Kept(app, reader, path)
    before = generation(db_engine)
    real_insert = imports.bulk_insert_rows
    seen: list[int | None] = []

    def insert(session, dataset_id, table, *, start, stop, **options):
        seen.append(generation(db_engine))
        if start == 200:
            raise RuntimeError("disk full")
        real_insert(session, dataset_id, table, start=start, stop=stop, **options)

    monkeypatch.setattr(imports, "bulk_insert_rows", insert)
    run_upload_job(db_engine, job_id, tmp_path)

    with Session(db_engine) as session:
        job = session.get(UploadJob, job_id)
        assert job.state == "failed"
        assert session.exec(select(Dataset)).all() == []  # the reserved version is gone
    assert seen[0] != before  # the reservation moved it (a write like any other) ...
    assert len(set(seen)) == 1  # ... the first chunks did not
    assert generation(db_engine) != seen[0]  # the clean-up moved it again
    hit, same = kept.view_again()
    assert not hit and same  # rendered again, and it shows what it showed before


def test_a_refused_upload_writes_only_its_job_and_keeps_kept_pages(
        app, login_as, factory, db_engine, tmp_path, chunked):
    reader = _reader(factory, db_engine, login_as)
    job_id = _job(db_engine, tmp_path, plain_csv(300, bad_last=True))
    kept = Kept(app, reader, "/experiments/seat-nudge")
    before = generation(db_engine)
    run_upload_job(db_engine, job_id, tmp_path)
    with Session(db_engine) as session:
        assert session.get(UploadJob, job_id).state == "failed"
    assert generation(db_engine) == before
    kept.assert_kept("a refused upload")



def test_an_edit_conflict_names_who_changed_the_experiment_not_who_downloaded_it(db_engine):
    """The export audit rows are read by more than the audit log: an edit conflict names
    the newest audited event of the experiment (``versioning.last_change``). A download
    made after the real change changed nothing and must not pass for it."""
    from experiments.exports import export_experiment
    from experiments.models import JourneyStage
    from experiments.registry import form_values, update_experiment
    from experiments.versioning import StaleVersion
    from tests.factories import make_experiment, make_user

    with Session(db_engine, expire_on_commit=False) as session:
        people = {name: make_user(session, f"{name}@r1.test", "admin")
                  for name in ("Eve", "Olga", "Rita")}
        for name, user in people.items():
            user.name = name
        experiment = make_experiment(
            session, "seat-nudge", status="draft", hypothesis="If we nudge, NRR rises.",
            stage_id=session.exec(select(JourneyStage.id)).first(),
            owner_id=people["Eve"].id)
        session.commit()
        form = {**form_values(session, experiment), "version": "1"}
    with Session(db_engine) as session:
        update_experiment(session, "seat-nudge", {**form, "name": "Olga's"},
                          actor=session.get(User, people["Olga"].id))
        session.commit()
    with Session(db_engine) as session:  # a later download by somebody else
        export_experiment(session, session.get(User, people["Rita"].id), "seat-nudge", "csv")
        session.commit()
    with Session(db_engine) as session, pytest.raises(StaleVersion) as conflict:
        update_experiment(session, "seat-nudge", {**form, "name": "Eve's"},
                          actor=session.get(User, people["Eve"].id))
    assert conflict.value.changed_by == "Olga"
    assert str(conflict.value).startswith("'seat-nudge' was changed by Olga on ")
