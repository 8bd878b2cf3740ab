"""The registry service: registering with per-field validation, listing with filters,
the lifecycle, the plan lock with amendments, optimistic locking and the JSON form."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.models import Amendment, AuditEvent, DriverNode, Experiment, JourneyStage, Variant
from experiments.registry import (
    ExperimentFilters,
    allowed_moves,
    amend_experiment,
    decide_experiment,
    experiment_page,
    form_values,
    get_experiment,
    list_experiments,
    register_experiment,
    start_experiment,
    stop_experiment,
    update_experiment,
)
from experiments.tree import create_node
from experiments.users import create_user, ensure_team, set_team_role
from tests.helpers import TEST_PASSWORD


@pytest.fixture(autouse=True)
def flatten_tree_afterwards(db_engine):
    """See tests/experiments/test_tree.py: SQLite refuses the shared teardown otherwise."""
    yield
    with db_engine.begin() as connection:
        connection.execute(text("UPDATE driver_node SET parent_id = NULL"))


@pytest.fixture
def world(session: Session):
    admin = create_user(
        session, "admin@registry.test", TEST_PASSWORD, role="admin", name="Ada Admin"
    )
    growth = ensure_team(session, "growth", "Growth")
    success = ensure_team(session, "success", "Success")
    maria = create_user(session, "maria@registry.test", TEST_PASSWORD, role="viewer", name="Maria")
    set_team_role(session, maria, growth, "experimenter", actor=None)
    root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
    lever = create_node(
        session, {"parent_id": root.id, "name": "Expansion", "kind": "lever"}, actor=admin
    )
    driver = create_node(
        session, {"parent_id": lever.id, "name": "Seats", "team_id": growth.id}, actor=admin
    )
    stages = session.exec(select(JourneyStage).order_by(JourneyStage.position)).all()
    session.commit()
    return {
        "admin": admin,
        "maria": maria,
        "growth": growth,
        "success": success,
        "root": root,
        "lever": lever,
        "driver": driver,
        "stages": stages,
    }


def plan(world, **overrides):
    data = {
        "key": "seat-nudge",
        "name": "Seat nudge",
        "node_id": str(world["driver"].id),
        "stage_id": str(world["stages"][2].id),
        "team_id": str(world["growth"].id),
        "owner_id": str(world["maria"].id),
        "hypothesis": "If we nudge admins, then NRR rises 2 points because they add seats sooner.",
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "planned_start": "2026-12-01",
        "planned_end": "2027-01-15",
        "variants": [
            {"key": "control", "name": "", "weight": "1"},
            {"key": "nudge", "name": "Nudge", "weight": "1"},
        ],
        "control": "0",
    }
    data.update(overrides)
    return data


def counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.exec(select(func.count()).select_from(m)).one()
        for m in (Experiment, Variant, Amendment, AuditEvent)
    )


# ---------------------------------------------------------------- registering


def test_register_stores_the_plan_variants_and_an_audit_event(session, world):
    experiment = register_experiment(session, plan(world), actor=world["maria"])
    assert experiment.status == "draft" and experiment.version == 1
    assert experiment.planned_start == date(2026, 12, 1)
    assert (experiment.mde, experiment.alpha, experiment.power) == (0.02, 0.05, 0.8)
    variants = session.exec(
        select(Variant).where(Variant.experiment_id == experiment.id).order_by(Variant.position)
    ).all()
    assert [(v.key, v.name, v.weight, v.is_control) for v in variants] == [
        ("control", "Control", 1.0, True),
        ("nudge", "Nudge", 1.0, False),
    ]
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.create")).one()
    assert event.entity_id == "seat-nudge" and event.actor_id == world["maria"].id
    assert event.diff["mde"] == [None, 0.02]
    assert event.diff["variants"] == [None, "control (Control): weight 1; nudge (Nudge): weight 1"]


BAD_INPUTS = [
    ({"key": ""}, "key", "is required"),
    ({"key": "Seat Nudge"}, "key", "lowercase letters"),
    ({"key": "seat--nudge"}, "key", "lowercase letters"),
    ({"key": "<script>alert(1)</script>"}, "key", "lowercase letters"),
    ({"key": "new"}, "key", "reserved"),
    ({"key": "k" * 65}, "key", "at most 64"),
    ({"name": ""}, "name", "is required"),
    ({"name": "n" * 201}, "name", "at most 200"),
    ({"hypothesis": ""}, "hypothesis", "is required"),
    ({"hypothesis": "h" * 10_001}, "hypothesis", "at most 10,000"),
    ({"hypothesis": "nul\x00byte"}, "hypothesis", "control characters"),
    ({"node_id": ""}, "node_id", "choose a driver node"),
    ({"node_id": "999999"}, "node_id", "unknown driver node"),
    ({"node_id": "1e3"}, "node_id", "unknown driver node"),
    ({"node_id": "9" * 30}, "node_id", "unknown driver node"),
    ({"stage_id": "999999"}, "stage_id", "unknown journey stage"),
    ({"stage_id": "-1"}, "stage_id", "unknown journey stage"),
    ({"team_id": "999999"}, "team_id", "unknown team"),
    ({"owner_id": "999999"}, "owner_id", "unknown owner"),
    ({"owner_id": ""}, "owner_id", "choose a owner"),
    ({"mde": "0"}, "mde", "greater than 0"),
    ({"mde": "-0.01"}, "mde", "greater than 0"),
    ({"mde": "2"}, "mde", "enter a fraction"),
    ({"mde": "two"}, "mde", "must be a number"),
    ({"mde": "inf"}, "mde", "finite"),
    ({"alpha": "0"}, "alpha", "greater than 0 and at most 0.5"),
    ({"alpha": "0.51"}, "alpha", "greater than 0 and at most 0.5"),
    ({"alpha": "5%"}, "alpha", "must be a number"),
    ({"power": "0.49"}, "power", "between 0.5 and 0.99"),
    ({"power": "0.995"}, "power", "between 0.5 and 0.99"),
    ({"power": ""}, "power", "is required"),
    ({"planned_end": "2026-11-30"}, "planned_end", "on or after the planned start"),
    ({"planned_start": "01/12/2026"}, "planned_start", "date such as"),
    ({"planned_end": "2026-02-30"}, "planned_end", "date such as"),
    ({"control": ""}, "control", "exactly one"),
    ({"control": ["0", "1"]}, "control", "not several"),
    ({"control": "7"}, "control", "one of the listed variants"),
    ({"variants": [{"key": "control", "weight": "1"}]}, "variants", "at least 2"),
    ({"variants": []}, "variants", "at least 2"),
    ({"variants": [{"key": f"v{i}", "weight": "1"} for i in range(11)]}, "variants", "at most 10"),
    (
        {"variants": [{"key": "control", "weight": "1"}, {"key": "control", "weight": "1"}]},
        "variants.1.key",
        "already the key of variant 1",
    ),
    (
        {"variants": [{"key": "control", "weight": "0"}, {"key": "b", "weight": "1"}]},
        "variants.0.weight",
        "greater than 0",
    ),
    (
        {"variants": [{"key": "control", "weight": "-1"}, {"key": "b", "weight": "1"}]},
        "variants.0.weight",
        "greater than 0",
    ),
    (
        {"variants": [{"key": "control", "weight": "heavy"}, {"key": "b", "weight": "1"}]},
        "variants.0.weight",
        "must be a number",
    ),
    (
        {"variants": [{"key": "control", "weight": ""}, {"key": "b", "weight": "1"}]},
        "variants.0.weight",
        "is required",
    ),
    (
        {"variants": [{"key": "control", "weight": "1"}, {"key": "", "weight": "1"}]},
        "variants.1.key",
        "is required",
    ),
    (
        {"variants": [{"key": "control", "weight": "1"}, {"key": "<b>", "weight": "1"}]},
        "variants.1.key",
        "lowercase letters",
    ),
    (
        {
            "variants": [
                {"key": "control", "weight": "1"},
                {"key": "b", "name": "x" * 201, "weight": "1"},
            ]
        },
        "variants.1.name",
        "at most 200",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "message"), BAD_INPUTS, ids=[f"{f}:{m}" for _, f, m in BAD_INPUTS]
)
def test_register_refuses_bad_input_per_field_and_stores_nothing(
    session, world, overrides, field, message
):
    before = counts(session)
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, plan(world, **overrides), actor=world["maria"])
    assert message in caught.value.errors.get(field, ""), caught.value.errors
    session.rollback()
    assert counts(session) == before


def test_duplicate_key_is_refused(session, world):
    register_experiment(session, plan(world), actor=world["maria"])
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, plan(world, name="Again"), actor=world["maria"])
    assert caught.value.errors["key"] == "'seat-nudge' is already the key of another experiment"


def test_team_rules_on_registering(session, world):
    maria = world["maria"]
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, plan(world, team_id=str(world["success"].id)), actor=maria)
    assert caught.value.errors["team_id"] == "unknown team"
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, plan(world, team_id=""), actor=maria)
    assert "choose one of your teams" in caught.value.errors["team_id"]
    outsider = create_user(session, "outsider@registry.test", TEST_PASSWORD, role="viewer")
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, plan(world, owner_id=str(outsider.id)), actor=maria)
    assert "member of the experiment's team" in caught.value.errors["owner_id"]


# ---------------------------------------------------------------- listing


def test_list_filters_by_status_team_owner_branch_stage_and_search(session, world):
    admin = world["admin"]
    a = register_experiment(session, plan(world), actor=admin)
    b = register_experiment(
        session,
        plan(
            world,
            key="lever-test",
            name="100% lever test",
            node_id=str(world["lever"].id),
            team_id="",
            owner_id=str(admin.id),
            stage_id=str(world["stages"][0].id),
        ),
        actor=admin,
    )
    start_experiment(session, b.key, actor=admin)

    def keys(**filters):
        return {e.key for e in list_experiments(session, admin, **filters)}

    assert keys() == {a.key, b.key}
    assert keys(status="running") == {b.key}
    assert keys(team_id=world["growth"].id) == {a.key}
    assert keys(owner_id=admin.id) == {b.key}
    assert keys(node_id=world["lever"].id) == {a.key, b.key}  # the branch includes the driver below
    assert keys(node_id=world["driver"].id) == {a.key}
    assert keys(stage_id=world["stages"][0].id) == {b.key}
    assert keys(q="NUDGE") == {a.key}
    assert keys(q="100%") == {b.key}
    assert keys(q="%") == {b.key}  # a literal percent sign, not a wildcard


def test_filters_from_a_query_string_drop_what_they_cannot_read():
    filters = ExperimentFilters.from_args(
        {
            "status": "bogus",
            "team_id": "x",
            "owner_id": "7",
            "node_id": "-2",
            "stage_id": "99999999999999",
            "q": "  seat\x00  nudge ",
        }
    )
    assert filters == ExperimentFilters(owner_id=7, q="seat nudge")
    assert filters.as_args() == {"owner_id": 7, "q": "seat nudge"}


def test_another_teams_experiment_is_not_found(session, world):
    register_experiment(session, plan(world), actor=world["admin"])
    stranger = create_user(session, "stranger@registry.test", TEST_PASSWORD, role="experimenter")
    set_team_role(session, stranger, world["success"], "experimenter", actor=None)
    assert list_experiments(session, stranger) == []
    with pytest.raises(NotFound):
        get_experiment(session, stranger, "seat-nudge")
    with pytest.raises(NotFound):
        start_experiment(session, "seat-nudge", actor=stranger)
    for bad_key in ("no-such", "Seat-Nudge", "bad\x00key", "x" * 100):
        with pytest.raises(NotFound):
            get_experiment(session, world["admin"], bad_key)


def test_a_team_viewer_may_read_but_not_run(session, world):
    register_experiment(session, plan(world), actor=world["admin"])
    viewer = create_user(session, "viewer@registry.test", TEST_PASSWORD, role="experimenter")
    set_team_role(session, viewer, world["growth"], "viewer", actor=None)
    assert get_experiment(session, viewer, "seat-nudge").key == "seat-nudge"
    with pytest.raises(PermissionDenied):
        start_experiment(session, "seat-nudge", actor=viewer)
    page = experiment_page(session, viewer, "seat-nudge")
    assert page.moves == [] and not page.can_edit


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_moves_forward_only_and_bumps_the_version(session, world):
    maria = world["maria"]
    experiment = register_experiment(session, plan(world), actor=maria)
    assert allowed_moves(experiment) == ["start"]
    with pytest.raises(Conflict, match="only a running experiment can be stopped"):
        stop_experiment(session, experiment.key, actor=maria)
    start_experiment(session, experiment.key, actor=maria, expected_version="1")
    assert (
        experiment.status == "running"
        and experiment.started_at is not None
        and experiment.version == 2
    )
    assert allowed_moves(experiment) == ["stop"]
    with pytest.raises(Conflict, match="only a draft experiment can be started"):
        start_experiment(session, experiment.key, actor=maria)
    stop_experiment(session, experiment.key, actor=maria, expected_version=2)
    assert experiment.status == "stopped" and experiment.stopped_at is not None
    decide_experiment(
        session,
        experiment.key,
        {"decision": "ship", "rationale": "Clear win.", "version": "3",
         "shipped_variant": "nudge", "rollout_share": "1", "eligible_base": "50000"},
        actor=maria,
    )
    assert (experiment.status, experiment.decision, experiment.decided_by_id) == (
        "decided",
        "ship",
        maria.id,
    )
    assert allowed_moves(experiment) == []
    actions = session.exec(
        select(AuditEvent.action)
        .where(AuditEvent.entity_id == experiment.key)
        .order_by(AuditEvent.id)
    ).all()
    assert actions == [
        "experiment.create",
        "experiment.start",
        "experiment.stop",
        "experiment.decide",
    ]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"decision": "", "rationale": "Because."}, "decision", "choose one of"),
        ({"decision": "celebrate", "rationale": "Because."}, "decision", "must be one of"),
        ({"decision": "kill", "rationale": "  "}, "rationale", "is required"),
        ({"decision": "kill", "rationale": "r" * 10_001}, "rationale", "at most 10,000"),
    ],
)
def test_a_decision_needs_a_known_outcome_and_a_rationale(session, world, data, field, message):
    experiment = register_experiment(session, plan(world), actor=world["admin"])
    start_experiment(session, experiment.key, actor=world["admin"])
    stop_experiment(session, experiment.key, actor=world["admin"])
    with pytest.raises(ValidationFailed) as caught:
        decide_experiment(session, experiment.key, data, actor=world["admin"])
    assert message in caught.value.errors[field]
    assert experiment.status == "stopped"


def test_a_stale_version_is_a_conflict_with_a_clear_message(session, world):
    experiment = register_experiment(session, plan(world), actor=world["admin"])
    update_experiment(
        session,
        experiment.key,
        {**plan(world, name="Renamed"), "version": "1"},
        actor=world["admin"],
    )
    with pytest.raises(Conflict) as caught:
        update_experiment(
            session,
            experiment.key,
            {**plan(world, name="Mine"), "version": "1"},
            actor=world["admin"],
        )
    message = str(caught.value)
    assert "changed by Ada Admin on " in message and " UTC " in message
    assert "you saw version 1, it is now version 2" in message
    with pytest.raises(Conflict):
        start_experiment(session, experiment.key, actor=world["admin"], expected_version="1")
    for missing in ("", "   ", "two", "1.0", "-1", "0"):
        with pytest.raises(ValidationFailed) as refused:
            start_experiment(
                session, experiment.key, actor=world["admin"], expected_version=missing
            )
        assert "version" in refused.value.errors
    assert experiment.name == "Renamed" and experiment.status == "draft"


# ---------------------------------------------------------------- the plan lock


def test_a_draft_changes_freely_including_its_variants(session, world):
    experiment = register_experiment(session, plan(world), actor=world["admin"])
    variants = [
        {"key": "control", "name": "Control", "weight": "2"},
        {"key": "nudge-b", "name": "", "weight": "1"},
        {"key": "nudge-c", "name": "", "weight": "1"},
    ]
    update_experiment(
        session,
        experiment.key,
        {**plan(world, mde="0.03", variants=variants, control="1"), "version": "1"},
        actor=world["admin"],
    )
    assert experiment.mde == 0.03 and experiment.version == 2
    rows = session.exec(
        select(Variant).where(Variant.experiment_id == experiment.id).order_by(Variant.position)
    ).all()
    assert [(v.key, v.weight, v.is_control) for v in rows] == [
        ("control", 2.0, False),
        ("nudge-b", 1.0, True),
        ("nudge-c", 1.0, False),
    ]
    assert session.exec(select(func.count()).select_from(Amendment)).one() == 0


def test_after_the_start_a_locked_field_needs_a_reason_and_becomes_an_amendment(session, world):
    maria = world["maria"]
    experiment = register_experiment(session, plan(world), actor=maria)
    start_experiment(session, experiment.key, actor=maria)
    locked_change = {**plan(world, mde="0.03", name="Seat nudge (EU)"), "version": "2"}
    with pytest.raises(ValidationFailed) as caught:
        update_experiment(session, experiment.key, locked_change, actor=maria)
    assert (
        "needs a reason" in caught.value.errors["reason"] and "mde" in caught.value.errors["reason"]
    )
    assert experiment.mde == 0.02 and experiment.name == "Seat nudge"
    update_experiment(
        session,
        experiment.key,
        {**locked_change, "reason": "Finance accepts 3 points."},
        actor=maria,
    )
    assert experiment.mde == 0.03 and experiment.name == "Seat nudge (EU)"
    (amendment,) = session.exec(select(Amendment)).all()
    assert (
        amendment.field,
        amendment.old_value,
        amendment.new_value,
        amendment.reason,
        amendment.actor_id,
    ) == ("mde", "0.02", "0.03", "Finance accepts 3 points.", maria.id)
    actions = session.exec(
        select(AuditEvent.action).where(AuditEvent.entity_id == experiment.key)
    ).all()
    assert "experiment.amend" in actions and "experiment.update" in actions


def test_open_fields_change_after_the_start_without_an_amendment(session, world):
    experiment = register_experiment(session, plan(world), actor=world["admin"])
    start_experiment(session, experiment.key, actor=world["admin"])
    update_experiment(
        session,
        experiment.key,
        plan(world, name="New name", planned_end="2027-02-01"),
        actor=world["admin"],
    )
    assert experiment.name == "New name"
    assert session.exec(select(func.count()).select_from(Amendment)).one() == 0


def test_amend_experiment_records_one_amendment_per_locked_field(session, world):
    admin = world["admin"]
    experiment = register_experiment(session, plan(world), actor=admin)
    with pytest.raises(ValidationFailed, match="edit it directly"):
        amend_experiment(session, experiment.key, {"mde": "0.03"}, reason="x", actor=admin)
    start_experiment(session, experiment.key, actor=admin)
    with pytest.raises(ValidationFailed) as caught:
        amend_experiment(session, experiment.key, {"mde": "0.03"}, reason="", actor=admin)
    assert caught.value.errors["reason"] == "is required"
    with pytest.raises(ValidationFailed) as caught:
        amend_experiment(session, experiment.key, {"name": "x"}, reason="why", actor=admin)
    assert "not a locked plan field" in caught.value.errors["name"]
    with pytest.raises(ValidationFailed, match="nothing in the locked plan changed"):
        amend_experiment(session, experiment.key, {"mde": "0.02"}, reason="why", actor=admin)
    with pytest.raises(ValidationFailed) as caught:
        amend_experiment(
            session,
            experiment.key,
            {"variants": [{"key": "control", "weight": 1}, {"key": "other", "weight": 1}]},
            reason="why",
            actor=admin,
        )
    assert "variant keys cannot be added, removed or renamed" in caught.value.errors["variants"]
    amendments = amend_experiment(
        session,
        experiment.key,
        {
            "alpha": "0.1",
            "variants": [
                {"key": "control", "name": "Control", "weight": "1"},
                {"key": "nudge", "name": "Nudge", "weight": "3"},
            ],
            "control": "1",
        },
        reason="Holdout shrinks to a quarter.",
        actor=admin,
        expected_version=2,
    )
    assert sorted(a.field for a in amendments) == ["alpha", "control", "variants"]
    by_field = {a.field: a for a in amendments}
    assert (by_field["control"].old_value, by_field["control"].new_value) == ("control", "nudge")
    assert by_field["variants"].new_value == "control (Control): weight 1; nudge (Nudge): weight 3"
    assert experiment.alpha == 0.1 and experiment.version == 3


def test_a_decided_experiment_is_closed(session, world):
    admin = world["admin"]
    experiment = register_experiment(session, plan(world), actor=admin)
    for move in (start_experiment, stop_experiment):
        move(session, experiment.key, actor=admin)
    decide_experiment(
        session, experiment.key, {"decision": "kill", "rationale": "No effect."}, actor=admin
    )
    with pytest.raises(ValidationFailed, match="decided and closed"):
        update_experiment(session, experiment.key, plan(world, name="Later"), actor=admin)
    with pytest.raises(ValidationFailed, match="decided and closed"):
        amend_experiment(session, experiment.key, {"mde": "0.05"}, reason="late", actor=admin)


def test_form_values_round_trip_without_changes(session, world):
    experiment = register_experiment(session, plan(world), actor=world["admin"])
    start_experiment(session, experiment.key, actor=world["admin"])
    values = form_values(session, experiment)
    update_experiment(session, experiment.key, values, actor=world["admin"])
    assert experiment.version == 2  # nothing changed, nothing bumped, no reason needed


def test_a_registered_plan_states_its_sigma_and_is_sequential_by_default(session, world):
    """Issue 13 items 1 and 5: the plan stores the sigma it is sized with and its source
    (none measured on this branch or stage yet: the assumption is flagged), and a new plan
    is analysed sequentially unless fixed horizon is chosen."""
    experiment = register_experiment(session, plan(world), actor=world["maria"])
    assert (experiment.sigma, experiment.sigma_source) == (0.25, "assumed — no measurement yet")
    assert experiment.sequential is True
    fixed = register_experiment(session, plan(world, key="fixed-one", analysis="fixed"),
                                actor=world["maria"])
    assert fixed.sequential is False
    with pytest.raises(ValidationFailed) as bad:
        register_experiment(session, plan(world, key="bad-one", analysis="weekly"),
                            actor=world["maria"])
    assert "analysis" in bad.value.errors
    session.rollback()
