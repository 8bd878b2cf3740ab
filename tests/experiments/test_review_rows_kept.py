"""Review rows kept by each experiment's own inputs (experiments.review_rows, issue 18 item 2):
after a committed write only the rows of the experiments it changed are computed again; every
input a row is computed from shows at once on the review and the dashboard (no stale row);
kept digests are those of the frozen copy's rule; threads share the store safely."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, build_workspace
from experiments import documents
from experiments import review_rows as module
from experiments.dashboard import dashboard
from experiments.demo import Behaviour, generate_accounts_csv
from experiments.imports import import_accounts
from experiments.models import (
    Amendment,
    DriverNode,
    Experiment,
    JourneyStage,
    Team,
    User,
    Variant,
    utcnow,
)
from experiments.review import build_review
from experiments.review_rows import every_review_row, review_rows, seen_digest
from experiments.review_weeks import Window, current_week

KEY = "exp-0001"


@pytest.fixture
def workspace(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=6, weeks=4, accounts=20)
        stage = session.exec(select(JourneyStage).order_by(JourneyStage.id)).first()
        experiment = _experiment(session)
        experiment.stage_id = stage.id
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        session.add(Amendment(experiment_id=experiment.id, field="mde", old_value="0.05",
                              new_value="0.04", reason="smaller effect", actor_id=admin.id,
                              created_at=utcnow() - timedelta(days=1)))
        session.add(experiment)
        session.commit()
    module._kept.clear()
    yield db_engine
    module._kept.clear()


@pytest.fixture
def built(monkeypatch):
    """Experiment ids whose documents were computed (not reused)."""
    calls: list[int] = []
    real = module.document_as_of

    def counting(facts, experiment, window):
        calls.append(experiment.id)
        return real(facts, experiment, window)

    monkeypatch.setattr(module, "document_as_of", counting)
    return calls


def _experiment(session, key=KEY) -> Experiment:
    return session.exec(select(Experiment).where(Experiment.key == key)).one()


def _window(now=None):
    now = now or utcnow()
    week = current_week(now)
    return Window(week.previous.start, week.end, now)


def _shape(rows):
    return sorted(({**r.to_json(), "as_of": None} for r in rows),
                  key=lambda data: data["experiment"]["key"])


def _kept_and_fresh(engine, window=None):
    """The rows as the review page gets them (kept) and as computed from scratch."""
    window = window or _window()
    with Session(engine) as session:
        kept = every_review_row(session, window, keep=True)
    with Session(engine) as session:
        fresh = review_rows(session, window, session.exec(select(Experiment)).all())
    return kept, fresh


def _commit(engine, change) -> None:
    with Session(engine) as session:
        change(session)
        session.commit()


def _set(key, **values):
    def change(session):
        experiment = _experiment(session, key)
        for name, value in values.items():
            setattr(experiment, name, value)
        session.add(experiment)
    return change


def _rename_node(session):
    node = session.get(DriverNode, _experiment(session).node_id)
    node.name = "Renamed lever"
    session.add(node)


def _rename_parent_node(session):
    node = session.get(DriverNode, _experiment(session).node_id)
    parent = session.get(DriverNode, node.parent_id)
    parent.name = "Renamed parent"
    session.add(parent)


def _rename_owner(session):
    owner = session.get(User, _experiment(session).owner_id)
    owner.name = "Renamed Owner"
    session.add(owner)


def _rename_team(session):
    team = session.get(Team, _experiment(session).team_id)
    team.name = "Renamed Team"
    session.add(team)


def _rename_stage(session):
    stage = session.get(JourneyStage, _experiment(session).stage_id)
    stage.name = "Renamed stage"
    session.add(stage)


def _rename_amendment_author(session):
    admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
    admin.name = "Renamed Author"
    session.add(admin)


def _move_node(session):
    experiment = _experiment(session)
    other = session.exec(select(DriverNode).where(DriverNode.id != experiment.node_id,
                                                  DriverNode.parent_id.is_not(None))).first()
    experiment.node_id = other.id
    session.add(experiment)


def _rename_variant(session):
    variant = session.exec(select(Variant).where(
        Variant.experiment_id == _experiment(session).id, Variant.key == "treatment")).one()
    variant.name = "Bigger nudge"
    session.add(variant)


def _amend(session):
    session.add(Amendment(experiment_id=_experiment(session).id, field="planned_end",
                          old_value="a", new_value="b", reason="late data",
                          created_at=utcnow() - timedelta(minutes=1)))


def _upload(session):
    experiment = _experiment(session)
    owner = session.get(User, experiment.owner_id)
    data = generate_accounts_csv(np.random.default_rng(7), {
        "control": (20, Behaviour()), "treatment": (20, Behaviour(p_expand=0.5))},
        prefix="again")
    import_accounts(session, experiment, data, filename="again.csv", actor=owner)


def _stop(session):
    experiment = _experiment(session)
    experiment.status, experiment.stopped_at = "stopped", utcnow() - timedelta(minutes=1)
    session.add(experiment)


def _decide(session):
    _stop(session)
    experiment = _experiment(session)
    experiment.status, experiment.decision = "decided", "kill"
    experiment.decided_at = utcnow() - timedelta(seconds=30)
    experiment.decision_rationale = "no effect"
    experiment.decided_by_id = experiment.owner_id
    session.add(experiment)


def _reopen(session):
    experiment = _experiment(session)
    experiment.reopened_at = utcnow() - timedelta(seconds=10)
    experiment.reopen_reason = "new evidence"
    session.add(experiment)


#: Every input of a row (experiments.review_rows._inputs), each written once, with what the
#: document (or its flags) must show after it.
EDITS = {
    "name": (_set(KEY, name="Renamed experiment"),
             lambda d: d["experiment"]["name"] == "Renamed experiment"),
    "hypothesis": (_set(KEY, hypothesis="A new hypothesis"),
                   lambda d: d["experiment"]["hypothesis"] == "A new hypothesis"),
    "plan": (_set(KEY, mde=0.07), lambda d: d["plan"]["mde"] == 0.07),
    "planned end": (_set(KEY, planned_end=(utcnow() - timedelta(days=2)).date()),
                    lambda d: any("planned end" in a["text"] for a in d["review"]["alerts"])),
    "variant": (_rename_variant,
                lambda d: "Bigger nudge" in [v["name"] for v in d["plan"]["variants"]]),
    "amendment": (_amend, lambda d: [a["field"] for a in d["amendments"]]
                  == ["mde", "planned_end"]),
    "upload": (_upload, lambda d: d["dataset"]["filename"] == "again.csv"),
    "stop": (_stop, lambda d: d["experiment"]["status"] == "stopped"),
    "decision": (_decide, lambda d: d["experiment"]["decision"] == "kill"),
    "reopened": (_reopen, lambda d: "reopened" in [c["kind"] for c in d["review"]["changes"]]),
    "node renamed": (_rename_node, lambda d: d["experiment"]["driver"]["name"]
                     == "Renamed lever"),
    "parent node renamed": (_rename_parent_node,
                            lambda d: "Renamed parent" in [n["name"]
                                                           for n in d["experiment"]["path"]]),
    "moved node": (_move_node, lambda d: True),
    "owner renamed": (_rename_owner, lambda d: d["experiment"]["owner"] == "Renamed Owner"),
    "team renamed": (_rename_team, lambda d: d["experiment"]["team"]["name"] == "Renamed Team"),
    "stage renamed": (_rename_stage,
                      lambda d: d["experiment"]["journey_stage"] == "Renamed stage"),
    "amendment author renamed": (_rename_amendment_author,
                                 lambda d: d["amendments"][0]["by"] == "Renamed Author"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_input_of_a_row_shows_at_once(workspace, edit):
    change, shows = EDITS[edit]
    kept, fresh = _kept_and_fresh(workspace)  # kept now
    assert _shape(kept) == _shape(fresh)
    _commit(workspace, change)
    kept, fresh = _kept_and_fresh(workspace)
    assert _shape(kept) == _shape(fresh)  # no stale row: the kept rows are the fresh ones
    row = next(d for d in _shape(kept) if d["experiment"]["key"] == KEY)
    assert shows(row), row
    assert all(r.digest == seen_digest(r.to_json()) for r in kept)


@pytest.mark.parametrize("edit", ["name", "owner renamed", "decision", "amendment"])
def test_an_edit_shows_on_the_review_and_the_dashboard_at_once(workspace, edit):
    change, shows = EDITS[edit]

    def pages():
        with Session(workspace, expire_on_commit=False) as session:
            admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
            review = build_review(session, admin, current_week().label, keep_rows=True)
            session.commit()
            board = dashboard(session, admin, today=utcnow().date(), keep_rows=True)
            return review, board

    pages()  # stores the week's items and keeps every row
    _commit(workspace, change)
    review, board = pages()
    data = next(d for d in review.to_dict()["experiments"] if d["experiment"]["key"] == KEY)
    assert shows(data), data
    seen = next(r for r in board.experiments if r.experiment.key == KEY) \
        if any(r.experiment.key == KEY for r in board.experiments) else None
    with Session(workspace) as session:  # the dashboard's rows are the fresh ones too
        window = Window(*_dashboard_window())
        fresh = review_rows(session, window, session.exec(select(Experiment)).all())
        kept = every_review_row(session, window, keep=True)
    assert _shape(kept) == _shape(fresh)
    if seen is not None:
        assert seen.experiment == next(r.experiment for r in fresh if r.key == KEY)


def _dashboard_window():
    from experiments.review_weeks import midnight

    now = utcnow()
    today = now.date()
    end = midnight(today + timedelta(days=1))
    return midnight(today - timedelta(days=7)), end, min(now, end)


def test_a_write_to_one_experiment_computes_one_row(workspace, built):
    window = _window()
    with Session(workspace) as session:
        every_review_row(session, window, keep=True)
    assert len(built) == 10
    built.clear()
    _commit(workspace, _set(KEY, hypothesis="Edited"))
    with Session(workspace) as session:
        rows = every_review_row(session, _window(), keep=True)
        assert built == [_experiment(session).id]
    assert "Edited" in {r.experiment.hypothesis for r in rows}


def test_a_write_that_touches_no_experiment_computes_no_row(workspace, built):
    with Session(workspace) as session:
        every_review_row(session, _window(), keep=True)
    built.clear()
    with Session(workspace) as session:  # a committed write elsewhere: the generation moves
        session.add(Team(slug="elsewhere", name="Elsewhere"))
        session.commit()
    with Session(workspace) as session:
        rows = every_review_row(session, _window(), keep=True)
    assert built == []
    assert len(rows) == 10


def test_a_node_rename_computes_only_the_rows_under_it(workspace, built):
    with Session(workspace) as session:
        rows = every_review_row(session, _window(), keep=True)
        node_id = _experiment(session).node_id
    under = {r.experiment.id for r in rows if node_id in r.experiment.path_ids}
    built.clear()
    _commit(workspace, _rename_node)
    with Session(workspace) as session:
        every_review_row(session, _window(), keep=True)
    assert set(built) == under and len(under) < 10


def test_a_moment_still_to_come_is_not_kept(workspace, built):
    """A live window reuses a row only when all its inputs' moments have happened: a row
    computed before an amendment's moment is not served once that moment has passed."""
    later = utcnow() + timedelta(hours=1)
    _commit(workspace, lambda session: session.add(Amendment(
        experiment_id=_experiment(session).id, field="alpha", old_value="0.05",
        new_value="0.01", reason="stricter", created_at=later)))
    with Session(workspace) as session:
        before = every_review_row(session, _window(), keep=True)
    assert [a.field for a in next(r for r in before if r.key == KEY).document.amendments] \
        == ["mde"]
    kept, fresh = _kept_and_fresh(workspace, _window(later + timedelta(minutes=1)))
    assert _shape(kept) == _shape(fresh)
    assert [a.field for a in next(r for r in kept if r.key == KEY).document.amendments] \
        == ["mde", "alpha"]


