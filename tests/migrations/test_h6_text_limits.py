"""Every text limit a reader allows fits the column that stores it (H6).

PostgreSQL refuses a value longer than its VARCHAR(n) column; SQLite stores it. A reader
that allows more than its column therefore passes every test on SQLite and fails on
PostgreSQL deep in the write ("unexpected error"), as account_row's 200-character ids did
until migration e20a1b2c3d45. Two kinds of test here:

* **pairs**: each reader's limit (the real constant, API schema bound or choice list)
  against the real model column, so a change to either that breaks the pair fails here;
* **round trips** (marked ``db``; they matter on the PostgreSQL pass): a value exactly at
  the limit, written with characters of 1 to 4 UTF-8 bytes, is stored whole; one character
  more is refused with the field named. VARCHAR(n) counts characters (code points) on
  PostgreSQL, as Python's ``len`` does; the readers must count the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from annotated_types import MaxLen
from sqlalchemy import String, func, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

import experiments.models  # noqa: F401  (every table on the metadata)
from experiments import (
    api_models,
    audit,
    decision_models,
    ledger_models,
    models,
    notify_models,
    review_models,
    signin,
    warehouse_models,
)
from experiments.accounts_csv.contract import MAX_TEXT_LENGTH, ImportValidationError
from experiments.actions import MAX_RESOLUTION
from experiments.actions import MAX_TITLE as ACTION_TITLE_MAX
from experiments.api_tokens import NAME_MAX as TOKEN_NAME_MAX
from experiments.api_tokens import create_token
from experiments.db import DatabaseConfigError, check_connection, make_engine
from experiments.errors import ValidationFailed
from experiments.imports import clean_filename, import_accounts
from experiments.input_rules import EMAIL_MAX, LONG_TEXT_MAX, NAME_MAX
from experiments.journeys import add_stage, create_journey
from experiments.ledger import import_ledger
from experiments.ledger_csv import MAX_DECLARATION_CHARS, MAX_DIMENSION_NAME
from experiments.ledger_models import LedgerRow, LedgerVersion
from experiments.mailer import SUBJECT_MAX
from experiments.models import AccountRow, User
from experiments.plan_input import GUARDRAILS_MAX, KEY_MAX, PRIMARY_METRICS
from experiments.planning import LedgerSegment
from experiments.quarterly import MAX_TITLE as OBJECTIVE_TITLE_MAX
from experiments.quarterly import create_objective
from experiments.review_items import MAX_TEXT as REVIEW_TEXT_MAX
from experiments.teams import NAME_MAX_LENGTH, create_team
from experiments.tree import EDITABLE_KINDS
from experiments.users import create_user
from experiments.warehouse import MAX_SQL_LENGTH, register_source
from experiments.webhooks import URL_MAX, create_webhook
from tests import factories
from tests.conftest import drop_scratch_database
from webapp.api import schemas

#: One character of each UTF-8 width: 1, 2, 3 and 4 bytes (the last is outside the BMP:
#: two UTF-16 code units, one code point, one PostgreSQL character).
FILLERS = {"ascii": "x", "two-byte": "é", "three-byte": "日", "four-byte": "😀"}
#: The longest team slug (its pattern allows 1 + 62 + 1 characters).
TEAM_SLUG_MAX = 64
#: What register_source and read_webhook allow for a name and an environment variable
#: (literals in those functions; the round trips below hold them to it).
SOURCE_NAME_MAX = ENV_NAME_MAX = 100


def column(table: str, name: str):
    return SQLModel.metadata.tables[table].c[name]


def is_text(kind) -> bool:
    """A text type (SQLModel's AutoString wraps String)."""
    return isinstance(kind, String) or isinstance(getattr(kind, "impl", None), String)


def width(table: str, name: str) -> int | None:
    """The column's VARCHAR length; ``None`` for unbounded text."""
    kind = column(table, name).type
    assert is_text(kind), f"{table}.{name} is not a text column"
    return kind.length


# ------------------------------------------------------------------ pairs

#: (what reads it, its limit, the columns that store what it read).
READER_PAIRS = [
    ("input_rules.NAME_MAX", NAME_MAX, [
        "experiment.name", "variant.name", "driver_node.name", "driver_node.leading_metric",
        "journey.name", "journey_stage.name", "webhook_endpoint.name"]),
    ("teams.NAME_MAX_LENGTH", NAME_MAX_LENGTH, ["team.name", "user_account.name"]),
    ("team slug pattern", TEAM_SLUG_MAX, ["team.slug"]),
    ("input_rules.EMAIL_MAX", EMAIL_MAX, ["user_account.email", "notification_delivery.recipient"]),
    ("plan_input.KEY_MAX", KEY_MAX, [
        "experiment.key", "variant.key", "account_row.variant", "experiment.shipped_variant",
        "decision_event.shipped_variant"]),
    ("accounts_csv MAX_TEXT_LENGTH", MAX_TEXT_LENGTH, [
        "account_row.account_id", "account_row.segment", "ledger_row.account_id",
        *(f"ledger_row.{slot}" for slot in ledger_models.DIMENSION_SLOTS)]),
    ("api_tokens.NAME_MAX", TOKEN_NAME_MAX, ["api_token.name"]),
    ("webhooks.URL_MAX", URL_MAX, ["webhook_endpoint.url", "notification_delivery.recipient"]),
    ("webhooks secret_env", ENV_NAME_MAX, ["webhook_endpoint.secret_env"]),
    ("warehouse source name", SOURCE_NAME_MAX, ["data_source.name"]),
    ("warehouse url_env", ENV_NAME_MAX, ["data_source.url_env"]),
    ("quarterly.MAX_TITLE", OBJECTIVE_TITLE_MAX, ["objective.title", "key_result.title"]),
    ("mailer.SUBJECT_MAX", SUBJECT_MAX, ["notification_delivery.subject"]),
    ("clean_filename (cut)", len(clean_filename("f" * 1000)), [
        "upload_job.filename", "dataset.filename", "ledger_version.filename"]),
    ("input_rules.LONG_TEXT_MAX", LONG_TEXT_MAX, [
        "experiment.hypothesis", "experiment.decision_rationale", "experiment.reopen_reason",
        "driver_node.hypothesis", "journey.description", "amendment.reason",
        "decision_event.text"]),
    ("actions.MAX_TITLE", ACTION_TITLE_MAX, ["review_action.title"]),
    ("actions.MAX_RESOLUTION", MAX_RESOLUTION, ["review_action.resolution"]),
    ("review_items.MAX_TEXT", REVIEW_TEXT_MAX, ["review_item.note",
                                                "review_item.decision_rationale"]),
    ("warehouse.MAX_SQL_LENGTH", MAX_SQL_LENGTH, ["warehouse_query.sql_text"]),
]

#: (the choices a reader takes, the columns that store one of them).
CHOICE_PAIRS = [
    ("ROLES", models.ROLES, ["user_account.role", "team_membership.role"]),
    ("NODE_KINDS", (*models.NODE_KINDS, *EDITABLE_KINDS), ["driver_node.kind"]),
    ("NODE_STATUSES", models.NODE_STATUSES, ["driver_node.status"]),
    ("LEDGER_METRICS", models.LEDGER_METRICS, ["driver_node.metric"]),
    ("PRIMARY_METRICS", PRIMARY_METRICS, ["experiment.primary_metric"]),
    ("EXPERIMENT_STATUSES", models.EXPERIMENT_STATUSES, ["experiment.status"]),
    ("DECISIONS", models.DECISIONS, ["experiment.decision", "decision_event.decision",
                                     "review_item.decision"]),
    ("VERDICTS", models.VERDICTS, ["analysis_snapshot.verdict"]),
    ("DECISION_ACTIONS", decision_models.DECISION_ACTIONS, ["decision_event.action"]),
    ("ACTION_STATUSES", review_models.ACTION_STATUSES, ["review_action.status"]),
    ("LEDGER_STATUSES", ledger_models.LEDGER_STATUSES, ["ledger_version.status"]),
    ("TOKEN_SCOPES", api_models.TOKEN_SCOPES, ["api_token.scope"]),
    ("EVENTS", (*notify_models.EVENTS, *notify_models.DEFAULT_EMAIL_EVENTS),
     ["notification_delivery.event"]),
    ("CHANNELS", notify_models.CHANNELS, ["notification_delivery.channel"]),
    ("SCOPES", notify_models.SCOPES, ["notification_preference.scope"]),
    ("DELIVERY_STATUSES", notify_models.DELIVERY_STATUSES, ["notification_delivery.status"]),
    ("DIALECTS", warehouse_models.DIALECTS, ["data_source.dialect"]),
    ("TARGETS", warehouse_models.TARGETS, ["warehouse_query.target"]),
    ("SCHEDULES", warehouse_models.SCHEDULES, ["warehouse_query.schedule"]),
    ("REFRESH_STATUSES", warehouse_models.REFRESH_STATUSES, ["warehouse_query.last_status"]),
]

#: (API input model, member, the column it ends in).
API_PAIRS = [
    (schemas.NodeCreate, "name", "driver_node.name"),
    (schemas.NodeCreate, "leading_metric", "driver_node.leading_metric"),
    (schemas.NodeCreate, "hypothesis", "driver_node.hypothesis"),
    (schemas.NodeUpdate, "name", "driver_node.name"),
    (schemas.NodeUpdate, "leading_metric", "driver_node.leading_metric"),
    (schemas.VariantIn, "key", "variant.key"),
    (schemas.VariantIn, "name", "variant.name"),
    (schemas.ExperimentCreate, "key", "experiment.key"),
    (schemas.ExperimentCreate, "name", "experiment.name"),
    (schemas.ExperimentCreate, "hypothesis", "experiment.hypothesis"),
    (schemas.ExperimentUpdate, "name", "experiment.name"),
    (schemas.ExperimentUpdate, "reason", "amendment.reason"),
    (schemas.DecisionIn, "rationale", "experiment.decision_rationale"),
    (schemas.UploadQuery, "filename", "upload_job.filename"),
    (schemas.LedgerUploadQuery, "filename", "ledger_version.filename"),
]


def _pairs():
    for reader, limit, columns in READER_PAIRS:
        for name in columns:
            yield pytest.param(reader, limit, name, id=f"{reader}->{name}")


@pytest.mark.parametrize(("reader", "limit", "where"), list(_pairs()))
def test_reader_limit_fits_its_column(reader, limit, where):
    length = width(*where.split("."))
    assert length is None or limit <= length, (
        f"{reader} allows {limit:,} characters but {where} is VARCHAR({length}): on "
        "PostgreSQL a longer value fails in the write")


@pytest.mark.parametrize(("name", "choices", "columns"),
                         [pytest.param(*p, id=p[0]) for p in CHOICE_PAIRS])
def test_every_choice_fits_its_column(name, choices, columns):
    longest = max(choices, key=len)
    for where in columns:
        length = width(*where.split("."))
        assert length is None or len(longest) <= length, (
            f"{name} holds {longest!r} ({len(longest)}) but {where} is VARCHAR({length})")


@pytest.mark.parametrize(("model", "member", "where"),
                         [pytest.param(m, f, w, id=f"{m.__name__}.{f}") for m, f, w in API_PAIRS])
def test_api_bounds_fit_their_columns(model, member, where):
    bounds = [m.max_length for m in model.model_fields[member].metadata if isinstance(m, MaxLen)]
    assert bounds, f"{model.__name__}.{member} has no max_length"
    length = width(*where.split("."))
    assert length is None or bounds[0] <= length


def test_audit_filters_take_every_stored_value_and_no_more():
    """A filter shorter than its column could not find a stored value; longer is pointless."""
    columns = {"action": "audit_event.action", "actor": "user_account.email",
               "entity_type": "audit_event.entity_type", "entity_id": "audit_event.entity_id"}
    assert {name: width(*where.split(".")) for name, where in columns.items()} \
        == audit.FILTER_LENGTHS


def test_composed_values_fit_their_columns():
    """Values the app builds from bounded parts: the longest parts still fit."""
    # The sign-in limiter's keys: the longest e-mail and a long forwarded address.
    keys = signin._keys("a" * 64 + "@" + "b" * (EMAIL_MAX - 65), "f" * 500)
    assert max(map(len, keys)) <= width("login_throttle", "key")
    # A plan's σ source from the ledger: the longest dimension, value and account count.
    segment = LedgerSegment("d" * MAX_DIMENSION_NAME, "😀" * MAX_TEXT_LENGTH, 0.5, 1.0,
                            2_000_000_000, "2026-11")
    assert len(segment.source) <= width("experiment", "sigma_source")
    # Guardrails and declared dimensions are kept in JSON columns, not VARCHARs.
    assert GUARDRAILS_MAX and MAX_DECLARATION_CHARS
    assert not is_text(column("experiment", "guardrails").type)
    assert not is_text(column("ledger_version", "dimensions").type)


def test_every_bounded_text_column_is_listed_here():
    """A new VARCHAR(n) column must get its reader checked above (or be listed as internal:
    hashes, ids and words the app writes itself)."""
    internal = {
        "user_account.password_hash", "api_token.prefix", "api_token.token_hash",
        "api_token.last_used_ip", "audit_event.ip", "calendar_feed.token_sha256",
        "calendar_feed.hint", "ledger_version.sha256", "dataset.sha256",
        "dataset.content_sha256", "dataset.source", "dataset.status", "upload_job.state",
        "upload_job.phase", "review_tree_seen.seen_digest", "review_item.seen_digest",
        "review_meeting.iso_week", "review_action.raised_week", "review_action.closed_week",
        "objective.quarter", "notification_delivery.dedupe_key", "webhook_endpoint.secret",
        "amendment.field", "experiment.sigma_source", "experiment.eligible_base_source",
        "experiment.decision_source", "decision_event.eligible_base_source",
        "decision_event.source", "login_throttle.key", "audit_event.action",
        "audit_event.entity_type", "audit_event.entity_id",
    }
    checked = {c for _, _, cols in READER_PAIRS for c in cols}
    checked |= {c for _, _, cols in CHOICE_PAIRS for c in cols}
    checked |= {w for _, _, w in API_PAIRS}
    bounded = {f"{t.name}.{c.name}" for t in SQLModel.metadata.sorted_tables for c in t.columns
               if is_text(c.type) and c.type.length is not None}
    assert bounded - checked - internal == set()


# ------------------------------------------------------------------ round trips

fillers = pytest.mark.parametrize("filler", list(FILLERS.values()), ids=list(FILLERS))


def _refused(call, field: str) -> str:
    with pytest.raises(ValidationFailed) as refused:
        call()
    assert field in refused.value.errors, refused.value.errors
    return refused.value.errors[field]


@pytest.mark.db
@fillers
@pytest.mark.parametrize("on_disk", [False, True], ids=["bytes", "file"])
def test_account_ids_and_segments_at_255_characters(session: Session, tmp_path, filler,
                                                     on_disk):
    long_id, long_segment = filler * MAX_TEXT_LENGTH, (filler * MAX_TEXT_LENGTH)[:-1] + "s"
    data = (f"account_id,variant,start_mrr,segment\n{long_id},control,10,{long_segment}\n"
            "b,treatment,10,SMB\n").encode()
    source = data
    if on_disk:
        source = tmp_path / "long.csv"
        source.write_bytes(data)
    experiment = factories.make_experiment(session, "long", variants=("control", "treatment"))
    dataset = import_accounts(session, experiment, source, filename="long.csv",
                              actor=None).dataset
    session.commit()
    stored = session.exec(select(AccountRow.account_id, AccountRow.segment)
                          .where(AccountRow.dataset_id == dataset.id,
                                 AccountRow.variant == "control")).one()
    assert tuple(stored) == (long_id, long_segment)


@pytest.mark.db
@pytest.mark.parametrize("column_name", ["account_id", "segment"])
def test_a_256th_four_byte_character_is_refused_by_line_and_field(session: Session,
                                                                   column_name):
    cells = {"account_id": "a", "segment": "s", column_name: "😀" * (MAX_TEXT_LENGTH + 1)}
    data = (f"account_id,variant,start_mrr,segment\n{cells['account_id']},control,10,"
            f"{cells['segment']}\nb,treatment,10,x\n").encode()
    experiment = factories.make_experiment(session, "too-long", variants=("control", "treatment"))
    with pytest.raises(ImportValidationError) as refused:
        import_accounts(session, experiment, data, filename="long.csv", actor=None)
    assert f"line 2, {column_name}" in str(refused.value)
    assert "at most 255" in str(refused.value)
    session.rollback()
    assert session.exec(select(func.count()).select_from(AccountRow)).one()[0] == 0


def _ledger(account: str, region: str) -> bytes:
    return (f"account_id,period,start_mrr,region\n{account},2026-01,100,{region}\n"
            f"{account},2026-02,100,{region}\nb,2026-01,50,EU\nb,2026-02,50,EU\n").encode()


@pytest.mark.db
@fillers
def test_ledger_ids_and_dimensions_at_255_characters(session: Session, filler):
    account, region = filler * MAX_TEXT_LENGTH, (filler * MAX_TEXT_LENGTH)[:-1] + "r"
    version = import_ledger(session, _ledger(account, region), dimensions=("region",),
                            actor=None, filename=filler * 400 + ".csv")
    session.commit()
    stored = session.exec(select(LedgerRow.account_id, LedgerRow.dim_1)
                          .where(LedgerRow.version_id == version.id,
                                 LedgerRow.account_id == account)).all()
    assert [tuple(row) for row in stored] == [(account, region)] * 2
    assert session.get(LedgerVersion, version.id).filename == (filler * 400)[:255]


@pytest.mark.db
@pytest.mark.parametrize("where", ["account_id", "region"])
def test_ledger_256th_character_refused_by_line_and_field(session: Session, where):
    long = "😀" * (MAX_TEXT_LENGTH + 1)
    data = _ledger(long, "EU") if where == "account_id" else _ledger("a", long)
    with pytest.raises(ImportValidationError) as refused:
        import_ledger(session, data, dimensions=("region",), actor=None, filename="l.csv")
    assert f"lines 2–3, {where}: is too long (256 characters; at most 255)" \
        == str(refused.value)
    assert "at most 255" in str(refused.value)
    session.rollback()
    assert session.exec(select(func.count()).select_from(LedgerRow)).one()[0] == 0


@pytest.mark.db
@fillers
def test_names_at_their_limits_are_stored_whole(session: Session, admin: User, filler):
    """Each form reader's longest value reaches its column whole; one more is refused."""
    name = filler * NAME_MAX
    journey = create_journey(session, {"name": name}, actor=admin)
    stage = add_stage(session, journey.id, {"name": name}, actor=admin)
    team = create_team(session, slug="t" * TEAM_SLUG_MAX, name=filler * NAME_MAX_LENGTH,
                       actor=admin)
    user = create_user(session, "u@example.com", "correct horse battery", role="viewer",
                       name=filler * NAME_MAX_LENGTH, actor=admin)
    token = create_token(session, {"name": filler * TOKEN_NAME_MAX, "scope": "read",
                                   "expires_in_days": "30"}, actor=admin).token
    url = "https://hooks.example.com/" + filler * (URL_MAX - len("https://hooks.example.com/"))
    endpoint, _ = create_webhook(session, {"name": name, "url": url, "events": ["decision"]},
                                 actor=admin)
    source = register_source(session, {"name": filler * SOURCE_NAME_MAX,
                                       "url_env": "W" * ENV_NAME_MAX, "dialect": "duckdb"},
                             actor=admin)
    objective = create_objective(session, admin, "2026-Q4",
                                 {"title": filler * OBJECTIVE_TITLE_MAX})
    session.commit()
    session.expire_all()
    assert (journey.name, stage.name, endpoint.name) == (name, name, name)
    assert (team.name, user.name) == (filler * NAME_MAX_LENGTH,) * 2
    assert team.slug == "t" * TEAM_SLUG_MAX
    assert token.name == filler * TOKEN_NAME_MAX
    assert endpoint.url == url and len(url) == URL_MAX
    assert (source.name, source.url_env) == (filler * SOURCE_NAME_MAX, "W" * ENV_NAME_MAX)
    assert objective.title == filler * OBJECTIVE_TITLE_MAX


@pytest.mark.db
def test_one_character_more_is_refused_with_the_field_named(session: Session, admin: User):
    more = "😀"
    long_name = more * (NAME_MAX + 1)
    assert "at most 200" in _refused(lambda: create_journey(session, {"name": long_name},
                                                            actor=admin), "name")
    journey = create_journey(session, {"name": "j"}, actor=admin)
    assert "at most 200" in _refused(lambda: add_stage(session, journey.id, {"name": long_name},
                                                       actor=admin), "name")
    assert "at most 200" in _refused(lambda: create_team(
        session, slug="team", name=more * (NAME_MAX_LENGTH + 1), actor=admin), "name")
    _refused(lambda: create_team(session, slug="t" * (TEAM_SLUG_MAX + 1), name="T",
                                 actor=admin), "slug")
    assert "at most 200" in _refused(lambda: create_user(
        session, "u@example.com", "correct horse battery", name=more * (NAME_MAX_LENGTH + 1),
        actor=admin), "name")
    assert "at most 100" in _refused(lambda: create_token(
        session, {"name": more * (TOKEN_NAME_MAX + 1), "scope": "read",
                  "expires_in_days": "30"}, actor=admin), "name")
    url = "https://hooks.example.com/" + more * (URL_MAX + 1 - len("https://hooks.example.com/"))
    assert "at most 2,000" in _refused(lambda: create_webhook(
        session, {"name": "w", "url": url, "events": ["decision"]}, actor=admin), "url")
    _refused(lambda: create_webhook(session, {"name": "w", "url": "https://h.example.com/",
                                              "events": ["decision"],
                                              "secret_env": "NRRLAB_" + "W" * ENV_NAME_MAX},
                                    actor=admin), "secret_env")
    assert "at most 100" in _refused(lambda: register_source(
        session, {"name": more * (SOURCE_NAME_MAX + 1), "url_env": "W", "dialect": "duckdb"},
        actor=admin), "name")
    _refused(lambda: register_source(session, {"name": "s", "url_env": "W" * (ENV_NAME_MAX + 1),
                                               "dialect": "duckdb"}, actor=admin), "url_env")
    assert "at most 300" in _refused(lambda: create_objective(
        session, admin, "2026-Q4", {"title": more * (OBJECTIVE_TITLE_MAX + 1)}), "title")
    session.rollback()


@pytest.mark.db
@pytest.mark.parametrize("filler", ["x", "😀"], ids=["ascii", "four-byte"])
def test_long_upload_filenames_are_cut_to_the_column(session: Session, filler):
    experiment = factories.make_experiment(session, "names", variants=("control", "treatment"))
    data = b"account_id,variant,start_mrr\na,control,10\nb,treatment,10\n"
    dataset = import_accounts(session, experiment, data, filename=filler * 300 + ".csv",
                              actor=None).dataset
    session.commit()
    session.expire_all()
    assert len(dataset.filename) <= width("dataset", "filename")
    assert dataset.filename == (filler * 300 + ".csv")[:255]


# ------------------------------------------------------------------ the database's encoding

def _database_with_encoding(server_url: str, encoding: str) -> str:
    """A scratch database on the test server that keeps text as ``encoding``."""
    name = f"nrrlab_h6_{encoding.lower()}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE \"{name}\" ENCODING '{encoding}'"
                                " LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.mark.db
@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_a_database_that_does_not_keep_utf8_stops_the_start(postgres_server_url, tmp_path,
                                                            encoding):
    """On SQL_ASCII VARCHAR(255) counts bytes (255 × é is refused as too long); LATIN1
    cannot store 😀 at all. Either way uploads the readers accept would fail in the write,
    so the start refuses such a database with one line saying what to do."""
    if postgres_server_url is None:
        pytest.skip("PostgreSQL only")
    url = _database_with_encoding(postgres_server_url, encoding)
    try:
        engine = make_engine(url)
        # What the check spares: the reader's longest value does not go in.
        with psycopg.connect(make_url(url).render_as_string(hide_password=False)
                             .replace("postgresql+psycopg", "postgresql")) as raw:
            raw.execute("CREATE TABLE t (v VARCHAR(255))")
            if encoding == "SQL_ASCII":  # 510 bytes count as 510 characters
                with pytest.raises(psycopg.errors.StringDataRightTruncation):
                    raw.execute("INSERT INTO t VALUES (%s)", ("é" * 255,))
            else:
                with pytest.raises(UnicodeEncodeError):
                    raw.execute("INSERT INTO t VALUES (%s)", ("😀",))
        with pytest.raises(DatabaseConfigError) as refused:
            check_connection(engine)
        engine.dispose()
        message = str(refused.value)
        assert "\n" not in message
        assert f"keeps text as {encoding}" in message
        assert "ENCODING 'UTF8'" in message

        env = {**os.environ, "DATABASE_URL": url, "NRRLAB_INSTANCE_PATH": str(tmp_path)}
        started = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", "--port",
                                  "0"], capture_output=True, text=True, env=env, timeout=120)
        assert started.returncode == 1
        assert started.stderr.strip().splitlines() == [f"nrrlab: {message}"]
    finally:
        drop_scratch_database(postgres_server_url, url)


@pytest.mark.db
def test_the_test_database_keeps_utf8(engine):
    check_connection(engine)  # the UTF8 database every other test uses starts
