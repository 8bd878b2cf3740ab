"""Final review (R1) probes of the wave-2 write paths: a body over the upload limit is a
413 and a control character in any field is refused, never a 500, on every new POST."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.db

ROUTES = [
    "/nrr/upload",
    "/account/tokens",
    "/review/2026-W10/actions",
    "/review/2026-W10/actions/1",
    "/review/2026-W10/actions/1/status",
    "/quarterly/2026-Q1/objectives",
    "/quarterly/2026-Q1/objectives/1/key-results",
    "/quarterly/2026-Q1/key-results/1",
    "/account/notifications",
    "/account/calendar",
    "/admin/webhooks",
    "/admin/webhooks/1",
    "/admin/data-sources",
    "/ledger/warehouse",
]


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_over_the_limit_is_a_413_not_a_500(app, login_as, path):
    admin = login_as("admin")
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = admin.post(path, data={"csrf_token": admin.csrf, "title": "x" * 4096})
    assert response.status_code == 413, (path, response.status_code)


@pytest.mark.parametrize("text", ["a\x00b", "a\u202eb", "a\x1bb"])
@pytest.mark.parametrize("path", ROUTES)
def test_a_control_character_in_every_field_is_never_a_500(login_as, path, text):
    admin = login_as("admin")
    fields = ["title", "name", "owner", "notes", "description", "url", "events", "status",
              "target", "current", "due", "dsn", "query", "label", "metric", "text"]
    data = dict.fromkeys(fields, text)
    data["csrf_token"] = admin.csrf
    response = admin.post(path, data=data, headers={"HX-Request": "true"})
    assert response.status_code < 500, (path, response.status_code)


def test_two_saves_of_the_ledger_query_on_the_same_version_one_gets_a_conflict(db_engine, factory):
    """The check of the version read from the session let the slower of two saves on
    version 1 overwrite the faster one (its row was loaded before the other commit):
    a silent lost update. The save is now a compare-and-set in SQL."""
    from sqlmodel import Session

    from experiments.errors import Conflict
    from experiments.warehouse import ledger_query, register_source, save_query

    user = factory.user("wh-admin@example.com", "admin")
    with Session(db_engine) as session:
        source = register_source(session, {"name": "prod", "url_env": "NRRLAB_TEST_NOT_SET",
                                           "dialect": "duckdb"}, actor=user)
        save_query(session, {"source_id": source.id, "sql_text": "select 1 as a",
                             "schedule": "manual"}, actor=user, experiment=None)
        session.commit()
        source_id = source.id
    slow, fast = Session(db_engine), Session(db_engine)
    try:
        seen = ledger_query(slow)  # the slower one has read the row (and holds it)
        assert seen.version == 1
        save_query(fast, {"source_id": source_id, "sql_text": "select 2 as a",
                          "schedule": "manual"}, actor=user, experiment=None, version=1)
        fast.commit()
        with pytest.raises(Conflict):
            save_query(slow, {"source_id": source_id, "sql_text": "select 3 as a",
                              "schedule": "manual"}, actor=user, experiment=None, version=1)
        slow.rollback()
    finally:
        slow.close()
        fast.close()
    with Session(db_engine) as session:
        assert "select 2" in ledger_query(session).sql_text


def test_two_admins_registering_one_data_source_name_at_once_get_a_field_error(db_engine,
                                                                                factory):
    """The name check reads before the other admin commits; the INSERT then hit the
    unique name and raised IntegrityError out of the request: a 500."""
    from sqlmodel import Session

    from experiments.errors import ValidationFailed
    from experiments.warehouse import register_source

    user = factory.user("wh-admin2@example.com", "admin")
    data = {"name": "prod", "url_env": "NRRLAB_TEST_NOT_SET", "dialect": "duckdb"}

    class Late(Session):
        """A session whose name check ran before the other admin's commit."""

        def scalars(self, *args, **kwargs):
            result = super().scalars(*args, **kwargs)
            return type("Empty", (), {"first": staticmethod(lambda: None)})() \
                if "data_source" in str(args[0]) else result

    with Session(db_engine) as first:
        register_source(first, data, actor=user)
        first.commit()
    with Late(db_engine) as late:
        with pytest.raises(ValidationFailed) as refused:
            register_source(late, data, actor=user)
        assert "exists already" in refused.value.errors["name"]
        late.rollback()


def test_two_first_saves_of_an_experiments_query_at_once_the_slower_is_a_conflict(
        db_engine, factory):
    """Both saw no query; the slower INSERT hit the unique experiment and raised
    IntegrityError out of the request (a 500). It is now the same 409 as a stale save."""
    from sqlmodel import Session

    from experiments.errors import Conflict
    from experiments.models import Experiment
    from experiments.warehouse import register_source, save_query

    user = factory.user("wh-admin3@example.com", "admin")
    experiment_id = factory.experiment("whx").id
    with Session(db_engine) as first:
        source = register_source(first, {"name": "prod", "url_env": "NRRLAB_TEST_NOT_SET",
                                         "dialect": "duckdb"}, actor=user)
        save_query(first, {"source_id": source.id, "sql_text": "select 1 as a"}, actor=user,
                   experiment=first.get(Experiment, experiment_id))
        first.commit()
        source_id = source.id

    class Late(Session):
        def scalars(self, *args, **kwargs):
            result = super().scalars(*args, **kwargs)
            return type("Empty", (), {"first": staticmethod(lambda: None)})() \
                if "FROM warehouse_query" in str(args[0]) else result

    with Late(db_engine) as late:
        with pytest.raises(Conflict):
            save_query(late, {"source_id": source_id, "sql_text": "select 2 as a"},
                       actor=user, experiment=late.get(Experiment, experiment_id))
        late.rollback()
