"""The ``nrrlab`` command line: database, demo data, users, analysis, exports.

``nrrlab serve`` is the web layer's (``webapp/cli.py``), added through :data:`PLUGIN_GROUP`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module

import click

# Nothing heavy at module level: `nrrlab analyze` must not pay for SQLAlchemy or Flask, nor
# for the other commands' modules (urllib, http.client and email for push/pull,
# importlib.metadata for the plugins), which are imported when their command is run or
# listed: `import experiments.cli` went from ~0.10 to ~0.05 s of CPU.


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"nrrlab: {message}", err=True)
    sys.exit(code)


@contextmanager
def _database() -> Iterator:
    """The configured engine, checked, and closed again when the command ends."""
    from experiments.db import DatabaseConfigError, check_connection, database_url, make_engine

    try:
        engine = make_engine(database_url())
    except DatabaseConfigError as exc:
        _fail(str(exc))
    try:
        check_connection(engine)
    except DatabaseConfigError as exc:
        engine.dispose()
        _fail(str(exc))
    try:
        yield engine
    finally:
        engine.dispose()


#: Entry-point group through which outer layers add commands (``webapp`` adds ``serve``).
PLUGIN_GROUP = "nrrlab.commands"


#: Commands defined in modules of their own: name -> (module, attribute).
_SUBCOMMANDS = {
    "backup": ("experiments.cli_backup", "backup_command"),
    "export": ("experiments.cli_export", "export"),
    "ledger": ("experiments.cli_ledger", "ledger"),
    "notify": ("experiments.cli_notify", "notify_command"),
    "pull": ("experiments.cli_api", "pull"),
    "push": ("experiments.cli_api", "push"),
    "restore": ("experiments.cli_backup", "restore_command"),
    "warehouse": ("experiments.cli_warehouse", "warehouse"),
}


class _CommandsWithPlugins(click.Group):
    """The domain's commands plus those registered under :data:`PLUGIN_GROUP`.

    A plugin, or a command of :data:`_SUBCOMMANDS`, is imported only when its command
    is run or listed, so ``nrrlab analyze`` never pays for Flask or the other commands'
    imports, and this layer never imports the web layer.
    """

    def _plugins(self) -> dict:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_SUBCOMMANDS, *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _SUBCOMMANDS:
            module, attribute = _SUBCOMMANDS[cmd_name]
            command = getattr(import_module(module), attribute)
        if command is None and (plugin := self._plugins().get(cmd_name)) is not None:
            command = plugin.load()
        return command


@click.group(cls=_CommandsWithPlugins, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """NRR Lab: pre-registered NRR experiments, their uplift and the weekly review.

    The database is DATABASE_URL, or instance/nrrlab.db (SQLite) when it is unset.
    """


@main.group()
def db() -> None:
    """Create and migrate the database schema (Alembic)."""


@db.command("upgrade")
@click.option(
    "--revision", default="head", show_default=True, help="Alembic revision to upgrade to."
)
def db_upgrade(revision: str) -> None:
    """Apply migrations, then create the default journey and NRR root if missing."""
    from experiments import migrate
    from experiments.db import database_url, session_scope
    from experiments.setup import ensure_defaults

    with _database() as engine:
        migrate.upgrade(database_url(), revision)
        if revision == "head":
            with session_scope(engine) as session:
                ensure_defaults(session)
        click.echo(f"database is at {revision}: {engine.url.render_as_string(hide_password=True)}")


@db.command("downgrade")
@click.option(
    "--revision",
    default="-1",
    show_default=True,
    help="Alembic revision to downgrade to ('base' drops everything).",
)
def db_downgrade(revision: str) -> None:
    """Revert migrations."""
    from experiments import migrate
    from experiments.db import database_url

    with _database():
        migrate.downgrade(database_url(), revision)
    click.echo(f"database downgraded to {revision}")


@main.command("seed-demo")
@click.option(
    "--if-empty", is_flag=True, help="Do nothing when experiments already exist (first run only)."
)
@click.option("--password", envvar="NRRLAB_DEMO_PASSWORD", default=None,
              help="Demo admin password (default: a fixed demo password, printed).")
def seed_demo(if_empty: bool, password: str | None) -> None:
    """Load the deterministic demo workspace: tree, journeys, six experiments with data."""
    from experiments.db import session_scope
    from experiments.demo import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, has_experiments, seed

    with _database() as engine, session_scope(engine) as session:
        if if_empty and has_experiments(session):
            click.echo("demo data: already present, left as it is")
            click.echo(f"demo sign-in: {DEMO_ADMIN_EMAIL} / {password or DEMO_ADMIN_PASSWORD}")
            return
        summary = seed(session, admin_password=password or DEMO_ADMIN_PASSWORD)
    click.echo(summary)
    click.echo(f"demo sign-in: {DEMO_ADMIN_EMAIL} / {password or DEMO_ADMIN_PASSWORD}")


@main.command("create-user")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["viewer", "analyst", "experimenter", "admin"]),
    default="viewer",
    show_default=True,
)
@click.option("--name", default="", help="Display name.")
@click.password_option(envvar="NRRLAB_PASSWORD", help="Password (prompted when omitted).")
def create_user_command(email: str, role: str, name: str, password: str) -> None:
    """Create a user, e.g. the first admin: nrrlab create-user ana@example.com --role admin"""
    from experiments.db import session_scope
    from experiments.errors import Conflict, ValidationFailed
    from experiments.users import create_user

    try:
        with _database() as engine, session_scope(engine) as session:
            user = create_user(session, email, password, role=role, name=name)
            click.echo(f"created {user.email} ({user.role})")
    except ValidationFailed as exc:
        _fail("; ".join(f"{k}: {v}" for k, v in exc.errors.items()), 2)
    except Conflict as exc:
        _fail(str(exc), 2)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--control", default="control", show_default=True, help="The control variant.")
@click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=float,
    help="Two-sided significance level, in (0, 0.5].",
)
@click.option(
    "--power", default=0.8, show_default=True, type=float, help="Planned power, in [0.5, 0.99]."
)
@click.option(
    "--mde",
    default=0.02,
    show_default=True,
    type=float,
    help="Minimum detectable effect in absolute NRR (0.02 = 2 points).",
)
@click.option(
    "--weights",
    default=None,
    help="Planned allocation, e.g. control=1,treatment=1 (default: equal).",
)
@click.option("--sigma", default=None, type=float,
              help="Planning sigma of the linearised NRR (default: the control arm's).")
@click.option("--sequential", is_flag=True,
              help="Always-valid p-values and intervals for results read every week.")
@click.option("--tuning", default=None, type=float,
              help="Sequential tuning (accounts); default: the planned total of the comparison.")
@click.option("--guardrail", "guardrails", multiple=True, metavar="METRIC:MARGIN",
              help="Non-inferiority guardrail, repeatable: grr:0.01 (GRR may fall at most 1 "
                   "point) or logo_churn:0.01 (logo churn may rise at most 1 point).")
@click.option("--ttv-target", "ttv_target", default=14.0, show_default=True, type=float,
              metavar="DAYS",
              help="Time-to-value target of journey velocity: the share of accounts reaching "
                   "value by this day (needs the days_observed column).")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv", "md"]), default="json", show_default=True
)
def analyze(
    file: str,
    control: str,
    alpha: float,
    power: float,
    mde: float,
    weights: str | None,
    sigma: float | None,
    sequential: bool,
    tuning: float | None,
    guardrails: tuple[str, ...],
    ttv_target: float,
    fmt: str,
) -> None:
    """Analyse an account CSV (DESIGN §3) without a database; the report goes to stdout.

    Besides the NRR uplift, the report has the NRR levers (expansion, contraction, churn,
    GRR), logo churn and expansion incidence, any --guardrail, CUPED (when the file has
    pre_start_mrr and pre_end_mrr), journey velocity (when it has days_observed) and, for
    arms under 300 accounts, a permutation test. Bad input exits with status 2 and one
    line per problem on stderr (identical problems on several lines are one line:
    "lines 2–2,504, variant: …").
    """
    import json
    import os

    from experiments.accounts_csv import ImportValidationError
    from experiments.analyze_file import (
        AnalysisRequest,
        UsageError,
        analyze_file,
        parse_guardrails,
        parse_weights,
    )

    if not os.path.isfile(file):
        _fail(f"{file}: no such file", 2)
    try:
        request = AnalysisRequest(file, control=control, alpha=alpha, power=power, mde=mde,
                                  weights=parse_weights(weights), sigma=sigma,
                                  sequential=sequential, tuning=tuning,
                                  guardrails=parse_guardrails(guardrails),
                                  ttv_target=ttv_target)
        result = analyze_file(request)
    except ImportValidationError as exc:
        for line in str(exc).splitlines():
            click.echo(f"{file}: {line}", err=True)
        sys.exit(2)
    except UsageError as exc:
        for line in str(exc).splitlines():
            click.echo(f"nrrlab: {line}", err=True)
        sys.exit(2)
    except OSError as exc:
        _fail(f"{file}: cannot be read: {exc.strerror or exc}", 2)
    report = result.to_dict()
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, allow_nan=False))
    elif fmt == "csv":
        from experiments.report_text import result_csv

        click.echo(result_csv(report), nl=False)
    else:
        from experiments.report_text import result_markdown

        click.echo(
            result_markdown(report, title=f"NRR analysis of {os.path.basename(file)}"), nl=False
        )


@main.command()
@click.option("--workers", default=2, show_default=True, type=int,
              help="Jobs run at the same time (threads).")
def worker(workers: int) -> None:
    """Run the background jobs (uploads, notifications, the pre-meeting digest) in the
    foreground: production, beside gunicorn.

    Uses the queue named by NRRLAB_JOBS (default: instance/jobs.sqlite3) and the same
    instance folder as the web app (NRRLAB_INSTANCE_PATH). `nrrlab serve` needs no worker.
    """
    import logging

    from experiments.db import default_instance_path
    from experiments.imports import sweep_stale_uploads
    from experiments.jobs import JobsConfigError, make_jobs

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _database() as engine:
        try:
            jobs = make_jobs(engine, default_instance_path())
        except JobsConfigError as exc:
            _fail(str(exc))
        sweep_stale_uploads(engine, jobs.uploads)
        click.echo(f"nrrlab worker: {workers} thread(s) on {type(jobs.queue).__name__}")
        jobs.consumer(workers).run()


if __name__ == "__main__":
    main()
