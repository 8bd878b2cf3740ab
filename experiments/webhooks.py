"""Webhooks: admin-managed endpoints, the signed JSON call, and how a receiver verifies it.

A call is ``POST`` with ``Content-Type: application/json`` and the body stored on the
delivery (:mod:`experiments.notify`): compact JSON with sorted keys, whose ``"text"`` is a
Slack-compatible message (mrkdwn, ``&<>`` escaped) and whose other keys carry the same
facts as fields. Headers:

``X-NRRLab-Event``       ``alert``, ``decision``, ``upload`` (or ``ping`` from the test button)
``X-NRRLab-Delivery``    the delivery's id (the same on every retry: deduplicate on it)
``X-NRRLab-Timestamp``   Unix seconds when this attempt was signed
``X-NRRLab-Signature``   ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` under the
                         endpoint's secret

Verifying (any language; :func:`verify_signature` is the reference): take the raw body
bytes as received, compute ``HMAC-SHA256(secret, timestamp + "." + body)``, compare its
hex digest with the header's in constant time, and refuse timestamps more than five
minutes from your clock (a replayed old call then fails). Python::

    expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body,
                                    hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, signature) and abs(time.time() - int(ts)) <= 300

The secret is either generated (shown once to the admin, kept in the database to sign)
or read at send time from an environment variable whose name starts ``NRRLAB_WEBHOOK_``
(so the page cannot point the signer at ``SECRET_KEY`` or ``DATABASE_URL``).

A slow Slack-style receiver cannot hold a request: calls run in the background job
(:mod:`experiments.notify`) with a 10 s timeout; redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, select

from experiments.audit import record_event
from experiments.errors import NotFound
from experiments.input_rules import NAME_MAX, FieldErrors, parse_id, read_flag, read_text
from experiments.models import User, utcnow
from experiments.notify_models import EVENTS, WebhookEndpoint
from experiments.versioning import compare_and_set, parse_version

SIGNATURE_HEADER = "X-NRRLab-Signature"
TIMESTAMP_HEADER = "X-NRRLab-Timestamp"
EVENT_HEADER = "X-NRRLab-Event"
DELIVERY_HEADER = "X-NRRLab-Delivery"
USER_AGENT = "NRRLab-Webhook/1"
TIMEOUT_SECONDS = 10.0
TOLERANCE_SECONDS = 300
URL_MAX = 2000
ENV_PREFIX = "NRRLAB_WEBHOOK_"
_ENV_NAME = re.compile(r"NRRLAB_WEBHOOK_[A-Z0-9_]{1,80}", re.ASCII)


class WebhookError(RuntimeError):
    """The call failed (connection, timeout, non-2xx answer, missing secret): retry later."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- the payload


def payload_bytes(payload: Mapping[str, Any]) -> bytes:
    """The body as sent: compact UTF-8 JSON with sorted keys (the same bytes every time)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def slack_escape(text: str) -> str:
    """Text safe inside a Slack mrkdwn message: ``&``, ``<``, ``>`` as entities (Slack's
    "Escaping text" rule), so user text cannot make links or ``<!channel>`` mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str | None, label: str) -> str:
    """``<url|label>`` (label escaped, ``|`` removed from it), or just the label."""
    shown = slack_escape(label).replace("|", "¦")
    return f"<{url}|{shown}>" if url else shown


