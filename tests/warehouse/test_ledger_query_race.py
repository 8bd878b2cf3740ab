"""Two first saves of the ledger's warehouse query at once: both saw no query, so both
inserted one, and the ledger had two queries (the experiment's query is unique by its
experiment; the ledger's had nothing). Now one wins, the other gets the same 409 conflict
an experiment's query gives, and one row is stored.

Runs on SQLite and, with DATABASE_URL set, on PostgreSQL (the ``db`` mark).
"""

from __future__ import annotations

import re
import threading

import pytest
from sqlmodel import Session, func, select

from experiments import warehouse
from experiments.errors import Conflict
from experiments.models import User
from experiments.warehouse import register_source, save_query
from experiments.warehouse_models import WarehouseQuery

pytestmark = pytest.mark.db


@pytest.fixture
def setup(db_engine, factory) -> tuple[int, int, int]:
    ada = factory.user("ada@wh-race.test", "admin").id
    bob = factory.user("bob@wh-race.test", "admin").id
    with Session(db_engine) as session:
        source = register_source(session, {"name": "prod", "url_env": "NRRLAB_TEST_NOT_SET",
                                           "dialect": "duckdb"},
                                 actor=session.get(User, ada))
        session.commit()
        return ada, bob, source.id


def _ledger_rows(db_engine) -> list[str]:
    with Session(db_engine) as session:
        return list(session.scalars(select(WarehouseQuery.sql_text)
                                    .where(WarehouseQuery.target == "ledger")))


def test_two_first_saves_at_once_one_wins_the_other_is_a_conflict(db_engine, monkeypatch,
                                                                   setup):
    ada, bob, source_id = setup
    barrier = threading.Barrier(2, timeout=20)
    real = warehouse.ledger_query

    def both_see_no_query(session):
        found = real(session)
        barrier.wait()  # neither inserts before both have looked
        return found

    monkeypatch.setattr(warehouse, "ledger_query", both_see_no_query)
    outcomes: dict[str, str] = {}

    def save(name: str, user_id: int) -> None:
        with Session(db_engine) as session:
            try:
                save_query(session, {"source_id": str(source_id),
                                     "sql_text": f"select '{name}' as who"},
                           actor=session.get(User, user_id), experiment=None)
                session.commit()
                outcomes[name] = "ok"
            except Conflict as exc:
                session.rollback()
                outcomes[name] = f"conflict: {exc}"
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                session.rollback()
                outcomes[name] = f"error: {exc!r}"

    threads = [threading.Thread(target=save, args=(name, user_id))
               for name, user_id in (("ada", ada), ("bob", bob))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["conflict", "ok"], outcomes
    winner = next(name for name, outcome in outcomes.items() if outcome == "ok")
    loser = next(outcome for outcome in outcomes.values() if outcome != "ok")
    assert "saved by someone else since you opened it" in loser
    assert _ledger_rows(db_engine) == [f"select '{winner}' as who"]
    with Session(db_engine) as session:  # the loser's save left no audit row either
        from experiments.models import AuditEvent
        saves = session.exec(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "warehouse.query_save")).one()
    assert saves == 1


def test_the_web_form_answers_the_late_first_save_with_a_409(login_as, db_engine,
                                                              monkeypatch, setup):
    """The slower of two first saves through the page: the 409 page keeps the text typed."""
    _ada, bob, source_id = setup
    real = warehouse.ledger_query

    with Session(db_engine) as other:  # the faster save, committed meanwhile
        save_query(other, {"source_id": str(source_id), "sql_text": "select 1 as first"},
                   actor=other.get(User, bob), experiment=None)
        other.commit()

    def stale_read(session):
        # The late request looked before the faster one's row was committed.
        monkeypatch.setattr(warehouse, "ledger_query", real)
        return None

    analyst = login_as("analyst")
    page = analyst.get("/ledger/warehouse")
    assert page.status_code == 200
    monkeypatch.setattr(warehouse, "ledger_query", stale_read)
    response = analyst.post("/ledger/warehouse", data={
        "source_id": str(source_id), "sql_text": "select 2 as late", "schedule": "manual",
        "version": "", "csrf_token": analyst.csrf})
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert "saved by someone else since you opened it" in text
    assert "select 2 as late" in text  # the typed text is kept in the form
    assert _ledger_rows(db_engine) == ["select 1 as first"]


