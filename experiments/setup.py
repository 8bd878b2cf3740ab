"""What every install has from its first start: the default journey and the NRR root."""

from __future__ import annotations

from sqlmodel import Session, select

from experiments.models import DriverNode, Journey, JourneyStage

DEFAULT_JOURNEY = "Customer lifecycle"
DEFAULT_STAGES: tuple[str, ...] = ("onboarding", "adoption", "expansion", "renewal")
ROOT_NAME = "Net Revenue Retention"


def ensure_defaults(session: Session) -> None:
    """Create the default journey and the NRR root node when they are missing (idempotent)."""
    if session.exec(select(Journey).where(Journey.is_default)).first() is None:
        journey = Journey(
            name=DEFAULT_JOURNEY,
            description="The default customer journey every experiment can target.",
            is_default=True,
        )
        session.add(journey)
        session.flush()
        for position, stage in enumerate(DEFAULT_STAGES):
            session.add(JourneyStage(journey_id=journey.id, name=stage, position=position))
    if session.exec(select(DriverNode).where(DriverNode.kind == "root")).first() is None:
        session.add(
            DriverNode(
                name=ROOT_NAME,
                kind="root",
                leading_metric="NRR",
                hypothesis="NRR = (starting MRR + expansion − contraction − churn) / starting MRR.",
            )
        )
    session.flush()
