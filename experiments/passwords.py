"""Passwords and email addresses: the policy, Argon2id hashing and temporary passwords.

Passwords are hashed with Argon2id at OWASP's minimum cost or above
(m = 19 MiB, t = 2, p = 1; OWASP Password Storage Cheat Sheet). The policy follows
NIST SP 800-63B §3.1.1.2: a length range and a blocklist (common passwords and
context words such as the email), no composition rules.

An invited user (or one whose password an admin reset) holds a temporary password
and has ``password_changed_at`` unset; the web layer sends them to the
password-change page until they choose their own.
"""

from __future__ import annotations

import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from experiments.input_rules import FieldErrors, read_email
from experiments.models import User

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
TEMPORARY_PASSWORD_BYTES = 15  # 20 URL-safe characters, 120 bits

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
)

# The most common passwords of public breach corpora (facts, not code): a user
# picking one of these is refused whatever its length.
COMMON_PASSWORDS = frozenset(
    """
    123456 123456789 12345678 password qwerty123 qwerty1 111111 1234567890 1234567 qwerty
    abc123 000000 iloveyou 1q2w3e4r5t password1 123123 123321 qwertyuiop 654321 666666
    987654321 1qaz2wsx 123qwe zaq12wsx 1q2w3e4r 11111111 88888888 12341234 00000000
    password123 passw0rd p@ssw0rd p@ssword admin123 administrator letmein welcome welcome1
    monkey dragon sunshine princess football baseball superman trustno1 starwars whatever
    iloveyou1 asdfghjkl asdfasdf zxcvbnm1 qwer1234 1234qwer changeme secret123 default1
    master123 login123 passpass 12qwaszx q1w2e3r4 q1w2e3r4t5 abcd1234 aa123456 a1b2c3d4
    """.split()  # noqa: SIM905 — a word list reads better than a literal
)
# Context words (NIST 800-63B): the service's own name is an obvious guess.
SERVICE_WORDS = frozenset({"nrrlab", "nrr lab", "nrr-lab", "nrrlab123", "nrrlab2026"})

def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """Why ``email`` (already normalised) is refused, or ``None``."""
    # The validation kit's rule (experiments.input_rules.read_email reads a form field).
    errors = FieldErrors()
    read_email({"email": email}, "email", errors)
    return errors.get("email")


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is refused (NIST SP 800-63B: length and a blocklist, no composition
    rules)."""
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(normalised) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    folded = normalised.casefold()
    if folded in COMMON_PASSWORDS:
        return "is one of the most common passwords; choose another"
    email = normalise_email(email)
    if folded in SERVICE_WORDS or (email and folded in {email, email.partition("@")[0]}):
        return "is too easy to guess from your email or this service's name; choose another"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(unicodedata.normalize("NFKC", password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, unicodedata.normalize("NFKC", password))
    except (VerificationError, InvalidHashError):
        return False


# Verifying against this on an unknown email keeps the answer time the same as
# for a known one, so timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("nrrlab-timing-equaliser")


def burn_verification_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def temporary_password() -> str:
    """A random one-time password for an invited user (never stored in clear)."""
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


def must_change_password(user: User) -> bool:
    """True while the user still holds a temporary password an admin handed out."""
    return user.password_changed_at is None


def needs_rehash(password_hash: str) -> bool:
    """True when ``password_hash`` was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)
