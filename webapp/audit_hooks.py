"""The client address the web layer records in audit rows (denials: ``webapp.errors``)."""

from __future__ import annotations

from flask import request


def client_ip() -> str:
    return request.remote_addr or ""
