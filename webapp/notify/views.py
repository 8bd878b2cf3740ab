"""Notifications and calendar feeds: one's own settings, the public feed, and the admin's
webhooks and delivery log.

| method | URL                                        | role          | view             |
|--------|--------------------------------------------|---------------|------------------|
| GET    | /account/notifications                     | viewer        | preferences      |
| POST   | /account/notifications                     | viewer        | save_preferences |
| GET    | /account/calendar                          | viewer        | calendar         |
| POST   | /account/calendar                          | viewer        | create_feed      |
| POST   | /account/calendar/revoke                   | viewer        | revoke_feed      |
| GET    | /calendar/<token>.ics                      | public: token | feed             |
| GET    | /admin/webhooks                            | global admin  | webhooks         |
| POST   | /admin/webhooks                            | global admin  | create_webhook   |
| POST   | /admin/webhooks/<webhook_id>               | global admin  | update_webhook   |
| POST   | /admin/webhooks/<webhook_id>/delete        | global admin  | delete_webhook   |
| POST   | /admin/webhooks/<webhook_id>/test          | global admin  | test_webhook     |
| GET    | /admin/deliveries                          | global admin  | deliveries       |
| POST   | /admin/deliveries/<delivery_id>/retry      | global admin  | retry_delivery   |

A new calendar URL and a generated webhook secret are rendered once in the answer to the
POST that made them (``Cache-Control: no-store``), never after a redirect: only their
hash (the token) or the server (the secret) keeps them.
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from experiments.calendar_feed import active_feed, calendar_ics, create_feed, feed_owner
from experiments.calendar_feed import revoke_feed as revoke_calendar_feed
from experiments.errors import Conflict, ValidationFailed
from experiments.input_rules import ECHO_MAX
from experiments.mailer import email_configured
from experiments.notify import (
    list_deliveries,
    ping_webhook,
    preferences_of,
    register_dispatcher,
    retry_delivery,
    save_preferences,
)
from experiments.notify_models import DELIVERY_STATUSES, DIGEST, EVENTS, SCOPES
from experiments.webhooks import (
    ENV_PREFIX,
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhooks,
    update_webhook,
)
from webapp.audit_hooks import client_ip
from webapp.db import get_engine, get_session
from webapp.security import acting_user, allow, public

bp = Blueprint("notify", __name__)


@bp.record_once
def _send_after_commit(state) -> None:
    """Deliveries committed by this app's requests go to its job queue (made on first use)."""
    app = state.app

    def dispatch(ids: list[int]) -> None:
        from webapp.results.uploads import get_jobs

        with app.app_context():
            get_jobs().enqueue_deliveries(ids)

    with app.app_context():
        register_dispatcher(get_engine(), dispatch)


# ---------------------------------------------------------------- one's own settings


def _preferences_page(form: dict | None = None, errors: dict | None = None, status: int = 200):
    prefs = preferences_of(get_session(), acting_user())
    if form is None:
        form = {name: name in prefs.events for name in (DIGEST, *EVENTS)}
        form["scope"] = prefs.scope
    return render_template("notify/preferences.html", prefs=prefs, form=form,
                           errors=errors or {}, scopes=SCOPES, events=(DIGEST, *EVENTS),
                           email_on=email_configured()), status


@bp.get("/account/notifications")
@allow("viewer")
def preferences():
    """What I get by email."""
    return _preferences_page()


@bp.post("/account/notifications", endpoint="save_preferences")
@allow("viewer")
def save_preferences_view():
    """Save what I get by email."""
    session = get_session()
    form = {name: request.form.get(name) in ("on", "1", "true") for name in (DIGEST, *EVENTS)}
    form["scope"] = request.form.get("scope", "")[:10]
    try:
        save_preferences(session, acting_user(), request.form)
    except ValidationFailed as exc:
        session.rollback()
        return _preferences_page(form, exc.errors, 422)
    except Conflict as exc:
        session.rollback()
        return _preferences_page(form, {"": str(exc)}, 409)
    session.commit()
    flash("Notification settings saved.", "success")
    return redirect(url_for("notify.preferences"), code=303)


def _calendar_page(token: str | None = None, status: int = 200):
    feed = active_feed(get_session(), acting_user())
    url = url_for("notify.feed", token=token, _external=True) if token else None
    return render_template("notify/calendar.html", feed=feed, url=url), status


@bp.get("/account/calendar")
@allow("viewer")
def calendar():
    """My calendar feed: whether one is live, and the buttons to make or revoke it."""
    return _calendar_page()


@bp.post("/account/calendar", endpoint="create_feed")
@allow("viewer")
def create_feed_view():
    """Make a new feed URL (revoking the old one) and show it once."""
    session = get_session()
    _feed, token = create_feed(session, acting_user(), ip=client_ip())
    session.commit()
    return _calendar_page(token, 201)


@bp.post("/account/calendar/revoke")
@allow("viewer")
def revoke_feed():
    """Revoke my feed: its URL answers 404 from now on."""
    session = get_session()
    count = revoke_calendar_feed(session, acting_user(), ip=client_ip())
    session.commit()
    flash("Your calendar feed is revoked." if count else "You had no calendar feed.", "success")
    return redirect(url_for("notify.calendar"), code=303)