# ---------------------------------------------------------------- signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`` (RFC 2104 HMAC)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body,
                      hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes, *, now: float,
                     tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver checks: the signature matches (constant time) and is recent."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def endpoint_secret(endpoint: WebhookEndpoint, environ: Mapping[str, str] | None = None) -> str:
    """The signing secret: generated and stored, or from the named environment variable.

    Raises
    ------
    WebhookError
        The environment variable is not set (or empty).
    """
    if endpoint.secret:
        return endpoint.secret
    env = os.environ if environ is None else environ
    value = env.get(endpoint.secret_env or "", "")
    if not value:
        raise WebhookError(f"the signing secret's environment variable {endpoint.secret_env} "
                           "is not set on the server that sends")
    return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, *, secret: str, event: str, delivery_id: int, timestamp: int,
         timeout: float = TIMEOUT_SECONDS) -> int:
    """POST ``body`` signed at ``timestamp``; the HTTP status of a 2xx answer.

    Raises
    ------
    WebhookError
        Anything else: the status (a redirect counts as a failure) or the network error.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError(f"not an http(s) address: {url[:100]!r}")
    # Only http(s), checked above (and when the endpoint was saved): S310 is handled.
    request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    })
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code} {exc.reason}"[:300], exc.code) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"{type(exc).__name__}: {reason}"[:300]) from None
    if not 200 <= status < 300:
        raise WebhookError(f"HTTP {status}", status)
    return status


# ---------------------------------------------------------------- endpoints (admin)


@dataclass(frozen=True)
class WebhookInput:
    name: str
    url: str
    events: list[str]
    active: bool
    secret_env: str | None


#: Unicode categories refused in a webhook address: spaces (Zs/Zl/Zp) and format
#: characters (Cf: bidirectional overrides, zero-width joiners, BOM).
_HIDDEN_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cf"})


def _read_url(data: Mapping[str, Any], errors: FieldErrors) -> str:
    url = read_text(data, "url", errors, max_length=URL_MAX, required=True)
    if "url" in errors:
        return url
    hidden = next((c for c in url if unicodedata.category(c) in _HIDDEN_CATEGORIES), None)
    if hidden is not None:
        # A space, or an invisible or direction-changing character (U+202E), would make
        # the address on the admin pages read differently from the one that is called.
        errors.add("url", f"must not contain spaces or invisible characters "
                          f"(U+{ord(hidden):04X})")
        return url
    try:
        parts = urlsplit(url)
        port = parts.port  # urllib raises ValueError for a port outside 0–65535
    except ValueError as exc:
        errors.add("url", f"is not a valid address ({exc})")
        return url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add("url", "must be an http:// or https:// address such as "
                          "https://hooks.slack.com/services/…")
    elif parts.username or parts.password:
        errors.add("url", "must not hold a user name or password (the call is signed instead)")
    elif port == 0:
        errors.add("url", "must not use port 0")
    return url


def read_webhook(data: Mapping[str, Any], *, new: bool) -> WebhookInput:
    """The webhook form: ``name``, ``url``, ``events`` (one or more of :data:`EVENTS`),
    ``active``, and for a new endpoint ``secret_env`` (blank: generate a secret).

    Raises
    ------
    ValidationFailed
        Per field, saying why.
    """
    errors = FieldErrors()
    name = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    url = _read_url(data, errors)
    getlist = getattr(data, "getlist", None)
    raw_events = getlist("events") if getlist else data.get("events") or []
    if isinstance(raw_events, str):
        raw_events = [raw_events]
    events = [e for e in EVENTS if e in {str(r) for r in raw_events}]
    unknown = sorted({str(r)[:30] for r in raw_events} - set(EVENTS))
    if unknown:
        errors.add("events", f"unknown event {unknown[0]!r}: choose from {', '.join(EVENTS)}")
    elif not events:
        errors.add("events", f"choose at least one event: {', '.join(EVENTS)}")
    secret_env = None
    if new:
        raw = read_text(data, "secret_env", errors, max_length=100)
        if raw and "secret_env" not in errors:
            if not _ENV_NAME.fullmatch(raw):
                errors.add("secret_env", f"must be an environment variable name starting "
                                         f"{ENV_PREFIX} (capital letters, digits, _), such as "
                                         f"{ENV_PREFIX}SLACK — or blank to generate a secret")
            secret_env = raw
    errors.raise_if_any()
    return WebhookInput(name, url, events, read_flag(data, "active") if not new else True,
                        secret_env)


def list_webhooks(session: Session) -> list[WebhookEndpoint]:
    return list(session.exec(select(WebhookEndpoint).order_by(WebhookEndpoint.name,
                                                              WebhookEndpoint.id)).all())


def get_webhook(session: Session, webhook_id: Any) -> WebhookEndpoint:
    """Raises ``NotFound`` for a malformed or unknown id."""
    found = parse_id(webhook_id)
    endpoint = session.get(WebhookEndpoint, found) if found else None
    if endpoint is None:
        raise NotFound(f"no webhook {str(webhook_id)[:20]}")
    return endpoint


def create_webhook(session: Session, data: Mapping[str, Any], *, actor: User,
                   ip: str = "") -> tuple[WebhookEndpoint, str | None]:
    """A new active endpoint and, when no environment variable was named, its generated
    secret (to show once). Audited as ``webhook.create`` (never with the secret).

    Raises
    ------
    ValidationFailed
        As :func:`read_webhook`.
    """
    clean = read_webhook(data, new=True)
    generated = None if clean.secret_env else "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(name=clean.name, url=clean.url, events=clean.events,
                               active=True, secret_env=clean.secret_env, secret=generated,
                               created_by_id=actor.id)
    session.add(endpoint)
    session.flush()
    record_event(session, "webhook.create", actor=actor, entity_type="webhook",
                 entity_id=endpoint.id, ip=ip,
                 diff={"name": [None, clean.name], "url": [None, clean.url],
                       "events": [None, clean.events],
                       "secret": [None, f"environment {clean.secret_env}" if clean.secret_env
                                  else "generated"]})
    return endpoint, generated


def update_webhook(session: Session, endpoint: WebhookEndpoint, data: Mapping[str, Any], *,
                   actor: User, ip: str = "") -> WebhookEndpoint:
    """Change name, URL, events and whether it is active, on the version the form saw.

    Raises
    ------
    ValidationFailed
        As :func:`read_webhook`, or a malformed ``version``.
    experiments.versioning.StaleVersion
        Another admin changed it since.
    """
    seen = parse_version(data.get("version"))
    clean = read_webhook(data, new=False)
    before = {"name": endpoint.name, "url": endpoint.url, "events": list(endpoint.events),
              "active": endpoint.active}
    after = {"name": clean.name, "url": clean.url, "events": clean.events,
             "active": clean.active}
    compare_and_set(session, endpoint, seen, {**after, "updated_at": utcnow()},
                    what=f"webhook '{endpoint.name}'", entity_type="webhook",
                    entity_id=endpoint.id)
    diff = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    record_event(session, "webhook.update", actor=actor, entity_type="webhook",
                 entity_id=endpoint.id, diff=diff, ip=ip)
    return endpoint


def delete_webhook(session: Session, endpoint: WebhookEndpoint, *, actor: User,
                   ip: str = "") -> None:
    """Remove the endpoint (its deliveries stay in the log, without the link)."""
    record_event(session, "webhook.delete", actor=actor, entity_type="webhook",
                 entity_id=endpoint.id, ip=ip,
                 diff={"name": [endpoint.name, None], "url": [endpoint.url, None]})
    session.delete(endpoint)
    session.flush()
