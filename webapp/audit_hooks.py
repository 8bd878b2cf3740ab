"""Audit events the web layer itself raises (denials), beside the services' own."""

from __future__ import annotations

from flask import request

from experiments.audit import record_event
from experiments.models import User
from webapp.db import get_session


def client_ip() -> str:
    return request.remote_addr or ""


def record_denied(user: User | None, reason: str) -> None:
    """Record an ``authz.denied`` event in its own transaction (the request is being refused)."""
    session = get_session()
    session.rollback()
    record_event(session, "authz.denied", actor=user, entity_type="route",
                 entity_id=(request.endpoint or "")[:64],
                 diff={"path": [None, request.path[:200]], "reason": [None, reason]}, ip=client_ip())
    session.commit()
