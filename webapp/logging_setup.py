"""Logging that cannot be used to forge log lines or leak secrets."""

from __future__ import annotations

import logging
import re

from flask import Flask

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SECRET = re.compile(r"(?i)(password|passwd|csrf_token|session|cookie|authorization|token)=[^&\s]+")


class SafeFormatter(logging.Formatter):
    """Escapes control characters (no fake log lines) and masks secrets in messages."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head, sep, tail = text.partition("\nTraceback")
        head = _SECRET.sub(lambda m: f"{m.group(1)}=[redacted]", head)
        head = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", head)
        return head + (sep + tail if sep else "")


def init_logging(app: Flask) -> None:
    logger = logging.getLogger("nrrlab")
    if not any(isinstance(h.formatter, SafeFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
