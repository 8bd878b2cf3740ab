"""An analysed upload tells its subscribers: an ``upload`` event always, an ``alert`` when
the fresh analysis flags a sample ratio mismatch (checked with scipy's chi-square)."""

from __future__ import annotations

import json

import pytest
from scipy.stats import chisquare
from sqlmodel import select

from experiments import notify
from experiments.demo import Behaviour
from experiments.imports import import_accounts
from experiments.notify_models import Delivery, WebhookEndpoint
from tests.factories import accounts_csv, make_experiment, make_team, make_user
from tests.notify.conftest import FIXED_NOW

pytestmark = pytest.mark.db


@pytest.fixture
def setup(session, monkeypatch, receiver):
    monkeypatch.setattr(notify, "utcnow", lambda: FIXED_NOW)
    monkeypatch.delenv("NRRLAB_BASE_URL", raising=False)
    growth = make_team(session, "growth", "Growth")
    uma = make_user(session, "uma@example.com", "viewer", {"growth": "analyst"})
    experiment = make_experiment(session, "split", team_id=growth.id, owner_id=uma.id,
                                 name="Split")
    session.add(WebhookEndpoint(name="All", url=receiver.url, events=["upload", "alert"],
                                secret="s"))
    session.commit()
    return uma, experiment


def test_an_srm_upload_sends_upload_and_alert(session, db_engine, setup, receiver, no_dispatch):
    uma, experiment = setup
    data = accounts_csv(arms={"control": (300, Behaviour()), "treatment": (220, Behaviour())})
    # Independent check that this split is a mismatch at the 0.001 level (DESIGN §4).
    assert chisquare([300, 220]).pvalue < 0.001
    report = import_accounts(session, experiment, data, filename="split.csv", actor=uma)
    assert receiver.calls == [] and session.exec(select(Delivery)).all()  # only after commit
    session.commit()
    deliveries = session.exec(select(Delivery).order_by(Delivery.id)).all()
    # Both webhook events, and the owner's alert email (alerts on one's own experiments
    # are on by default).
    assert [(d.channel, d.event) for d in deliveries] == [
        ("webhook", "upload"), ("webhook", "alert"), ("email", "alert")]
    assert deliveries[2].recipient == "uma@example.com"
    assert deliveries[2].subject.startswith("[NRR Lab] Alert on Split (split): sample ratio")
    for delivery in deliveries[:2]:
        assert notify.deliver(db_engine, delivery.id, now=FIXED_NOW).status == "sent"
    upload, alert = (json.loads(c.body) for c in receiver.calls)
    assert upload["event"] == "upload" and upload["experiment"]["url"] is None
    assert upload["data"] == {"filename": "split.csv", "rows": 520,
                              "uploaded_by": "uma@example.com", "verdict": "srm",
                              "version": report.dataset.version}
    assert upload["text"].startswith("*New data for Split (split): version 1, 520 accounts, "
                                     "verdict srm*\nSplit (split)\n")
    assert alert["event"] == "alert"
    [srm] = alert["data"]["alerts"]
    assert srm["kind"] == "srm" and srm["text"].startswith("sample ratio mismatch (p < 0.001)")


def test_a_balanced_upload_sends_no_alert(session, db_engine, setup, receiver, no_dispatch):
    uma, experiment = setup
    import_accounts(session, experiment, accounts_csv(n=200), filename="ok.csv", actor=uma)
    session.commit()
    assert [d.event for d in session.exec(select(Delivery)).all()] == ["upload"]
