"""The quarterly business review (issue 17 item 4): quarters as ISO weeks, a generated
quarter of experiment events counted by week and in total (checked against pandas), target
against actual per branch, OKRs (scoping, compare-and-set, hostile input), the exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.models import AnalysisSnapshot, AuditEvent, Dataset
from experiments.quarterly import (
    add_key_result,
    build_quarterly,
    create_objective,
    parse_quarter,
    quarter_of,
    update_key_result,
)
from experiments.quarterly_export import export_quarterly
from experiments.review_weeks import week_of
from experiments.tree_models import DriverActual
from tests.factories import make_experiment, make_node, make_team, make_user

NOW = datetime(2027, 1, 20, tzinfo=UTC)  # after 2026-Q4: the whole quarter has happened


# ------------------------------------------------------------------ quarters


@pytest.mark.parametrize("label", ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "2027-Q1",
                                   "2020-Q4", "2015-Q1"])
def test_a_quarter_is_the_iso_weeks_whose_thursday_falls_in_it(label):
    quarter = parse_quarter(label)
    year, number = int(label[:4]), int(label[-1])
    # Independently: every Monday from two weeks before to two weeks after, by pandas.
    first = pd.Timestamp(year=year, month=3 * (number - 1) + 1, day=1)
    mondays = pd.date_range(first - pd.Timedelta(days=20), first + pd.Timedelta(days=120),
                            freq="W-MON")
    thursdays = mondays + pd.Timedelta(days=3)
    wanted = [f"{m.isocalendar().year}-W{m.isocalendar().week:02d}"
              for m, t in zip(mondays, thursdays, strict=True)
              if t.year == year and t.quarter == number]
    assert [w.label for w in quarter.weeks] == wanted
    assert all(b.start == a.end for a, b in zip(quarter.weeks, quarter.weeks[1:], strict=False))
    # Consecutive quarters tile time: this one ends where the next begins.
    assert parse_quarter(quarter.next).start == quarter.end
    assert quarter_of(quarter.start.date()).label == label
    assert quarter_of((quarter.end - timedelta(days=1)).date()).label == label


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(9997, 12, 31)))
def test_every_day_lies_in_exactly_one_quarter_and_its_week_with_it(day):
    quarter = quarter_of(day)
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    assert quarter.start <= moment < quarter.end
    assert week_of(day) in quarter.weeks
    # The neighbours do not hold it: quarters tile time without overlap.
    assert not parse_quarter(quarter.previous).start <= moment < parse_quarter(
        quarter.previous).end
    assert 12 <= len(quarter.weeks) <= 14


@pytest.mark.parametrize("label", ["2026-Q5", "2026-Q0", "2026Q4", "2026-q4", "9999-Q1", "",
                                   "2026-Q4 ", "x" * 100])
def test_a_bad_quarter_is_not_found(session, label):
    admin = make_user(session, "a@q.test", "admin")
    with pytest.raises(NotFound):
        build_quarterly(session, admin, label, now=NOW)


# ------------------------------------------------------------------ a generated quarter


def _snapshot(session, experiment, at: datetime, verdict: str, version: int) -> None:
    dataset = Dataset(experiment_id=experiment.id, version=version, sha256="0" * 64,
                      row_count=10, uploaded_at=at)
    session.add(dataset)
    session.flush()
    session.add(AnalysisSnapshot(experiment_id=experiment.id, dataset_id=dataset.id,
                                 computed_at=at, verdict=verdict, result={}))


@pytest.fixture
def generated(session):
    """60 experiments on two branches with random start/decision moments around 2026-Q4;
    returns the admin, the branches and a DataFrame of what happened (the oracle's input)."""
    rng = np.random.default_rng(17)
    admin = make_user(session, "admin@q.test", "admin")
    growth = make_team(session, "growth")
    branches = {"Expansion": make_node(session, "Expansion", target=1.05, team_id=growth.id),
                "Churn": make_node(session, "Churn", target=0.02)}
    under = make_node(session, "Onboarding", parent=branches["Churn"], kind="driver")
    span_start = datetime(2026, 9, 14, tzinfo=UTC)  # two weeks before 2026-Q4's first Monday
    records = []
    for i in range(60):
        branch = ["Expansion", "Churn"][i % 2]
        node = under if branch == "Churn" and i % 4 == 1 else branches[branch]
        started = span_start + timedelta(minutes=int(rng.integers(0, 60 * 24 * 7 * 18)))
        decided = None
        decision = None
        if rng.random() < 0.7:
            decided = started + timedelta(minutes=int(rng.integers(60, 60 * 24 * 40)))
            decision = ["ship", "iterate", "kill"][int(rng.integers(0, 3))]
        status = "decided" if decided else "running"
        experiment = make_experiment(
            session, f"gen-{i:02d}", node=node, status=status, started_at=started,
            decided_at=decided, decision=decision, decision_rationale="r" if decision else "",
            team_id=growth.id if branch == "Expansion" else None, created_at=started)
        verdict_at_decision = None
        if decided is not None:
            verdict_at_decision = ["win", "loss", "inconclusive"][int(rng.integers(0, 3))]
            _snapshot(session, experiment, decided - timedelta(hours=1), verdict_at_decision, 1)
            # A later recomputation must not change what was decided on.
            _snapshot(session, experiment, decided + timedelta(hours=1), "win", 2)
        records.append({"key": experiment.key, "branch": branch, "started": started,
                        "decided": decided, "decision": decision,
                        "verdict": verdict_at_decision})
    session.commit()
    return admin, branches, pd.DataFrame.from_records(records)


def _oracle(frame: pd.DataFrame, quarter: str) -> pd.DataFrame:
    """Events by ISO week label, kind and branch, restricted to the quarter by pandas."""
    year, number = int(quarter[:4]), int(quarter[-1])
    events = []
    for row in frame.itertuples():
        events.append((row.started, "run", row.branch, row.key))
        if row.decided is not None and not pd.isna(row.decided):
            if row.verdict == "win":
                events.append((row.decided, "won", row.branch, row.key))
            if row.verdict == "loss":
                events.append((row.decided, "lost", row.branch, row.key))
            if row.decision == "ship":
                events.append((row.decided, "shipped", row.branch, row.key))
    out = pd.DataFrame(events, columns=["at", "kind", "branch", "key"])
    at = pd.to_datetime(out["at"], utc=True)
    thursday = (at.dt.normalize() - pd.to_timedelta(at.dt.weekday, unit="D")
                + pd.Timedelta(days=3))
    out["week"] = [f"{t.isocalendar().year}-W{t.isocalendar().week:02d}" for t in thursday]
    keep = (thursday.dt.year == year) & (thursday.dt.quarter == number)
    return out[keep.to_numpy()]


def test_the_quarter_counts_each_event_once_in_its_week_and_in_total(session, generated):
    admin, branches, frame = generated
    qbr = build_quarterly(session, admin, "2026-Q4", now=NOW)
    expected = _oracle(frame, "2026-Q4")
    kinds = ("run", "won", "lost", "shipped")
    by_week = expected.groupby(["week", "kind"]).size()
    for week, tally in qbr.weeks:
        for kind in kinds:
            assert len(getattr(tally, kind)) == by_week.get((week.label, kind), 0), (week, kind)
    totals = expected.groupby("kind").size()
    for kind in kinds:
        assert len(getattr(qbr.total, kind)) == totals.get(kind, 0)
        # The acceptance point: the quarter's totals equal the sum of its weeks.
        assert len(getattr(qbr.total, kind)) == sum(len(getattr(t, kind)) for _, t in qbr.weeks)
    assert sum(totals) > 40  # the generator put plenty in the quarter
    by_branch = expected.groupby(["branch", "kind"]).size()
    for line in qbr.branches:
        if line.branch in branches:
            for kind in kinds:
                assert len(getattr(line.total, kind)) == by_branch.get((line.branch, kind), 0)
                assert len(getattr(line.total, kind)) == sum(
                    len(getattr(t, kind)) for _, t in line.weeks)
    assert sorted(qbr.total.shipped) == sorted(expected[expected.kind == "shipped"].key)


def test_what_a_user_may_not_see_is_not_counted(session, generated):
    _, _, frame = generated
    outsider = make_user(session, "out@q.test", "viewer", {"other": "experimenter"})
    session.commit()
    qbr = build_quarterly(session, outsider, "2026-Q4", now=NOW)
    expected = _oracle(frame[frame.branch == "Churn"], "2026-Q4")  # growth's are hidden
    assert len(qbr.total.run) == (expected.kind == "run").sum()
    assert "Expansion" not in {b.branch for b in qbr.branches}


def test_target_against_actual_per_branch_uses_the_nodes_actuals(session, generated):
    admin, branches, _ = generated
    churn = branches["Churn"]
    for day, value in ((date(2026, 10, 31), 0.024), (date(2026, 12, 31), 0.021),
                       (date(2027, 1, 15), 0.019)):
        session.add(DriverActual(node_id=churn.id, measured_on=day, value=value))
    session.commit()
    qbr = build_quarterly(session, admin, "2026-Q4", now=NOW)
    line = next(b for b in qbr.branches if b.branch == "Churn")
    # The latest actual on or before the quarter's last day (2027-01-03), not after it.
    assert (line.target, line.actual.actual, line.actual.period) == (0.02, 0.021, "2026-12-31")
    expansion = next(b for b in qbr.branches if b.branch == "Expansion")
    assert expansion.actual is None and expansion.target == 1.05


# ------------------------------------------------------------------ OKRs


@pytest.fixture
def okr_world(session):
    growth = make_team(session, "growth")
    make_team(session, "success")
    people = {
        "exp": make_user(session, "exp@okr.test", "viewer", {"growth": "experimenter"}),
        "mate": make_user(session, "mate@okr.test", "viewer", {"growth": "experimenter"}),
        "viewer": make_user(session, "viewer@okr.test", "viewer", {"growth": "viewer"}),
        "other": make_user(session, "cs@okr.test", "viewer", {"success": "experimenter"}),
    }
    node = make_node(session, "Expansion", team_id=growth.id)
    session.commit()
    return people, growth, node


def test_an_objective_with_key_results_on_tree_nodes(session, okr_world):
    people, growth, node = okr_world
    objective = create_objective(session, people["exp"], "2026-Q4", {
        "title": "Grow expansion revenue", "team_id": str(growth.id),
        "owner_id": str(people["exp"].id)})
    kr = add_key_result(session, people["exp"], objective.id, {
        "title": "Expansion rate", "node_id": str(node.id), "target": "0.03", "actual": "",
        "owner_id": str(people["mate"].id)})
    session.add(DriverActual(node_id=node.id, measured_on=date(2026, 11, 30), value=0.025))
    session.commit()
    qbr = build_quarterly(session, people["viewer"], "2026-Q4", now=NOW)
    [view] = qbr.objectives
    [kr_view] = view.key_results
    assert (view.objective.title, view.owner_label, view.can_edit) == (
        "Grow expansion revenue", "exp@okr.test", False)
    # No typed actual: the node's own actual stands in, and says so.
    assert (kr_view.key_result.target, kr_view.actual, kr_view.actual_source,
            kr_view.owner_label) == (0.03, 0.025, "node (entered)", "mate@okr.test")
    assert build_quarterly(session, people["other"], "2026-Q4", now=NOW).objectives == []
    assert build_quarterly(session, people["exp"], "2026-Q3", now=NOW).objectives == []
    update_key_result(session, people["mate"], kr.id, {
        "version": "1", "title": "Expansion rate", "node_id": str(node.id), "target": "0.03",
        "actual": "0.031", "owner_id": str(people["mate"].id)})
    session.commit()
    kr_view = build_quarterly(session, people["exp"], "2026-Q4", now=NOW).objectives[0] \
        .key_results[0]
    assert (kr_view.actual, kr_view.actual_source) == (0.031, "entered")
    actions = session.exec(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["objective.create", "key_result.create", "key_result.update"]


def test_two_editors_of_one_key_result_get_one_conflict(session, okr_world):
    people, growth, node = okr_world
    objective = create_objective(session, people["exp"], "2026-Q4", {
        "title": "Grow", "team_id": str(growth.id)})
    kr = add_key_result(session, people["exp"], objective.id, {
        "title": "NRR", "node_id": str(node.id), "target": "1.05"})
    session.commit()
    form = {"version": "1", "title": "NRR", "node_id": str(node.id), "target": "1.05"}
    update_key_result(session, people["exp"], kr.id, {**form, "actual": "1.01"})
    session.commit()
    with pytest.raises(Conflict, match=r"This key result was changed by exp@okr\.test"):
        update_key_result(session, people["mate"], kr.id, {**form, "actual": "1.09"})
    session.rollback()
    session.refresh(kr)
    assert (kr.actual, kr.version) == (1.01, 2)


def test_okr_permissions_and_scoping(session, okr_world):
    people, growth, node = okr_world
    objective = create_objective(session, people["exp"], "2026-Q4", {
        "title": "Grow", "team_id": str(growth.id)})
    session.commit()
    data = {"title": "NRR", "node_id": str(node.id), "target": "1.05"}
    with pytest.raises(PermissionDenied):
        add_key_result(session, people["viewer"], objective.id, data)
    with pytest.raises(NotFound):
        add_key_result(session, people["other"], objective.id, data)
    with pytest.raises(ValidationFailed) as caught:  # another team's node reads as unknown
        other_node = make_node(session, "Theirs", team_id=make_team(session, "success").id)
        add_key_result(session, people["exp"], objective.id, {**data,
                                                              "node_id": str(other_node.id)})
    assert caught.value.errors == {"node_id": "unknown driver-tree node"}
    with pytest.raises(ValidationFailed) as caught:
        create_objective(session, people["other"], "2026-Q4", {"title": "Mine",
                                                               "team_id": str(growth.id)})
    assert caught.value.errors == {"team_id": "unknown team"}
    with pytest.raises(ValidationFailed) as caught:  # no company-wide objective for them
        create_objective(session, people["exp"], "2026-Q4", {"title": "Everything"})
    assert "team_id" in caught.value.errors


@pytest.mark.parametrize(("fields", "field"), [
    ({"title": ""}, "title"),
    ({"title": "a\x00b"}, "title"),
    ({"title": "x" * 301}, "title"),
    ({"node_id": ""}, "node_id"),
    ({"node_id": "99999"}, "node_id"),
    ({"target": "lots"}, "target"),
    ({"target": "nan"}, "target"),
    ({"actual": "1e999"}, "actual"),
    ({"owner_id": "abc"}, "owner_id"),
])
def test_bad_key_result_fields_are_refused_field_by_field(session, okr_world, fields, field):
    people, growth, node = okr_world
    objective = create_objective(session, people["exp"], "2026-Q4", {
        "title": "Grow", "team_id": str(growth.id)})
    session.commit()
    data = {"title": "NRR", "node_id": str(node.id), "target": "1.05", **fields}
    with pytest.raises(ValidationFailed) as caught:
        add_key_result(session, people["exp"], objective.id, data)
    assert field in caught.value.errors


# ------------------------------------------------------------------ exports


def test_exports_carry_the_same_numbers(session, generated):
    admin, _, frame = generated
    expected = _oracle(frame, "2026-Q4").groupby("kind").size()
    found = export_quarterly(session, admin, "2026-Q4", "json", now=NOW)
    document = json.loads(found.body)
    assert found.filename == "nrr-qbr-2026-Q4-2027-01-20.json"
    assert document["totals"]["run"] == expected["run"]
    assert sum(w["shipped"] for w in document["weeks"]) == expected["shipped"]
    rows = list(csv.DictReader(io.StringIO(export_quarterly(
        session, admin, "2026-Q4", "csv", now=NOW).body.decode())))
    total = next(r for r in rows if r["kind"] == "quarter_total")
    assert int(total["won"]) == expected["won"]
    weeks = [r for r in rows if r["kind"] == "quarter_week"]
    assert sum(int(r["lost"]) for r in weeks) == int(total["lost"]) == expected["lost"]
    markdown = export_quarterly(session, admin, "2026-Q4", "md", now=NOW).body.decode()
    assert f"{expected['run']} run, {expected['won']} won" in markdown
    html = export_quarterly(session, admin, "2026-Q4", "html", now=NOW).body.decode()
    assert "<script" not in html and "Quarterly business review 2026-Q4" in html
    events = session.exec(select(AuditEvent.action).where(
        AuditEvent.entity_type == "quarterly_review")).all()
    assert events == ["export.json", "export.csv", "export.md", "export.html"]


def test_a_decision_dated_before_its_analysis_takes_the_analysis_in_force(session):
    admin = make_user(session, "admin@late.test", "admin")
    decided = datetime(2026, 11, 4, 12, tzinfo=UTC)  # W45
    experiment = make_experiment(session, "backdated", status="decided",
                                 started_at=decided - timedelta(days=20), decided_at=decided,
                                 decision="ship", decision_rationale="imported")
    _snapshot(session, experiment, decided + timedelta(days=2), "loss", 1)
    _snapshot(session, experiment, decided + timedelta(days=3), "win", 2)
    session.commit()
    qbr = build_quarterly(session, admin, "2026-Q4", now=NOW)
    # The newest analysis (win), not the earlier loss nor nothing.
    assert (qbr.total.won, qbr.total.lost, qbr.total.shipped) == (
        ["backdated"], [], ["backdated"])
    week = {w.label: t for w, t in qbr.weeks}["2026-W45"]
    assert week.won == ["backdated"]


def test_the_cli_exports_a_quarter_like_the_page(session, database_url, generated):
    from click.testing import CliRunner

    from experiments.cli_export import export

    _, _, frame = generated
    events = _oracle(frame, "2026-Q4")
    # The CLI reports as of now: events after this moment are not counted yet.
    expected = events[pd.to_datetime(events["at"], utc=True) <= pd.Timestamp.now(tz="UTC")] \
        .groupby("kind").size()
    runner = CliRunner()
    result = runner.invoke(export, ["quarter", "2026-Q4", "--format", "json"],
                           env={"DATABASE_URL": database_url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["run"] == expected["run"]
    bad = runner.invoke(export, ["quarter", "2026-Q9"], env={"DATABASE_URL": database_url})
    assert bad.exit_code == 2 and "quarter must look like 2026-Q4" in bad.output
    event = session.exec(select(AuditEvent).where(
        AuditEvent.entity_type == "quarterly_review")).one()
    assert event.action == "export.json" and event.diff["via"] == [None, "cli"]
