"""Logging that cannot be used to forge log lines or leak secrets.

Every record goes through :class:`SafeFormatter`: control characters in the message
are escaped (a newline in a user-supplied email cannot start a fake line), lines of
a traceback are indented under their record, and values of secret-looking keys —
passwords, tokens, cookies, authorization headers — are replaced by ``[redacted]``.
Code should still never log a secret on purpose; this is the net under that rule.
"""

from __future__ import annotations

import logging
import re

from flask import Flask

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# Names of secrets, not secrets.
_SECRET_KEYS = (
    r"password|passwd|pwd|new_password|current_password|secret|secret_key|csrf_token|x-csrftoken"  # noqa: S105
    r"|token|api_key|session"
)
# key=value, key: value, "key": "value" — up to the next separator.
_SECRET_VALUE = re.compile(
    rf"""(?i)(["']?\b(?:{_SECRET_KEYS})["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&,;"'}}]+)"""
)
# Headers whose whole value is a credential: redact to the end of the line.
_SECRET_HEADER = re.compile(
    r"(?i)(\b(?:cookie|set-cookie|authorization|proxy-authorization)\s*[=:]\s*)[^\n]*"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """``text`` with the values of secret-looking keys, headers and bearer tokens masked."""
    text = _SECRET_HEADER.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _SECRET_VALUE.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


class SafeFormatter(logging.Formatter):
    """Escapes control characters (no fake log lines) and masks secrets in messages."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head, sep, tail = text.partition("\nTraceback")
        head = _CONTROL.sub(_escape, redact(head))
        if not sep:
            return head
        # A traceback keeps its line breaks, but every line of it is indented so that
        # nothing inside it (an exception message) can pass for a record of its own.
        tail = _CONTROL_BUT_NEWLINE.sub(_escape, redact(sep + tail))
        return head + tail.replace("\n", "\n    ")


def init_logging(app: Flask) -> None:
    logger = logging.getLogger("nrrlab")
    if not any(isinstance(h.formatter, SafeFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
