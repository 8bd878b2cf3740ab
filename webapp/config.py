"""Configuration from the environment, checked once at start."""

from __future__ import annotations

import math
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from experiments.db import database_url

# Values that must never protect a production install.
KNOWN_WEAK_SECRETS = frozenset({"dev", "development", "secret", "changeme", "change-me", "nrrlab"})
MIN_SECRET_LENGTH = 32
#: Least estimated entropy of a production key (see :func:`estimated_secret_bits`).
MIN_SECRET_BITS = 72
MIN_SECRET_DISTINCT = 6
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class ConfigError(RuntimeError):
    """Bad configuration; the message is one line for the operator."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _whole_number(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, not {raw!r}")
    return int(raw)


def estimated_secret_bits(secret: str) -> float:
    """Length × the Shannon entropy of the key's own character frequencies, in bits.

    A crude estimate that is about right for a random key (``token_urlsafe(48)`` scores
    ~280; ``token_hex(16)`` ~110, and never below 84 in 200,000 tries) and near zero for
    one made of few characters (``"a" * 32`` scores 0). A key that repeats a shorter
    block scores as that block.
    """
    if not secret:
        return 0.0
    # "abcd…abcd…" is only as strong as its block: s is a repetition iff it occurs in s+s
    # at a shift shorter than its length.
    period = (secret + secret).find(secret, 1)
    block = secret[:period] if 0 < period < len(secret) else secret
    counts = Counter(block)
    per_char = sum(n / len(block) * math.log2(len(block) / n) for n in counts.values())
    return per_char * len(block)


def check_secret_key(secret: str | None) -> None:
    """Raises ``ConfigError`` (one line) unless ``secret`` is fit to sign production sessions."""
    if not secret:
        raise ConfigError(f"SECRET_KEY is not set; production mode needs a random key of at "
                          f"least {MIN_SECRET_LENGTH} characters; {GENERATE_HINT}")
    if len(secret) < MIN_SECRET_LENGTH or secret.lower() in KNOWN_WEAK_SECRETS:
        raise ConfigError(f"SECRET_KEY is too short or a well-known default; production mode "
                          f"needs a random key of at least {MIN_SECRET_LENGTH} characters; "
                          f"{GENERATE_HINT}")
    bits = estimated_secret_bits(secret)
    if len(set(secret)) < MIN_SECRET_DISTINCT or bits < MIN_SECRET_BITS:
        raise ConfigError(f"SECRET_KEY is guessable (about {bits:.0f} bits of entropy from "
                          f"{len(set(secret))} distinct characters; at least {MIN_SECRET_BITS} "
                          f"bits needed); {GENERATE_HINT}")


def _dev_secret(instance_path: Path) -> str:
    # A development install keeps one random key in instance/ so sessions survive restarts.
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _check_meeting_schedule(env: Mapping[str, str]) -> None:
    """The review meeting's ``NRRLAB_REVIEW_*`` / ``NRRLAB_DIGEST_HOURS_BEFORE`` settings,
    checked at start: read lazily, a typo made every calendar feed a 500 and every
    digest run fail."""
    from experiments.digest import ScheduleConfigError, meeting_schedule

    try:
        meeting_schedule(env)
    except ScheduleConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_config(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask config from the environment, then ``overrides`` (tests).

    Raises
    ------
    ConfigError
        Production mode with a missing, short, well-known or low-entropy ``SECRET_KEY``, or an
        ``NRRLAB_*`` number that is not a whole number in range, or a malformed review
        meeting schedule (``NRRLAB_REVIEW_WEEKDAY/TIME/MINUTES``).
    """
    env = os.environ
    overrides = dict(overrides or {})
    mode = overrides.get("NRRLAB_ENV", env.get("NRRLAB_ENV", "development"))
    if mode not in {"development", "production", "testing"}:
        raise ConfigError(f"NRRLAB_ENV must be development, production or testing, not {mode!r}")
    production = mode == "production"

    secret = overrides.get("SECRET_KEY", env.get("SECRET_KEY"))
    if production:
        check_secret_key(secret)
    elif not secret:
        secret = _dev_secret(instance_path)

    _check_meeting_schedule(env)
    secure_cookie = _flag(env.get("NRRLAB_SECURE_COOKIES"), default=production)
    config: dict[str, Any] = {
        "NRRLAB_ENV": mode,
        "SECRET_KEY": secret,
        "DATABASE_URL": database_url(instance_path),
        "MAX_CONTENT_LENGTH":
            _whole_number(env, "NRRLAB_MAX_UPLOAD_MB", 200, minimum=1) * 1024 * 1024,
        "SESSION_COOKIE_SECURE": secure_cookie,
        # __Host- cookies must be Secure; on plain local http the prefix would make
        # browsers drop the cookie, so it is used exactly when Secure is.
        "SESSION_COOKIE_NAME": "__Host-nrrlab" if secure_cookie else "nrrlab_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_PATH": "/",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "IDLE_TIMEOUT": timedelta(minutes=_whole_number(env, "NRRLAB_IDLE_MINUTES", 30, minimum=1)),
        "ABSOLUTE_TIMEOUT":
            timedelta(hours=_whole_number(env, "NRRLAB_ABSOLUTE_HOURS", 12, minimum=1)),
        "LOGIN_FAILURE_LIMIT": 10,
        "LOGIN_FAILURE_WINDOW": timedelta(minutes=15),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "WTF_CSRF_SSL_STRICT": secure_cookie,
        "HSTS": secure_cookie,
        # Trusted reverse proxies in front of the app (X-Forwarded-For/-Proto); 0 = none.
        "PROXY_HOPS": _whole_number(env, "NRRLAB_PROXY_HOPS", 0),
        "CHECK_DATABASE_AT_START": True,
        # Rendered read pages kept per user and data generation (webapp.page_cache).
        "PAGE_CACHE": _flag(env.get("NRRLAB_PAGE_CACHE"), default=True),
        "PAGE_CACHE_TTL_SECONDS": _whole_number(env, "NRRLAB_PAGE_CACHE_TTL_SECONDS", 60,
                                                minimum=1),
        "PAGE_CACHE_MAX_MB": _whole_number(env, "NRRLAB_PAGE_CACHE_MB", 32, minimum=1),
        "TESTING": mode == "testing",
    }
    config.update(overrides)
    return config
