"""The revenue ledger upload and its version history (issue 16; the NRR page is ``nrr``).

| method | URL            | role             | view     |
|--------|----------------|------------------|----------|
| GET    | /nrr/upload    | analyst (global) | form     |
| POST   | /nrr/upload    | analyst (global) | upload   |
| GET    | /nrr/versions  | viewer           | versions |

The ledger is the company's, not a team's: replacing it takes the analyst role globally.
The upload is synchronous (see :mod:`experiments.ledger_import` for why).
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, request, url_for

from experiments import ledger as service
from experiments.ledger_csv import BLANK_LABEL, ImportValidationError
from experiments.ledger_import import store_ledger_upload
from experiments.ledger_models import MAX_DIMENSIONS
from experiments.users import role_rank
from webapp.db import get_engine, get_session
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("ledger", __name__, url_prefix="/nrr")


def _component(status: int = 200, **upload):
    upload.setdefault("state", "idle")
    upload.setdefault("dimensions", "")
    return render_page_or_partial(
        "ledger/upload.html",
        "ledger/_upload.html",
        status=status,
        upload=upload,
        blank_label=BLANK_LABEL,
        max_dimensions=MAX_DIMENSIONS,
        limit_mb=int(current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)),
    )


@bp.get("/upload")
@allow("analyst", scope="global")
def form():
    """The upload form."""
    return _component()


@bp.post("/upload")
@allow("analyst", scope="global")
def upload():
    """Validate and store a ledger CSV as the next version; 303 to the history."""
    file = request.files.get("file")
    dimensions = request.form.get("dimensions", "")
    if file is None or not file.filename:
        return _component(422, state="failed", message="Choose a CSV file to upload.",
                          dimensions=dimensions)
    actor = acting_user()
    # End the request's transaction (on SQLite it holds the write lock since reading the
    # user): the import writes in its own short transactions.
    get_session().commit()
    try:
        version = store_ledger_upload(get_engine(), file.read(), dimensions=dimensions,
                                      actor_id=actor.id, filename=file.filename)
    except ImportValidationError as exc:
        return _component(422, state="failed", filename=file.filename, errors=exc.errors,
                          total=exc.total, dimensions=dimensions,
                          message="The file was not stored.")
    except service.DuplicateLedger as exc:
        return _component(409, state="duplicate", filename=file.filename, message=str(exc),
                          dimensions=dimensions)
    if is_htmx():
        return _component(state="done", version=version, dimensions=dimensions)
    return redirect(url_for("ledger.versions", uploaded=version.version), code=303)


@bp.get("/versions")
@allow("viewer")
def versions():
    """Every ledger version, newest first: who, when, which periods, rows, where current."""
    uploaded = request.args.get("uploaded", "")
    return render_page_or_partial(
        "ledger/versions.html",
        "ledger/_versions.html",
        versions=service.versions(get_session()),
        uploaded=int(uploaded) if uploaded.isdigit() and len(uploaded) < 10 else None,
        can_upload=_can_upload(),
    )


def _can_upload() -> bool:
    """The global analyst role (the upload route's own rule, for the link)."""
    return role_rank(acting_user().role) >= role_rank("analyst")
