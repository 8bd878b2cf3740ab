"""Frequent writes no cached page shows leave everyone's kept pages kept (issue 18), while
the pages that do show them show them fresh (``experiments.generation.unseen_write``):

* an API token's use (its "last used" stamp and ``api_token.use`` row): shown on the
  owner's token list and the admin audit log, neither cached;
* a download's ``export.<format>`` audit row: shown on the admin audit log;
* a notification delivery being sent (claimed, then sent or retried): shown on the admin
  delivery log;
* a background upload's row chunks and progress: shown on the upload's status component
  (never on a cached page, which renders the upload form idle); the dataset's rows count
  only once the last transaction makes the version visible, and that one moves the
  generation.

Each test keeps a page, makes the write, and asserts the next view of the page is a hit
of the page cache with the same body. Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, select

from experiments import imports, notify, rows_postgres, rows_sqlite
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import Experiment, UploadJob
from experiments.notify_models import Delivery
from experiments.webhooks import WebhookError, create_webhook
from tests.api.conftest import TokenClient, issue_token
from tests.experiments.test_generation import generation
from tests.experiments.test_upload_jobs import plain_csv
from tests.factories import store_ledger_file
from tests.ledger_gen import write_csv
from tests.webapp.test_results import make_experiment
from tests.webapp.test_results_body_cache import without_tokens

pytestmark = pytest.mark.db

PATHS = ["/", "/experiments/seat-nudge"]


class Kept:
    """A page ``client`` viewed once (so it is kept), and the check that it stays kept."""

    def __init__(self, app, client, path: str):
        self.app, self.client, self.path = app, client, path
        first = client.get(path)
        assert first.status_code == 200
        self.body = without_tokens(first.get_data(as_text=True))

    def view_again(self) -> tuple[bool, bool]:
        """Whether the next view was a hit of the page cache, and showed the same body."""
        cache = self.app.extensions["nrrlab.page_cache"]
        hits, misses = cache.hits, cache.misses
        again = self.client.get(self.path)
        assert again.status_code == 200
        hit = (cache.hits, cache.misses) == (hits + 1, misses)
        return hit, without_tokens(again.get_data(as_text=True)) == self.body

    def assert_kept(self, what: str) -> None:
        assert self.view_again() == (True, True), f"{what} emptied the cache"


def _reader(factory, db_engine, login_as, *, status: str = "running"):
    factory.team("growth")
    make_experiment(db_engine, status=status)
    return login_as("viewer", teams={"growth": "viewer"})


# ---------------------------------------------------------------- API token use


@pytest.mark.parametrize("path", PATHS)
def test_api_token_use_leaves_kept_pages_kept_and_the_token_list_shows_it(
        app, login_as, factory, db_engine, path):
    reader = _reader(factory, db_engine, login_as)
    owner = login_as("viewer", teams={"growth": "viewer"})  # signed in before the page is kept
    api = TokenClient(app.test_client(), issue_token(db_engine, owner.user, "read"), owner.user)
    assert ">never<" in owner.get("/account/tokens").get_data(as_text=True)
    kept = Kept(app, reader, path)
    before = generation(db_engine)

    # The first use stamps the token and writes an api_token.use row.
    assert api.get("/api/v1/experiments").status_code == 200
    assert api.get("/api/v1/experiments/seat-nudge").status_code == 200

    kept.assert_kept("an API token's use")
    assert generation(db_engine) == before
    tokens = owner.get("/account/tokens").get_data(as_text=True)
    assert ">never<" not in tokens
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC from 127\.0\.0\.1", tokens)
    admin = login_as("admin")
    assert "api_token.use" in admin.get("/admin/audit").get_data(as_text=True)


# ---------------------------------------------------------------- export audit rows


@pytest.mark.parametrize("path", PATHS)
def test_downloads_leave_kept_pages_kept_and_the_audit_log_shows_them(
        app, login_as, factory, db_engine, tmp_path, path):
    reader = _reader(factory, db_engine, login_as)
    other = login_as("viewer", teams={"growth": "viewer"})
    admin = login_as("admin")
    write_csv(tmp_path / "ledger.csv", n_accounts=60, months=4, seed=3)
    with Session(db_engine, expire_on_commit=False) as session:
        store_ledger_file(session, tmp_path / "ledger.csv", admin.user)
    kept = Kept(app, reader, path)
    before = generation(db_engine)

    for url in ("/experiments/seat-nudge/export.csv", "/experiments/seat-nudge/export.zip",
                "/quarterly/2026-Q4/export.json", "/nrr.csv"):
        response = other.get(url)
        assert response.status_code == 200, url
        assert "attachment" in response.headers["Content-Disposition"]
    assert admin.get("/admin/audit.csv").status_code == 200

    kept.assert_kept("a download")
    assert generation(db_engine) == before
    log = admin.get("/admin/audit").get_data(as_text=True)
    for action in ("export.csv", "export.zip", "export.json", "export.audit"):
        assert action in log, action


# ---------------------------------------------------------------- notification deliveries


@pytest.mark.parametrize("path", PATHS)
def test_sending_deliveries_leaves_kept_pages_kept_and_the_delivery_log_shows_it(
        app, login_as, factory, db_engine, monkeypatch, path):
    reader = _reader(factory, db_engine, login_as)
    admin = login_as("admin")
    notify._dispatchers.pop(db_engine.pool, None)  # sent here, by calling deliver
    with Session(db_engine, expire_on_commit=False) as session:
        endpoint, _secret = create_webhook(
            session, {"name": "Hook", "url": "https://hooks.example.com/x", "events": ["alert"]},
            actor=admin.user)
        first = notify.ping_webhook(session, endpoint, actor=admin.user)
        second = notify.ping_webhook(session, endpoint, actor=admin.user)
        session.commit()  # an admin's action, audited: it moves the generation
    answers = iter([WebhookError("HTTP 503 from the endpoint", status=503)])

    def post(*args, **kwargs):
        answer = next(answers, 200)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(notify, "post", post)
    kept = Kept(app, reader, path)
    before = generation(db_engine)

    assert notify.deliver(db_engine, first.id).status == "retrying"
    assert notify.deliver(db_engine, second.id).status == "sent"

    kept.assert_kept("sending a delivery")
    assert generation(db_engine) == before
    log = admin.get("/admin/deliveries").get_data(as_text=True)
    assert "HTTP 503 from the endpoint" in log and "sent · HTTP 200" in log
    with Session(db_engine) as session:
        rows = session.exec(select(Delivery.status, Delivery.recipient)
                            .order_by(Delivery.id)).all()
    assert rows == [("retrying", "https://hooks.example.com/x"),
                    ("sent", "https://hooks.example.com/x")]


# ---------------------------------------------------------------- upload chunks


@pytest.mark.parametrize("path", PATHS)
def test_upload_chunks_leave_kept_pages_kept_until_the_version_is_visible(
        app, login_as, factory, db_engine, monkeypatch, tmp_path, path):
    reader = _reader(factory, db_engine, login_as)
    analyst = login_as("viewer", teams={"growth": "analyst"})
    rows, chunk = 400, 100
    monkeypatch.setattr(imports, "STORE_CHUNK", chunk)
    monkeypatch.setattr(rows_sqlite, "SQLITE_HOLD_SECONDS", 0.0)  # a commit per chunk
    monkeypatch.setattr(rows_postgres, "WRITERS", 1)  # chunks one after the other
    with Session(db_engine, expire_on_commit=False) as session:
        experiment = session.exec(select(Experiment)).one()
        job = create_upload_job(session, experiment, filename="big.csv", actor=None)
        session.commit()
    upload_file_path(tmp_path, job.id).write_bytes(plain_csv(rows))
    status_url = f"/experiments/seat-nudge/uploads/{job.id}"
    seen: list[tuple[int, tuple[bool, bool] | None, str]] = []
    kept: list[Kept] = []
    real_insert = imports.bulk_insert_rows

    def insert(session, dataset_id, table, *, start, stop, **options):
        # Before each chunk: the chunks before it are committed, the version is not visible.
        if not kept:
            kept.append(Kept(app, reader, path))  # kept after the reservation's commit
        view = kept[0].view_again()
        status = analyst.get(status_url, headers={"HX-Request": "true"})
        seen.append((start, view, status.get_data(as_text=True)))
        real_insert(session, dataset_id, table, start=start, stop=stop, **options)

    monkeypatch.setattr(imports, "bulk_insert_rows", insert)
    run_upload_job(db_engine, job.id, tmp_path)

    # Every view between the chunks was the kept page, a hit of the cache.
    assert [(start, view) for start, view, _ in seen] == \
        [(start, (True, True)) for start in range(0, rows, chunk)]
    for start, _, component in seen[1:]:  # the progress is shown fresh
        assert f"{start:,} stored so far" in component, component
    with Session(db_engine) as session:
        assert session.get(UploadJob, job.id).state == "done"
    # The last transaction made the version visible: the page shows it at once.
    after = reader.get(path).get_data(as_text=True)
    assert without_tokens(after) != kept[0].body
    if path != "/":
        assert "400" in after
