"""The one decision record (issue 17 item 2; issue 15 items 2 and 5): experiments.decisions.

One service decides and reopens for the experiment page and the review; a ship records the
shipped treatment, the rollout share and the eligible base; a failed guardrail must be named
in a ship's rationale; a decided experiment refuses data until it is reopened with a reason.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from experiments import decisions
from experiments.decision_models import DecisionEvent
from experiments.decisions import decide, decision_record, reopen, upload_refusal
from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.imports import ImportRefused, create_upload_job, import_accounts
from experiments.models import AnalysisSnapshot, AuditEvent, Dataset, Experiment, ReviewItem
from experiments.review import build_review, current_week, update_item
from experiments.review_items import item_views
from experiments.versioning import StaleVersion
from tests.factories import accounts_csv, make_experiment, make_team, make_user

SHIP = {"decision": "ship", "rationale": "Clear win, no SRM.", "shipped_variant": "treatment",
        "rollout_share": "0.5", "eligible_base": "125000"}


@pytest.fixture
def people(session):
    team = make_team(session, "growth")
    other = make_team(session, "other")
    made = {
        "exp": make_user(session, "exp@d.test", "viewer", {"growth": "experimenter"}),
        "analyst": make_user(session, "analyst@d.test", "viewer", {"growth": "analyst"}),
        "viewer": make_user(session, "viewer@d.test", "viewer", {"growth": "viewer"}),
        "outsider": make_user(session, "out@d.test", "viewer", {"other": "experimenter"}),
        "team": team, "other": other,
    }
    session.commit()
    return made


def stopped(session, people, key="exp", **fields) -> Experiment:
    experiment = make_experiment(session, key, status="stopped", team_id=people["team"].id,
                                 variants=("control", "treatment", "bold"), **fields)
    session.commit()
    return experiment


def add_snapshot(session, experiment, comparisons, verdict="win") -> AnalysisSnapshot:
    """A stored analysis (DESIGN §4/§4b shape) whose comparisons carry guardrails."""
    dataset = Dataset(experiment_id=experiment.id, version=1, sha256="a" * 64,
                      content_sha256="a" * 64, row_count=0)
    session.add(dataset)
    session.flush()
    snapshot = AnalysisSnapshot(
        experiment_id=experiment.id, dataset_id=dataset.id, verdict=verdict,
        result={"alpha": 0.05, "power": 0.8, "mde": 0.02, "control": "control", "srm": None,
                "arms": [], "warnings": [], "comparisons": comparisons})
    session.add(snapshot)
    session.commit()
    return snapshot


def comparison(variant, *, verdict="win", guardrails=()):
    return {"variant": variant, "uplift_abs": 0.03, "ci_abs": [0.01, 0.05], "p_value": 0.001,
            "verdict": verdict, "guardrails": list(guardrails)}


FAILED_GRR = {"metric": "grr", "margin": 0.01, "diff": -0.025, "p_value": 0.97, "status": "fail"}


# ------------------------------------------------------------------ ship fields


def test_a_ship_records_variant_share_and_base_with_history_and_audit(session, people):
    experiment = stopped(session, people)
    decide(session, experiment, {**SHIP, "rollout_share": "25%", "eligible_base": "125,000.50"},
           actor=people["exp"], source=decisions.SOURCE_PAGE, expected="1")
    session.commit()
    session.refresh(experiment)
    assert (experiment.status, experiment.decision, experiment.shipped_variant) == (
        "decided", "ship", "treatment")
    assert experiment.rollout_share == 0.25
    assert experiment.eligible_base_cents == 12_500_050  # exact cents, no float rounding
    assert experiment.eligible_base_source == "entered"
    assert experiment.decision_source == "experiment page"
    assert experiment.version == 2
    event = session.exec(select(DecisionEvent)).one()
    assert (event.action, event.decision, event.shipped_variant, event.rollout_share,
            event.eligible_base_cents, event.actor_id) == (
        "decide", "ship", "treatment", 0.25, 12_500_050, people["exp"].id)
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.decide")).one()
    assert audit.diff["shipped_variant"] == [None, "treatment"]
    assert audit.diff["rollout_share"] == [None, 0.25]
    assert audit.diff["status"] == ["stopped", "decided"]
    record = decision_record(session, experiment)
    assert record.to_json()["eligible_base_mrr"] == "125000.5"
    assert record.decided_by == "exp@d.test"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"shipped_variant": ""}, "shipped_variant", "names the variant that ships"),
        ({"shipped_variant": "control"}, "shipped_variant", "one of the treatments: treatment, "
                                                            "bold (not the control)"),
        ({"shipped_variant": "nope"}, "shipped_variant", "one of the treatments"),
        ({"rollout_share": ""}, "rollout_share", "needs the rollout's share"),
        ({"rollout_share": "0"}, "rollout_share", "above 0 and at most 1"),
        ({"rollout_share": "1.5"}, "rollout_share", "above 0 and at most 1"),
        ({"rollout_share": "150%"}, "rollout_share", "above 0 and at most 1"),
        ({"rollout_share": "-0.2"}, "rollout_share", "above 0 and at most 1"),
        ({"rollout_share": "half"}, "rollout_share", "such as 0.25, or 25%"),
        ({"rollout_share": "nan"}, "rollout_share", "such as 0.25"),
        ({"rollout_share": "0.5\x00"}, "rollout_share", "control characters"),
        ({"eligible_base": ""}, "eligible_base", "needs the eligible base"),
        ({"eligible_base": "0"}, "eligible_base", "more than 0"),
        ({"eligible_base": "12.345"}, "eligible_base", "at most 2 decimals"),
        ({"eligible_base": "1e6"}, "eligible_base", "amount of money"),
        ({"eligible_base": "9" * 20}, "eligible_base", "at most"),
        ({"rationale": " "}, "rationale", "is required"),
        ({"decision": "celebrate"}, "decision", "must be one of"),
    ],
)
def test_a_ship_without_what_ships_to_whom_is_refused_per_field(session, people, changes, field,
                                                                message, monkeypatch):
    monkeypatch.setattr(decisions, "ledger_start_mrr_cents", lambda session, **kw: None)
    experiment = stopped(session, people)
    with pytest.raises(ValidationFailed) as caught:
        decide(session, experiment, {**SHIP, **changes}, actor=people["exp"],
               source=decisions.SOURCE_PAGE, expected="1")
    assert message in caught.value.errors[field]
    session.rollback()
    session.refresh(experiment)
    assert (experiment.status, experiment.version) == ("stopped", 1)
    assert session.exec(select(DecisionEvent)).all() == []


def test_iterate_and_kill_need_no_ship_fields_and_store_none(session, people):
    experiment = stopped(session, people)
    decide(session, experiment, {"decision": "kill", "rationale": "Flat.",
                                 "shipped_variant": "treatment", "rollout_share": "0.5"},
           actor=people["exp"], source=decisions.SOURCE_PAGE)
    assert (experiment.decision, experiment.shipped_variant, experiment.rollout_share) == (
        "kill", None, None)


def test_the_eligible_base_defaults_from_the_revenue_ledger(session, people, monkeypatch):
    import experiments.ledger

    seen = {}

    def latest(session, *, dimension=None, value=None):
        seen["args"] = (dimension, value)
        return 98_765.43

    monkeypatch.setattr(experiments.ledger, "latest_start_mrr", latest)
    experiment = stopped(session, people)
    decide(session, experiment, {**SHIP, "eligible_base": ""}, actor=people["exp"],
           source=decisions.SOURCE_PAGE)
    assert experiment.eligible_base_cents == 9_876_543
    assert experiment.eligible_base_source == "revenue ledger"
    assert seen["args"] == (None, None)  # company-wide latest period
    # Typed in, the entered base wins over the ledger.
    other = stopped(session, people, key="exp-2")
    decide(session, other, {**SHIP, "eligible_base": "500"}, actor=people["exp"],
           source=decisions.SOURCE_PAGE)
    assert (other.eligible_base_cents, other.eligible_base_source) == (50_000, "entered")


def test_no_ledger_means_no_default(session):
    # The real hook on an empty ledger: nothing to default from.
    assert decisions.ledger_start_mrr_cents(session) is None


# ------------------------------------------------------------------ guardrails


def test_a_win_with_a_failed_guardrail_ships_only_with_a_rationale_naming_it(session, people):
    experiment = stopped(session, people)
    add_snapshot(session, experiment, [comparison("treatment", guardrails=[FAILED_GRR]),
                                       comparison("bold", verdict="inconclusive")])
    with pytest.raises(ValidationFailed) as caught:
        decide(session, experiment, SHIP, actor=people["exp"], source=decisions.SOURCE_PAGE)
    message = caught.value.errors["rationale"]
    assert "'treatment' failed its GRR (margin 1.00 pts, difference -2.50 pts) guardrail" \
        in message
    assert "needs a rationale that names it" in message
    session.rollback()
    session.refresh(experiment)
    assert experiment.status == "stopped"
    # Another treatment without a failed guardrail ships with any rationale.
    # The failed one ships once the rationale names the guardrail (any case, any wording).
    decide(session, experiment, {**SHIP, "rationale": "Accepting the gross-revenue-retention "
                                                      "dip: churn is seasonal."},
           actor=people["exp"], source=decisions.SOURCE_PAGE)
    assert experiment.decision == "ship"


@pytest.mark.parametrize(
    ("rationale", "ok"),
    [("GRR dropped but within plan", True), ("the grr guardrail failed; acceptable", True),
     ("Gross revenue retention fell", True), ("Looks fine", False),
     ("aggregate numbers fine", False)],  # 'aggregate' contains 'grr'? no — whole words only
)
def test_naming_a_guardrail_is_a_whole_word_match(rationale, ok):
    assert decisions.mentions_guardrail(rationale, "grr") is ok


def test_a_failed_logo_churn_guardrail_and_passed_ones(session, people):
    experiment = stopped(session, people)
    logo = {"metric": "logo_churn", "margin": 0.01, "diff": 0.03, "p_value": 0.99,
            "status": "fail"}
    passed = {**FAILED_GRR, "status": "pass"}
    add_snapshot(session, experiment, [comparison("treatment", guardrails=[passed, logo])])
    with pytest.raises(ValidationFailed, match="logo churn"):
        decide(session, experiment, {**SHIP, "rationale": "GRR is fine."}, actor=people["exp"],
               source=decisions.SOURCE_PAGE)
    session.rollback()
    decide(session, experiment, {**SHIP, "rationale": "Logo churn rose among tiny accounts."},
           actor=people["exp"], source=decisions.SOURCE_PAGE)
    assert experiment.decision == "ship"


# ------------------------------------------------------------------ reopening and uploads


def test_reopen_needs_a_reason_clears_the_record_and_keeps_the_history(session, people):
    experiment = stopped(session, people)
    decide(session, experiment, SHIP, actor=people["exp"], source=decisions.SOURCE_PAGE)
    session.commit()
    for bad, message in (("", "say why"), ("x" * 10_001, "at most 10,000"),
                         ("late\x1bdata", "control characters")):
        with pytest.raises(ValidationFailed) as caught:
            reopen(session, experiment, {"reason": bad}, actor=people["exp"], expected="2")
        assert message in caught.value.errors["reason"]
        session.rollback()
    reopen(session, experiment, {"reason": "Late renewals arrived."}, actor=people["exp"],
           expected="2")
    session.commit()
    session.refresh(experiment)
    assert (experiment.status, experiment.decision, experiment.shipped_variant,
            experiment.rollout_share, experiment.eligible_base_cents) == (
        "stopped", None, None, None, None)
    assert experiment.reopen_reason == "Late renewals arrived."
    assert experiment.reopened_by_id == people["exp"].id
    history = [(e.action, e.decision) for e in session.exec(
        select(DecisionEvent).order_by(DecisionEvent.id)).all()]
    assert history == [("decide", "ship"), ("reopen", "ship")]
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.reopen")).one()
    assert audit.diff["reason"] == [None, "Late renewals arrived."]
    assert audit.diff["decision"] == ["ship", None]
    # Not decided any more: nothing to reopen.
    with pytest.raises(Conflict, match="not decided"):
        reopen(session, experiment, {"reason": "again"}, actor=people["exp"])
    # And it can be decided anew.
    decide(session, experiment, {"decision": "iterate", "rationale": "Rerun with the new data."},
           actor=people["exp"], source=decisions.SOURCE_PAGE)
    assert experiment.decision == "iterate"


def test_only_experimenters_of_the_team_decide_or_reopen(session, people):
    experiment = stopped(session, people)
    for who in ("analyst", "viewer"):
        with pytest.raises(PermissionDenied):
            decide(session, experiment, SHIP, actor=people[who], source=decisions.SOURCE_PAGE)
    with pytest.raises(NotFound):  # another team's experiment looks absent
        decide(session, experiment, SHIP, actor=people["outsider"], source=decisions.SOURCE_PAGE)
    decide(session, experiment, {"decision": "kill", "rationale": "r"}, actor=people["exp"],
           source=decisions.SOURCE_PAGE)
    with pytest.raises(PermissionDenied):
        reopen(session, experiment, {"reason": "r"}, actor=people["analyst"])
    with pytest.raises(NotFound):
        reopen(session, experiment, {"reason": "r"}, actor=people["outsider"])


def test_uploads_after_a_decision_are_refused_until_it_is_reopened(session, people):
    experiment = stopped(session, people)
    data = accounts_csv(seed=3, n=40, arms=None)
    decide(session, experiment, {"decision": "kill", "rationale": "Flat."}, actor=people["exp"],
           source=decisions.SOURCE_PAGE)
    session.commit()
    message = upload_refusal(experiment)
    assert message is not None and "reopen the decision with a reason" in message
    with pytest.raises(ImportRefused, match="reopen the decision with a reason"):
        import_accounts(session, experiment, data, filename="late.csv", actor=people["analyst"])
    with pytest.raises(ImportRefused, match="was decided \\(kill on "):
        create_upload_job(session, experiment, filename="late.csv", actor=people["analyst"])
    session.rollback()
    assert session.exec(select(Dataset)).all() == []
    reopen(session, experiment, {"reason": "Late data."}, actor=people["exp"])
    session.commit()
    assert upload_refusal(experiment) is None
    report = import_accounts(session, experiment, data, filename="late.csv",
                             actor=people["analyst"])
    assert report.rows == 80 and not report.duplicate


# ------------------------------------------------------------------ one record, one conflict


def test_two_people_deciding_at_once_get_one_conflict(session, people):
    experiment = stopped(session, people)
    # Both opened the page at version 1: the first one's ship wins ...
    decide(session, experiment, SHIP, actor=people["exp"], source=decisions.SOURCE_PAGE,
           expected="1")
    session.commit()
    # ... the second one's kill is one conflict naming the first, and changes nothing.
    with pytest.raises(StaleVersion) as caught:
        decide(session, experiment, {"decision": "kill", "rationale": "No."},
               actor=people["exp"], source=decisions.review_source("2026-W48"), expected="1")
    assert "you saw version 1" in str(caught.value) and "it is now version 2" in str(caught.value)
    session.rollback()
    session.refresh(experiment)
    assert (experiment.decision, experiment.version) == ("ship", 2)
    assert len(session.exec(select(DecisionEvent)).all()) == 1


def _review_item(session, experiment) -> ReviewItem:
    return session.exec(select(ReviewItem).where(ReviewItem.experiment_id == experiment.id)).one()


def test_a_decision_in_the_review_is_the_experiments_record_and_the_other_way(session, people):
    week = current_week().label
    in_review = stopped(session, people, key="in-review")
    on_page = stopped(session, people, key="on-page")
    build_review(session, people["exp"], week)
    session.commit()
    item = _review_item(session, in_review)
    view = update_item(session, people["exp"], week, item.id, {
        "version": "1", "note": "", "decision": "ship", "decision_rationale": "Won.",
        "shipped_variant": "bold", "rollout_share": "1", "eligible_base": "2000",
        "experiment_version": "1"})
    session.commit()
    session.refresh(in_review)
    assert (in_review.decision, in_review.shipped_variant, in_review.decision_source) == (
        "ship", "bold", f"review {week}")
    assert view.to_json()["decision_record"]["shipped_variant"] == "bold"
    assert decision_record(session, in_review).rationale == "Won."
    # Decided on the experiment page: the review item shows the same record.
    decide(session, on_page, {"decision": "iterate", "rationale": "Try a bolder copy."},
           actor=people["exp"], source=decisions.SOURCE_PAGE)
    session.commit()
    other = _review_item(session, on_page)
    shown = item_views(session, people["exp"], [(other, None)])[0].to_json()
    assert (shown["decision"], shown["decision_rationale"]) == ("iterate", "Try a bolder copy.")
    assert shown["decision_record"]["source"] == "experiment page"
    # The review cannot overwrite it with another decision; it names the control to use.
    with pytest.raises(ValidationFailed) as caught:
        update_item(session, people["exp"], week, other.id, {
            "version": "1", "note": "", "decision": "kill", "decision_rationale": "r"})
    assert "reopen it with a reason on the experiment page" in caught.value.errors["decision"]
    session.rollback()
    # A stale review form (it saw the experiment before the page decided it): one 409.
    with pytest.raises(StaleVersion):
        update_item(session, people["exp"], week, other.id, {
            "version": "1", "note": "", "decision": "kill", "decision_rationale": "r",
            "experiment_version": "1"})
    session.rollback()


def test_review_ship_errors_use_the_review_field_names(session, people):
    week = current_week().label
    experiment = stopped(session, people)
    add_snapshot(session, experiment, [comparison("treatment", guardrails=[FAILED_GRR])])
    build_review(session, people["exp"], week)
    session.commit()
    item = _review_item(session, experiment)
    with pytest.raises(ValidationFailed) as caught:
        update_item(session, people["exp"], week, item.id, {
            "version": "1", "decision": "ship", "decision_rationale": "Ship it.",
            "shipped_variant": "treatment", "rollout_share": "2", "eligible_base": "10"})
    errors = caught.value.errors
    assert "failed its GRR" in errors["decision_rationale"]
    assert "above 0 and at most 1" in errors["rollout_share"]
    assert "rationale" not in errors


def test_old_rows_decided_before_the_record_read_with_empty_ship_fields(session, people):
    experiment = make_experiment(session, "old", status="decided", decision="ship",
                                 decision_rationale="Shipped in 2025.", team_id=people["team"].id)
    session.commit()
    record = decision_record(session, experiment)
    assert record.decided and record.shipped_variant is None and record.rollout_share is None
    assert record.to_json()["eligible_base_mrr"] is None


def test_a_reopening_is_listed_as_a_change_in_the_review(session, people):
    experiment = stopped(session, people)
    decide(session, experiment, {"decision": "kill", "rationale": "Flat."}, actor=people["exp"],
           source=decisions.SOURCE_PAGE)
    reopen(session, experiment, {"reason": "Late renewals arrived."}, actor=people["exp"])
    session.commit()
    review = build_review(session, people["exp"], current_week().label)
    row = next(r for r in review.changed if r.key == "exp")
    reopened = [c for c in row.review.changes if c.kind == "reopened"]
    assert [(c.text, c.reason) for c in reopened] == [("decision reopened",
                                                       "Late renewals arrived.")]
    assert "stopped without a decision" in row.review.needs_decision
