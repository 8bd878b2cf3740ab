"""The upload answers at once and its job runs in the background (issue 12, item 5).

These tests use the real embedded queue (SqliteHuey under the instance folder) instead
of the immediate mode the other tests run on, and play the consumer by hand: take the
task off the queue and execute it, as ``nrrlab worker`` would.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, func, select

from experiments.models import Dataset, UploadJob
from tests.webapp.test_results import GOOD_ROWS, HEADER, make_experiment, text_of, upload


@pytest.fixture
def analyst(login_as, factory):
    factory.team("other")
    return login_as("viewer", teams={"growth": "analyst"})


@pytest.fixture
def queued_app(app):
    app.config["JOBS_BACKEND"] = "sqlite"  # read when the queue is first made
    return app


@pytest.fixture
def experiment(analyst, db_engine):
    return make_experiment(db_engine)


def words(response) -> str:
    """The response's text without tags (whitespace collapsed)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text_of(response))).replace(" .", ".")


def run_next_job(app) -> None:
    queue = app.extensions["nrrlab.jobs"].queue
    task = queue.dequeue()
    assert task is not None, "nothing was queued"
    queue.execute(task)


def datasets(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Dataset)).one()


def only_job(engine) -> UploadJob:
    with Session(engine) as session:
        return session.exec(select(UploadJob)).one()


def test_htmx_upload_answers_at_once_and_the_component_polls_until_done(
        queued_app, analyst, experiment, db_engine):
    data = (HEADER + GOOD_ROWS).encode()
    response = upload(analyst, experiment.key, data, "queued.csv", htmx=True)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    job = only_job(db_engine)
    status_url = f"/experiments/{experiment.key}/uploads/{job.id}"
    assert f'hx-get="{status_url}"' in body and 'hx-trigger="every 1s"' in body
    assert 'hx-target="this"' in body and 'hx-swap="outerHTML"' in body
    assert "waiting for the importer" in text_of(response)
    assert datasets(db_engine) == 0 and job.state == "queued"
    spooled = list((queued_app.extensions["nrrlab.jobs"].uploads).glob("upload-*"))
    assert [p.read_bytes() for p in spooled] == [data]

    polled = analyst.get(status_url, headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in polled.get_data(as_text=True)

    run_next_job(queued_app)
    done = analyst.get(status_url, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert "Uploaded queued.csv as dataset version 1 (60 accounts) and analysed it" in words(done)
    assert "every 1s" not in done.get_data(as_text=True)
    assert done.headers["HX-Trigger"] == "results-updated"
    assert datasets(db_engine) == 1
    assert list(queued_app.extensions["nrrlab.jobs"].uploads.glob("upload-*")) == []


def test_without_javascript_the_upload_redirects_to_a_page_with_a_refresh_link(
        queued_app, analyst, experiment, db_engine):
    response = upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), "nojs.csv")
    job = only_job(db_engine)
    status_url = f"/experiments/{experiment.key}/uploads/{job.id}"
    assert response.status_code == 303 and response.headers["Location"].endswith(status_url)
    page = analyst.get(status_url)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert re.search(rf'<a href="{re.escape(status_url)}">Refresh</a>', body)
    assert 'http-equiv="refresh"' not in body.lower()
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # no inline scripts (CSP)
    run_next_job(queued_app)
    finished = analyst.get(status_url)  # the refresh link, once the job is done
    assert finished.status_code == 303
    assert finished.headers["Location"].endswith(f"/experiments/{experiment.key}")
    landed = analyst.get(finished.headers["Location"])
    assert "Uploaded nojs.csv as dataset version 1" in words(landed)


def test_a_bad_file_fails_in_the_background_with_line_numbered_errors(
        queued_app, analyst, experiment, db_engine):
    bad = (HEADER + GOOD_ROWS + "x1,control,0,0,0,0\nx2,nope,10,0,0,0\n").encode()
    upload(analyst, experiment.key, bad, "bad.csv", htmx=True)
    run_next_job(queued_app)
    job = only_job(db_engine)
    page = text_of(analyst.get(f"/experiments/{experiment.key}/uploads/{job.id}",
                               headers={"HX-Request": "true"}))
    assert "The file was not stored." in page and "bad.csv has 2 problems" in page
    assert "line 62, start_mrr" in page and "line 63, variant" in page
    assert datasets(db_engine) == 0


def test_the_same_file_queued_twice_is_stored_once(queued_app, analyst, experiment, db_engine):
    data = (HEADER + GOOD_ROWS).encode()
    upload(analyst, experiment.key, data, "a.csv", htmx=True)
    upload(analyst, experiment.key, data, "b.csv", htmx=True)
    run_next_job(queued_app)
    run_next_job(queued_app)
    with Session(db_engine) as session:
        states = sorted(j.state for j in session.exec(select(UploadJob)).all())
        second = session.exec(select(UploadJob).where(UploadJob.filename == "b.csv")).one()
    assert states == ["done", "duplicate"] and datasets(db_engine) == 1
    page = text_of(analyst.get(f"/experiments/{experiment.key}/uploads/{second.id}",
                               headers={"HX-Request": "true"}))
    assert "identical to the active dataset (version 1" in page


def test_a_job_is_not_found_through_another_experiment_or_team(
        queued_app, analyst, experiment, db_engine, login_as):
    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), htmx=True)
    job = only_job(db_engine)
    make_experiment(db_engine, "elsewhere")
    assert analyst.get(f"/experiments/elsewhere/uploads/{job.id}").status_code == 404
    assert analyst.get(f"/experiments/{experiment.key}/uploads/999999").status_code == 404
    outsider = login_as("viewer", teams={"other": "analyst"})
    assert outsider.get(f"/experiments/{experiment.key}/uploads/{job.id}").status_code == 404


def test_a_draft_is_refused_before_anything_is_queued(queued_app, analyst, db_engine):
    draft = make_experiment(db_engine, "draft-one", status="draft")
    response = upload(analyst, draft.key, (HEADER + GOOD_ROWS).encode(), htmx=True)
    assert response.status_code == 409 and "still a draft" in text_of(response)
    with Session(db_engine) as session:
        assert session.exec(select(func.count()).select_from(UploadJob)).one() == 0


def test_a_duplicate_whose_twin_failed_says_so_instead_of_crashing(
        queued_app, analyst, experiment, db_engine):
    data = (HEADER + GOOD_ROWS).encode()
    upload(analyst, experiment.key, data, "a.csv", htmx=True)
    upload(analyst, experiment.key, data, "b.csv", htmx=True)
    run_next_job(queued_app)
    run_next_job(queued_app)
    with Session(db_engine) as session:  # the twin's dataset is gone (a failed import)
        second = session.exec(select(UploadJob).where(UploadJob.filename == "b.csv")).one()
        second.dataset_id = None
        session.add(second)
        session.commit()
        second_id = second.id
    response = analyst.get(f"/experiments/{experiment.key}/uploads/{second_id}",
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "which did not finish; upload it again" in words(response)
