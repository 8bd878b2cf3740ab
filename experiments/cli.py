"""The ``nrrlab`` command line: database, demo data, users, analysis, exports, server."""

from __future__ import annotations

import sys

import click

from experiments.db import DatabaseConfigError


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"nrrlab: {message}", err=True)
    sys.exit(code)


def _engine():
    from experiments.db import check_connection, database_url, make_engine

    try:
        engine = make_engine(database_url())
        check_connection(engine)
    except DatabaseConfigError as exc:
        _fail(str(exc))
    return engine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """NRR Lab: pre-registered NRR experiments, their uplift and the weekly review.

    The database is DATABASE_URL, or instance/nrrlab.db (SQLite) when it is unset.
    """


@main.group()
def db() -> None:
    """Create and migrate the database schema (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
def db_upgrade(revision: str) -> None:
    """Apply migrations, then create the default journey and NRR root if missing."""
    from experiments import migrate
    from experiments.db import database_url, session_scope
    from experiments.setup import ensure_defaults

    engine = _engine()
    migrate.upgrade(database_url(), revision)
    if revision == "head":
        with session_scope(engine) as session:
            ensure_defaults(session)
    click.echo(f"database is at {revision}: {engine.url.render_as_string(hide_password=True)}")


@db.command("downgrade")
@click.option("--revision", default="-1", show_default=True, help="Alembic revision to downgrade to ('base' drops everything).")
def db_downgrade(revision: str) -> None:
    """Revert migrations."""
    from experiments import migrate
    from experiments.db import database_url

    _engine()
    migrate.downgrade(database_url(), revision)
    click.echo(f"database downgraded to {revision}")


@main.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Do nothing when experiments already exist (first run only).")
@click.option("--password", envvar="NRRLAB_DEMO_PASSWORD", default=None,
              help="Demo admin password (default: a fixed demo password, printed).")
def seed_demo(if_empty: bool, password: str | None) -> None:
    """Load the deterministic demo workspace: tree, journeys, six experiments with data."""
    from experiments.db import session_scope
    from experiments.demo import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, has_experiments, seed

    engine = _engine()
    with session_scope(engine) as session:
        if if_empty and has_experiments(session):
            click.echo("demo data: already present, left as it is")
            click.echo(f"demo sign-in: {DEMO_ADMIN_EMAIL} / {password or DEMO_ADMIN_PASSWORD}")
            return
        summary = seed(session, admin_password=password or DEMO_ADMIN_PASSWORD)
    click.echo(summary)
    click.echo(f"demo sign-in: {DEMO_ADMIN_EMAIL} / {password or DEMO_ADMIN_PASSWORD}")


@main.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(["viewer", "analyst", "experimenter", "admin"]), default="viewer", show_default=True)
@click.option("--name", default="", help="Display name.")
@click.password_option(envvar="NRRLAB_PASSWORD", help="Password (prompted when omitted).")
def create_user_command(email: str, role: str, name: str, password: str) -> None:
    """Create a user, e.g. the first admin: nrrlab create-user ana@example.com --role admin"""
    from experiments.db import session_scope
    from experiments.errors import Conflict, ValidationFailed
    from experiments.users import create_user

    engine = _engine()
    try:
        with session_scope(engine) as session:
            user = create_user(session, email, password, role=role, name=name)
            click.echo(f"created {user.email} ({user.role})")
    except ValidationFailed as exc:
        _fail("; ".join(f"{k}: {v}" for k, v in exc.errors.items()), 2)
    except Conflict as exc:
        _fail(str(exc), 2)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--debug", is_flag=True, help="Flask debug mode (never in production).")
def serve(host: str, port: int, debug: bool) -> None:
    """Serve the web app (development server; use gunicorn in production, see README)."""
    from webapp import create_app
    from webapp.config import ConfigError

    try:
        app = create_app()
    except (ConfigError, DatabaseConfigError) as exc:
        _fail(str(exc))
    click.echo(f"NRR Lab on http://{host}:{port}/")
    app.run(host=host, port=port, debug=debug, use_reloader=False)


if __name__ == "__main__":
    main()
