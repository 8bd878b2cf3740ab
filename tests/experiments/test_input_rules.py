"""The validation kit: each reader's value and message, written out by hand."""

from __future__ import annotations

from datetime import date

import pytest

from experiments.errors import ValidationFailed
from experiments.input_rules import (
    FieldErrors,
    cell_problem,
    control_character,
    parse_id,
    read_choice,
    read_date,
    read_date_range,
    read_email,
    read_flag,
    read_id,
    read_int,
    read_page,
    read_password,
    read_slug,
    read_text,
)


def read(reader, value, *args, **kwargs):
    """(value, message or None) of ``reader`` over ``{"f": value}``."""
    errors = FieldErrors()
    result = reader({"f": value}, "f", errors, *args, **kwargs)
    return result, errors.get("f")


# ------------------------------------------------------------------ control characters


@pytest.mark.parametrize(("text", "one_line", "multi_line"), [
    ("plain text", None, None),
    ("tab\there", "U+0009", None),
    ("line\nbreak", "U+000A", None),
    ("carriage\rreturn", "U+000D", None),
    ("nul\x00", "U+0000", "U+0000"),
    ("escape\x1b[31m", "U+001B", "U+001B"),
    ("delete\x7f", "U+007F", "U+007F"),
    ("vertical\x0btab", "U+000B", "U+000B"),
    ("next line \u0085 and é", None, None),  # C1 and non-ASCII text are not refused
])
def test_control_character_finds_the_first_refused_one(text, one_line, multi_line):
    assert control_character(text) == one_line
    assert control_character(text, multiline=True) == multi_line


def test_a_csv_cell_problem_names_the_character():
    assert cell_problem("acct-1") is None
    assert cell_problem("acct\x001") == "contains a control character (U+0000)"


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    ("  Ana  ", {}, ("Ana", None)),
    (None, {}, ("", None)),
    ("", {"required": True}, ("", "is required")),
    ("a\x00b", {}, ("a\x00b", "must not contain control characters or line breaks")),
    ("a\tb", {}, ("a\tb", "must not contain control characters or line breaks")),
    ("a\r\nb\rc", {"multiline": True}, ("a\nb\nc", None)),
    ("tab\tok", {"multiline": True}, ("tab\tok", None)),
    ("nul\x00", {"multiline": True}, ("nul\x00", "must not contain control characters")),
    ("x" * 11, {}, ("x" * 11, "must be at most 10 characters (this is 11)")),
])
def test_read_text(value, kwargs, expected):
    assert read(read_text, value, max_length=10, **kwargs) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (" Ana@Example.COM ", ("ana@example.com", None)),
    ("first.last+tag@sub.example.org", ("first.last+tag@sub.example.org", None)),
    ("", ("", "is required")),
    ("not-an-email", ("not-an-email", "must be an email address such as ana@example.com")),
    ("ana@localhost", ("ana@localhost", "must be an email address such as ana@example.com")),
    ("a\x00b@x.org", ("a\x00b@x.org", "must not contain control characters")),
    ("a" * 65 + "@example.com", ("a" * 65 + "@example.com",
                                 "must be an email address such as ana@example.com")),
])
def test_read_email(value, expected):
    assert read(read_email, value) == expected


def test_read_email_may_be_optional():
    assert read(read_email, "  ", required=False) == ("", None)


@pytest.mark.parametrize(("value", "expected"), [
    ("Customer-Success", ("customer-success", None)),
    ("", ("", "is required, e.g. customer-success")),
    ("two--hyphens", ("two--hyphens", "must be 1-64 lowercase letters, digits or single"
                                      " hyphens, e.g. customer-success")),
    ("-lead", ("-lead", "must be 1-64 lowercase letters, digits or single hyphens,"
                        " e.g. customer-success")),
    ("x" * 65, ("x" * 65, "must be 1-64 lowercase letters, digits or single hyphens,"
                          " e.g. customer-success")),
])
def test_read_slug(value, expected):
    assert read(read_slug, value) == expected


def test_read_password_keeps_spaces_cuts_length_and_refuses_control_characters():
    assert read(read_password, "  two words  ") == ("  two words  ", None)
    assert read(read_password, "p" * 2000) == ("p" * 1024, None)
    assert read(read_password, "pass\x00word")[1] == "must not contain control characters"


# ------------------------------------------------------------------ numbers and ids


