"""No lost updates: every write to an experiment, a driver node, a journey or a stage is
a compare-and-set on its version, also when two writers race (two threads, two
sessions, each past every check in Python before either writes).

Runs on SQLite and, with DATABASE_URL set, on PostgreSQL (the ``db`` mark).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, func, select

from experiments import journeys, registry, tree
from experiments.errors import ValidationFailed
from experiments.journeys import rename_stage, update_journey
from experiments.models import AuditEvent, DriverNode, Experiment, Journey, JourneyStage, User
from experiments.registry import decide_experiment, start_experiment, update_experiment
from experiments.tree import move_node, update_node
from experiments.versioning import StaleVersion
from tests.factories import make_experiment, make_node, make_user

RATIONALE = "Finance signed off."


@pytest.fixture
def people(db_engine) -> dict[str, int]:
    with Session(db_engine) as session:
        ids = {
            "ada": make_user(session, "ada@cas.test", "admin").id,
            "bob": make_user(session, "bob@cas.test", "admin").id,
        }
        for user_id, name in ((ids["ada"], "Ada"), (ids["bob"], "Bob")):
            session.get(User, user_id).name = name
        session.commit()
    return ids


def stopped_experiment(db_engine, key: str = "seat-nudge") -> int:
    with Session(db_engine) as session:
        experiment = make_experiment(session, key, status="stopped")
        session.commit()
        return experiment.version


def audit_count(db_engine, action: str) -> int:
    with Session(db_engine) as session:
        return session.exec(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        ).one()


def race(
    db_engine, monkeypatch, module, writes: list[Callable[[Session, User], Any]], actors: list[int]
) -> list[str]:
    """Run ``writes`` in parallel threads with their own sessions; each passes every check
    and then waits at a barrier inside the compare-and-set, so the SQL writes meet.

    Returns per write ``"ok"`` (committed) or ``"stale"`` (a :class:`StaleVersion`).
    """
    barrier = threading.Barrier(len(writes), timeout=20)
    real = module.compare_and_set

    def meeting(*args, **kwargs):
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "compare_and_set", meeting)
    outcomes: list[str | Exception] = [""] * len(writes)

    def run(index: int) -> None:
        with Session(db_engine) as session:
            try:
                writes[index](session, session.get(User, actors[index]))
                session.commit()
                outcomes[index] = "ok"
            except StaleVersion:
                session.rollback()
                outcomes[index] = "stale"
            except Exception as exc:  # noqa: BLE001  (surfaced below, with its type)
                session.rollback()
                outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert not errors, errors
    return outcomes


def test_simultaneous_ship_and_kill_with_one_version_decide_once(db_engine, monkeypatch, people):
    version = stopped_experiment(db_engine)

    def decide(decision: str):
        return lambda session, actor: decide_experiment(
            session,
            "seat-nudge",
            {"decision": decision, "rationale": RATIONALE, "version": str(version),
             "shipped_variant": "treatment", "rollout_share": "0.5", "eligible_base": "1000"},
            actor=actor,
        )

    outcomes = race(
        db_engine,
        monkeypatch,
        registry,
        [decide("ship"), decide("kill")],
        [people["ada"], people["bob"]],
    )
    assert sorted(outcomes) == ["ok", "stale"]
    winner = ("ship", "kill")[outcomes.index("ok")]
    with Session(db_engine) as session:
        experiment = session.exec(select(Experiment)).one()
        assert (experiment.status, experiment.decision) == ("decided", winner)
        assert experiment.version == version + 1
    assert audit_count(db_engine, "experiment.decide") == 1


def test_simultaneous_edits_of_one_version_keep_exactly_one(db_engine, monkeypatch, people):
    with Session(db_engine) as session:
        stage_id = session.exec(select(JourneyStage.id)).first()
        experiment = make_experiment(
            session,
            "seat-nudge",
            status="draft",
            stage_id=stage_id,
            hypothesis="If we nudge, NRR rises.",
            owner_id=people["ada"],
        )
        session.commit()
        form = {**registry.form_values(session, experiment), "version": "1"}

    def rename(name: str):
        return lambda session, actor: update_experiment(
            session, "seat-nudge", {**form, "name": name}, actor=actor
        )

    outcomes = race(
        db_engine,
        monkeypatch,
        registry,
        [rename("Ada's"), rename("Bob's")],
        [people["ada"], people["bob"]],
    )
    assert sorted(outcomes) == ["ok", "stale"]
    with Session(db_engine) as session:
        experiment = session.exec(select(Experiment)).one()
        assert experiment.name == ("Ada's", "Bob's")[outcomes.index("ok")]
        assert experiment.version == 2
    assert audit_count(db_engine, "experiment.update") == 1


def test_simultaneous_node_saves_keep_exactly_one(db_engine, monkeypatch, people):
    with Session(db_engine) as session:
        node_id = make_node(session, "Expansion").id
        session.commit()

    def save(name: str):
        return lambda session, actor: update_node(
            session, node_id, {"name": name, "kind": "lever", "version": "1"}, actor=actor
        )

    outcomes = race(
        db_engine,
        monkeypatch,
        tree,
        [save("Expansion (Ada)"), save("Expansion (Bob)")],
        [people["ada"], people["bob"]],
    )
    assert sorted(outcomes) == ["ok", "stale"]
    with Session(db_engine) as session:
        node = session.get(DriverNode, node_id)
        assert node.name == ("Expansion (Ada)", "Expansion (Bob)")[outcomes.index("ok")]
        assert node.version == 2
    assert audit_count(db_engine, "node.update") == 1


def test_simultaneous_stage_renames_keep_exactly_one(db_engine, monkeypatch, people):
    with Session(db_engine) as session:
        stage = session.exec(select(JourneyStage).order_by(JourneyStage.id)).first()
        stage_id, version = stage.id, stage.version

    def rename(name: str):
        return lambda session, actor: rename_stage(
            session, stage_id, {"name": name, "version": str(version)}, actor=actor
        )

    outcomes = race(
        db_engine,
        monkeypatch,
        journeys,
        [rename("welcome"), rename("first week")],
        [people["ada"], people["bob"]],
    )
    assert sorted(outcomes) == ["ok", "stale"]
    with Session(db_engine) as session:
        assert (
            session.get(JourneyStage, stage_id).name
            == ("welcome", "first week")[outcomes.index("ok")]
        )
    assert audit_count(db_engine, "stage.update") == 1


# ----------------------------------------------------------- one after the other


def test_a_second_save_on_the_same_version_names_who_changed_it(db_engine, people):
    with Session(db_engine) as session:
        node_id = make_node(session, "Churn").id
        session.commit()
    with Session(db_engine) as session:
        update_node(
            session,
            node_id,
            {"name": "Churn (Ada)", "kind": "lever", "version": "1"},
            actor=session.get(User, people["ada"]),
        )
        session.commit()
    with Session(db_engine) as session:
        with pytest.raises(StaleVersion) as caught:
            update_node(
                session,
                node_id,
                {"name": "Churn (Bob)", "kind": "lever", "version": "1"},
                actor=session.get(User, people["bob"]),
            )
        session.rollback()
    message = str(caught.value)
    assert message.startswith("The node 'Churn (Ada)' was changed by Ada on ")
    assert "(you saw version 1, it is now version 2)" in message
    assert (caught.value.changed_by, caught.value.current) == ("Ada", 2)
    with Session(db_engine) as session:
        assert session.get(DriverNode, node_id).name == "Churn (Ada)"


def test_journeys_and_moves_refuse_a_stale_version(db_engine, people):
    with Session(db_engine) as session:
        journey = session.exec(select(Journey)).first()
        first, second = make_node(session, "Expansion"), make_node(session, "Churn")
        session.commit()
        ids = journey.id, first.id, second.id
    with Session(db_engine) as session:
        ada = session.get(User, people["ada"])
        update_journey(session, ids[0], {"name": "Lifecycle", "version": "1"}, actor=ada)
        move_node(session, ids[1], ids[2], actor=ada, expected_version="1")
        session.commit()
    with Session(db_engine) as session:
        bob = session.get(User, people["bob"])
        with pytest.raises(StaleVersion, match="The journey 'Lifecycle' was changed by Ada"):
            update_journey(session, ids[0], {"name": "Customer", "version": "1"}, actor=bob)
        with pytest.raises(StaleVersion, match="you saw version 1, it is now version 2"):
            move_node(session, ids[1], ids[2], actor=bob, expected_version="1")


@pytest.mark.parametrize("raw", ["", " ", "abc", "1.5", "-2", "0", "1e3", "99999999999"])
def test_a_missing_or_non_integer_version_is_refused_before_anything_changes(
    db_engine, people, raw
):
    with Session(db_engine) as session:
        node_id = make_node(session, "Expansion").id
        stage_id = session.exec(select(JourneyStage.id)).first()
        make_experiment(session, "draft-one", status="draft")
        session.commit()
    with Session(db_engine) as session:
        ada = session.get(User, people["ada"])
        for write in (
            lambda: update_node(session, node_id, {"name": "X", "version": raw}, actor=ada),
            lambda: rename_stage(session, stage_id, {"name": "X", "version": raw}, actor=ada),
            lambda: tree.delete_node(session, node_id, actor=ada, expected_version=raw),
            lambda: start_experiment(session, "draft-one", actor=ada, expected_version=raw),
        ):
            try:
                write()
            except ValidationFailed as exc:
                assert "version" in exc.errors
            else:
                pytest.fail("a write without a usable version was accepted")
        session.rollback()
        assert session.get(DriverNode, node_id).name == "Expansion"
        assert session.exec(select(Experiment.status)).one() == "draft"
