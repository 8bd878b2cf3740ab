"""Adversarial probes of the wave-2 services (QA1): two people at once, odd input,
what carries over. Each test is a defect a user would notice, found by probing, and
fails on the code before its fix."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import Session, select

from experiments.errors import ValidationFailed
from experiments.tree_actuals import record_actual
from experiments.tree_models import DriverActual
from tests.factories import make_node, make_user

pytestmark = pytest.mark.db


def test_two_first_entries_of_one_date_give_one_value_and_one_clear_error(db_engine):
    """Two owners enter the first actual of the same node and date at once. One is
    stored; the other is told the date already has a value (a 422), not a database
    error. On PostgreSQL the loser's INSERT waited on the winner's and then raised a
    unique violation (a 500); SQLite serialises the two, so there the service's own
    check already answered."""
    with Session(db_engine, expire_on_commit=False) as setup:
        ana = make_user(setup, "ana@example.com", "admin")
        node = make_node(setup, "Seats per account")
        setup.commit()
    entry = {"measured_on": "2026-11-02", "value": "3.5"}
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        with Session(db_engine) as other:
            try:
                record_actual(other, other.get(type(node), node.id), {**entry, "value": "4"},
                              actor=other.get(type(ana), ana.id))
                other.commit()
                outcome["second"] = "stored"
            except ValidationFailed as exc:
                other.rollback()
                outcome["second"] = exc.errors
            except Exception as exc:  # noqa: BLE001 — the defect: a database error
                other.rollback()
                outcome["second"] = exc

    with Session(db_engine) as first:
        record_actual(first, first.get(type(node), node.id), entry,
                      actor=first.get(type(ana), ana.id))
        first.flush()  # holds the (node, date) row until commit
        writer = threading.Thread(target=second_writer)
        writer.start()
        time.sleep(0.5)  # the second writer is now waiting on the first (PostgreSQL)
        first.commit()
    writer.join(timeout=30)
    assert not writer.is_alive()
    second = outcome["second"]
    assert isinstance(second, dict), f"the second entry got {second!r}"
    assert "already has the value 3.5" in second["measured_on"]
    with Session(db_engine) as check:
        assert [a.value for a in check.exec(select(DriverActual)).all()] == [3.5]


@pytest.mark.parametrize(("values", "refs"), [
    ((1.7e308, -1.7e308, 2.0), (1.0, 2.0)),  # the span overflowed: every y was nan
    ((-1.7e308, -1.7e308), (None, None)),  # one extreme value: its padding overflowed
    ((0.62, 0.64, 0.61), (1.0, 2.0)),
])
def test_a_sparkline_of_extreme_but_finite_actuals_is_drawable(values, refs):
    """The tree accepts any finite actual; two extremes of opposite sign made the
    sparkline's span overflow, and its path read ``M4 nan …``, which a browser refuses
    to draw (an SVG parse error in the console). Each point must lie in the plot and
    keep the order of the values (checked against numpy's own min–max scaling)."""
    import numpy as np

    from experiments.charts import sparkline

    line = sparkline([(f"2026-11-{i + 1:02d}", v) for i, v in enumerate(values)],
                     title="Seats", baseline=refs[0], target=refs[1])
    assert "nan" not in line.path and "inf" not in line.path
    ys = np.array([d.y for d in line.dots])
    assert np.all((ys >= 4.0) & (ys <= 36.0))
    everything = np.array([*values, *(r for r in refs if r is not None)]) / 2  # finite span
    span = everything.max() - everything.min()
    expected = 36.0 - (everything[:len(values)] - everything.min()) / span * 32.0 if span \
        else np.full(len(values), 20.0)
    np.testing.assert_allclose(ys, expected, atol=0.01)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\u202e"])
def test_an_email_about_a_name_with_a_unicode_line_break_is_sent(session, db_engine,
                                                                 monkeypatch, separator):
    """Experiment names may hold U+2028 (a soft line break that word processors paste),
    U+2029 or U+0085: they are not C0 controls, so the input kit lets them through. The
    email subject kept them and Python's email package refused the header ("may not
    contain linefeed"), so every email about that experiment was retried and then
    failed. Now the subject is one line and the message is handed to the server once.
    A right-to-left override (U+202E) is dropped from the subject: there it showed the
    rest of the line, the decision included, reversed ("llik :)egdun(")."""
    from experiments import notify
    from experiments.decisions import decide
    from experiments.models import Experiment
    from experiments.notify_models import Delivery, NotificationPreference
    from tests.factories import make_experiment, make_team

    sent = []
    monkeypatch.setattr(notify, "send_message", lambda settings, message: sent.append(message))
    monkeypatch.setenv("NRRLAB_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NRRLAB_SMTP_FROM", "NRR Lab <nrrlab@example.com>")
    monkeypatch.setenv("NRRLAB_SMTP_STARTTLS", "0")
    notify._dispatchers.pop(db_engine.pool, None)  # no queue: deliver by hand
    ana = make_user(session, "ana@example.com", "admin")
    growth = make_team(session, "growth", "Growth")
    bob = make_user(session, "bob@example.com", "viewer", {"growth": "viewer"})
    session.add(NotificationPreference(user_id=bob.id, decision=True, scope="all"))
    experiment = make_experiment(session, "nudge", status="stopped", team_id=growth.id,
                                 name=f"Onboarding nudge{separator}(Q4 pricing)")
    session.commit()
    decide(session, session.get(Experiment, experiment.id),
           {"decision": "kill", "rationale": "No lift."}, actor=ana, source="experiment page")
    session.commit()
    [delivery] = session.exec(select(Delivery)).all()
    outcome = notify.deliver(db_engine, delivery.id)
    assert outcome is not None and outcome.status == "sent"
    [message] = sent
    gap = "" if separator == "\u202e" else " "
    assert message["Subject"] == (f"[NRR Lab] Decision on Onboarding nudge{gap}(Q4 pricing) "
                                  "(nudge): kill")
    headers = message.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(line.startswith((" ", "\t")) or ":" in line for line in headers.split("\r\n"))


def test_a_defaulted_eligible_base_names_the_ledger_version_and_period(session, tmp_path):
    """A ship left with a blank eligible base takes the revenue ledger's latest start
    MRR. The record only said "(revenue ledger)": after next month's upload nobody could
    tell which upload and which month the number was. Now it names both, and the base
    equals Σ start MRR of the file's last period (pandas on the uploaded file)."""
    import pandas as pd

    from experiments.decisions import decide
    from experiments.ledger import import_ledger
    from tests.factories import make_experiment, make_team
    from tests.ledger_gen import write_csv

    path = tmp_path / "ledger-nov.csv"
    write_csv(path, n_accounts=150, months=13, seed=5)
    ana = make_user(session, "ana@example.com", "admin")
    growth = make_team(session, "growth")
    import_ledger(session, path, dimensions=("plan", "region", "size"), actor=ana,
                  filename=path.name)
    experiment = make_experiment(session, "nudge", status="stopped", team_id=growth.id)
    session.commit()
    decide(session, experiment, {"decision": "ship", "rationale": "Clear win.",
                                 "shipped_variant": "treatment", "rollout_share": "0.5",
                                 "eligible_base": ""}, actor=ana, source="experiment page")
    session.commit()
    frame = pd.read_csv(path, usecols=["period", "start_mrr"])
    last = frame["period"].max()
    expected_cents = round(frame.loc[frame["period"] == last, "start_mrr"].sum() * 100)
    assert experiment.eligible_base_cents == expected_cents
    assert experiment.eligible_base_source == f"revenue ledger v1, {last}"


def test_two_new_calendar_addresses_at_once_leave_one_live_feed(db_engine):
    """"A new address revokes the old one" — but two clicks at once (a double click, two
    tabs) each revoked what it could see and each added a feed: on PostgreSQL the user
    was left with two live secret URLs, one of them shown to nobody. Now the second
    waits for the first and revokes it; one feed stays live, the later one."""
    from experiments.calendar_feed import create_feed, feed_owner
    from experiments.db import write_engine
    from experiments.models import User
    from experiments.notify_models import CalendarFeed

    engine = write_engine(db_engine)  # as a web request that writes (SQLite: IMMEDIATE)
    with Session(engine, expire_on_commit=False) as setup:
        bob = make_user(setup, "bob@example.com")
        setup.commit()
    tokens: dict[str, str] = {}

    def second_click() -> None:
        with Session(engine) as other:
            _feed, tokens["second"] = create_feed(other, other.get(User, bob.id))
            other.commit()

    with Session(engine) as first:
        _feed, tokens["first"] = create_feed(first, first.get(User, bob.id))
        writer = threading.Thread(target=second_click)
        writer.start()
        time.sleep(0.5)  # the second click is now in flight
        first.commit()
    writer.join(timeout=30)
    assert not writer.is_alive()
    with Session(db_engine) as check:
        live = check.exec(select(CalendarFeed).where(CalendarFeed.revoked_at.is_(None))).all()
        assert len(live) == 1
        assert feed_owner(check, tokens["second"]).id == bob.id
        with pytest.raises(Exception, match="no such calendar feed"):
            feed_owner(check, tokens["first"])


def test_a_frozen_weeks_tree_summary_keeps_the_actual_the_meeting_saw(session):
    """What carries over: the weekly review of W47 is frozen "as the meeting saw it" —
    its experiment rows were, its driver-tree summary was not: an actual corrected after
    the meeting (or a new ledger upload) rewrote the past week's page and exports. The
    week now keeps the summary with its meeting (experiments.review_tree)."""
    from datetime import UTC, datetime

    from experiments.review import build_review
    from tests.factories import make_experiment, make_node

    ana = make_user(session, "ana@example.com", "admin")
    node = make_node(session, "Seats per account", baseline=2.0, target=3.0)
    make_experiment(session, "nudge", node=node,
                    started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                    created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    session.commit()
    record_actual(session, node, {"measured_on": "2026-11-16", "value": "2.5"}, actor=ana)
    session.commit()
    meeting = build_review(session, ana, "2026-W47", now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    session.commit()
    assert [line.actual for line in meeting.tree_actuals] == [2.5]
    [row] = session.exec(select(DriverActual)).all()
    record_actual(session, node, {"measured_on": "2026-11-16", "value": "2.9",
                                  "version": str(row.version)}, actor=ana)
    session.commit()
    later = build_review(session, ana, "2026-W47", now=datetime(2026, 12, 10, 12, tzinfo=UTC))
    assert later.frozen
    assert [line.actual for line in later.tree_actuals] == [2.5]
