"""A generated workspace of a given size, built through the services (issue 18).

``build_workspace(session, experiments=N, nodes=M, weeks=W)`` adds, to a migrated database
with its install defaults:

* three teams, an admin (``ADMIN_EMAIL`` / ``PASSWORD``) and one experimenter per team;
* a driver tree of ``nodes`` nodes under the root: a fifth of them levers, the rest
  drivers spread under the levers (depth 2–3);
* ``experiments`` experiments spread over the nodes and teams, started over the last
  ``weeks`` weeks: 70 % running, 10 % stopped, 10 % decided (ship or kill), 10 % drafts
  (every run of ten holds each status). Every
  non-draft one gets an account file of ``accounts`` rows per arm through
  :func:`experiments.imports.import_accounts` (the upload's service: versioned dataset,
  stored analysis snapshot, audit event), and every fourth a second version;
* with ``history=True`` the weekly review meetings of the past ``weeks`` weeks, each opened
  once as of its own end (so each holds a frozen row per experiment that existed then).

Used by ``benchmarks/bench_pages.py`` and ``tests/webapp/test_query_counts.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session, select

from experiments.demo import Behaviour, generate_accounts_csv
from experiments.imports import import_accounts
from experiments.models import DriverNode, Experiment, Team, User, Variant
from experiments.setup import ensure_defaults
from experiments.users import create_user, ensure_team, set_team_role

ADMIN_EMAIL = "bench-admin@example.com"
PASSWORD = "bench passphrase 123"
TEAMS = ("growth", "success", "pricing")


def _tree(session: Session, nodes: int, teams: list) -> list[DriverNode]:
    root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
    levers = max(1, nodes // 5)
    made: list[DriverNode] = []
    for i in range(nodes):
        if i < levers:
            parent, kind = root, "lever"
        else:
            # drivers under levers first, then under earlier drivers (depth 3)
            parent, kind = made[(i - levers) % len(made)], "driver"
        node = DriverNode(parent_id=parent.id, name=f"Node {i:04d}", kind=kind,
                          team_id=teams[i % len(teams)].id, leading_metric=f"metric {i}",
                          baseline=0.1, target=0.12, hypothesis=f"If node {i} moves, NRR rises.")
        session.add(node)
        session.flush()
        made.append(node)
    return made or [root]


def build_workspace(session: Session, *, experiments: int = 10, nodes: int = 50,
                    weeks: int = 4, accounts: int = 100, history: bool = False,
                    seed: int = 18, now: datetime | None = None, first: int = 0) -> dict:
    """Fill ``session``'s database (committed as it goes); returns a summary dict.

    With ``first`` > 0 only experiments ``first`` … ``experiments - 1`` are added, to a
    workspace this function built before (users, teams and tree are not made again).
    """
    now = now or datetime.now(UTC)
    if first:
        return _add_experiments(session, range(first, experiments), now=now, weeks=weeks,
                                accounts=accounts, seed=seed)
    ensure_defaults(session)
    admin = create_user(session, ADMIN_EMAIL, PASSWORD, role="admin", name="Bench Admin")
    teams = [ensure_team(session, slug, slug.title()) for slug in TEAMS]
    owners = []
    for team in teams:
        user = create_user(session, f"owner-{team.slug}@example.com", PASSWORD, role="viewer",
                           actor=admin)
        set_team_role(session, user, team, "experimenter", actor=admin)
        owners.append(user)
    tree = _tree(session, nodes, teams)
    session.commit()

    info = _add_experiments(session, range(experiments), now=now, weeks=weeks,
                            accounts=accounts, seed=seed)
    meetings = 0
    if history:
        from experiments.review import build_review
        from experiments.review_weeks import week_of

        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        for back in range(weeks, 0, -1):
            week = week_of((now - timedelta(weeks=back)).date())
            build_review(session, admin, week, now=week.end + timedelta(hours=1))
            session.commit()
            meetings += 1
    return {"experiments": experiments, "nodes": len(tree), "weeks": weeks,
            "meetings": meetings, "keys": info["keys"], "admin": ADMIN_EMAIL}


def _add_experiments(session: Session, indices: range, *, now: datetime, weeks: int,
                     accounts: int, seed: int) -> dict:
    admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
    teams = [session.exec(select(Team).where(Team.slug == slug)).one() for slug in TEAMS]
    owners = [session.exec(select(User).where(User.email == f"owner-{slug}@example.com")).one()
              for slug in TEAMS]
    tree = session.exec(select(DriverNode).where(DriverNode.parent_id.is_not(None))
                        .order_by(DriverNode.id)).all() or session.exec(select(DriverNode)).all()
    control, treatment = Behaviour(), Behaviour(p_expand=0.22)
    keys = []
    for i in indices:
        kind = i % 10  # every ten experiments hold each status
        status = ("draft" if kind == 9 else "decided" if kind == 8
                  else "stopped" if kind == 7 else "running")
        started = now - timedelta(weeks=weeks) + timedelta(days=(i * 3) % (7 * weeks))
        node = tree[i % len(tree)]
        team_index = i % len(teams)
        experiment = Experiment(
            key=f"exp-{i:04d}", name=f"Experiment {i:04d}", node_id=node.id,
            team_id=teams[team_index].id, owner_id=owners[team_index].id,
            hypothesis=f"If change {i} ships, NRR rises.", mde=0.04, alpha=0.05, power=0.8,
            planned_start=started.date(), planned_end=(started + timedelta(weeks=8)).date(),
            status="draft" if status == "draft" else "running", created_by_id=admin.id,
            started_at=None if status == "draft" else started)
        session.add(experiment)
        session.flush()
        for position, key in enumerate(("control", "treatment")):
            session.add(Variant(experiment_id=experiment.id, key=key, name=key.title(),
                                weight=1, is_control=position == 0, position=position))
        session.flush()
        if status != "draft":
            for version in range(2 if i % 4 == 0 else 1):
                data = generate_accounts_csv(
                    np.random.default_rng([seed, i, version]),
                    {"control": (accounts, control), "treatment": (accounts, treatment)},
                    prefix=f"e{i}v{version}")
                import_accounts(session, experiment, data, filename=f"exp-{i}-{version}.csv",
                                actor=owners[team_index])
        if status in ("stopped", "decided"):
            experiment.status = "stopped"
            experiment.stopped_at = started + timedelta(weeks=4)
        if status == "decided":
            experiment.status = "decided"
            experiment.decision = "ship" if (i // 10) % 2 else "kill"
            experiment.decision_rationale = "Bench decision."
            experiment.decided_at = started + timedelta(weeks=5)
            experiment.decided_by_id = owners[team_index].id
            experiment.decision_source = "experiment page"
            if experiment.decision == "ship":
                experiment.shipped_variant = "treatment"
                experiment.rollout_share = 1.0
                experiment.eligible_base_cents = 10_000_000
                experiment.eligible_base_source = "entered"
        session.add(experiment)
        session.commit()
        keys.append(experiment.key)
    return {"keys": keys}
