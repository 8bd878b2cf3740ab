"""Tables of the JSON API (issue 19): personal API tokens.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey
from sqlmodel import Field, SQLModel

from experiments.models import _in, utcnow

#: ``read`` tokens call GET only; ``write`` tokens also change what the user's role allows.
TOKEN_SCOPES: tuple[str, ...] = ("read", "write")


class ApiToken(SQLModel, table=True):
    """A personal API token: it acts as its user, never above the user's roles and teams.

    Only the SHA-256 of the secret is kept (``token_hash``); the secret is shown once,
    when the token is made. ``prefix`` (the secret's first characters) names the token
    on the account page and in the audit log without revealing it.
    """

    __tablename__ = "api_token"
    __table_args__ = (CheckConstraint(_in("scope", TOKEN_SCOPES), name="scope"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    scope: str = Field(default="read", max_length=10)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    last_used_at: datetime | None = None
    last_used_ip: str = Field(default="", max_length=64)
    revoked_at: datetime | None = None
