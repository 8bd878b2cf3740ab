"""The statements :class:`experiments.documents.Facts` sends, built once with an expanding
``ids`` list (issue 18): every experiment's variants, amendments, ready datasets and
snapshot heads are still read for more experiments than SQLite's old limit of 999 bound
parameters (the last experiment's rows included), in four statements, and an empty list
sends none. Runs on SQLite and, with ``DATABASE_URL=postgresql://…``, on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session, select

from experiments.documents import Facts
from experiments.models import Amendment, Experiment, Variant
from tests.factories import accounts_csv, root_node, store_accounts

MANY = 1_100  # more than 999


def _statements(engine) -> tuple[list[str], callable]:
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return sent, lambda: event.remove(engine, "before_cursor_execute", record)


def test_facts_reads_every_experiment_s_rows_past_999_ids(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        root = root_node(session)
        made = [Experiment(key=f"many-{i:04d}", name=f"Many {i}", node_id=root.id,
                           status="running") for i in range(MANY)]
        session.add_all(made)
        session.flush()
        session.add_all(Variant(experiment_id=e.id, key=key, weight=1.0,
                                is_control=key == "control", position=position)
                        for e in made for position, key in enumerate(("control", "treatment")))
        last = made[-1]
        session.add(Amendment(experiment_id=last.id, field="mde", old_value="0.02",
                              new_value="0.03", reason="wider"))
        session.flush()
        dataset = store_accounts(session, last, accounts_csv(seed=3, n=60))
        session.commit()

    with Session(db_engine) as session:
        experiments = session.exec(select(Experiment).order_by(Experiment.id)).all()
        assert len(experiments) == MANY
        sent, stop = _statements(db_engine)
        try:
            facts = Facts(session, experiments)
        finally:
            stop()
        assert len(sent) == 4, sent  # variants, amendments, datasets, snapshot heads
        assert all(len(facts.variants[e.id]) == 2 for e in experiments)
        assert [v.key for v in facts.variants[last.id]] == ["control", "treatment"]
        assert [a.new_value for a in facts.amendments[last.id]] == ["0.03"]
        assert [d.id for d in facts.datasets_of[last.id]] == [dataset.id]
        assert set(facts.datasets) == {dataset.id}
        assert set(facts.amendments) == {last.id}

        sent, stop = _statements(db_engine)
        try:
            empty = Facts(session, [])
        finally:
            stop()
        assert sent == []
        assert not empty.variants and not empty.datasets and not empty.snapshots
