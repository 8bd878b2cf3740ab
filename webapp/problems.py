"""Errors of the JSON API as ``application/problem+json`` (RFC 9457).

Every error answer under :data:`API_PREFIX` is a problem document, including the ones the
central handlers of ``webapp.errors`` and ``webapp.db`` give (404, 405, 413, 422 of the
input guard, 500, 503): :func:`wants_problem` tells them which to give. ``type`` is
``about:blank`` for a plain HTTP status and otherwise a link into the API's docs page,
where each problem type is described.

References
----------
RFC 9457, Problem Details for HTTP APIs (2023), §3 (members), §3.1.1 (``about:blank``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from flask import Response, has_request_context, request

API_PREFIX = "/api/"
PROBLEM_MIME = "application/problem+json"
#: Where the problem types are described (anchors of the API docs page).
TYPE_BASE = "/api/v1/docs#problem-"


def wants_problem() -> bool:
    """Whether this request is an API request (its errors are problem documents)."""
    return has_request_context() and request.path.startswith(API_PREFIX)


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """One problem document; ``kind`` names a type described on the docs page."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{kind}" if kind else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if has_request_context():
        body["instance"] = request.path
    if errors is not None:
        body["errors"] = [dict(e) for e in errors]
    body.update(extensions)
    response = Response(json.dumps(body, ensure_ascii=False, default=str), status=status,
                        mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
