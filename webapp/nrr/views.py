"""The NRR page: the company's retention from the stored ledger figures, and its exports.

| method | URL                     | role   | view        |
|--------|-------------------------|--------|-------------|
| GET    | /nrr?period=&dimension= | viewer | index       |
| GET    | /nrr/dimension/<name>   | viewer | dimension   |
| GET    | /nrr.csv                | viewer | export_csv  |
| GET    | /nrr.json               | viewer | export_json |
| GET    | /nrr/print              | viewer | printable   |

The upload and the ledger's versions (``/nrr/upload``, ``/nrr/versions``) are the
``ledger`` blueprint's. Changing the period or dimension is a plain GET form; htmx
swaps ``#nrr-page`` and pushes the URL, so every view can be bookmarked.
"""

from __future__ import annotations

import base64
import hashlib

from flask import Blueprint, Response, abort, request

from experiments.errors import ValidationFailed
from experiments.nrr_export import export_nrr, print_style
from experiments.nrr_page import nrr_page
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.downloads import file_response
from webapp.page_cache import cached_page
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("nrr", __name__)


def _missing(exc: ValidationFailed):
    """A dimension, period or ledger that is not there: 404 with the reason (not a denial)."""
    abort(404, "; ".join(exc.errors.values()))


def _page(dimension: str | None):
    try:
        view = nrr_page(get_session(), acting_user(), dimension=dimension,
                        period=request.args.get("period") or None)
    except ValidationFailed as exc:
        _missing(exc)
    return render_page_or_partial("nrr/index.html", "nrr/_page.html", view=view)


@bp.route("/nrr")
@allow("viewer")
@cached_page
def index():
    """The NRR page (``?dimension=`` adds a breakdown, ``?period=`` picks the period)."""
    return _page(request.args.get("dimension") or None)


@bp.route("/nrr/dimension/<name>")
@allow("viewer")
def dimension(name: str):
    """The NRR page broken down by one declared dimension."""
    return _page(name)


def _download(fmt: str, *, inline: bool = False) -> Response:
    session = get_session()
    try:
        export = export_nrr(session, acting_user(), fmt, ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        _missing(exc)
    session.commit()
    return file_response(export, inline=inline)


@bp.route("/nrr.csv")
@allow("viewer")
def export_csv():
    """Download the NRR figures as CSV."""
    return _download("csv")


@bp.route("/nrr.json")
@allow("viewer")
def export_json():
    """Download the NRR figures as JSON."""
    return _download("json")


@bp.route("/nrr/print")
@allow("viewer")
def printable():
    """The printable, self-contained page; its one inline stylesheet is allowed by hash."""
    response = _download("html", inline=True)
    digest = base64.b64encode(hashlib.sha256(print_style().encode()).digest()).decode()
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'none'"
    )
    return response
