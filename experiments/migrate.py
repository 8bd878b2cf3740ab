"""Running Alembic from code (the CLI, `make run`, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None, connection=None) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


@dataclass(frozen=True)
class SchemaRevisionState:
    """The database's Alembic revision(s) against the head(s) of the shipped migrations."""

    current: tuple[str, ...]
    head: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return bool(self.current) and set(self.current) == set(self.head)

    @property
    def reason(self) -> str:
        if not self.current:
            return "the database has no migration revision; run `nrrlab db upgrade`"
        if self.at_head:
            return ""
        return (f"the database is at {', '.join(self.current)}, the migrations at "
                f"{', '.join(self.head)}; run `nrrlab db upgrade`")


@lru_cache(maxsize=1)
def migration_heads() -> tuple[str, ...]:
    """The head revision(s) of the shipped migrations (read from disk once per process)."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def schema_revision_state(engine: Engine) -> SchemaRevisionState:
    """Where the database's schema stands. Raises ``SQLAlchemyError`` when it does not answer."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return SchemaRevisionState(current=tuple(sorted(current)), head=migration_heads())
