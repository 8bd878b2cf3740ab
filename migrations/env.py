"""Alembic environment: the same URL logic and the same metadata as the app."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import experiments.models  # noqa: F401  (registers every table on the metadata)
from experiments.db import database_url, make_engine

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    # A caller (tests, the CLI) may pass a URL explicitly; otherwise the app's rule.
    return (
        config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or database_url()
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