@pytest.mark.parametrize(("value", "expected"), [
    ("42", (42, None)),
    (" 7 ", (7, None)),
    ("", (None, "is required (a whole number)")),
    ("-1", (None, "must be a whole number from 0 to 100")),
    ("101", (None, "must be a whole number from 0 to 100")),
    ("4.5", (None, "must be a whole number from 0 to 100")),
    ("٣", (None, "must be a whole number from 0 to 100")),  # an Arabic-Indic digit
    (True, (None, "must be a whole number from 0 to 100")),
])
def test_read_int(value, expected):
    assert read(read_int, value, maximum=100) == expected


def test_read_int_default_when_blank():
    assert read(read_int, "  ", default=5) == (5, None)


@pytest.mark.parametrize(("value", "page", "message"), [
    (None, 1, None), ("", 1, None), ("3", 3, None),
    ("0", 1, "must be a positive whole number"), ("x", 1, "must be a positive whole number"),
    ("99999999999", 1, "must be a positive whole number"),
])
def test_read_page(value, page, message):
    errors = FieldErrors()
    assert read_page({"page": value}, errors) == page
    assert errors.get("page") == message


@pytest.mark.parametrize(("value", "expected"), [
    ("12", (12, None)),
    ("", (None, "choose a team")),
    ("0", (None, "unknown team")),
    ("2147483648", (None, "unknown team")),  # beyond a 32-bit key: PostgreSQL would fail
    ("99999999999999", (None, "unknown team")),
    ("1e3", (None, "unknown team")),
])
def test_read_id(value, expected):
    assert read(read_id, value, required=True, what="team") == expected


def test_parse_id_ignores_what_it_cannot_use():
    assert (parse_id("5"), parse_id("x"), parse_id("\x00"), parse_id(None)) == (5, None, None, None)


# ------------------------------------------------------------------ dates, choices, flags


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-12-01", (date(2026, 12, 1), None)),
    ("", (None, None)),
    ("20261201", (None, "must be a date such as 2026-12-01")),
    ("2026-02-30", (None, "must be a date such as 2026-12-01")),
    ("2026-W48-1", (None, "must be a date such as 2026-12-01")),
])
def test_read_date(value, expected):
    assert read(read_date, value) == expected


def test_read_date_range_refuses_an_end_before_the_start():
    errors = FieldErrors()
    data = {"since": "2026-02-01", "until": "2026-01-01"}
    assert read_date_range(data, "since", "until", errors) == (date(2026, 2, 1), date(2026, 1, 1))
    assert errors == {"until": "must not be before the start date"}


def test_read_choice():
    assert read(read_choice, "b", ("a", "b")) == ("b", None)
    assert read(read_choice, "", ("a", "b")) == (None, "choose one of: a, b")
    assert read(read_choice, "", ("a", "b"), default="a") == ("a", None)
    assert read(read_choice, "z", ("a", "b"), default="a") == ("a", "must be one of: a, b")


@pytest.mark.parametrize(("value", "expected"), [
    ("on", True), ("true", True), ("1", True), ("yes", True), (True, True),
    ("", False), (None, False), ("off", False), (False, False),
])
def test_read_flag(value, expected):
    assert read_flag({"f": value}, "f") is expected


def test_field_errors_keep_the_first_message_and_raise_validation_failed():
    errors = FieldErrors()
    errors.add("name", "is required")
    errors.add("name", "is too long")
    with pytest.raises(ValidationFailed) as raised:
        errors.raise_if_any()
    assert raised.value.errors == {"name": "is required"}
    FieldErrors().raise_if_any()  # nothing to report: no exception


# ------------------------------------------------------------------ services using the kit


@pytest.mark.db
@pytest.mark.parametrize("user_id", ["99999999999", "2147483648", "-1", "1\x00", ""])
def test_a_member_id_no_database_could_hold_is_a_field_message(session, admin, user_id):
    # Before the kit, "99999999999" reached the database: a 500 on PostgreSQL.
    from experiments.teams import set_member_role
    from experiments.users import ensure_team

    team = ensure_team(session, "growth", "Growth")
    with pytest.raises(ValidationFailed) as raised:
        set_member_role(session, team, user_id=user_id, role="viewer", actor=admin)
    assert raised.value.errors == {"user_id": "choose a user from the list"}


@pytest.mark.db
@pytest.mark.parametrize(("email", "message"), [
    ("a\x00b@example.com", "must not contain control characters"),
    ("ana@localhost", "must be an email address such as ana@example.com"),
])
def test_creating_a_user_refuses_an_email_the_kit_refuses(session, email, message):
    from experiments.users import create_user

    with pytest.raises(ValidationFailed) as raised:
        create_user(session, email, "a long enough passphrase")
    assert raised.value.errors == {"email": message}
