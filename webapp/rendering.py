"""One template for a page and its htmx fragment."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request


def is_htmx() -> bool:
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_page_or_partial(
    page: str, partial: str, *, status: int = 200, **context: Any
) -> Response:
    """The full ``page`` for a normal request, only ``partial`` for an htmx one; ``Vary:
    HX-Request`` either way."""
    template = partial if is_htmx() else page
    response = make_response(render_template(template, **context), status)
    response.headers["Vary"] = "HX-Request"
    return response
