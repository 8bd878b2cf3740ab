"""Users and teams services: hashing, the password policy, and one audit event per change."""

from __future__ import annotations

import pytest
from argon2 import Type, extract_parameters
from sqlmodel import select

from experiments.errors import Conflict, ValidationFailed
from experiments.models import AuditEvent, TeamMembership, User
from experiments.users import (
    ARGON2_MEMORY_KIB,
    authenticate,
    change_password,
    create_team,
    create_user,
    disable_user,
    enable_user,
    ensure_team,
    invite_user,
    list_teams,
    list_users,
    must_change_password,
    password_problem,
    record_login_failure,
    reset_password,
    set_member_role,
    set_team_role,
    sign_out,
    team_detail,
    update_team,
    update_user,
    user_detail,
    verify_password,
)
from tests.helpers import TEST_PASSWORD

XSS = "<script>alert(1)</script>"


def events(session, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(session.exec(query).all())


@pytest.fixture
def admin(session):
    user = create_user(session, "root@example.com", TEST_PASSWORD, role="admin", name="Root")
    session.commit()
    return user


def test_password_hash_is_argon2id_with_at_least_the_owasp_parameters(
        session, real_password_hashing):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    params = extract_parameters(user.password_hash)
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024 == ARGON2_MEMORY_KIB
    assert params.time_cost >= 2
    assert params.parallelism == 1
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert TEST_PASSWORD not in user.password_hash


@pytest.mark.parametrize(("password", "problem"), [
    ("x" * 7, "at least 8"),
    ("x" * 129, "at most 128"),
    ("password1", "most common"),
    ("PassWord1", "most common"),  # the blocklist ignores case
    ("ana@example.com", "guess"),
    ("ANA@example.com", "guess"),
    ("nrrlab123", "guess"),
])
def test_password_policy_refuses(password, problem):
    assert problem in (password_problem(password, email="ana@example.com") or "")


@pytest.mark.parametrize("password", [
    "x" * 8,  # no composition rules: length is what counts
    "y" * 64,
    "z" * 128,
    "correct horse battery staple",
    "ünïcødé paßwörd 🔑",
])
def test_password_policy_accepts_long_or_plain_passwords(password):
    assert password_problem(password, email="ana@example.com") is None


def test_passwords_are_compared_after_unicode_normalisation(session):
    user = create_user(session, "ana@example.com", "ﬁnancial-year-2026")  # U+FB01 ligature
    assert verify_password(user.password_hash, "financial-year-2026")


def test_create_user_records_exactly_one_event_with_the_diff(session, admin):
    before = len(events(session))
    user = create_user(session, " Bob@Example.com ", TEST_PASSWORD, role="analyst", name=" Bob ",
                       actor=admin)
    assert user.email == "bob@example.com" and user.name == "Bob"
    new = events(session)[before:]
    assert [e.action for e in new] == ["user.create"]
    assert new[0].actor_id == admin.id and new[0].entity_id == str(user.id)
    assert new[0].diff == {"email": [None, "bob@example.com"], "name": [None, "Bob"],
                           "role": [None, "analyst"]}


@pytest.mark.parametrize("email", [
    "not-an-email", f"{XSS}@example.com", "ana@example", "a b@example.com", '"quoted"@example.com',
    "ana@-example.com", "x" * 65 + "@example.com",
])
def test_create_user_refuses_bad_emails(session, email):
    with pytest.raises(ValidationFailed) as caught:
        create_user(session, email, TEST_PASSWORD)
    assert "email address" in caught.value.errors["email"]


def test_create_user_refuses_a_taken_email_and_bad_role_and_name(session):
    create_user(session, "ana@example.com", TEST_PASSWORD)
    with pytest.raises(Conflict, match="already exists"):
        create_user(session, "ANA@example.com", TEST_PASSWORD)
    with pytest.raises(ValidationFailed) as caught:
        create_user(session, "bob@example.com", TEST_PASSWORD, role="owner", name="x" * 201)
    assert set(caught.value.errors) == {"role", "name"}


def test_invite_hands_out_a_temporary_password_that_must_be_changed(session, admin):
    user, password = invite_user(session, email="new@example.com", name="New", role="viewer",
                                 actor=admin)
    assert len(password) >= 16 and password_problem(password) is None
    assert must_change_password(user)
    assert authenticate(session, "new@example.com", password).id == user.id
    assert [e.action for e in events(session) if e.entity_id == str(user.id)] == ["user.create"]
    with pytest.raises(ValidationFailed) as caught:
        invite_user(session, email="NEW@example.com", name="", role="viewer", actor=admin)
    assert caught.value.errors == {"email": "is already used by another account"}


def test_update_user_records_one_event_per_kind_of_change(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD, name="Ana")
    before = len(events(session))
    update_user(session, user, name="Ana", role="viewer", actor=admin)
    assert events(session)[before:] == []
    update_user(session, user, name="Ana María", role="viewer", actor=admin)
    update_user(session, user, name="Ana María", role="experimenter", actor=admin)
    new = events(session)[before:]
    assert [(e.action, e.diff) for e in new] == [
        ("user.update", {"name": ["Ana", "Ana María"]}),
        ("role.update", {"role": ["viewer", "experimenter"]}),
    ]
    assert all(e.actor_id == admin.id and e.entity_id == str(user.id) for e in new)


def test_update_user_validates_before_changing_anything(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD, name="Ana")
    with pytest.raises(ValidationFailed) as caught:
        update_user(session, user, name="bell\x07", role="superuser", actor=admin)
    assert set(caught.value.errors) == {"name", "role"}
    assert (user.name, user.role) == ("Ana", "viewer")


def test_the_last_active_admin_can_be_neither_demoted_nor_disabled(session, admin):
    with pytest.raises(Conflict, match="last active admin"):
        update_user(session, admin, name=admin.name, role="experimenter", actor=admin)
    with pytest.raises(Conflict, match="last active admin"):
        disable_user(session, admin, actor=None)
    other = create_user(session, "two@example.com", TEST_PASSWORD, role="admin")
    disable_user(session, admin, actor=other)
    assert not admin.is_active
    with pytest.raises(Conflict, match="last active admin"):
        update_user(session, other, name="", role="viewer", actor=other)


def test_nobody_disables_themselves(session, admin):
    create_user(session, "two@example.com", TEST_PASSWORD, role="admin")
    with pytest.raises(Conflict, match="your own account"):
        disable_user(session, admin, actor=admin)


def test_disable_ends_sessions_and_sign_in_and_enable_restores_sign_in(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    version = user.session_version
    before = len(events(session))
    disable_user(session, user, actor=admin)
    disable_user(session, user, actor=admin)  # already disabled: no second event
    assert user.session_version == version + 1 and not user.is_active
    assert authenticate(session, "ana@example.com", TEST_PASSWORD) is None
    enable_user(session, user, actor=admin)
    assert authenticate(session, "ana@example.com", TEST_PASSWORD).id == user.id
    assert [(e.action, e.diff) for e in events(session)[before:]] == [
        ("user.disable", {"is_active": [True, False]}),
        ("user.enable", {"is_active": [False, True]}),
    ]


def test_change_password_needs_the_current_one_and_ends_other_sessions(session):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    version, old_hash = user.session_version, user.password_hash
    with pytest.raises(ValidationFailed) as caught:
        change_password(session, user, current_password="wrong password",
                        new_password="a new long phrase", confirmation="a new long phrase")
    assert caught.value.errors == {"current_password": "is not your current password"}
    assert user.password_hash == old_hash and user.session_version == version
    before = len(events(session))
    change_password(session, user, current_password=TEST_PASSWORD, new_password="a new long phrase",
                    confirmation="a new long phrase")
    assert verify_password(user.password_hash, "a new long phrase")
    assert not verify_password(user.password_hash, TEST_PASSWORD)
    assert user.session_version == version + 1 and not must_change_password(user)
    new = events(session)[before:]
    assert [e.action for e in new] == ["user.password_change"]
    assert "a new long phrase" not in str(new[0].diff) and "argon2" not in str(new[0].diff)


@pytest.mark.parametrize(("new", "confirmation", "field", "message"), [
    ("short", "short", "new_password", "at least 8"),
    ("password123", "password123", "new_password", "most common"),
    (TEST_PASSWORD, TEST_PASSWORD, "new_password", "must differ"),
    ("a new long phrase", "a new long phrasE", "confirmation", "does not match"),
])
def test_change_password_refuses_a_bad_new_password(session, new, confirmation, field, message):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    with pytest.raises(ValidationFailed) as caught:
        change_password(session, user, current_password=TEST_PASSWORD, new_password=new,
                        confirmation=confirmation)
    assert message in caught.value.errors[field]


def test_reset_password_gives_a_temporary_one_and_ends_sessions(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    version = user.session_version
    password = reset_password(session, user, actor=admin)
    assert user.session_version == version + 1 and must_change_password(user)
    assert authenticate(session, "ana@example.com", TEST_PASSWORD) is None
    assert authenticate(session, "ana@example.com", password) is not None
    [event] = events(session, "user.password_reset")
    assert event.actor_id == admin.id and password not in str(event.diff)


def test_create_and_rename_team_record_one_event_each(session, admin):
    team = create_team(session, slug=" Growth-EU ", name=f"Growth {XSS}", actor=admin)
    # stored as typed, escaped on output
    assert team.slug == "growth-eu" and team.name == f"Growth {XSS}"
    update_team(session, team, name="Growth Europe", actor=admin)
    update_team(session, team, name="Growth Europe", actor=admin)  # unchanged: no event
    assert [(e.action, e.team_id, e.diff) for e in events(session) if e.entity_type == "team"] == [
        ("team.create", team.id, {"slug": [None, "growth-eu"], "name": [None, f"Growth {XSS}"]}),
        ("team.update", team.id, {"name": [f"Growth {XSS}", "Growth Europe"]}),
    ]


@pytest.mark.parametrize(("slug", "name", "field"), [
    ("", "Growth", "slug"), ("growth team", "Growth", "slug"), ("-growth", "Growth", "slug"),
    ("x" * 65, "Growth", "slug"), ("growth", "", "name"), ("growth", "x" * 201, "name"),
])
def test_create_team_refuses_bad_input(session, admin, slug, name, field):
    with pytest.raises(ValidationFailed) as caught:
        create_team(session, slug=slug, name=name, actor=admin)
    assert field in caught.value.errors


def test_create_team_refuses_a_taken_slug(session, admin):
    ensure_team(session, "growth", "Growth")
    with pytest.raises(ValidationFailed) as caught:
        create_team(session, slug="growth", name="Growth 2", actor=admin)
    assert caught.value.errors == {"slug": "is already used by another team"}


def test_team_roles_are_added_changed_and_removed_with_one_event_each(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    team = ensure_team(session, "growth", "Growth")
    before = len(events(session))
    set_team_role(session, user, team, "analyst", actor=admin)
    set_team_role(session, user, team, "analyst", actor=admin)  # unchanged: no event
    set_team_role(session, user, team, "experimenter", actor=admin)
    set_team_role(session, user, team, None, actor=admin)
    assert [(e.action, e.team_id, e.diff) for e in events(session)[before:]] == [
        ("role.update", team.id, {"team_role": [None, "analyst"]}),
        ("role.update", team.id, {"team_role": ["analyst", "experimenter"]}),
        ("role.update", team.id, {"team_role": ["experimenter", None]}),
    ]
    assert session.exec(select(TeamMembership)).all() == []


def test_set_member_role_reads_the_form_values(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    team = ensure_team(session, "growth", "Growth")
    member = set_member_role(session, team, user_id=str(user.id), role="viewer", actor=admin)
    assert member.id == user.id
    for user_id, role, field in [("", "viewer", "user_id"), ("999", "viewer", "user_id"),
                                 ("1; drop", "viewer", "user_id"), (str(user.id), "owner", "role")]:
        with pytest.raises(ValidationFailed) as caught:
            set_member_role(session, team, user_id=user_id, role=role, actor=admin)
        assert field in caught.value.errors
    set_member_role(session, team, user_id=str(user.id), role="", actor=admin)
    assert session.exec(select(TeamMembership)).all() == []


def test_listings_show_memberships(session, admin):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    growth = ensure_team(session, "growth", "Growth")
    ensure_team(session, "success", "Success")
    set_team_role(session, user, growth, "analyst", actor=admin)
    rows = {row.user.email: [(t.slug, r) for t, r in row.memberships]
            for row in list_users(session)}
    assert rows == {"ana@example.com": [("growth", "analyst")], "root@example.com": []}
    detail = user_detail(session, user.id)
    assert [t.slug for t in detail.other_teams] == ["success"]
    team = team_detail(session, growth.id)
    assert [(u.email, r) for u, r in team.members] == [("ana@example.com", "analyst")]
    assert [u.email for u in team.candidates] == ["root@example.com"]
    assert {(s.team.slug, s.members) for s in list_teams(session)} == {("growth", 1),
                                                                       ("success", 0)}


# ------------------------------------------------------------------ sign-in limiter


def _throttled(session):
    return [(e.entity_id, e.diff["key"][1], e.ip) for e in events(session, "auth.login_throttled")]


def test_failures_are_audited_per_email_and_slow_only_their_address(session):
    from experiments.signin import SignInLimits, admit_sign_in

    limits = SignInLimits(address_slow_after=3, address_delay_base=0.25, address_delay_max=2.0)
    for _ in range(3):
        record_login_failure(session, email="Ana@Example.com", ip="10.0.0.1", limits=limits)
    record_login_failure(session, email="bob@example.com", ip="10.0.0.1", limits=limits)
    failed = [e.entity_id for e in events(session, "auth.login_failed")]
    assert failed == ["ana@example.com"] * 3 + ["bob@example.com"]
    # 4 failures, 1 past the threshold of 3: 0.25 s · 2¹ for anyone behind 10.0.0.1 ...
    gate = admit_sign_in(session, email="carol@example.com", ip="10.0.0.1", limits=limits)
    assert gate.delay == 0.5
    # ... and nothing elsewhere; the address itself is never refused.
    assert admit_sign_in(session, email="ana@example.com", ip="10.0.0.2", limits=limits).delay == 0
    for _ in range(20):
        record_login_failure(session, email="x@example.com", ip="10.0.0.1", limits=limits)
    gate = admit_sign_in(session, email="dave@example.com", ip="10.0.0.1", limits=limits)
    assert gate.allowed and gate.delay == 2.0  # capped


def test_the_pair_limit_stops_one_address_and_the_account_limit_stops_all(session):
    from experiments.signin import SignInLimits, admit_sign_in

    limits = SignInLimits(pair_limit=2, account_limit=3)

    def allowed(ip: str) -> bool:
        return admit_sign_in(session, email="ana@example.com", ip=ip, limits=limits).allowed

    assert [allowed("10.0.0.1") for _ in range(3)] == [True, True, False]
    # the noisy address used 3 of the account's 3 attempts (the refused one counts too)
    assert allowed("10.0.0.2") is False
    # another account behind the same noisy address is untouched
    assert admit_sign_in(session, email="bob@example.com", ip="10.0.0.1", limits=limits).allowed
    # one audit row per refusing key and window, however many refusals follow
    for _ in range(5):
        allowed("10.0.0.3")
    assert sorted(_throttled(session)) == [("ana@example.com", "account", "10.0.0.2"),
                                           ("ana@example.com", "pair", "10.0.0.1"),
                                           ("ana@example.com", "pair", "10.0.0.3")]


def test_a_window_ends_and_a_success_gives_its_attempt_back(session):
    from datetime import timedelta

    from experiments.models import utcnow
    from experiments.signin import SignInLimits, admit_sign_in, give_back_attempt

    limits = SignInLimits(pair_limit=2, account_limit=2, window=timedelta(minutes=15))
    start = utcnow()

    def allowed(at) -> bool:
        return admit_sign_in(session, email="ana@example.com", ip="10.0.0.1", limits=limits,
                             now=at).allowed

    assert allowed(start) and allowed(start + timedelta(minutes=1))
    gate = admit_sign_in(session, email="ana@example.com", ip="10.0.0.1", limits=limits,
                         now=start + timedelta(minutes=2))
    assert not gate.allowed and 13 * 60 <= gate.retry_after <= 13 * 60 + 1
    assert allowed(start + timedelta(minutes=15, seconds=1))  # a new window
    give_back_attempt(session, email="ana@example.com", ip="10.0.0.1")
    # given back: two more fit in this window (without it, the second would be refused)
    assert [allowed(start + timedelta(minutes=m)) for m in (16, 17, 18)] == [True, True, False]


def test_sign_out_ends_every_session(session):
    user = create_user(session, "ana@example.com", TEST_PASSWORD)
    version = user.session_version
    sign_out(session, user, ip="10.0.0.1")
    assert user.session_version == version + 1
    assert [e.action for e in events(session, "auth.logout")] == ["auth.logout"]


def test_authenticate_does_not_tell_unknown_from_wrong(session):
    create_user(session, "ana@example.com", TEST_PASSWORD)
    assert authenticate(session, "ana@example.com", "wrong password") is None
    assert authenticate(session, "nobody@example.com", TEST_PASSWORD) is None
    user = authenticate(session, " ANA@example.com ", TEST_PASSWORD)
    assert isinstance(user, User) and user.last_login_at is not None


def test_long_emails_sharing_64_characters_count_attempts_apart(session):
    from experiments.signin import SignInLimits, admit_sign_in

    limits = SignInLimits(account_limit=3, pair_limit=3)
    prefix = "a" * 60
    first, second = f"{prefix}-one@example.com", f"{prefix}-two@example.com"
    assert [admit_sign_in(session, email=first, ip="", limits=limits).allowed
            for _ in range(4)] == [True, True, True, False]
    assert admit_sign_in(session, email=second, ip="", limits=limits).allowed


def test_old_counters_are_swept_when_a_new_window_opens(session):
    from datetime import timedelta

    from experiments.models import LoginThrottle, utcnow
    from experiments.signin import SignInLimits, admit_sign_in

    limits = SignInLimits(window=timedelta(minutes=15))
    start = utcnow()
    for n in range(5):
        admit_sign_in(session, email=f"spray{n}@example.com", ip="10.0.0.9", limits=limits,
                      now=start)
    assert len(session.exec(select(LoginThrottle)).all()) == 10  # account + pair each
    admit_sign_in(session, email="later@example.com", ip="10.0.0.9", limits=limits,
                  now=start + timedelta(minutes=31))
    keys = sorted(row.key for row in session.exec(select(LoginThrottle)).all())
    assert keys == ["account:later@example.com", "pair:later@example.com|10.0.0.9"]

