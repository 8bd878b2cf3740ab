"""``nrrlab notify``: the pre-meeting digest by hand (the worker also sends it on schedule)."""

from __future__ import annotations

import click


@click.group("notify")
def notify_command() -> None:
    """Notifications: the pre-meeting digest (emails and webhooks run in `nrrlab worker`)."""


@notify_command.command("digest")
@click.option("--week", "week_label", metavar="YYYY-Www",
              help="ISO week of the review, e.g. 2026-W49 (default: this week).")
@click.option("--dry-run", is_flag=True,
              help="Print each digest instead of queueing it (nothing is stored).")
def digest_command(week_label: str | None, dry_run: bool) -> None:
    """Queue the digest of a week's review for everyone who wants it.

    Each person gets the experiments needing a decision, the alerts and their own
    actions due that week; nobody gets an empty one, and nobody gets the same week's
    digest twice. The emails are sent by the job queue (NRRLAB_JOBS): by `nrrlab worker`
    or `nrrlab serve`. Without NRRLAB_SMTP_HOST they are recorded as skipped.
    """
    from sqlmodel import Session, select

    from experiments.cli import _database, _fail
    from experiments.db import default_instance_path
    from experiments.digest import ScheduleConfigError, build_digest, send_digest
    from experiments.jobs import JobsConfigError, make_jobs
    from experiments.models import User
    from experiments.notify import preferences_of
    from experiments.notify_models import DIGEST
    from experiments.review_weeks import current_week, parse_week

    try:
        week = parse_week(week_label) if week_label else current_week()
    except ValueError as exc:
        _fail(f"--week: {exc}", 2)
    with _database() as engine:
        try:
            if dry_run:
                with Session(engine) as session:
                    users = session.exec(select(User).where(User.is_active.is_(True))
                                         .order_by(User.id)).all()
                    for user in users:
                        if not preferences_of(session, user).wants(DIGEST):
                            continue
                        digest = build_digest(session, user, week)
                        if digest.empty:
                            continue
                        click.echo(f"To: {user.email}\nSubject: {digest.subject()}\n\n"
                                   f"{digest.body()}")
                    session.rollback()
                return
            make_jobs(engine, default_instance_path())  # deliveries go to its queue on commit
            with Session(engine, expire_on_commit=False) as session:
                run = send_digest(session, week)
                session.commit()
        except (JobsConfigError, ScheduleConfigError) as exc:
            _fail(str(exc))
    click.echo(f"digest {week.label}: {len(run.queued)} queued, {run.already_sent} already "
               f"sent, {run.empty} with nothing to say")
