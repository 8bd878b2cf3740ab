"""A deterministic demo workspace: driver tree, journeys, teams, six experiments with data.

Account data is generated (seeded) to look like a B2B SaaS book: lognormal MRR,
a minority of accounts expanding, some contracting, a few churning outright.
Effects are planted so the demo shows every verdict: wins, a null, an SRM, an
underpowered test and a draft without data.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from sqlmodel import Session, func, select

from experiments.imports import import_accounts
from experiments.models import DriverNode, Experiment, JourneyStage, User, Variant, utcnow
from experiments.setup import ensure_defaults
from experiments.users import create_user, ensure_team, set_team_role

DEMO_ADMIN_EMAIL = "admin@nrrlab.example"
DEMO_ADMIN_PASSWORD = "nrrlab-demo-admin"  # noqa: S105 — a demo credential, printed by `make run`
DEMO_MEMBER_PASSWORD = "nrrlab-demo-member"  # noqa: S105
SEED = 20261128


@dataclass(frozen=True)
class Behaviour:
    """Per-account probabilities of one arm (monthly book movement)."""

    p_expand: float = 0.18
    expand_scale: float = 0.30
    p_contract: float = 0.10
    p_churn: float = 0.07


def generate_accounts_csv(
    rng: np.random.Generator,
    arms: dict[str, tuple[int, Behaviour]],
    *,
    prefix: str,
    with_segments: bool = True,
) -> bytes:
    """Account rows following DESIGN §3 for ``{variant: (n, behaviour)}``, shuffled."""
    rows = []
    for variant, (n, b) in arms.items():
        start = np.round(np.exp(rng.normal(np.log(600), 0.8, n)), 2).clip(20, 250_000)
        churn = rng.random(n) < b.p_churn
        contract = (~churn) & (rng.random(n) < b.p_contract)
        expand = (~churn) & (rng.random(n) < b.p_expand)
        expansion = np.where(
            expand, np.round(start * rng.lognormal(np.log(b.expand_scale), 0.6, n), 2), 0.0
        )
        contraction = np.where(contract, np.round(start * rng.uniform(0.1, 0.5, n), 2), 0.0)
        churned = np.where(churn, start, 0.0)
        segment = rng.choice(["SMB", "Mid-Market", "Enterprise"], size=n, p=[0.55, 0.33, 0.12])
        days = np.round(rng.gamma(2.0, 9.0, n), 1)
        reached = rng.random(n) < 0.8
        for i in range(n):
            rows.append(
                [
                    variant,
                    f"{start[i]:.2f}",
                    f"{expansion[i]:.2f}",
                    f"{contraction[i]:.2f}",
                    f"{churned[i]:.2f}",
                    segment[i],
                    f"{days[i]:.1f}" if reached[i] else "",
                ]
            )
    order = rng.permutation(len(rows))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [
        "account_id",
        "variant",
        "start_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
    ]
    if with_segments:
        header += ["segment", "days_to_value"]
    writer.writerow(header)
    for number, index in enumerate(order):
        row = rows[index]
        writer.writerow([f"{prefix}-{number:06d}", *(row if with_segments else row[:5])])
    return out.getvalue().encode()


def has_experiments(session: Session) -> bool:
    return session.exec(select(func.count()).select_from(Experiment)).one() > 0


def _node(session: Session, parent: DriverNode, name: str, kind: str, **fields) -> DriverNode:
    node = DriverNode(parent_id=parent.id, name=name, kind=kind, **fields)
    session.add(node)
    session.flush()
    return node


def seed(session: Session, *, admin_password: str = DEMO_ADMIN_PASSWORD) -> str:
    """Create the demo workspace in ``session`` (flushed; the caller commits). Returns a summary."""
    ensure_defaults(session)
    admin = session.exec(select(User).where(User.email == DEMO_ADMIN_EMAIL)).first()
    if admin is None:
        admin = create_user(
            session, DEMO_ADMIN_EMAIL, admin_password, role="admin", name="Demo Admin"
        )
    growth = ensure_team(session, "growth", "Growth")
    success = ensure_team(session, "customer-success", "Customer Success")
    people = {}
    for email, name, role, team in [
        ("maria@nrrlab.example", "Maria Okafor", "experimenter", growth),
        ("liam@nrrlab.example", "Liam Chen", "experimenter", success),
        ("priya@nrrlab.example", "Priya Raman", "analyst", growth),
        ("finance@nrrlab.example", "Jonas Berg", "viewer", None),
    ]:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = create_user(
                session, email, DEMO_MEMBER_PASSWORD, role="viewer", name=name, actor=admin
            )
        if team is not None:
            set_team_role(session, user, team, role, actor=admin)
        people[email] = user
    maria, liam = people["maria@nrrlab.example"], people["liam@nrrlab.example"]
    set_team_role(session, people["priya@nrrlab.example"], success, "analyst", actor=admin)

    root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
    root.owner_id = admin.id
    root.baseline, root.target = 1.02, 1.08
    expansion = _node(
        session,
        root,
        "Expansion",
        "lever",
        leading_metric="Expansion MRR / start MRR",
        baseline=0.06,
        target=0.09,
        owner_id=maria.id,
        team_id=growth.id,
        hypothesis=(
            "If more accounts grow into more seats and higher plans, then NRR rises "
            "because expansion outweighs losses."
        ),
    )
    contraction = _node(
        session,
        root,
        "Contraction",
        "lever",
        leading_metric="Contraction MRR / start MRR",
        baseline=0.02,
        target=0.015,
        owner_id=liam.id,
        team_id=success.id,
        hypothesis=(
            "If fewer accounts downgrade at renewal, then NRR rises because less "
            "revenue is given back."
        ),
    )
    churn = _node(
        session,
        root,
        "Churn",
        "lever",
        leading_metric="Logo churn rate",
        baseline=0.07,
        target=0.05,
        owner_id=liam.id,
        team_id=success.id,
        hypothesis=(
            "If fewer accounts leave, then NRR rises because churned MRR is the "
            "largest single loss."
        ),
    )
    _node(
        session,
        root,
        "Gross revenue retention",
        "lever",
        leading_metric="GRR",
        metric="grr",  # its actuals come from the revenue ledger (TTM GRR)
        baseline=0.91,
        target=0.93,
        owner_id=liam.id,
        team_id=success.id,
        hypothesis=(
            "GRR is the churn + contraction view: it shows retention without the help "
            "of expansion."
        ),
    )
    activation = _node(
        session,
        churn,
        "Activation",
        "driver",
        leading_metric="Accounts reaching first value in 14 days",
        baseline=0.55,
        target=0.70,
        owner_id=maria.id,
        team_id=growth.id,
        hypothesis=(
            "If we guide new accounts to first value faster, then NRR rises because "
            "activated accounts churn less."
        ),
    )
    adoption = _node(
        session,
        expansion,
        "Adoption",
        "driver",
        leading_metric="Weekly active seats / paid seats",
        baseline=0.48,
        target=0.60,
        owner_id=maria.id,
        team_id=growth.id,
        hypothesis=(
            "If more seats are used every week, then NRR rises because engaged teams "
            "expand and renew."
        ),
    )
    seats = _node(
        session,
        expansion,
        "Multi-seat expansion",
        "driver",
        leading_metric="Accounts adding seats",
        baseline=0.12,
        target=0.16,
        owner_id=maria.id,
        team_id=growth.id,
        hypothesis=(
            "If admins see when their team outgrows its seats, then NRR rises because "
            "they add seats sooner."
        ),
    )
    downgrade = _node(
        session,
        contraction,
        "Downgrade prevention",
        "driver",
        leading_metric="Downgrade requests saved",
        baseline=0.10,
        target=0.25,
        owner_id=liam.id,
        team_id=success.id,
        hypothesis=(
            "If CS offers a right-sized plan before a downgrade, then NRR rises "
            "because fewer accounts contract."
        ),
    )
    reactivation = _node(
        session,
        churn,
        "Reactivation",
        "driver",
        leading_metric="Dormant accounts reactivated",
        baseline=0.05,
        target=0.10,
        owner_id=liam.id,
        team_id=success.id,
        hypothesis=(
            "If we re-engage dormant accounts before renewal, then NRR rises because "
            "fewer of them churn."
        ),
    )

    stages = {s.name: s for s in session.exec(select(JourneyStage)).all()}
    today = date.today()
    base = Behaviour()
    specs = [
        # key, name, node, stage, team, owner, status, arms {variant: (n, behaviour, weight)},
        # decision
        (
            "onboarding-checklist",
            "Guided onboarding checklist",
            activation,
            "onboarding",
            growth,
            maria,
            "decided",
            {
                "control": (2000, base, 1),
                "checklist": (2000, Behaviour(p_churn=0.03, p_expand=0.22), 1),
            },
            "ship",
        ),
        (
            "seat-limit-nudge",
            "Seat-limit nudge for admins",
            seats,
            "expansion",
            growth,
            maria,
            "running",
            {
                "control": (2200, base, 1),
                "nudge": (2200, Behaviour(p_expand=0.22), 1),
                "nudge-discount": (2200, Behaviour(p_expand=0.32, expand_scale=0.28), 1),
            },
            None,
        ),
        (
            "downgrade-save-offer",
            "Right-size offer before downgrade",
            downgrade,
            "renewal",
            success,
            liam,
            "stopped",
            {"control": (2800, base, 1), "offer": (2800, base, 1)},
            None,
        ),
        (
            "winback-sequence",
            "Win-back email sequence",
            reactivation,
            "renewal",
            success,
            liam,
            "running",
            {"control": (1380, base, 1), "sequence": (1120, Behaviour(p_churn=0.06), 1)},
            None,
        ),
        (
            "weekly-digest",
            "Weekly adoption digest",
            adoption,
            "adoption",
            growth,
            maria,
            "running",
            {"control": (300, base, 1), "digest": (300, Behaviour(p_expand=0.20), 1)},
            None,
        ),
        (
            "annual-plan-upsell",
            "Annual plan upsell at renewal",
            expansion,
            "renewal",
            growth,
            maria,
            "draft",
            {"control": (0, base, 1), "annual-offer": (0, base, 1)},
            None,
        ),
    ]
    summary = []
    for offset, (key, name, node, stage, team, owner, status, arms, decision) in enumerate(specs):
        if session.exec(select(Experiment).where(Experiment.key == key)).first() is not None:
            continue
        started = utcnow() - timedelta(days=42 - offset * 5)
        experiment = Experiment(
            key=key,
            name=name,
            node_id=node.id,
            stage_id=stages[stage].id,
            team_id=team.id,
            owner_id=owner.id,
            hypothesis=node.hypothesis,
            mde=0.04,
            alpha=0.05,
            power=0.8,
            planned_start=today - timedelta(days=42 - offset * 5),
            planned_end=today + timedelta(days=14 + offset * 3),
            # Data goes in before the decision: a decided experiment refuses uploads.
            status="stopped" if status == "decided" else status,
            created_by_id=owner.id,
            started_at=None if status == "draft" else started,
            stopped_at=started + timedelta(days=35) if status in ("stopped", "decided") else None,
        )
        session.add(experiment)
        session.flush()
        for position, (variant, (_, _, weight)) in enumerate(arms.items()):
            session.add(
                Variant(
                    experiment_id=experiment.id,
                    key=variant,
                    name=variant.replace("-", " ").title(),
                    weight=weight,
                    is_control=position == 0,
                    position=position,
                )
            )
        session.flush()
        rows = sum(n for n, _, _ in arms.values())
        if rows:
            # One generator per experiment, so each demo result is independent of the others.
            rng = np.random.default_rng([SEED, offset])
            data = generate_accounts_csv(
                rng, {v: (n, b) for v, (n, b, _) in arms.items()}, prefix=key[:8]
            )
            # The same path as an upload: validation, versioned dataset, snapshot, audit event.
            import_accounts(session, experiment, data, filename=f"{key}.csv", actor=owner)
        if decision:
            experiment.status = "decided"
            experiment.decision = decision
            experiment.decision_rationale = (
                "Clear win on NRR with no SRM; rolling out to all new accounts."
            )
            experiment.decided_at = utcnow() - timedelta(days=2)
            experiment.decided_by_id = owner.id
            experiment.decision_source = "experiment page"
            if decision == "ship":  # the decision record (experiments.decisions)
                experiment.shipped_variant = list(arms)[1]
                experiment.rollout_share = 1.0
                experiment.eligible_base_cents = 25_000_000
                experiment.eligible_base_source = "entered"
            session.add(experiment)
            session.flush()
        summary.append(f"  {key:<22} {status:<8} {rows:>5} accounts")
    session.flush()
    return "demo data loaded:\n" + "\n".join(summary)
