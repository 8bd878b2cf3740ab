"""``nrrlab export``: uplift reports of one experiment or one review week, from the shell.

The same services as the web downloads (:mod:`experiments.exports`), so the files are
identical; every export is audited as ``export.<format>``. Without ``--as`` the CLI
acts as the operator, who may see every team's experiments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from experiments.formatting import EXPORT_FORMATS as FORMATS

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="json, csv, md (Markdown), html (printable, self-contained) or zip (reproduce bundle).",
)
_OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output; a zip goes to its own file name).",
)
_AS = click.option(
    "--as",
    "as_email",
    default=None,
    metavar="EMAIL",
    help="Export with this user's permissions and attribute it to them.",
)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"nrrlab export: {message}", err=True)
    sys.exit(code)


def _run(make, output: Path | None, as_email: str | None) -> None:
    """Open the database, call ``make(session, user)``, write the file, commit the audit event."""
    from sqlmodel import Session, select

    from experiments.db import DatabaseConfigError, check_connection, database_url, make_engine
    from experiments.errors import DomainError, ValidationFailed
    from experiments.models import User

    try:
        engine = make_engine(database_url())
        check_connection(engine)
    except DatabaseConfigError as exc:
        _fail(str(exc), 1)
    try:
        with Session(engine, expire_on_commit=False) as session:
            if as_email:
                user = session.exec(
                    select(User).where(User.email == as_email.strip().lower())
                ).first()
                if user is None or not user.is_active:
                    _fail(f"no active user {as_email!r}")
            else:
                user = User(email="cli", role="admin", password_hash="")  # the operator; not stored
            try:
                export = make(session, user)
            except ValidationFailed as exc:
                session.rollback()
                _fail("; ".join(f"{k}: {v}" if k else v for k, v in exc.errors.items()))
            except DomainError as exc:
                session.rollback()
                _fail(str(exc))
            target = output
            if target is None and export.content_type == "application/zip":
                target = Path(export.filename)
            if target is None:
                sys.stdout.buffer.write(export.body)
                sys.stdout.flush()
            else:
                try:
                    target.write_bytes(export.body)
                except OSError as exc:
                    session.rollback()
                    _fail(f"cannot write {target}: {exc.strerror or exc}", 1)
                click.echo(f"wrote {target} ({len(export.body):,} bytes)", err=True)
            session.commit()
    finally:
        engine.dispose()


@click.group("export", context_settings={"help_option_names": ["-h", "--help"]})
def export() -> None:
    """Export uplift reports (one experiment, one weekly review, one quarter) or the NRR page.

    \b
    nrrlab export experiment seat-limit-nudge --format html -o report.html
    nrrlab export review 2026-W48 --format md --branch 3
    nrrlab export review 2026-W48 --from 2026-11-01 --to 2026-11-30 --format csv
    nrrlab export nrr --format csv -o nrr.csv
    nrrlab export quarter 2026-Q4 --format html -o qbr.html
    """


@export.command("experiment")
@click.argument("key")
@_FORMAT
@_OUTPUT
@_AS
def experiment_command(key: str, fmt: str, output: Path | None, as_email: str | None) -> None:
    """The report of experiment KEY: plan, amendments, data version, results."""
    from experiments.exports import export_experiment

    _run(
        lambda session, user: export_experiment(session, user, key, fmt, via="cli"),
        output,
        as_email,
    )


@export.command("review")
@click.argument("week")
@_FORMAT
@_OUTPUT
@_AS
@click.option(
    "--branch", "branch_id", default=None, help="Only experiments under this driver-tree node id."
)
@click.option(
    "--from",
    "date_from",
    default=None,
    metavar="YYYY-MM-DD",
    help="Start of a date range instead of the week.",
)
@click.option(
    "--to", "date_to", default=None, metavar="YYYY-MM-DD", help="End (inclusive) of the date range."
)
def review_command(
    week: str,
    fmt: str,
    output: Path | None,
    as_email: str | None,
    branch_id: str | None,
    date_from: str | None,
    date_to: str | None,
) -> None:
    """The review of ISO WEEK (e.g. 2026-W48), or of a date range, optionally for one branch."""
    from experiments.exports import export_review

    _run(
        lambda session, user: export_review(
            session,
            user,
            week,
            fmt,
            branch_id=branch_id,
            date_from=date_from,
            date_to=date_to,
            via="cli",
        ),
        output,
        as_email,
    )


@export.command("nrr")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "json", "html")),
    default="json",
    show_default=True,
    help="csv (every figure, long format), json (the stored figures and the targets) or "
    "html (the printable page, self-contained).",
)
@_OUTPUT
@_AS
def nrr_command(fmt: str, output: Path | None, as_email: str | None) -> None:
    """The NRR page of the current revenue ledger: NRR/GRR by month and TTM, movements,
    breakdowns, cohorts (exit 2 when no ledger has been imported)."""
    from experiments.nrr_export import export_nrr

    _run(lambda session, user: export_nrr(session, user, fmt, via="cli"), output, as_email)


@export.command("quarter")
@click.argument("quarter")
@_FORMAT
@_OUTPUT
@_AS
def quarter_command(quarter: str, fmt: str, output: Path | None, as_email: str | None) -> None:
    """The quarterly business review of QUARTER (e.g. 2026-Q4): per branch target against
    actual, experiments run / won / lost / shipped by week and in total, OKRs."""
    from experiments.quarterly_export import export_quarterly

    _run(lambda session, user: export_quarterly(session, user, quarter, fmt, via="cli"),
         output, as_email)
