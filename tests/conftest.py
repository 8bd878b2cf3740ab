"""Shared fixtures: a database per test session (SQLite file, or a fresh PostgreSQL
database when DATABASE_URL names one), emptied after each test; the app, clients
signed in per role, and data factories."""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from flask import Flask
from jinja2 import BytecodeCache
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

import experiments.models  # noqa: F401  (registers the tables)
from experiments import stored_analyses
from experiments.db import make_engine, normalise_url
from experiments.setup import ensure_defaults
from tests.factories import Factory, make_user, root_node
from tests.helpers import Auth, csrf_token_of, dispose_app

SECRET = "t" * 48


#: Argon2id at its cheapest (RFC 9106 allows t = 1; argon2-cffi's minimum memory is 8 KiB).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
#: Where the app keeps its hasher.
HASHER_MODULES = ("experiments.passwords",)


def _patch_password_hashing(patch: pytest.MonkeyPatch, hasher: PasswordHasher) -> None:
    patched = 0
    for name in HASHER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if isinstance(getattr(module, "_hasher", None), PasswordHasher):
            patch.setattr(module, "_hasher", hasher)
            patched += 1
        if isinstance(getattr(module, "_DUMMY_HASH", None), str):
            patch.setattr(module, "_DUMMY_HASH", hasher.hash("nrrlab-timing-equaliser"))
    assert patched, f"no Argon2 hasher found in {HASHER_MODULES}: update tests/conftest.py"


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Every test hashes with the cheapest Argon2id: the real cost (m = 19 MiB, t = 2) takes
    ~0.1 s per hash and per sign-in, minutes over the suite. A test of the real parameters
    asks for ``real_password_hashing``; the e2e server (its own process) is untouched."""
    patch = pytest.MonkeyPatch()
    _patch_password_hashing(patch, CHEAP_HASHER)
    yield
    patch.undo()


@pytest.fixture
def real_password_hashing() -> Iterator[None]:
    """The production Argon2id parameters for this test (see ``cheap_password_hashing``)."""
    from experiments.passwords import ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, ARGON2_TIME_COST

    real = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                          parallelism=ARGON2_PARALLELISM)
    with pytest.MonkeyPatch.context() as patch:
        _patch_password_hashing(patch, real)
        yield


class TemplateCache(BytecodeCache):
    """Compiled Jinja templates kept in memory for the whole run: every test builds its own
    app, and compiling the templates anew took ~1 s of CPU per app. Jinja keys each entry by
    the template's source checksum, so an edited template is compiled again."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session", autouse=True)
def shared_template_cache() -> Iterator[None]:
    """Every app of this run (``create_app`` here and in test modules) shares one
    :class:`TemplateCache`."""
    with pytest.MonkeyPatch.context() as patch:
        options = {**Flask.jinja_options, "bytecode_cache": TemplateCache()}
        patch.setattr(Flask, "jinja_options", options)
        yield


def _server_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "").strip()
    return normalise_url(url) if url.startswith(("postgres", "postgresql")) else None


@pytest.fixture(scope="session")
def postgres_server_url() -> str | None:
    """The PostgreSQL server URL of this run (``None`` on the SQLite pass)."""
    return _server_url()


def create_scratch_database(server_url: str) -> str:
    """A new, empty database on the server of ``server_url``; returns its URL."""
    name = f"nrrlab_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_scratch_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def scratch_database(tmp_path_factory) -> Iterator:
    """Factory of empty databases of this run's kind, dropped at the end."""
    server = _server_url()
    made: list[str] = []

    def make() -> str:
        if server:
            url = create_scratch_database(server)
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'scratch.db'}"
        made.append(url)
        return url

    yield make
    if server:
        for url in made:
            drop_scratch_database(server, url)


@pytest.fixture(scope="session")
def database_url(scratch_database) -> str:
    return scratch_database()


@pytest.fixture(scope="session")
def engine(database_url):
    engine = make_engine(database_url)
    SQLModel.metadata.create_all(engine)  # unit-test schema; migrations are tested on their own
    yield engine
    engine.dispose()


def _empty_all_tables(engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            # The tree references itself with ON DELETE RESTRICT: cut the edges first.
            connection.execute(text("UPDATE driver_node SET parent_id = NULL"))
            for table in reversed(SQLModel.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def db_engine(engine):
    """The session-wide engine, with every table empty but the install defaults."""
    _empty_all_tables(engine)
    # Emptied tables hand out their ids again, and tests store snapshots at fixed moments:
    # parsed analyses kept from an earlier test would match the new rows' keys.
    stored_analyses.clear()
    with Session(engine) as session:
        ensure_defaults(session)
        session.commit()
    yield engine


@pytest.fixture
def session(db_engine) -> Iterator[Session]:
    with Session(db_engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def admin(session: Session):
    """A global admin, committed (services that need an actor)."""
    user = make_user(session, "admin@fixture.test", "admin")
    session.commit()
    return user


@pytest.fixture
def root(session: Session):
    """The NRR root node every install has."""
    return root_node(session)


@pytest.fixture
def app(db_engine, database_url, tmp_path):
    from webapp import create_app

    app = create_app({
        "NRRLAB_ENV": "testing",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
    })
    yield app
    dispose_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def factory(db_engine) -> Factory:
    return Factory(db_engine)


@pytest.fixture
def auth(client) -> Auth:
    return Auth(client)


@pytest.fixture
def login_as(app, factory):
    """``login_as(role, teams=None)`` → a test client signed in as a new user of that role."""
    counter = iter(range(1_000_000))

    def make(role: str = "viewer", teams: dict[str, str] | None = None):
        user = factory.user(f"{role}{next(counter)}@example.com", role, teams)
        client = app.test_client()
        response = Auth(client).login(user.email)
        assert response.status_code == 303, response.get_data(as_text=True)
        client.user = user
        client.csrf = csrf_token_of(client)
        return client

    return make


def pytest_collection_modifyitems(config, items):
    db_fixtures = {"engine", "db_engine", "session", "app", "client", "database_url",
                   "scratch_database"}
    for item in items:
        if db_fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)

