"""``nrrlab backup FILE`` and ``nrrlab restore FILE`` (see :mod:`experiments.backup`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from experiments.cli_common import checked_engine, fail

_FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
_FORCE = click.option("--force", is_flag=True, help="Replace what is there.")


@click.command("backup")
@_FILE
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def backup_command(file: Path, force: bool) -> None:
    """Write a consistent copy of the database to FILE, safe while the app runs.

    SQLite: the online backup API (FILE is an SQLite database). PostgreSQL: pg_dump's
    custom format (needs the PostgreSQL client tools).
    """
    from experiments.backup import BackupError, backup

    engine = checked_engine("backup")
    try:
        report = backup(engine, file, force=force)
    except BackupError as exc:
        fail("backup", str(exc))
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

    engine = checked_engine("restore")
    try:
        report = restore(engine, file, force=force)
    except BackupError as exc:
        fail("restore", str(exc))
    finally:
        engine.dispose()
    click.echo(f"restored {file}: schema revision {report.revision or 'none'} "
               f"({report.state}; head is {report.head})")
    if not report.at_head:
        sys.exit(3)
