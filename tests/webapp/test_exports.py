"""Report downloads from the pages: every format, file names, access (viewer+; another
team's experiment 404), audit, formula injection and escaping in what is served."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from experiments.models import AuditEvent, ReviewItem, ReviewMeeting
from experiments.review import current_week
from experiments.review_models import Action
from tests.experiments.test_exports import (
    FORMULA_CHARS,
    HOSTILE,
    SECTION_KEYS,
    XSS,
    assert_markdown_tables,
    assert_self_contained,
    is_number,
    make_experiment,
)
from tests.experiments.test_review import build_scenario

FORMATS = ("json", "csv", "md", "html", "zip")
TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "md": "text/markdown",
    "html": "text/html",
    "zip": "application/zip",
}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@pytest.fixture
def world(session, db_engine, login_as):
    clients = {
        "viewer": login_as("viewer", teams={"growth": "viewer"}),
        "outsider": login_as("viewer", teams={"success": "admin"}),
        "admin": login_as("admin"),
    }
    experiment, snapshot = make_experiment(
        session,
        "seat-nudge",
        name=f"Seat nudge {XSS}",
        hypothesis=HOSTILE["hypothesis"],
        owner=clients["viewer"].user,
    )
    yield experiment, snapshot, clients
    session.rollback()


def _disposition(response) -> str:
    value = response.headers["Content-Disposition"]
    assert value.startswith("attachment; filename=")
    return value.split("filename=", 1)[1].strip('"')


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_viewer_downloads_each_format_of_an_experiment(world, session, fmt):
    _experiment, snapshot, clients = world
    client = clients["viewer"]
    response = client.get(f"/experiments/seat-nudge/export.{fmt}")
    assert response.status_code == 200
    assert response.content_type.startswith(TYPES[fmt])
    assert _disposition(response) == f"nrr-seat-nudge-{today()}.{fmt}"
    body = response.get_data()
    uplift = snapshot.result["comparisons"][0]["uplift_abs"]
    if fmt == "json":
        document = json.loads(body)
        assert all(document[k] == snapshot.result[k] for k in SECTION_KEYS)
        assert document["experiment"]["key"] == "seat-nudge" and document["dataset"]["rows"] == 600
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert float(rows[0]["uplift_abs"]) == uplift
        assert rows[0]["hypothesis"] == "'" + HOSTILE["hypothesis"]
    elif fmt == "md":
        assert_markdown_tables(body.decode())
        assert f"{uplift * 100:+.2f} pts" in body.decode()
    elif fmt == "html":
        text = body.decode()
        assert_self_contained(text)
        assert "<script" not in text and "&lt;script&gt;" in text
        assert f"{uplift * 100:+.2f} pts" in text
    else:
        assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    event = session.exec(select(AuditEvent).where(AuditEvent.action == f"export.{fmt}")).one()
    assert event.actor_id == client.user.id and event.entity_id == "seat-nudge"


@pytest.mark.parametrize(
    "url",
    [
        "/experiments/seat-nudge/export.pdf",
        "/experiments/seat-nudge/export.JSON",
        "/experiments/no-such/export.json",
        "/review/2026-W99/export.json",
        "/review/2026-W48/export.exe",
    ],
)
def test_unknown_things_are_404(world, url):
    _, _, clients = world
    assert clients["admin"].get(url).status_code == 404


def test_another_teams_experiment_is_404_and_not_audited(world, session):
    _, _, clients = world
    for fmt in FORMATS:
        assert clients["outsider"].get(f"/experiments/seat-nudge/export.{fmt}").status_code == 404
    assert session.exec(select(AuditEvent).where(AuditEvent.action.like("export.%"))).all() == []


def test_signed_out_downloads_go_to_the_sign_in_page(world, client):
    response = client.get("/experiments/seat-nudge/export.json")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.fixture
def review_world(session, db_engine, login_as):
    clients = {
        "viewer": login_as("viewer", teams={"growth": "viewer"}),
        "admin": login_as("admin"),
    }
    scenario = build_scenario(session, current_week().previous)
    yield scenario, clients
    session.rollback()


def test_each_format_of_a_review_week(review_world, session):
    scenario, clients = review_world
    week = scenario.weeks["W3"].label
    clients["admin"].get(f"/review/{week}")  # opens (freezes) the meeting
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).one()
    item = session.exec(
        select(ReviewItem).where(
            ReviewItem.meeting_id == meeting.id,
            ReviewItem.experiment_id == scenario.experiments["win-late"].id,
        )
    ).one()
    item.note = f"{HOSTILE['note']} {XSS}"
    session.add(item)
    win_late = scenario.experiments["win-late"]
    session.add(Action(title=HOSTILE["action"], experiment_id=win_late.id,
                       team_id=win_late.team_id, raised_week=week))
    session.commit()
    win_uplift = scenario.snapshots["win-late"][1].result["comparisons"][0]["uplift_abs"]
    for fmt in FORMATS:
        response = clients["viewer"].get(f"/review/{week}/export.{fmt}")
        assert response.status_code == 200, fmt
        assert _disposition(response) == f"nrr-review-{week}-{today()}.{fmt}"
        body = response.get_data()
        if fmt == "json":
            document = json.loads(body)
            keys = {r["experiment"]["key"] for r in document["experiments"]}
            assert "other-team" not in keys and "win-late" in keys
            assert {e["key"] for e in document["needs_decision"]} == {
                "win-late",
                "stopped-undecided",
                "amended",
            }
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            win = next(r for r in rows if r["experiment_key"] == "win-late")
            assert float(win["uplift_abs"]) == win_uplift
            assert (
                win["item_note"].startswith("'=")
                and win["item_actions"] == "'" + HOSTILE["action"] + " (open, no owner)"
            )
            for row in rows:
                assert all(not v.startswith(FORMULA_CHARS) or is_number(v) for v in row.values())
        elif fmt == "md":
            assert_markdown_tables(body.decode())
        elif fmt == "html":
            text = body.decode()
            assert_self_contained(text)
            assert "<script" not in text and "<img" not in text and "&lt;script&gt;" in text
            assert f"{win_uplift * 100:+.2f} pts" in text
        else:
            assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    actions = sorted(
        session.exec(select(AuditEvent.action).where(AuditEvent.action.like("export.%"))).all()
    )
    assert actions == sorted(f"export.{fmt}" for fmt in FORMATS)


def test_review_export_keeps_the_filters(review_world):
    scenario, clients = review_world
    week = scenario.weeks["W3"].label
    churn = scenario.nodes["Churn"].id
    response = clients["admin"].get(f"/review/{week}/export.json?branch={churn}")
    assert _disposition(response) == f"nrr-review-{week}-branch-{churn}-{today()}.json"
    keys = {r["experiment"]["key"] for r in json.loads(response.get_data())["experiments"]}
    assert keys == {"stopped-undecided", "amended", "other-team"}
    w1 = scenario.weeks["W1"]
    response = clients["admin"].get(
        f"/review/{week}/export.md?from={w1.start.date()}&to={w1.last_day}"
    )
    assert response.status_code == 200
    assert _disposition(response).startswith(f"nrr-review-{w1.start.date()}-to-{w1.last_day}-")
    assert clients["admin"].get(f"/review/{week}/export.json?from=nope").status_code == 422
    assert clients["admin"].get(f"/review/{week}/export.json?branch=987654").status_code == 404


def test_the_review_page_links_to_every_export(review_world):
    scenario, clients = review_world
    week = scenario.weeks["W3"].label
    churn = scenario.nodes["Churn"].id
    html = clients["viewer"].get(f"/review/{week}?branch={churn}").get_data(as_text=True)
    for fmt in FORMATS:
        assert f'href="/review/{week}/export.{fmt}?branch={churn}"' in html