def test_rows_of_vanished_experiments_are_dropped_and_kept_rows_are_bounded(
        workspace, monkeypatch):
    with Session(workspace) as session:
        every_review_row(session, _window(), keep=True)
    assert module._by_inputs.rows() == 10
    with Session(workspace) as session:
        session.exec(text("DELETE FROM variant WHERE experiment_id = "
                          "(SELECT id FROM experiment WHERE key = 'exp-0009')"))
        session.exec(text("DELETE FROM experiment WHERE key = 'exp-0009'"))
        session.commit()
    with Session(workspace) as session:
        rows = every_review_row(session, _window(), keep=True)
    assert "exp-0009" not in {r.key for r in rows}
    assert module._by_inputs.rows() == 9
    monkeypatch.setattr(module, "KEPT_ROWS_PER_DATABASE", 12)
    week = current_week()
    with Session(workspace) as session:  # a second window: the first is dropped for it
        every_review_row(session, Window(week.start, week.end, utcnow()), keep=True)
    assert module._by_inputs.rows() == 9
    monkeypatch.setattr(module, "KEPT_ROWS_PER_DATABASE", 5)
    module._kept.clear()
    with Session(workspace) as session:  # more rows than the bound: none kept
        every_review_row(session, _window(), keep=True)
    assert module._by_inputs.rows() == 0