@bp.get("/calendar/<token>.ics")
@public
def feed(token: str):
    """The iCalendar feed; the token in the URL is its only credential."""
    session = get_session()
    body = calendar_ics(session, feed_owner(session, token))
    return Response(body, mimetype="text/calendar",
                    headers={"Content-Disposition": 'inline; filename="nrrlab.ics"'})


# ---------------------------------------------------------------- webhooks (admin)


def _webhooks_page(form: dict | None = None, errors: dict | None = None, status: int = 200,
                   *, edit_errors: dict | None = None, edit_id: int | None = None):
    return render_template(
        "notify/webhooks.html", webhooks=list_webhooks(get_session()), events=EVENTS,
        form=form or {"events": list(EVENTS)}, errors=errors or {},
        edit_errors=edit_errors or {}, edit_id=edit_id, env_prefix=ENV_PREFIX), status


@bp.get("/admin/webhooks")
@allow("admin", scope="global")
def webhooks():
    """Webhook endpoints and the form for a new one."""
    return _webhooks_page()


@bp.post("/admin/webhooks", endpoint="create_webhook")
@allow("admin", scope="global")
def create_webhook_view():
    """Add an endpoint; a generated secret is shown once."""
    session = get_session()
    # What was typed goes back whole (bounded against a hostile body): cut at the field's
    # limit, a refused value would come back valid and a resubmit store it cut, unsaid.
    form = {name: request.form.get(name, "")[:ECHO_MAX] for name in ("name", "url", "secret_env")}
    form["events"] = request.form.getlist("events")
    try:
        endpoint, secret = create_webhook(session, request.form, actor=acting_user(),
                                          ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _webhooks_page(form, exc.errors, 422)
    session.commit()
    if secret is None:
        flash(f"Webhook {endpoint.name} added; it signs with ${endpoint.secret_env}.", "success")
        return redirect(url_for("notify.webhooks"), code=303)
    return render_template("notify/webhook_secret.html", endpoint=endpoint, secret=secret), 201


@bp.post("/admin/webhooks/<int:webhook_id>", endpoint="update_webhook")
@allow("admin", scope="global")
def update_webhook_view(webhook_id: int):
    """Change an endpoint's name, URL, events, or switch it on or off."""
    session = get_session()
    endpoint = get_webhook(session, webhook_id)
    try:
        update_webhook(session, endpoint, request.form, actor=acting_user(), ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _webhooks_page(edit_errors=exc.errors, edit_id=webhook_id, status=422)
    except Conflict as exc:
        session.rollback()
        return _webhooks_page(edit_errors={"": str(exc)}, edit_id=webhook_id, status=409)
    session.commit()
    flash(f"Webhook {endpoint.name} saved.", "success")
    return redirect(url_for("notify.webhooks"), code=303)


@bp.post("/admin/webhooks/<int:webhook_id>/delete", endpoint="delete_webhook")
@allow("admin", scope="global")
def delete_webhook_view(webhook_id: int):
    """Remove an endpoint (its deliveries stay in the log)."""
    session = get_session()
    endpoint = get_webhook(session, webhook_id)
    name = endpoint.name
    delete_webhook(session, endpoint, actor=acting_user(), ip=client_ip())
    session.commit()
    flash(f"Webhook {name} removed.", "success")
    return redirect(url_for("notify.webhooks"), code=303)


@bp.post("/admin/webhooks/<int:webhook_id>/test", endpoint="test_webhook")
@allow("admin", scope="global")
def test_webhook_view(webhook_id: int):
    """Send a signed ``ping`` to one endpoint; the delivery log shows how it went."""
    session = get_session()
    endpoint = get_webhook(session, webhook_id)
    delivery = ping_webhook(session, endpoint, actor=acting_user(), ip=client_ip())
    session.commit()
    flash(f"Test message to {endpoint.name} queued (delivery {delivery.id}).", "success")
    return redirect(url_for("notify.deliveries"), code=303)


@bp.get("/admin/deliveries")
@allow("admin", scope="global")
def deliveries():
    """The newest emails and webhook calls, with their attempts and outcome."""
    status = request.args.get("status", "")
    status = status if status in DELIVERY_STATUSES else ""
    return render_template("notify/deliveries.html", status=status, statuses=DELIVERY_STATUSES,
                           deliveries=list_deliveries(get_session(), status=status or None),
                           email_on=email_configured())


@bp.post("/admin/deliveries/<int:delivery_id>/retry", endpoint="retry_delivery")
@allow("admin", scope="global")
def retry_delivery_view(delivery_id: int):
    """Send a failed or skipped delivery again."""
    session = get_session()
    try:
        retry_delivery(session, delivery_id, actor=acting_user(), ip=client_ip())
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("notify.deliveries"), code=303)
    session.commit()
    flash(f"Delivery {delivery_id} queued again.", "success")
    return redirect(url_for("notify.deliveries"), code=303)
