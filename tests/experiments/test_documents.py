"""The one experiment document (experiments.documents): what it carries, that copies
stored by earlier versions still load, and that the results page and the review use
one headline rule and one enrolment projection (issue 11 item 1)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from experiments.analysis import load_results
from experiments.documents import ExperimentDocument, Ref, experiment_document
from experiments.models import (
    DriverNode,
    Experiment,
    JourneyStage,
    ReviewItem,
    ReviewMeeting,
    Variant,
)
from experiments.registry import (
    amend_experiment,
    decide_experiment,
    register_experiment,
    start_experiment,
    stop_experiment,
)
from experiments.review import build_review
from experiments.review_rows import ReviewRow
from tests.experiments.test_registry import flatten_tree_afterwards, plan, world  # noqa: F401
from tests.experiments.test_review import add_data

# --------------------------------------------------------------- what it carries


def test_the_document_carries_plan_amendments_team_and_decision(session, world):  # noqa: F811
    admin = world["admin"]
    experiment = register_experiment(session, plan(world), actor=admin)
    start_experiment(session, experiment.key, actor=admin)
    amend_experiment(
        session, experiment.key, {"power": "0.9"}, reason="Board asked for 90%.", actor=admin
    )
    stop_experiment(session, experiment.key, actor=admin)
    decide_experiment(
        session, experiment.key, {"decision": "iterate", "rationale": "Promising."}, actor=admin
    )
    data = experiment_document(session, admin, experiment.key).to_json()
    data = json.loads(json.dumps(data))  # plain JSON
    info = data["experiment"]
    assert info["key"] == "seat-nudge" and info["status"] == "decided"
    assert info["team"] == {"id": world["growth"].id, "name": "Growth"}
    assert info["branch"] == {"id": world["lever"].id, "name": "Expansion"}
    assert info["driver"] == {"id": world["driver"].id, "name": "Seats"}
    assert [n["name"] for n in info["path"]] == ["Net Revenue Retention", "Expansion", "Seats"]
    assert info["journey_stage"] == "expansion" and info["owner"] == "Maria"
    assert info["hypothesis"].startswith("If we nudge admins")
    assert (info["decision"], info["decision_rationale"], info["decided_by"]) == (
        "iterate",
        "Promising.",
        "Ada Admin",
    )
    assert data["plan"]["control"] == "control" and data["plan"]["power"] == 0.9
    assert [v["key"] for v in data["plan"]["variants"]] == ["control", "nudge"]
    (amendment,) = data["amendments"]
    assert (amendment["field"], amendment["old_value"], amendment["new_value"]) == (
        "power",
        "0.8",
        "0.9",
    )
    assert amendment["reason"] == "Board asked for 90%." and amendment["by"] == "Ada Admin"
    assert data["dataset"] is None and data["verdict"] is None
    assert data["arms"] == [] and data["comparisons"] == []
    # One serialisation, read back to the same document.
    again = ExperimentDocument.from_json(data)
    assert again.to_json() == data


# ------------------------------------------------- copies stored by earlier versions


#: A review item's ``seen`` as the review stored it before the document existed:
#: the analysis under "result", the team as its name with "team_id" beside it, the path
#: as node ids.
OLD_SEEN = {
    "experiment": {
        "id": 41,
        "key": "old-copy",
        "name": "Old copy",
        "team": "Growth",
        "team_id": 7,
        "branch": {"id": 2, "name": "Expansion"},
        "driver": {"id": 5, "name": "Seats"},
        "path": [1, 2, 5],
        "journey_stage": "adoption",
        "owner": "Maria",
        "owner_email": "maria@example.com",
        "hypothesis": "If we …",
        "status": "running",
        "decision": None,
        "decision_rationale": "",
        "decided_by": None,
        "started_at": "2026-11-02T10:00:00+00:00",
        "stopped_at": None,
        "decided_at": None,
        "amendments": [],
    },
    "plan": {
        "primary_metric": "nrr",
        "mde": 0.05,
        "alpha": 0.05,
        "power": 0.8,
        "control": "control",
        "variants": [
            {"key": "control", "name": "Control", "weight": 1.0, "is_control": True},
            {"key": "treatment", "name": "Treatment", "weight": 1.0, "is_control": False},
        ],
        "planned_start": "2026-11-02",
        "planned_end": "2026-12-31",
    },
    "analysis_plan": None,
    "amendments": [],
    "dataset": {
        "id": 9,
        "version": 2,
        "sha256": "ab" * 32,
        "rows": 200,
        "filename": "v2.csv",
        "source": "upload",
        "uploaded_at": "2026-11-10T09:00:00+00:00",
    },
    "snapshot_id": 13,
    "computed_at": "2026-11-10T09:00:01+00:00",
    "verdict": "win",
    "result": {
        "alpha": 0.05,
        "power": 0.8,
        "mde": 0.05,
        "control": "control",
        "srm": {"p_value": 0.7, "flag": False, "observed": {}, "expected_weights": {}},
        "arms": [
            {"variant": "control", "accounts": 100},
            {"variant": "treatment", "accounts": 100},
        ],
        "comparisons": [{"variant": "treatment", "uplift_abs": 0.031, "verdict": "win"}],
        "warnings": [],
    },
    "as_of": "2026-11-15T00:00:00+00:00",
    "review": {
        "needs_decision": ["reached the required sample size (100 accounts per arm)"],
        "changes": [],
        "verdict_before": None,
        "verdict_now": "win",
        "verdict_changed": True,
        "alerts": [],
        "smallest_arm": 100,
        "required_n": 100,
        "projection": None,
    },
}


def test_an_old_frozen_copy_loads_and_converts_to_the_one_shape():
    row = ReviewRow.from_json(OLD_SEEN)
    assert row.key == "old-copy" and row.verdict == "win"
    assert row.experiment.team == Ref(7, "Growth")
    assert row.experiment.path_ids == (1, 2, 5)
    assert row.document.dataset.version == 2
    assert row.document.headline_comparison()["uplift_abs"] == 0.031
    assert row.review.to_json()["needs_decision"] == OLD_SEEN["review"]["needs_decision"]
    data = row.to_json()
    assert data["experiment"]["team"] == {"id": 7, "name": "Growth"}
    assert data["comparisons"] == OLD_SEEN["result"]["comparisons"]
    assert data["arms"] == OLD_SEEN["result"]["arms"] and "result" not in data
    assert ReviewRow.from_json(data).to_json() == data


def _running_experiment(
    session: Session, key: str, started: datetime, planned_end: date
) -> Experiment:
    stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()
    root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).first()
    made = Experiment(
        key=key,
        name=f"Experiment {key}",
        node_id=root.id,
        stage_id=stage.id,
        hypothesis="If we …",
        mde=0.05,
        alpha=0.05,
        power=0.8,
        status="running",
        started_at=started,
        planned_start=started.date(),
        planned_end=planned_end,
        created_at=started - timedelta(days=1),
    )
    session.add(made)
    session.flush()
    for position, variant in enumerate(("control", "treatment")):
        session.add(
            Variant(
                experiment_id=made.id,
                key=variant,
                name=variant.title(),
                weight=1.0,
                is_control=position == 0,
                position=position,
            )
        )
    session.flush()
    return made


def test_a_past_week_frozen_by_an_earlier_version_still_renders(session, factory):
    admin = factory.user("admin@documents.test", "admin")
    experiment = _running_experiment(
        session, "old-copy", datetime(2026, 11, 2, 10, tzinfo=UTC), date(2026, 12, 31)
    )
    meeting = ReviewMeeting(
        iso_week="2026-W46", notes="", created_at=datetime(2026, 11, 12, tzinfo=UTC)
    )
    session.add(meeting)
    session.flush()
    seen = json.loads(json.dumps(OLD_SEEN))
    seen["experiment"]["id"] = experiment.id
    session.add(
        ReviewItem(
            meeting_id=meeting.id,
            experiment_id=experiment.id,
            seen=seen,
            note="",
            action="",
            decision_rationale="",
            version=1,
            updated_at=datetime(2026, 11, 12, tzinfo=UTC),
        )
    )
    session.commit()
    review = build_review(session, admin, "2026-W46", now=datetime(2026, 11, 26, tzinfo=UTC))
    assert review.frozen
    (row,) = review.rows
    assert row.verdict == "win" and row.experiment.team.name == "Growth"
    assert [r.key for r in review.needs_decision] == ["old-copy"]
    assert review.portfolio[0]["comparison"]["uplift_abs"] == 0.031
    session.rollback()


# ------------------------------------------- one headline rule, one projection


def test_a_snapshot_without_a_stored_verdict_gets_the_one_headline_rule(session, factory):
    """The review used to take the first comparison's verdict; the rule is win › loss ›
    underpowered › inconclusive (DESIGN §8), the same as the results page's."""
    admin = factory.user("admin@documents.test", "admin")
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    experiment = _running_experiment(
        session, "two-arms", now - timedelta(days=30), date(2027, 3, 1)
    )
    snapshot = add_data(
        session,
        experiment,
        at=now - timedelta(days=2),
        n_control=200,
        n_treatment=200,
        lift=0.0,
        seed=5,
    )
    first = dict(snapshot.result["comparisons"][0], verdict="inconclusive")
    second = dict(first, variant="treatment-b", verdict="win", uplift_abs=0.031)
    snapshot.result = {**snapshot.result, "comparisons": [first, second]}
    snapshot.verdict = None  # as snapshots stored before the column was filled
    session.add(snapshot)
    session.commit()

    (row,) = build_review(session, admin, "2026-W48", now=now).rows
    assert row.verdict == "win"
    assert row.document.headline_comparison()["uplift_abs"] == 0.031
    assert experiment_document(session, admin, "two-arms", now=now).verdict == "win"
    assert load_results(session, experiment).verdict == "win"
    session.rollback()


