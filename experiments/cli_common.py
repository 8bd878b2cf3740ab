"""What the ``nrrlab`` subcommands share: the error exit and the checked database engine.

Imports stay inside the functions: ``nrrlab --help`` must not pay for SQLAlchemy.
"""

from __future__ import annotations

import sys

import click


def fail(command: str, message: str, code: int = 1) -> None:
    """Print ``nrrlab <command>: <message>`` on stderr and exit with ``code``."""
    click.echo(f"nrrlab {command}: {message}", err=True)
    sys.exit(code)


def checked_engine(command: str):
    """The configured database engine, connected once; a bad URL exits with status 1."""
    from experiments.db import DatabaseConfigError, check_connection, database_url, make_engine

    try:
        engine = make_engine(database_url())
        check_connection(engine)
    except DatabaseConfigError as exc:
        fail(command, str(exc), 1)
    return engine
