"""``nrrlab ledger``: import a revenue ledger CSV and list its versions (DESIGN §3b).

The same service as the web upload (:mod:`experiments.ledger`): the periods in the file
replace the same periods of the current ledger as a new, audited version, and the
figures of the whole current ledger are recomputed and stored. Bad input: exit status 2
and one line per problem on stderr, with its line number; nothing is stored.
"""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli_common import checked_engine, fail


def _fail(message: str, code: int = 2) -> None:
    fail("ledger", message, code)


def _engine():
    return checked_engine("ledger")


@click.group("ledger")
def ledger() -> None:
    """The revenue ledger: account MRR movements per period."""


@ledger.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dimensions",
    default="",
    metavar="NAMES",
    help="The file's dimension columns, comma separated (e.g. plan,region); any other "
    "column that is not a ledger column is an error.",
)
@click.option("--as", "as_email", default=None, metavar="EMAIL",
              help="Record the upload as this user's (default: the operator, no user).")
def import_command(file: Path, dimensions: str, as_email: str | None) -> None:
    """Import FILE as the next ledger version, replacing the periods it covers.

    Columns: account_id, period (YYYY-MM), start_mrr, and optionally expansion_mrr,
    contraction_mrr, churned_mrr, customer_since (YYYY-MM-DD), days_to_value, plus the
    declared dimension columns.
    """
    from sqlmodel import Session, select

    from experiments.ledger import DuplicateLedger, import_ledger
    from experiments.ledger_csv import ImportValidationError
    from experiments.models import User

    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    engine = _engine()
    try:
        with Session(engine, expire_on_commit=False) as session:
            actor = None
            if as_email:
                actor = session.exec(select(User).where(User.email == as_email.lower())).first()
                if actor is None:
                    _fail(f"no user with the email {as_email!r}")
            try:
                version = import_ledger(session, data, dimensions=dimensions, actor=actor,
                                        filename=file.name)
            except ImportValidationError as exc:
                session.rollback()
                for line in str(exc).splitlines():
                    click.echo(line, err=True)
                _fail(f"{file.name} was not stored ({exc.total:,} problem"
                      f"{'s' if exc.total != 1 else ''})")
            except DuplicateLedger as exc:
                session.rollback()
                _fail(str(exc), 1)
            session.commit()
            periods = version.periods
            span = periods[0] if len(periods) == 1 else f"{periods[0]} – {periods[-1]}"
            click.echo(f"ledger version {version.version}: {version.row_count:,} rows, "
                       f"{version.account_count:,} accounts, {len(periods)} period"
                       f"{'s' if len(periods) != 1 else ''} ({span})")
            for note in version.notes:
                click.echo(f"note: {note}")
    finally:
        engine.dispose()


@ledger.command("versions")
def versions_command() -> None:
    """List every ledger version, newest first, and the periods each is current for."""
    from sqlmodel import Session

    from experiments.ledger import versions

    engine = _engine()
    try:
        with Session(engine) as session:
            rows = versions(session)
    finally:
        engine.dispose()
    if not rows:
        click.echo("no ledger uploaded yet")
        return
    click.echo("version\tuploaded\tby\tfile\tperiods\trows\tcurrent_for")
    for v in rows:
        current = {"current": "all", "replaced": "none"}.get(
            v.status, ",".join(v.current_periods)
        )
        click.echo(
            f"{v.version}\t{v.uploaded_at:%Y-%m-%d %H:%M}\t{v.uploaded_by or '-'}\t{v.filename}"
            f"\t{v.period_range}\t{v.rows}\t{current}"
        )
