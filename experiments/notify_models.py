"""Tables of the notification area (issue 17 items 5-6), kept out of
:mod:`experiments.models` so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.

* :class:`NotificationPreference` — what one user wants by email (one row per user; no
  row means the defaults of :data:`DEFAULT_EMAIL_EVENTS`).
* :class:`WebhookEndpoint` — an admin-managed receiver of JSON events.
* :class:`Delivery` — one message to one recipient (an email or a webhook call): the
  exact body stored when the event happened, its attempts and its outcome.
* :class:`CalendarFeed` — a user's secret iCalendar URL, stored as a SHA-256 hash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Text
from sqlmodel import Field, SQLModel

#: Events a webhook can subscribe to and a user can get by email.
EVENTS: tuple[str, ...] = ("alert", "decision", "upload")
#: Email-only: the pre-meeting digest.
DIGEST = "digest"
#: What a user gets by email until they choose (the digest and alerts on their own work).
DEFAULT_EMAIL_EVENTS: tuple[str, ...] = ("digest", "alert")
#: Whose experiments a user hears about: the ones they own, or every one they may see.
SCOPES: tuple[str, ...] = ("mine", "all")
CHANNELS: tuple[str, ...] = ("email", "webhook")
DELIVERY_STATUSES: tuple[str, ...] = ("queued", "sending", "sent", "retrying", "failed",
                                      "skipped")


def _now() -> datetime:
    from experiments.models import utcnow

    return utcnow()


def _user_fk(ondelete: str, *, nullable: bool = True, unique: bool = False):
    return Field(default=None, sa_column=Column(
        ForeignKey("user_account.id", ondelete=ondelete), nullable=nullable, index=True,
        unique=unique))


class NotificationPreference(SQLModel, table=True):
    """One user's email choices: which events, and about whose experiments."""

    __tablename__ = "notification_preference"
    __table_args__ = (CheckConstraint("scope IN ('mine', 'all')", name="scope"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk("CASCADE", nullable=False, unique=True)
    digest: bool = Field(default=True)
    alert: bool = Field(default=True)
    decision: bool = Field(default=False)
    upload: bool = Field(default=False)
    scope: str = Field(default="mine", max_length=10)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    updated_at: datetime = Field(default_factory=_now)


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives signed JSON events (managed by admins).

    The signing secret is either read from the environment variable ``secret_env`` at
    send time (nothing secret in the database) or generated here and stored in
    ``secret`` (shown once to the admin who made it).
    """

    __tablename__ = "webhook_endpoint"
    __table_args__ = (
        CheckConstraint("(secret_env IS NULL) <> (secret IS NULL)", name="one_secret"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    url: str = Field(max_length=2000)
    secret_env: str | None = Field(default=None, max_length=100)
    secret: str | None = Field(default=None, max_length=200)
    events: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=True)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_by_id: int | None = _user_fk("SET NULL")
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Delivery(SQLModel, table=True):
    """One email or webhook call: what was sent (byte for byte), to whom, and how it went.

    ``body`` is fixed when the event happens, so every attempt (and a retry from the
    admin page) sends the same bytes. ``dedupe_key`` makes a digest go out once per
    user and week however often the job runs.
    """

    __tablename__ = "notification_delivery"
    __table_args__ = (
        CheckConstraint("channel IN ('email', 'webhook')", name="channel"),
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'skipped')",
            name="status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=10)
    event: str = Field(max_length=20, index=True)
    webhook_id: int | None = Field(default=None, sa_column=Column(
        ForeignKey("webhook_endpoint.id", ondelete="SET NULL"), nullable=True, index=True))
    user_id: int | None = _user_fk("SET NULL")
    recipient: str = Field(max_length=2000)  # the email address or the URL, as sent
    subject: str = Field(default="", max_length=300)
    body: str = Field(default="", sa_type=Text)
    dedupe_key: str | None = Field(default=None, max_length=120, unique=True)
    status: str = Field(default="queued", max_length=10, index=True)
    attempts: int = Field(default=0)
    last_error: str = Field(default="", sa_type=Text)
    response_code: int | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    sent_at: datetime | None = None


class CalendarFeed(SQLModel, table=True):
    """A user's iCalendar feed: the token's SHA-256 (the token itself is shown once)."""

    __tablename__ = "calendar_feed"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk("CASCADE", nullable=False)
    token_sha256: str = Field(max_length=64, unique=True)
    hint: str = Field(max_length=8)  # the token's first characters, to tell feeds apart
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
