"""The nrrlab command line: help texts, database commands, demo seed, users."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from experiments.cli import main


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "nrrlab")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) >= 3


@pytest.mark.db
def test_db_upgrade_seed_and_create_user_on_a_fresh_database(scratch_database, monkeypatch):
    url = scratch_database()
    monkeypatch.setenv("DATABASE_URL", url)
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["seed-demo", "--if-empty"])
    assert result.exit_code == 0, result.output
    assert "onboarding-checklist" in result.output
    assert "demo sign-in: admin@nrrlab.example" in result.output
    again = runner.invoke(main, ["seed-demo", "--if-empty"])
    assert again.exit_code == 0 and "already present" in again.output
    made = runner.invoke(
        main,
        ["create-user", "ana@example.com", "--role", "admin"],
        env={"NRRLAB_PASSWORD": "a long enough passphrase"},
    )
    assert made.exit_code == 0, made.output
    weak = runner.invoke(
        main, ["create-user", "bo@example.com"], env={"NRRLAB_PASSWORD": "password"}
    )
    assert weak.exit_code == 2
    assert "password: is one of the most common passwords" in weak.output


@pytest.mark.db
def test_demo_seed_is_deterministic(scratch_database):
    from sqlmodel import select

    from experiments import migrate
    from experiments.db import make_engine, session_scope
    from experiments.demo import seed
    from experiments.models import Dataset, Experiment

    fingerprints = []
    for _ in range(2):
        url = scratch_database()
        migrate.upgrade(url)
        engine = make_engine(url)
        with session_scope(engine) as session:
            seed(session)
        with session_scope(engine) as session:
            rows = session.exec(
                select(Experiment.key, Experiment.status, Dataset.sha256, Dataset.row_count)
                .join(Dataset, Dataset.experiment_id == Experiment.id)
                .order_by(Experiment.key)
            ).all()
            fingerprints.append(rows)
            statuses = {e.status for e in session.exec(select(Experiment)).all()}
        engine.dispose()
    assert fingerprints[0] == fingerprints[1]
    assert len(fingerprints[0]) == 5  # five experiments with data, one draft without
    assert statuses == {"draft", "running", "stopped", "decided"}
    assert all(500 <= rows <= 10_000 for *_, rows in fingerprints[0])


@pytest.mark.db
def test_demo_tells_every_verdict(scratch_database):
    """The demo plants real effects, a null, an SRM and an underpowered test: the seeded
    data must show them, or the demo misleads whoever explores it."""
    from sqlmodel import select

    from experiments import migrate
    from experiments.db import make_engine, session_scope
    from experiments.demo import seed
    from experiments.models import AnalysisSnapshot, Experiment

    url = scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        seed(session)
    with session_scope(engine) as session:
        verdicts = dict(
            session.exec(
                select(Experiment.key, AnalysisSnapshot.verdict).join(
                    AnalysisSnapshot, AnalysisSnapshot.experiment_id == Experiment.id
                )
            ).all()
        )
        decided = session.exec(
            select(Experiment).where(Experiment.key == "onboarding-checklist")
        ).one()
    engine.dispose()
    assert verdicts == {
        "onboarding-checklist": "win",  # shipped on a real effect
        "seat-limit-nudge": "win",  # one of two treatments wins
        "downgrade-save-offer": "inconclusive",  # no effect, enough accounts
        "winback-sequence": "srm",  # 1380 vs 1120 at a 50/50 plan
        "weekly-digest": "underpowered",  # 300 per arm
    }
    assert decided.decision == "ship"