def test_kept_digests_are_the_frozen_copy_rule(workspace):
    """A kept row carries its digest: equal to seen_digest of its JSON on every kind of row
    (running, stopped, decided, draft, with and without analyses and amendments)."""
    for _ in range(2):  # computed, then reused after a write elsewhere
        kept, _fresh = _kept_and_fresh(workspace)
        assert {r.experiment.status for r in kept} == {"running", "stopped", "decided", "draft"}
        for row in kept:
            assert row.digest == seen_digest(row.to_json())
        _commit(workspace, lambda session: session.add(Team(slug=f"t{utcnow().timestamp()}",
                                                            name="x")))


def test_threads_share_kept_rows_safely(workspace):
    failures: list[BaseException] = []
    results: list[list] = []

    def view() -> None:
        try:
            for _ in range(3):
                with Session(workspace) as session:
                    results.append(_shape(every_review_row(session, _window(), keep=True)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=view) for _ in range(4)]
    for thread in threads:
        thread.start()
    for n in range(3):
        _commit(workspace, _set(f"exp-000{n}", hypothesis=f"edit {n}"))
    for thread in threads:
        thread.join()
    assert not failures
    kept, fresh = _kept_and_fresh(workspace)
    assert _shape(kept) == _shape(fresh)
    assert all(len(r) == 10 for r in results)


def test_experiments_are_read_as_columns_the_documents_use(workspace):
    """The kept path reads EXPERIMENT_COLUMNS rows: a document built from one equals one
    built from the model."""
    window = _window()
    with Session(workspace) as session:
        models = session.exec(select(Experiment)).all()
        columns = session.exec(select(*module.EXPERIMENT_COLUMNS)).all()
        facts = documents.Facts(session, models)
        for model, row in zip(models, columns, strict=True):
            assert documents.document_as_of(facts, row, window) \
                == documents.document_as_of(facts, model, window)

