"""Email out: SMTP settings from the environment, one message built the same way every time.

=========================  ==============================================================
``NRRLAB_SMTP_HOST``       the SMTP server; unset = email is off (deliveries are recorded
                           as ``skipped``, nothing fails)
``NRRLAB_SMTP_PORT``       default 587 with STARTTLS, else 25
``NRRLAB_SMTP_USER``       optional login (sent only over STARTTLS)
``NRRLAB_SMTP_PASSWORD``   its password
``NRRLAB_SMTP_FROM``       the sender, e.g. ``NRR Lab <nrrlab@example.com>`` (required
                           with a host)
``NRRLAB_SMTP_STARTTLS``   ``1``/``0``: upgrade the connection with STARTTLS (default 1)
=========================  ==============================================================

Messages are ``email.message.EmailMessage`` (RFC 5322) with a fixed ``Date`` and
``Message-ID`` taken from the delivery, a quoted-printable UTF-8 text body, and a
subject with control characters replaced by spaces — so a message is the same bytes
on every attempt, and hostile text cannot add a header.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

SMTP_TIMEOUT_SECONDS = 10.0
SUBJECT_MAX = 200
# C0, DEL and C1 controls, and the Unicode line and paragraph separators: Python's email
# package splits a header at every line break str.splitlines knows (U+0085, U+2028 and
# U+2029 too) and refuses the value, so a name pasted with a soft line break would make
# every email about it fail.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidirectional embeddings, overrides and isolates: a subject line cannot isolate a name,
# so a name holding U+202E would show the rest of the subject (the decision) reversed.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_POLICY = SMTP.clone(max_line_length=76)


class MailConfigError(ValueError):
    """The ``NRRLAB_SMTP_*`` variables are unusable; the message names the variable."""


class MailNotConfigured(RuntimeError):
    """No ``NRRLAB_SMTP_HOST``: email is switched off."""


class MailError(RuntimeError):
    """The SMTP server could not be reached or refused the message (worth a retry)."""


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise MailConfigError(f"{name} must be 1 or 0, not {value[:20]!r}")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str = ""
    password: str = ""
    starttls: bool = True

    @property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "nrrlab.invalid"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """The settings, or ``None`` when ``NRRLAB_SMTP_HOST`` is unset (email off).

        Raises
        ------
        MailConfigError
            A bad port or flag, or a host without ``NRRLAB_SMTP_FROM``.
        """
        env = os.environ if environ is None else environ
        host = env.get("NRRLAB_SMTP_HOST", "").strip()
        if not host:
            return None
        starttls = _flag(env.get("NRRLAB_SMTP_STARTTLS", "1"), "NRRLAB_SMTP_STARTTLS")
        raw_port = env.get("NRRLAB_SMTP_PORT", "").strip()
        if raw_port:
            if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
                raise MailConfigError(f"NRRLAB_SMTP_PORT must be a port number, "
                                      f"not {raw_port[:20]!r}")
            port = int(raw_port)
        else:
            port = 587 if starttls else 25
        sender = env.get("NRRLAB_SMTP_FROM", "").strip()
        if not sender or "@" not in parseaddr(sender)[1] or _CONTROL.search(sender):
            raise MailConfigError("NRRLAB_SMTP_FROM must be the sender's address, e.g. "
                                  "'NRR Lab <nrrlab@example.com>', when NRRLAB_SMTP_HOST is set")
        return cls(host=host, port=port, sender=sender,
                   user=env.get("NRRLAB_SMTP_USER", "").strip(),
                   password=env.get("NRRLAB_SMTP_PASSWORD", ""), starttls=starttls)


def email_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an SMTP host is set (the preferences page says so when it is not)."""
    env = os.environ if environ is None else environ
    return bool(env.get("NRRLAB_SMTP_HOST", "").strip())


def clean_subject(subject: str) -> str:
    """One line: control characters and line breaks (Unicode's too) become single spaces;
    direction overrides are dropped."""
    line = _BIDI.sub("", _CONTROL.sub(" ", subject)).strip()
    return line if len(line) <= SUBJECT_MAX else line[:SUBJECT_MAX - 1] + "…"


def build_message(*, sender: str, to: str, subject: str, body: str, date: datetime,
                  message_id: str) -> EmailMessage:
    """The message as sent: plain text, UTF-8, quoted-printable, fixed Date and Message-ID."""
    # RFC 2045 §6.7: quoted-printable lines of at most 76 characters (the email
    # package wraps at the policy's line length, 78 by default).
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Subject"] = clean_subject(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message


def send_message(settings: SmtpSettings, message: EmailMessage, *,
                 timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
    """Hand ``message`` to the SMTP server.

    Raises
    ------
    MailError
        Connection, TLS, login or refusal (the text says which); a login without
        STARTTLS is refused here rather than sending the password in clear.
    """
    if settings.user and not settings.starttls:
        raise MailError("refusing to send the SMTP password without STARTTLS "
                        "(set NRRLAB_SMTP_STARTTLS=1)")
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.user:
                smtp.login(settings.user, settings.password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"SMTP {settings.host}:{settings.port}: "
                        f"{type(exc).__name__}: {exc}"[:500]) from exc