@pytest.mark.db
def test_the_review_and_the_results_page_project_enrolment_alike(session, factory):
    """Started Monday 00:00; 100 accounts per arm uploaded Monday 12:00, 300 per arm
    uploaded Tuesday 12:00 (of the 1,000 required): dated enrolment of 200 a day, so 700
    more take 3.5 days — reached on 2026-11-28 00:00, and by the planned end (Friday 27th,
    3.5 days after the second upload) 300 + 200 × 3.5 = 1,000: on track, no alert."""
    admin = factory.user("admin@documents.test", "admin")
    started = datetime(2026, 11, 23, 0, tzinfo=UTC)
    experiment = _running_experiment(session, "projected", started, date(2026, 11, 27))
    add_data(session, experiment, at=started + timedelta(hours=12), n_control=100,
             n_treatment=100, lift=0.0, seed=6)
    snapshot = add_data(session, experiment, at=started + timedelta(hours=36), n_control=300,
                        n_treatment=300, lift=0.0, seed=7)
    comparisons = [dict(c, required_n_per_arm=1000) for c in snapshot.result["comparisons"]]
    snapshot.result = {**snapshot.result, "comparisons": comparisons,
                       "required_n": dict.fromkeys(snapshot.result["required_n"], 1000)}
    session.add(snapshot)
    session.commit()

    now = started + timedelta(hours=37)
    (row,) = build_review(session, admin, "2026-W48", now=now).rows
    projection = row.review.to_json()["projection"]
    assert projection["expected_date"] == "2026-11-28"
    assert projection["rate_per_day"] == pytest.approx(200.0)
    assert (projection["projected"], projection["reaches"]) == (1000, True)
    assert [a["kind"] for a in row.review.to_json()["alerts"]] == []
    assert load_results(session, experiment).expected_date == date(2026, 11, 28)
    session.rollback()


@pytest.mark.db
def test_one_upload_projects_no_date(session, factory):
    """Issue 13 item 10: the whole CSV arriving at once (26 % of the sample, uploaded half a
    day after the start) is no enrolment rate; the old rule said "around" a date 1.4 days
    later. Neither the review nor the page projects a date now."""
    admin = factory.user("admin@documents.test", "admin")
    started = datetime(2026, 11, 23, 0, tzinfo=UTC)
    experiment = _running_experiment(session, "one-upload", started, date(2026, 11, 27))
    snapshot = add_data(session, experiment, at=started + timedelta(hours=12), n_control=260,
                        n_treatment=260, lift=0.0, seed=7)
    comparisons = [dict(c, required_n_per_arm=1000) for c in snapshot.result["comparisons"]]
    snapshot.result = {**snapshot.result, "comparisons": comparisons,
                       "required_n": dict.fromkeys(snapshot.result["required_n"], 1000)}
    session.add(snapshot)
    session.commit()

    (row,) = build_review(session, admin, "2026-W48", now=started + timedelta(hours=13)).rows
    assert row.review.to_json()["projection"] is None
    results = load_results(session, experiment)
    assert results.required_n == 1000 and results.expected_date is None
    session.rollback()
