"""The weekly review service: a generated three-week scenario, freezing, scoping,
the portfolio's BH adjustment, and item edits (permissions, stale versions, decisions).

The scenario (:func:`build_scenario`) is also used by the web and export tests.
Timestamps are set explicitly; ``W1``, ``W2``, ``W3`` are three consecutive ISO weeks
and ``W0`` the one before. The "changed" window of week ``Wk`` is the start of
``Wk-1`` to the end of ``Wk`` (see ``experiments/review.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

import stats
from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.models import (
    AccountRow,
    Amendment,
    AnalysisSnapshot,
    AuditEvent,
    Dataset,
    DriverNode,
    Experiment,
    JourneyStage,
    ReviewItem,
    ReviewMeeting,
    User,
    Variant,
)
from experiments.review import Week, build_review, parse_week, update_item, week_of

# ----------------------------------------------------------------- data builders


def generated_arms(
    seed: int,
    n_control: int,
    n_treatment: int,
    lift: float,
    names: tuple[str, str] = ("control", "treatment"),
) -> dict[str, tuple]:
    """Integer-cent account columns per variant: end/start ≈ N(1 + lift, 0.25)."""
    rng = np.random.default_rng(seed)
    arms = {}
    for variant, n, effect in ((names[0], n_control, 0.0), (names[1], n_treatment, lift)):
        start = rng.integers(10_000, 200_000, n)
        delta = np.round(start * (rng.normal(1.0 + effect, 0.25, n) - 1.0)).astype(np.int64)
        expansion = np.clip(delta, 0, None)
        contraction = np.minimum(np.clip(-delta, 0, None), start)
        churned = np.zeros(n, dtype=np.int64)
        arms[variant] = (start, expansion, contraction, churned)
    return arms


def analyse(
    arms: dict[str, tuple], experiment: Experiment, weights: dict[str, float]
) -> stats.ExperimentResult:
    data = {
        v: stats.arm_from_arrays(*(np.asarray(c) / 100 for c in cols)) for v, cols in arms.items()
    }
    return stats.analyze(
        data,
        control=next(iter(weights)),
        alpha=experiment.alpha,
        power=experiment.power,
        mde=experiment.mde,
        weights=weights,
        variants=list(weights),
    )


def stored_verdict(result: stats.ExperimentResult) -> str:
    """The snapshot column of a two-arm result: ``srm`` or its only comparison's verdict.

    (With one comparison no priority between treatments is involved; the headline rule
    itself is tested with literal verdicts below and in test_documents.py.)
    """
    (only,) = result.comparisons
    return "srm" if result.srm.flag else only.verdict


def add_data(
    session: Session,
    experiment: Experiment,
    *,
    at: datetime,
    n_control: int,
    n_treatment: int,
    lift: float,
    seed: int,
    with_rows: bool = False,
    account_ids: list[str] | None = None,
    segments: list[str] | None = None,
) -> AnalysisSnapshot:
    """A new dataset version uploaded at ``at`` and its snapshot computed at ``at``."""
    weights = {
        v.key: v.weight
        for v in session.exec(
            select(Variant).where(Variant.experiment_id == experiment.id).order_by(Variant.position)
        ).all()
    }
    arms = generated_arms(seed, n_control, n_treatment, lift, names=tuple(weights))
    result = analyse(arms, experiment, weights)
    version = (
        len(session.exec(select(Dataset).where(Dataset.experiment_id == experiment.id)).all()) + 1
    )
    dataset = Dataset(
        experiment_id=experiment.id,
        version=version,
        filename=f"{experiment.key}-v{version}.csv",
        sha256=f"{seed:064x}",
        row_count=n_control + n_treatment,
        uploaded_at=at,
        has_segment=segments is not None,
    )
    session.add(dataset)
    session.flush()
    if with_rows:
        index = 0
        for variant, (start, expansion, contraction, churned) in arms.items():
            for i in range(len(start)):
                account = (
                    account_ids[index]
                    if account_ids and index < len(account_ids)
                    else f"{variant}-{i:05d}"
                )
                segment = segments[index % len(segments)] if segments else None
                session.add(
                    AccountRow(
                        dataset_id=dataset.id,
                        account_id=account,
                        variant=variant,
                        start_cents=int(start[i]),
                        expansion_cents=int(expansion[i]),
                        contraction_cents=int(contraction[i]),
                        churned_cents=int(churned[i]),
                        segment=segment,
                    )
                )
                index += 1
        session.flush()
    report = result.to_dict()
    report["plan"] = {
        "alpha": experiment.alpha,
        "power": experiment.power,
        "mde": experiment.mde,
        "control": next(iter(weights)),
        "variants": [{"key": k, "name": k.title(), "weight": w} for k, w in weights.items()],
    }
    report["dataset"] = {
        "id": dataset.id,
        "version": version,
        "filename": dataset.filename,
        "sha256": dataset.sha256,
        "rows": dataset.row_count,
    }
    # Dated enrolment as refresh_snapshot stores it: this upload and the one before it.
    before = session.exec(
        select(AnalysisSnapshot).join(Dataset, Dataset.id == AnalysisSnapshot.dataset_id)
        .where(Dataset.experiment_id == experiment.id, Dataset.version == version - 1)
    ).first()
    report["enrolment"] = {
        "observed_at": at.isoformat(),
        "earlier_at": before.computed_at.replace(tzinfo=UTC).isoformat() if before else None,
        "earlier_smallest": min(a["accounts"] for a in before.result["arms"]) if before else None,
    }
    snapshot = AnalysisSnapshot(
        experiment_id=experiment.id,
        dataset_id=dataset.id,
        computed_at=at,
        verdict=stored_verdict(result),
        result=report,
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def at(week: Week, day: int, hour: int = 10) -> datetime:
    return week.start + timedelta(days=day, hours=hour)


@dataclass
class Scenario:
    weeks: dict[str, Week]
    experiments: dict[str, Experiment]
    nodes: dict[str, DriverNode]
    teams: dict[str, int]
    snapshots: dict[str, list[AnalysisSnapshot]] = field(default_factory=dict)

    def key_of(self, experiment_id: int) -> str:
        return next(k for k, e in self.experiments.items() if e.id == experiment_id)


def build_scenario(session: Session, last_week: Week, *, owner: User | None = None) -> Scenario:
    """Eight experiments over weeks W1..W3 (= ``last_week``); see the module docstring."""
    from experiments.users import ensure_team

    w3 = last_week
    w2 = w3.previous
    w1 = w2.previous
    w0 = w1.previous
    growth = ensure_team(session, "growth", "Growth")
    success = ensure_team(session, "success", "Success")
    root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
    stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()

    def node(name: str, parent: DriverNode, kind: str = "lever") -> DriverNode:
        made = DriverNode(name=name, parent_id=parent.id, kind=kind, team_id=growth.id)
        session.add(made)
        session.flush()
        return made

    expansion = node("Expansion", root)
    churn = node("Churn", root)
    contraction = node("Contraction", root)
    adoption = node("Adoption", expansion, "driver")
    far = w3.end.date() + timedelta(days=60)
    long_ago = w0.start - timedelta(days=60)

    def experiment(
        key: str,
        parent: DriverNode,
        *,
        status: str,
        started: datetime | None = None,
        stopped: datetime | None = None,
        decided: datetime | None = None,
        decision: str | None = None,
        created: datetime | None = None,
        planned_end: date | None = far,
        team=growth,
        weights=(1.0, 1.0),
    ) -> Experiment:
        made = Experiment(
            key=key,
            name=f"Experiment {key}",
            node_id=parent.id,
            stage_id=stage.id,
            team_id=team.id,
            owner_id=owner.id if owner else None,
            hypothesis=f"If we try {key}, then NRR rises because tests.",
            mde=0.05,
            alpha=0.05,
            power=0.8,
            status=status,
            started_at=started,
            stopped_at=stopped,
            decided_at=decided,
            decision=decision,
            decision_rationale="Clear win." if decision else "",
            planned_start=(started or long_ago).date(),
            planned_end=planned_end,
            created_at=created or (started - timedelta(days=1) if started else long_ago),
        )
        session.add(made)
        session.flush()
        session.add(
            Variant(
                experiment_id=made.id,
                key="control",
                name="Control",
                weight=weights[0],
                is_control=True,
                position=0,
            )
        )
        session.add(
            Variant(
                experiment_id=made.id,
                key="treatment",
                name="Treatment",
                weight=weights[1],
                is_control=False,
                position=1,
            )
        )
        session.flush()
        return made

    exps = {
        "win-late": experiment(
            "win-late", adoption, status="running", started=w1.start - timedelta(days=21)
        ),
        "stopped-undecided": experiment(
            "stopped-undecided", churn, status="stopped", started=long_ago, stopped=at(w2, 3)
        ),
        "decided-ship": experiment(
            "decided-ship",
            expansion,
            status="decided",
            started=long_ago,
            stopped=at(w1, 2),
            decided=at(w2, 1),
            decision="ship",
        ),
        "amended": experiment(
            "amended", churn, status="running", started=long_ago, planned_end=w2.last_day
        ),
        "srm-running": experiment(
            "srm-running", expansion, status="running", started=w0.start - timedelta(days=5)
        ),
        "new-draft": experiment(
            "new-draft", contraction, status="draft", created=at(w2, 2), planned_end=None
        ),
        "other-team": experiment(
            "other-team", churn, status="stopped", started=long_ago, stopped=at(w2, 2), team=success
        ),
        "started-w3": experiment(
            "started-w3", contraction, status="running", started=at(w3, 1), created=at(w3, 0)
        ),
    }
    snaps = {
        "win-late": [
            add_data(
                session,
                exps["win-late"],
                at=at(w1, 1),
                n_control=150,
                n_treatment=150,
                lift=0.0,
                seed=11,
            ),
            add_data(
                session,
                exps["win-late"],
                at=at(w3, 2),
                n_control=700,
                n_treatment=700,
                lift=0.15,
                seed=12,
            ),
        ],
        "stopped-undecided": [
            add_data(
                session,
                exps["stopped-undecided"],
                at=w0.start - timedelta(days=7),
                n_control=700,
                n_treatment=700,
                lift=0.0,
                seed=21,
            )
        ],
        "decided-ship": [
            add_data(
                session,
                exps["decided-ship"],
                at=w0.start - timedelta(days=7),
                n_control=700,
                n_treatment=700,
                lift=0.12,
                seed=31,
            )
        ],
        "amended": [
            # Two uploads a week apart date the enrolment (one upload alone would not).
            add_data(
                session,
                exps["amended"],
                at=w0.start - timedelta(days=14),
                n_control=90,
                n_treatment=90,
                lift=0.0,
                seed=40,
            ),
            add_data(
                session,
                exps["amended"],
                at=w0.start - timedelta(days=7),
                n_control=100,
                n_treatment=100,
                lift=0.0,
                seed=41,
            )
        ],
        "srm-running": [
            add_data(
                session,
                exps["srm-running"],
                at=at(w2, 4),
                n_control=300,
                n_treatment=180,
                lift=0.0,
                seed=51,
            )
        ],
    }
    session.add(
        Amendment(
            experiment_id=exps["amended"].id,
            field="mde",
            old_value="0.05",
            new_value="0.04",
            reason="Finance asked for a finer MDE.",
            created_at=at(w3, 1),
        )
    )
    session.commit()
    return Scenario(
        weeks={"W0": w0, "W1": w1, "W2": w2, "W3": w3},
        experiments=exps,
        nodes={
            "Expansion": expansion,
            "Churn": churn,
            "Contraction": contraction,
            "Adoption": adoption,
        },
        teams={"growth": growth.id, "success": success.id},
        snapshots=snaps,
    )


#: What each week's sections must list, for a user who sees every team.
EXPECTED = {
    "W1": {
        "needs_decision": {"stopped-undecided", "decided-ship"},
        "changed": {"win-late", "decided-ship"},
        "alerts": {"amended"},
    },
    "W2": {
        "needs_decision": {"stopped-undecided", "other-team"},
        "changed": {"win-late", "decided-ship", "stopped-undecided", "srm-running", "other-team"},
        "alerts": {"amended", "srm-running"},
    },
    "W3": {
        "needs_decision": {"win-late", "stopped-undecided", "amended", "other-team"},
        "changed": {
            "win-late",
            "decided-ship",
            "stopped-undecided",
            "srm-running",
            "amended",
            "started-w3",
            "other-team",
        },
        "alerts": {"amended", "srm-running"},
    },
}
EXISTING = {
    "W1": {"win-late", "stopped-undecided", "decided-ship", "amended", "srm-running", "other-team"},
    "W2": {
        "win-late",
        "stopped-undecided",
        "decided-ship",
        "amended",
        "srm-running",
        "new-draft",
        "other-team",
    },
    "W3": {
        "win-late",
        "stopped-undecided",
        "decided-ship",
        "amended",
        "srm-running",
        "new-draft",
        "other-team",
        "started-w3",
    },
}


def sections(review) -> dict[str, set[str]]:
    return {
        name: {r.key for r in getattr(review, name)}
        for name in ("needs_decision", "changed", "alerts")
    }


# Thursday noon of 2026-W48: W46 and W47 are over, W48 is the running week.
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LAST = parse_week("2026-W48")


@pytest.fixture
def people(factory):
    return {
        "admin": factory.user("admin@review.test", "admin"),
        "growth_exp": factory.user("exp@review.test", "viewer", {"growth": "experimenter"}),
        "growth_viewer": factory.user("viewer@review.test", "viewer", {"growth": "viewer"}),
        "success_exp": factory.user("cs@review.test", "viewer", {"success": "experimenter"}),
    }


@pytest.fixture
def scenario(session, db_engine, people):
    yield build_scenario(session, LAST, owner=people["growth_exp"])
    session.rollback()


# ------------------------------------------------------------------------ weeks


@pytest.mark.parametrize("label", ["2026-W48", "2026-W01", "2026-W53", "2020-W53"])
def test_parse_week_accepts_iso_weeks(label):
    week = parse_week(label)
    assert week.label == label
    assert week.start.weekday() == 0 and week.end - week.start == timedelta(days=7)
    assert week.start.tzinfo is UTC


@pytest.mark.parametrize(
    "label",
    [
        "2025-W53",
        "2026-W00",
        "2026-W54",
        "2026-48",
        "2026-w48",
        "26-W48",
        "2026-W4",
        "0000-W01",
        "9999-W52",
        "",
        "2026-W48x",
        "\uff12\uff10\uff12\uff16-W48",
        "2026-W48\n",
    ],
)
def test_parse_week_refuses_anything_else(label):
    with pytest.raises(ValueError):
        parse_week(label)


def test_week_navigation_crosses_years():
    week = parse_week("2026-W01")
    assert week.previous.label == "2025-W52"
    assert parse_week("2026-W53").next.label == "2027-W01"
    assert week_of(date(2026, 11, 29)).label == "2026-W48"


# ----------------------------------------------------------------- the scenario


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_each_section_of_each_week_lists_exactly_the_right_experiments(
    session, scenario, people, name
):
    week = scenario.weeks[name]
    review = build_review(session, people["admin"], week.label, now=NOW)
    session.commit()
    assert sections(review) == EXPECTED[name]
    assert {r.key for r in review.rows} == EXISTING[name]
    assert review.frozen is (name != "W3")  # W3 is the running week


#: Headline verdicts of the scenario as each week's end saw them (read off the generated
#: data once and kept as literals).
VERDICTS = {
    "2026-W46": {
        "amended": "underpowered",
        "decided-ship": "win",
        "other-team": None,
        "srm-running": None,
        "stopped-undecided": "inconclusive",
        "win-late": "underpowered",
    },
    "2026-W47": {
        "amended": "underpowered",
        "decided-ship": "win",
        "new-draft": None,
        "other-team": None,
        "srm-running": "srm",
        "stopped-undecided": "inconclusive",
        "win-late": "underpowered",
    },
    "2026-W48": {
        "amended": "underpowered",
        "decided-ship": "win",
        "new-draft": None,
        "other-team": None,
        "srm-running": "srm",
        "started-w3": None,
        "stopped-undecided": "inconclusive",
        "win-late": "win",
    },
}


@pytest.mark.parametrize("week", sorted(VERDICTS))
def test_each_experiments_verdict_is_the_one_in_force_then(session, scenario, people, week):
    review = build_review(session, people["admin"], week, now=NOW)
    assert {r.key: r.verdict for r in review.rows} == VERDICTS[week]


def test_changes_name_what_happened_and_the_verdict_change(session, scenario, people):
    w3 = build_review(session, people["admin"], "2026-W48", now=NOW)
    rows = {r.key: r for r in w3.changed}
    win = rows["win-late"].review.to_json()
    assert (win["verdict_before"], win["verdict_now"]) == ("underpowered", "win")
    assert [c["kind"] for c in win["changes"]] == ["new_data"]
    assert "version 2" in win["changes"][0]["text"]
    assert [c["kind"] for c in rows["amended"].review.to_json()["changes"]] == ["amended"]
    assert "mde" in rows["amended"].review.to_json()["changes"][0]["text"]
    assert [c["kind"] for c in rows["started-w3"].review.to_json()["changes"]] == ["started"]
    assert [c["kind"] for c in rows["decided-ship"].review.to_json()["changes"]] == ["decided"]
    w2 = build_review(session, people["admin"], "2026-W47", now=NOW)
    win2 = next(r for r in w2.changed if r.key == "win-late").review.to_json()
    assert (win2["verdict_before"], win2["verdict_now"]) == (None, "underpowered")
    kinds = {r.key: [c["kind"] for c in r.review.to_json()["changes"]] for r in w2.changed}
    assert kinds["decided-ship"] == ["stopped", "decided"]


def test_reasons_and_alerts_say_why(session, scenario, people):
    w3 = build_review(session, people["admin"], "2026-W48", now=NOW)
    reasons = {r.key: r.review.to_json()["needs_decision"] for r in w3.needs_decision}
    assert reasons["win-late"][0].startswith("reached the required sample size")
    assert reasons["stopped-undecided"] == ["stopped without a decision"]
    assert reasons["amended"][0].startswith("passed its planned end")
    alerts = {r.key: [a["kind"] for a in r.review.to_json()["alerts"]] for r in w3.alerts}
    assert alerts == {"amended": ["past_end"], "srm-running": ["srm"]}
    w1 = build_review(session, people["admin"], "2026-W46", now=NOW)
    amended = next(r for r in w1.alerts if r.key == "amended").review.to_json()
    assert [a["kind"] for a in amended["alerts"]] == ["sample_size"]
    projection = amended["projection"]
    assert not projection["reaches"] and projection["projected"] < amended["required_n"]


def test_statuses_are_reconstructed_as_of_the_end_of_a_past_week(session, scenario, people):
    w1 = build_review(session, people["admin"], "2026-W46", now=NOW)
    status = {r.key: r.experiment.status for r in w1.rows}
    assert status["decided-ship"] == "stopped"  # decided only in W47
    assert status["stopped-undecided"] == "running"  # stopped only in W47
    row = next(r for r in w1.rows if r.key == "decided-ship")
    assert row.experiment.decision is None


def test_team_scoping_hides_another_teams_experiments(session, scenario, people):
    for name in ("W1", "W2", "W3"):
        review = build_review(session, people["growth_viewer"], scenario.weeks[name].label, now=NOW)
        expected = {section: keys - {"other-team"} for section, keys in EXPECTED[name].items()}
        assert sections(review) == expected
        assert "other-team" not in {r.key for r in review.rows}
        assert all(line["row"].key != "other-team" for line in review.portfolio)
    cs = build_review(session, people["success_exp"], "2026-W48", now=NOW)
    assert {r.key for r in cs.rows} == {"other-team"}


def test_branch_filter_keeps_the_subtree(session, scenario, people):
    expansion = scenario.nodes["Expansion"].id
    review = build_review(session, people["admin"], "2026-W48", branch_id=str(expansion), now=NOW)
    assert {r.key for r in review.rows} == {"win-late", "decided-ship", "srm-running"}
    assert review.branch == {"id": expansion, "name": "Expansion"}
    assert sections(review)["changed"] == {"win-late", "decided-ship", "srm-running"}
    with pytest.raises(NotFound):
        build_review(session, people["admin"], "2026-W48", branch_id="999999", now=NOW)
    with pytest.raises(ValidationFailed):
        build_review(session, people["admin"], "2026-W48", branch_id="x", now=NOW)


def test_date_range_review_is_read_only_and_covers_the_range(session, scenario, people):
    w1, w2 = scenario.weeks["W1"], scenario.weeks["W2"]
    review = build_review(
        session,
        people["admin"],
        "2026-W48",
        date_from=w1.start.date().isoformat(),
        date_to=w2.last_day.isoformat(),
        now=NOW,
    )
    assert review.mode == "range" and not review.editable and review.agenda == []
    # The range's changes: W1 and W2 only (not W0), as of the end of W2.
    assert sections(review)["changed"] == {
        "win-late",
        "decided-ship",
        "stopped-undecided",
        "srm-running",
        "other-team",
    }
    assert session.exec(select(ReviewMeeting)).all() == []  # a range is never frozen
    for bad in (
        {"date_from": "2026-13-01"},
        {"date_to": "yesterday"},
        {"date_from": "2026-11-20", "date_to": "2026-11-01"},
        {"date_from": "0001-01-01"},
        {"date_to": "9999-12-31"},
    ):
        with pytest.raises(ValidationFailed):
            build_review(session, people["admin"], "2026-W48", now=NOW, **bad)


def test_portfolio_is_sorted_by_branch_with_bh_across_it(session, scenario, people):
    review = build_review(session, people["admin"], "2026-W48", now=NOW)
    branches = [line["branch"] for line in review.portfolio]
    assert branches == sorted(branches, key=str.casefold)
    keys = {line["row"].key for line in review.portfolio}
    assert keys == {"win-late", "stopped-undecided", "decided-ship", "amended", "srm-running"}
    raw = [line["comparison"]["p_value"] for line in review.portfolio]
    # Independent: stats.bh_adjust over the same p-values, and its definition by hand.
    assert [line["p_value_bh"] for line in review.portfolio] == stats.bh_adjust(raw)
    m = len(raw)
    order = sorted(range(m), key=lambda i: raw[i])
    by_hand = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, raw[i] * m / rank)
        by_hand[i] = running
    assert [line["p_value_bh"] for line in review.portfolio] == pytest.approx(by_hand)


def test_driver_tree_summary_counts_and_ships(session, scenario, people):
    review = build_review(session, people["admin"], "2026-W47", now=NOW)
    summary = {s["branch"]: s for s in review.summary}
    assert summary["Expansion"]["counts"] == {"draft": 0, "running": 2, "stopped": 0, "decided": 1}
    assert summary["Churn"]["counts"] == {"draft": 0, "running": 1, "stopped": 2, "decided": 0}
    assert summary["Contraction"]["counts"] == {
        "draft": 1,
        "running": 0,
        "stopped": 0,
        "decided": 0,
    }
    # The ship was decided before the decision record kept the shipped variant, rollout
    # share and eligible base: it is listed, with no revenue figure and the reason
    # (experiments.impact; figures are tested in tests/experiments/test_impact_portfolio.py).
    assert summary["Expansion"]["shipped"] == ["decided-ship"]
    assert summary["Expansion"]["impact_raw"]["ships"] == 0
    assert summary["Churn"]["shipped"] == [] and summary["Churn"]["impact_raw"]["ships"] == 0
    assert "decided before the decision record" in review.impact.ships[0].missing
    # Before the decision (W46) nothing was shipped yet.
    early = build_review(session, people["admin"], "2026-W46", now=NOW)
    assert {s["branch"]: s for s in early.summary}["Expansion"]["shipped"] == []
    assert early.impact.ships == []


def test_ships_count_only_this_quarter(session, scenario, people):
    # Q1 2027: the November ship decision belongs to the previous quarter.
    later = datetime(2027, 1, 20, tzinfo=UTC)
    review = build_review(session, people["admin"], "2027-W03", now=later)
    assert review.quarter_start == date(2027, 1, 1)
    assert all(s["shipped"] == [] for s in review.summary) and review.impact.ships == []


# ----------------------------------------------------------------- freezing


def test_a_past_week_keeps_what_the_meeting_saw(session, scenario, people):
    before = build_review(session, people["admin"], "2026-W47", now=NOW)
    session.commit()
    frozen = sections(before)
    rows = {r.key: r for r in before.rows}
    # Later: the stopped experiment is decided, renamed, and gets new data.
    experiment = scenario.experiments["stopped-undecided"]
    experiment.status, experiment.decision, experiment.decided_at = "decided", "kill", NOW
    experiment.name = "Renamed later"
    session.add(experiment)
    add_data(
        session,
        scenario.experiments["amended"],
        at=NOW - timedelta(hours=1),
        n_control=500,
        n_treatment=500,
        lift=0.2,
        seed=99,
    )
    session.commit()
    after = build_review(session, people["admin"], "2026-W47", now=NOW + timedelta(days=30))
    assert after.frozen
    assert sections(after) == frozen
    again = {r.key: r for r in after.rows}
    assert again["stopped-undecided"].experiment.name == "Experiment stopped-undecided"
    assert again["amended"].verdict == rows["amended"].verdict
    # The running week sees the changes at once.
    live = build_review(session, people["admin"], "2026-W48", now=NOW + timedelta(hours=1))
    assert "stopped-undecided" not in sections(live)["needs_decision"]


def test_the_running_week_refreshes_then_freezes_when_it_ends(session, scenario, people):
    first = build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    assert not first.frozen and "win-late" in sections(first)["needs_decision"]
    experiment = scenario.experiments["win-late"]
    experiment.status, experiment.stopped_at = "stopped", NOW + timedelta(hours=1)
    experiment.decided_at, experiment.decision, experiment.status = (
        NOW + timedelta(hours=2),
        "ship",
        "decided",
    )
    session.add(experiment)
    session.commit()
    refreshed = build_review(session, people["admin"], "2026-W48", now=NOW + timedelta(hours=3))
    session.commit()
    assert "win-late" not in sections(refreshed)["needs_decision"]
    # After the week: frozen as last seen, whatever happens next.
    experiment.name = "Changed after the week"
    session.add(experiment)
    session.commit()
    after = build_review(session, people["admin"], "2026-W48", now=NOW + timedelta(days=10))
    assert after.frozen
    assert sections(after) == sections(refreshed)
    assert {r.experiment.name for r in after.rows if r.key == "win-late"} == {"Experiment win-late"}


def test_opening_a_week_twice_makes_one_meeting_and_one_item_per_experiment(
    session, db_engine, scenario, people
):
    build_review(session, people["admin"], "2026-W47", now=NOW)
    session.commit()
    with Session(db_engine) as other:
        build_review(other, people["growth_viewer"], "2026-W47", now=NOW)
        other.commit()
    meetings = session.exec(select(ReviewMeeting)).all()
    assert [m.iso_week for m in meetings] == ["2026-W47"]
    items = session.exec(select(ReviewItem)).all()
    assert len(items) == len(EXISTING["W2"])


def test_a_bad_week_is_not_found(session, people):
    with pytest.raises(NotFound):
        build_review(session, people["admin"], "2026-W99", now=NOW)


# ----------------------------------------------------------------- item edits


def _item(session, scenario, week: str, key: str) -> ReviewItem:
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).one()
    return session.exec(
        select(ReviewItem).where(
            ReviewItem.meeting_id == meeting.id,
            ReviewItem.experiment_id == scenario.experiments[key].id,
        )
    ).one()


def _form(version: int, **fields) -> dict[str, str]:
    return {
        "version": str(version),
        "note": "",
        "decision": "",
        "decision_rationale": "",
        **fields,
    }


def test_an_item_edit_is_saved_attributed_and_audited(session, scenario, people):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "stopped-undecided")
    who = people["growth_exp"]
    view = update_item(
        session,
        who,
        "2026-W48",
        item.id,
        _form(1, note="Looks flat."),
        now=NOW,
    )
    session.commit()
    assert view.item.version == 2 and view.item.updated_by_id == who.id
    assert view.item.note == "Looks flat."
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "review.update")).one()
    assert event.actor_id == who.id and event.entity_id == str(item.id)
    assert event.diff["note"] == ["", "Looks flat."]
    assert event.team_id == scenario.teams["growth"]


def test_a_stale_version_is_refused_with_a_clear_message(session, scenario, people):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "amended")
    update_item(session, people["admin"], "2026-W48", item.id, _form(1, note="first"), now=NOW)
    session.commit()
    with pytest.raises(
        Conflict, match=r"Not saved: .* changed this item .*version 1.*version 2.*Reload"
    ):
        update_item(
            session, people["growth_exp"], "2026-W48", item.id, _form(1, note="second"), now=NOW
        )
    session.rollback()
    session.refresh(item)
    assert item.note == "first" and item.version == 2


def test_edits_need_an_experimenter_in_the_items_team(session, scenario, people):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "amended")
    with pytest.raises(PermissionDenied):
        update_item(
            session, people["growth_viewer"], "2026-W48", item.id, _form(1, note="x"), now=NOW
        )
    with pytest.raises(NotFound):
        update_item(
            session, people["success_exp"], "2026-W48", item.id, _form(1, note="x"), now=NOW
        )
    with pytest.raises(NotFound):  # the item belongs to another week
        update_item(session, people["admin"], "2026-W47", item.id, _form(1, note="x"), now=NOW)
    with pytest.raises(NotFound):
        update_item(session, people["admin"], "2026-W48", 987654, _form(1, note="x"), now=NOW)
    session.rollback()
    session.refresh(item)
    assert item.version == 1 and item.note == ""


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"note": "x" * 10_001}, "note"),
        ({"note": "a\x00b"}, "note"),  # issue 12 item 3: a 500 on PostgreSQL before
        ({"decision": "maybe", "decision_rationale": "r"}, "decision"),
        ({"decision": "ship"}, "decision_rationale"),
    ],
)
def test_bad_item_fields_are_refused_field_by_field(session, scenario, people, fields, error):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "amended")
    with pytest.raises(ValidationFailed) as caught:
        update_item(session, people["admin"], "2026-W48", item.id, _form(1, **fields), now=NOW)
    assert error in caught.value.errors


@pytest.mark.parametrize("version", ["", "abc", "-1", None])
def test_a_missing_version_is_refused(session, scenario, people, version):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "amended")
    form = _form(1, note="x")
    form["version"] = version
    with pytest.raises(ValidationFailed) as caught:
        update_item(session, people["admin"], "2026-W48", item.id, form, now=NOW)
    assert "version" in caught.value.errors


def test_a_decision_in_the_meeting_decides_the_experiment(session, scenario, people):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    item = _item(session, scenario, "2026-W48", "win-late")  # running: stopped, then decided
    who = people["growth_exp"]
    update_item(
        session,
        who,
        "2026-W48",
        item.id,
        _form(1, decision="ship", decision_rationale="Won by 15 pts, no SRM.",
              shipped_variant="treatment", rollout_share="0.5", eligible_base="40000"),
        now=NOW,
    )
    session.commit()
    experiment = session.get(Experiment, scenario.experiments["win-late"].id)
    session.refresh(experiment)
    assert (experiment.status, experiment.decision, experiment.decided_by_id) == (
        "decided",
        "ship",
        who.id,
    )
    assert experiment.stopped_at is not None and experiment.decided_at is not None
    # Through the registry's lifecycle: stopped, then decided, each audited.
    stopped = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.stop")).one()
    decided = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.decide")).one()
    assert stopped.diff["status"] == ["running", "stopped"] and stopped.actor_id == who.id
    assert decided.diff["status"] == ["stopped", "decided"] and decided.actor_id == who.id
    # The decision cannot be changed or withdrawn from the meeting.
    with pytest.raises(ValidationFailed, match="cannot be changed"):
        update_item(
            session,
            who,
            "2026-W48",
            item.id,
            _form(2, decision="kill", decision_rationale="no"),
            now=NOW,
        )
    # Its notes can still be edited; the rationale is the experiment's record (reopen to
    # change it), so the item keeps what the decision said.
    view = update_item(
        session,
        who,
        "2026-W48",
        item.id,
        _form(2, decision="ship", decision_rationale="Won by 15 pts.", note="n"),
        now=NOW,
    )
    assert view.item.version == 3


def test_a_decision_conflicting_with_the_experiments_is_refused(session, scenario, people):
    build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    decided = _item(session, scenario, "2026-W48", "decided-ship")
    with pytest.raises(ValidationFailed, match="already decided as 'ship'"):
        update_item(
            session,
            people["admin"],
            "2026-W48",
            decided.id,
            _form(1, decision="kill", decision_rationale="r"),
            now=NOW,
        )
    session.rollback()
    # Recording the decision it already has is fine, and does not decide it again.
    update_item(
        session,
        people["admin"],
        "2026-W48",
        decided.id,
        _form(1, decision="ship", decision_rationale="Recorded."),
        now=NOW,
    )
    assert (
        session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.decide")).all() == []
    )
    draft = _item(session, scenario, "2026-W48", "new-draft")
    with pytest.raises(ValidationFailed, match="draft"):
        update_item(
            session,
            people["admin"],
            "2026-W48",
            draft.id,
            _form(1, decision="kill", decision_rationale="r"),
            now=NOW,
        )


def test_the_agenda_lists_flagged_and_noted_items_with_edit_rights(session, scenario, people):
    review = build_review(session, people["growth_viewer"], "2026-W48", now=NOW)
    session.commit()
    keys = {view.key for view in review.agenda}
    flagged = set().union(*EXPECTED["W3"].values()) - {"other-team"}
    assert keys == flagged
    assert not any(view.can_edit for view in review.agenda)
    item = _item(session, scenario, "2026-W48", "new-draft")
    update_item(
        session, people["admin"], "2026-W48", item.id, _form(1, note="Start it next week?"), now=NOW
    )
    session.commit()
    review = build_review(session, people["growth_exp"], "2026-W48", now=NOW)
    assert "new-draft" in {view.key for view in review.agenda}
    assert all(view.can_edit for view in review.agenda)


def test_an_agenda_item_view_carries_no_action_owner_fields():
    """Owners belong to actions (experiments.actions.ActionView); the item view dropped them,
    so building the agenda no longer loads every user and membership for nothing."""
    from dataclasses import fields

    from experiments.review_items import ItemView

    assert not {"owners", "owner_label"} & {f.name for f in fields(ItemView)}
