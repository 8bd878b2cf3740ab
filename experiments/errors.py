"""Domain errors raised by services; the web layer and the CLI turn them into messages."""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """Base of every error a user can cause and read."""


class NotFound(DomainError):
    """The object does not exist, or the actor may not know that it does."""


class PermissionDenied(DomainError):
    """The actor is known to see the object but may not do this to it."""


class ValidationFailed(DomainError):
    """Input broke a rule; ``errors`` maps a field name (or ``""``) to its message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items()))


class Conflict(DomainError):
    """The object changed since the actor read it (stale version) or a unique key is taken."""
