"""The client address the web layer records in audit rows (denials: ``webapp.errors``)."""

from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

from experiments.models import AuditEvent


def client_ip() -> str:
    return request.remote_addr or ""


def _stamp_address(session, flush_context, instances) -> None:
    """Fill in the client address of audit events a web request creates without one.

    Services record events without knowing about requests; this is where the web layer
    adds the address, so every event made through the site has one. Events made by the
    command line or a background job have no request and keep an empty address (the
    audit page says why).
    """
    if not has_request_context():
        return
    address = None
    for obj in session.new:
        if isinstance(obj, AuditEvent) and not obj.ip:
            if address is None:
                address = client_ip()[:64]
            obj.ip = address


def install() -> None:
    """Listen on every ORM session (idempotent)."""
    if not event.contains(OrmSession, "before_flush", _stamp_address):
        event.listen(OrmSession, "before_flush", _stamp_address)
