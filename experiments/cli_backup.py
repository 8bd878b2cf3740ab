"""``nrrlab backup FILE`` and ``nrrlab restore FILE`` (see :mod:`experiments.backup`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

_FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
_FORCE = click.option("--force", is_flag=True, help="Replace what is there.")


def _fail(command: str, message: str, code: int = 1) -> None:
    click.echo(f"nrrlab {command}: {message}", err=True)
    sys.exit(code)


def _engine(command: str):
    from experiments.db import DatabaseConfigError, check_connection, database_url, make_engine

    try:
        engine = make_engine(database_url())
        check_connection(engine)
    except DatabaseConfigError as exc:
        _fail(command, str(exc))
    return engine


@click.command("backup")
@_FILE
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def backup_command(file: Path, force: bool) -> None:
    """Write a consistent copy of the database to FILE, safe while the app runs.

    SQLite: the online backup API (FILE is an SQLite database). PostgreSQL: pg_dump's
    custom format (needs the PostgreSQL client tools).
    """
    from experiments.backup import BackupError, backup

    engine = _engine("backup")
    try:
        report = backup(engine, file, force=force)
    except BackupError as exc:
        _fail("backup", str(exc))
    finally:
        engine.dispose()
    click.echo(f"backup written to {report.path} ({report.size_bytes:,} bytes, "
               f"schema revision {report.revision or 'none'})")


@click.command("restore")
@_FILE
@_FORCE
def restore_command(file: Path, force: bool) -> None:
    """Replace the database's contents with the backup FILE (refused on a non-empty
    database without --force), then check the schema against the migration head."""
    from experiments.backup import BackupError, restore

    engine = _engine("restore")
    try:
        report = restore(engine, file, force=force)
    except BackupError as exc:
        _fail("restore", str(exc))
    finally:
        engine.dispose()
    click.echo(f"restored {file}: schema revision {report.revision or 'none'} "
               f"({report.state}; head is {report.head})")
    if not report.at_head:
        sys.exit(3)
