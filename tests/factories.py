"""Builders of test data shared by the test modules: users and teams, driver nodes,
experiments with their variants, generated account CSVs and stored datasets.

Builders that take a ``session`` add and flush but leave the commit to the test (as
the services do); :class:`Factory` works on an engine and commits, for tests that
drive the app through a client. The fixtures ``factory``, ``admin`` and ``root`` in
``tests/conftest.py`` are made from these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlmodel import Session, select

from experiments.models import Dataset, DriverNode, Experiment, Team, User, Variant
from tests.helpers import TEST_PASSWORD

#: A variant given as its key, or as ``(key, weight)``.
VariantSpec = str | tuple[str, float]


# ----------------------------------------------------------------- users and teams


def make_team(session: Session, slug: str, name: str | None = None) -> Team:
    """The team ``slug`` (created if missing, without an audit event)."""
    from experiments.users import ensure_team

    return ensure_team(session, slug, name or slug.title())


def make_user(session: Session, email: str, role: str = "viewer",
              teams: Mapping[str, str] | None = None, *, password: str = TEST_PASSWORD) -> User:
    """A user with global ``role`` and ``{team slug: team role}`` memberships."""
    from experiments.users import create_user, set_team_role

    user = create_user(session, email, password, role=role)
    for slug, team_role in (teams or {}).items():
        set_team_role(session, user, make_team(session, slug), team_role, actor=None)
    return user


# ----------------------------------------------------------------- the driver tree


def root_node(session: Session) -> DriverNode:
    """The NRR root node every install has."""
    return session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()


def make_node(session: Session, name: str, *, parent: DriverNode | None = None,
              kind: str = "lever", team_id: int | None = None, **fields) -> DriverNode:
    """A driver node under ``parent`` (the root by default), inserted directly: no audit."""
    parent = parent or root_node(session)
    node = DriverNode(name=name, parent_id=parent.id, kind=kind, team_id=team_id, **fields)
    session.add(node)
    session.flush()
    return node


# ----------------------------------------------------------------- experiments


def team_clients(login_as, team: str = "growth", other: str = "success") -> dict:
    """Four signed-in clients around ``team``: two experimenters (``exp`` and ``mate``, for
    two-editor conflicts), a ``viewer``, and an experimenter of ``other`` (``other``: 404s)."""
    return {
        "exp": login_as("viewer", teams={team: "experimenter"}),
        "mate": login_as("viewer", teams={team: "experimenter"}),
        "viewer": login_as("viewer", teams={team: "viewer"}),
        "other": login_as("viewer", teams={other: "experimenter"}),
    }


def store_ledger_file(session: Session, path, actor: User | None = None) -> dict:
    """Import a ledger CSV written by :func:`tests.ledger_gen.write_csv` the service's way
    (dimensions plan, region, size), commit, and return the stored current figures."""
    from experiments.ledger import current_figures, import_ledger

    import_ledger(session, path, dimensions=("plan", "region", "size"), actor=actor,
                  filename="ledger.csv")
    session.commit()
    return current_figures(session)


def make_experiment(session: Session, key: str = "exp", *, status: str = "running",
                    variants: Sequence[VariantSpec] = ("control", "treatment"),
                    control: str | None = None, node: DriverNode | None = None,
                    name: str | None = None, **fields) -> Experiment:
    """An experiment under ``node`` (the root by default) with ``variants`` in order.

    The first variant is the control unless ``control`` names another; a variant given
    as a bare key weighs 1. ``fields`` are further :class:`Experiment` columns.
    """
    node = node or root_node(session)
    experiment = Experiment(key=key, name=name or key.title(), node_id=node.id, status=status,
                            **fields)
    session.add(experiment)
    session.flush()
    specs = [(v, 1.0) if isinstance(v, str) else v for v in variants]
    control = control or next((key for key, _ in specs), None)
    for position, (variant, weight) in enumerate(specs):
        session.add(Variant(experiment_id=experiment.id, key=variant, weight=weight,
                            is_control=variant == control, position=position))
    session.flush()
    return experiment


# ----------------------------------------------------------------- account data


def accounts_csv(seed: int = 1, n: int = 300, *, arms: Mapping | None = None,
                 prefix: str = "acct", with_segments: bool = True) -> bytes:
    """A generated account CSV (the demo generator, DESIGN §3), deterministic in ``seed``.

    ``arms`` is ``{variant: (n, Behaviour)}``; by default ``n`` control accounts and
    ``n`` treatment accounts that expand more often.
    """
    from experiments.demo import Behaviour, generate_accounts_csv

    if arms is None:
        arms = {"control": (n, Behaviour()), "treatment": (n, Behaviour(p_expand=0.3))}
    return generate_accounts_csv(np.random.default_rng(seed), dict(arms), prefix=prefix,
                                 with_segments=with_segments)


def store_accounts(session: Session, experiment: Experiment, data: bytes, *,
                   filename: str = "accounts.csv", actor: User | None = None) -> Dataset:
    """``data`` read against the experiment's variants and stored as its next version."""
    from experiments.accounts_csv import read_accounts
    from experiments.datasets import store_dataset

    variants = session.exec(select(Variant.key).where(Variant.experiment_id == experiment.id)
                            .order_by(Variant.position)).all()
    table = read_accounts(data, variants=list(variants))
    return store_dataset(session, experiment, table, filename=filename, actor=actor)


# ----------------------------------------------------------------- engine-bound


class Factory:
    """Creates users, teams and experiments in their own committed sessions (for tests
    that then drive the app through a client)."""

    def __init__(self, engine):
        self.engine = engine

    def user(self, email: str, role: str = "viewer", teams: Mapping[str, str] | None = None):
        with Session(self.engine, expire_on_commit=False) as session:
            user = make_user(session, email, role, teams)
            session.commit()
            return user

    def team(self, slug: str, name: str | None = None):
        with Session(self.engine, expire_on_commit=False) as session:
            team = make_team(session, slug, name)
            session.commit()
            return team

    def experiment(self, key: str = "exp", *, team: str | None = None, **options) -> Experiment:
        """:func:`make_experiment`, owned by the team ``team`` (a slug) when given."""
        with Session(self.engine, expire_on_commit=False) as session:
            if team is not None:
                options["team_id"] = make_team(session, team).id
            experiment = make_experiment(session, key, **options)
            session.commit()
            return experiment