def _hidden_version(body: str) -> str:
    found = re.search(r'<input type="hidden" name="version" value="([^"]*)">', body)
    assert found, "the form has no version field"
    return found.group(1)


def _save(client, url: str, source_id: int, sql: str, version: str):
    return client.post(url, data={"source_id": str(source_id), "sql_text": sql,
                                  "schedule": "manual", "version": version,
                                  "csrf_token": client.csrf})


def test_a_form_opened_before_the_first_save_does_not_overwrite_it_silently(
        login_as, db_engine, setup):
    """Both opened the empty form; the later save was an overwrite nobody saw. It is the
    409 now, with the current query shown, and saving again from there is deliberate."""
    _ada, _bob, source_id = setup
    first, late = login_as("analyst"), login_as("analyst")
    for client in (first, late):
        assert _hidden_version(client.get("/ledger/warehouse").get_data(as_text=True)) == ""
    assert _save(first, "/ledger/warehouse", source_id, "select 1 as first", "").status_code \
        == 303

    refused = _save(late, "/ledger/warehouse", source_id, "select 2 as late", "")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "saved by someone else since you opened it" in body
    assert re.search(r'<pre class="code" id="wq-current">select 1 as first</pre>', body)
    assert ">select 2 as late</textarea>" in body  # the typed text is kept
    assert _ledger_rows(db_engine) == ["select 1 as first"]

    again = _save(late, "/ledger/warehouse", source_id, "select 2 as late",
                  _hidden_version(body))
    assert again.status_code == 303
    assert _ledger_rows(db_engine) == ["select 2 as late"]


def test_after_a_stale_save_the_409_page_can_be_saved_again(login_as, factory, db_engine,
                                                          setup):
    """The 409 page kept the stale version, so every later save from it was a 409 too."""
    _ada, _bob, source_id = setup
    factory.experiment("wh-again")
    url = "/experiments/wh-again/warehouse"
    ada, bob = login_as("analyst"), login_as("analyst")
    assert _save(ada, url, source_id, "select 1 as a", "").status_code == 303
    assert _save(bob, url, source_id, "select 2 as a", "1").status_code == 303
    stale = _save(ada, url, source_id, "select 3 as a", "1")
    body = stale.get_data(as_text=True)
    assert stale.status_code == 409 and "changed by someone else" in body
    assert 'id="wq-current">select 2 as a</pre>' in body
    assert _hidden_version(body) == "2"
    assert _save(ada, url, source_id, "select 3 as a", _hidden_version(body)).status_code \
        == 303
    with Session(db_engine) as session:
        assert list(session.scalars(select(WarehouseQuery.sql_text))) == ["select 3 as a"]


@pytest.mark.parametrize("garbled", ["abc", "0", "-1", "99999999999999999999999", "1\x00"])
def test_a_garbled_version_is_refused_not_taken_as_no_check(login_as, db_engine, setup,
                                                            garbled):
    """An unreadable version was read as None, i.e. "no check": the save replaced the
    query whoever had changed it. It is a 422 now and the stored query stays."""
    _ada, _bob, source_id = setup
    client = login_as("analyst")
    assert _save(client, "/ledger/warehouse", source_id, "select 1 as kept", "").status_code \
        == 303

    refused = _save(client, "/ledger/warehouse", source_id, "select 2 as blind", garbled)
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    # (a control character is refused earlier, by the request-wide guard)
    assert "reload the page" in body or "contains a control character" in body
    assert _ledger_rows(db_engine) == ["select 1 as kept"]


@pytest.mark.parametrize("source_id", ["99999999999999999999", "-1", "1.5", "x"])
def test_an_unknown_source_id_is_a_422_not_a_500(login_as, db_engine, setup, source_id):
    """A source id past the database's integer range reached the database (a 500)."""
    client = login_as("analyst")
    refused = _save(client, "/ledger/warehouse", source_id, "select 1", "")
    assert refused.status_code == 422
    assert "choose a registered data source" in refused.get_data(as_text=True)
    assert _ledger_rows(db_engine) == []
