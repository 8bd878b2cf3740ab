"""Actions of the weekly review that carry over until they are closed.

An action (:class:`~experiments.review_models.Action`) is raised in one ISO week's
meeting, has an owner and usually a due date, and is about one experiment (whose team
scopes it) or about none (visible to everyone). It appears at the top of the review of
its week and of **every later week while it is open**; an action whose due date lies
before the Monday of the week being reviewed is *overdue* there. Closing it — ``done``
or ``dropped`` — records the week whose meeting closed it: it stays visible, closed, on
that week's page, leaves the later ones, and still shows as open on the weeks between
its raising and its closing (the meetings saw it open). Reopening puts it back on the
carried list.

Every write is a compare-and-set on the action's version
(:func:`experiments.versioning.compare_and_set`, one 409 for the slower of two
editors), is read through :mod:`experiments.input_rules`, needs the experimenter role
in the action's team (:mod:`experiments.access`) and writes an audit event:
``action.create``, ``action.update``, ``action.close`` (done), ``action.drop``,
``action.reopen``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, or_
from sqlmodel import Session, select

from experiments.access import can, require, team_roles, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.documents import user_label
from experiments.errors import NotFound, ValidationFailed
from experiments.input_rules import FieldErrors, read_choice, read_date, read_id, read_text
from experiments.models import Experiment, ReviewMeeting, User, utcnow
from experiments.review_items import owner_choices
from experiments.review_models import ACTION_STATUSES, Action
from experiments.review_rows import ReviewRow, meeting_items
from experiments.review_weeks import Week, aware, current_week, iso, parse_week
from experiments.users import role_rank
from experiments.versioning import compare_and_set, parse_version

MAX_TITLE = 2_000
MAX_RESOLUTION = 10_000
MAX_ID = 2**31 - 1
#: Audit verb of each status an action can be moved to.
STATUS_VERBS: dict[str, str] = {"done": "close", "dropped": "drop", "open": "reopen"}


@dataclass
class ActionView:
    """One action as a given week's review (or someone's week) shows it."""

    action: Action
    week: str  # the week it is shown in
    state: str  # open / done / dropped, as that week's meeting saw it
    overdue: bool
    carried: bool  # raised in an earlier week
    owner_label: str | None
    experiment_key: str | None
    experiment_name: str | None
    can_edit: bool
    owners: list[tuple[int, str]] = field(default_factory=list)
    message: str | None = None
    message_kind: str = "success"
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] | None = None

    @property
    def closed_here(self) -> bool:
        """Closed in this week's meeting (shown, but no longer carried)."""
        return self.state != "open"

    def value(self, name: str) -> str:
        """The form value of ``name``: what was submitted (after an error), else what is stored."""
        if self.values is not None and name in self.values:
            return self.values[name]
        current = getattr(self.action, name)
        if current is None:
            return ""
        return current.isoformat() if isinstance(current, date) else str(current)

    def to_json(self) -> dict[str, Any]:
        a = self.action
        return {"id": a.id, "title": a.title, "experiment": self.experiment_key,
                "owner": self.owner_label, "due": iso(a.due), "raised_week": a.raised_week,
                "state": self.state, "overdue": self.overdue, "carried": self.carried,
                "status_now": a.status, "closed_week": a.closed_week,
                "resolution": a.resolution, "version": a.version}


def state_in_week(action: Action, week: str) -> str:
    """What the meeting of ``week`` saw: open until the week that closed it."""
    if action.closed_week is None or action.closed_week > week:
        return "open"
    return action.status


def is_overdue(action: Action, week: Week) -> bool:
    """Open in ``week`` and due before its Monday."""
    return (state_in_week(action, week.label) == "open" and action.due is not None
            and action.due < week.start.date())


def _sort_key(view: ActionView) -> tuple:
    a = view.action
    return (view.state != "open", not view.overdue, a.due is None, a.due or date.max,
            a.raised_week, a.id)


def editor_check(session: Session, user: User) -> Callable[[int | None], bool]:
    """``team_id -> may user act as experimenter there``, reading the user's roles once
    (the same rule as :func:`experiments.access.can`, without a query per object)."""
    roles = {} if user.role == "admin" else team_roles(session, user)  # admins: no read

    def check(team_id: int | None) -> bool:
        if user.role == "admin":
            return True
        role = user.role if team_id is None else roles.get(team_id)
        return role is not None and role_rank(role) >= role_rank("experimenter")

    return check


def _views(session: Session, user: User, actions: Sequence[Action], week: Week) -> list[ActionView]:
    experiment_ids = {a.experiment_id for a in actions if a.experiment_id}
    experiments = {e.id: e for e in session.exec(
        select(Experiment).where(Experiment.id.in_(experiment_ids))).all()} \
        if experiment_ids else {}
    user_ids = {a.owner_id for a in actions if a.owner_id}
    users = {u.id: u for u in session.exec(select(User).where(User.id.in_(user_ids))).all()} \
        if user_ids else {}
    owners = owner_choices(session, {a.team_id for a in actions})
    may_edit = editor_check(session, user)
    views = []
    for a in actions:
        experiment = experiments.get(a.experiment_id)
        views.append(ActionView(
            action=a, week=week.label, state=state_in_week(a, week.label),
            overdue=is_overdue(a, week), carried=a.raised_week < week.label,
            owner_label=user_label(users.get(a.owner_id)),
            experiment_key=experiment.key if experiment else None,
            experiment_name=experiment.name if experiment else None,
            can_edit=may_edit(a.team_id),
            owners=owners.get(a.team_id, []),
        ))
    return sorted(views, key=_sort_key)


def _visible(query, session: Session, user: User):
    teams = visible_team_ids(session, user)
    if teams is None:
        return query
    return query.where(or_(Action.team_id.is_(None), Action.team_id.in_(teams or {-1})))


#: The actions on a week's (``week``) review, built once (every view of the review asks).
_OF_WEEK = select(Action).where(
    Action.raised_week <= bindparam("week"),
    or_(Action.closed_week.is_(None), Action.closed_week >= bindparam("week")))


def week_actions(session: Session, user: User, week: Week | str) -> list[ActionView]:
    """The actions on ``week``'s review that ``user`` may see: raised that week or earlier and
    open then, or closed in that very week. Open ones first, overdue first, then by due date.

    Raises
    ------
    NotFound
        ``week`` is not an ISO week.
    """
    the_week = _week(week)
    actions = session.exec(_visible(_OF_WEEK, session, user),
                           params={"week": the_week.label}).all()
    return _views(session, user, actions, the_week)


def open_actions_of(session: Session, user: User, owner: User, *,
                    now: datetime | None = None) -> list[ActionView]:
    """``owner``'s open actions that ``user`` may see, as this week's review shows them."""
    week = current_week(aware(now) or utcnow())
    query = select(Action).where(Action.owner_id == owner.id, Action.status == "open")
    return _views(session, user, session.exec(_visible(query, session, user)).all(), week)


def _week(week: Week | str) -> Week:
    if isinstance(week, Week):
        return week
    try:
        return parse_week(week)
    except ValueError as exc:
        raise NotFound(str(exc)) from None


def _begun(week: Week, now: datetime) -> None:
    if week.start > now:
        raise ValidationFailed({"": f"{week.label} has not begun: actions are raised and closed "
                                    "in a meeting that has happened"})


def get_action(session: Session, user: User, action_id: int, week: Week | str, *,
               needed: str = "viewer") -> ActionView:
    """One action as ``week``'s review shows it, checked against the user's role in its team.

    Raises
    ------
    NotFound
        Bad week, no such action, another team's, or one raised after ``week``.
    PermissionDenied
        The user's role in the action's team is below ``needed``.
    """
    the_week = _week(week)
    action = session.get(Action, action_id) if 0 < action_id <= MAX_ID else None
    if action is None or action.raised_week > the_week.label:
        raise NotFound(f"no action {action_id} on the review of {the_week.label}")
    require(session, user, action.team_id, needed)
    return _views(session, user, [action], the_week)[0]


def _read_owner(session: Session, data: Mapping[str, Any], team_id: int | None,
                errors: FieldErrors) -> int | None:
    owner_id = read_id(data, "owner_id", errors, required=True, what="owner")
    if owner_id is not None:
        allowed = {uid for uid, _ in owner_choices(session, [team_id]).get(team_id, [])}
        if owner_id not in allowed:
            errors.add("owner_id", "must be an active member of the experiment's team"
                       if team_id is not None else "must be an active user")
            return None
    return owner_id


def _read_due(data: Mapping[str, Any], errors: FieldErrors) -> date | None:
    due = read_date(data, "due", errors)
    if due is not None and not 1900 <= due.year <= 9998:
        errors.add("due", "must be a date between 1900 and 9998")
        return None
    return due


def _experiment_choice(session: Session, user: User, data: Mapping[str, Any],
                       errors: FieldErrors) -> Experiment | None:
    raw = str(data.get("experiment") or "").strip()
    if not raw:
        return None
    experiment = session.exec(select(Experiment).where(Experiment.key == raw[:64])).first() \
        if len(raw) <= 64 else None
    if experiment is None or not can(session, user, experiment.team_id, "viewer"):
        errors.add("experiment", "unknown experiment")
        return None
    if not can(session, user, experiment.team_id, "experimenter"):
        errors.add("experiment", "you need the experimenter role in this experiment's team")
        return None
    return experiment


def raise_action(session: Session, user: User, week: Week | str, data: Mapping[str, Any], *,
                 now: datetime | None = None, ip: str = "") -> Action:
    """Raise an action in ``week``'s meeting: ``title``, ``owner_id``, optional ``due`` and
    ``experiment`` (its key). Flushed, not committed.

    Raises
    ------
    NotFound
        ``week`` is not an ISO week.
    ValidationFailed
        Malformed or missing fields, an owner outside the experiment's team, no experiment
        from a user who is not an experimenter globally, a week that has not begun.
    """
    now = aware(now) or utcnow()
    the_week = _week(week)
    _begun(the_week, now)
    errors = FieldErrors()
    title = read_text(data, "title", errors, max_length=MAX_TITLE, required=True)
    experiment = _experiment_choice(session, user, data, errors)
    team_id = experiment.team_id if experiment else None
    owner_id = _read_owner(session, data, team_id, errors)
    due = _read_due(data, errors)
    if experiment is None and "experiment" not in errors \
            and not can(session, user, None, "experimenter"):
        errors.add("experiment", "choose one of your team's experiments: you may raise actions "
                                 "without one only as an experimenter of the whole workspace")
    errors.raise_if_any()
    action = Action(title=title, experiment_id=experiment.id if experiment else None,
                    team_id=team_id, raised_week=the_week.label, owner_id=owner_id, due=due,
                    created_by_id=user.id, created_at=now, updated_by_id=user.id,
                    updated_at=now)
    session.add(action)
    session.flush()
    record_event(session, "action.create", actor=user, entity_type="action",
                 entity_id=action.id, team_id=team_id,
                 diff={"title": [None, title], "owner_id": [None, owner_id],
                       "due": [None, iso(due)], "week": [None, the_week.label],
                       "experiment": [None, experiment.key if experiment else None]}, ip=ip)
    return action


def update_action(session: Session, user: User, week: Week | str, action_id: int,
                  data: Mapping[str, Any], *, now: datetime | None = None,
                  ip: str = "") -> ActionView:
    """Change an action's title, owner or due date (``data`` carries the ``version`` seen).

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_action` with the experimenter role.
    ValidationFailed
        Malformed fields or version.
    StaleVersion
        Someone else saved the action since ``version`` (409).
    """
    now = aware(now) or utcnow()
    view = get_action(session, user, action_id, week, needed="experimenter")
    action = view.action
    seen = parse_version(data.get("version"))
    errors = FieldErrors()
    clean = {"title": read_text(data, "title", errors, max_length=MAX_TITLE, required=True),
             "owner_id": _read_owner(session, data, action.team_id, errors),
             "due": _read_due(data, errors)}
    errors.raise_if_any()
    changed = diff_fields({k: getattr(action, k) for k in clean}, clean)
    if not changed and seen == action.version:
        return view
    compare_and_set(session, action, seen, {**clean, "updated_by_id": user.id,
                                            "updated_at": now},
                    what="This action", entity_type="action", entity_id=action.id)
    record_event(session, "action.update", actor=user, entity_type="action",
                 entity_id=action.id, team_id=action.team_id, diff=changed, ip=ip)
    return get_action(session, user, action.id, week)


def set_action_status(session: Session, user: User, week: Week | str, action_id: int,
                      data: Mapping[str, Any], *, now: datetime | None = None,
                      ip: str = "") -> ActionView:
    """Close an action (``status`` ``done`` or ``dropped``, optional ``resolution``) in
    ``week``'s meeting, or reopen it (``open``). Audited as ``action.close``/``drop``/``reopen``.

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_action` with the experimenter role.
    ValidationFailed
        Unknown status, the action already has it, a closing week that has not begun.
    StaleVersion
        Someone else saved the action since ``version`` (409).
    """
    now = aware(now) or utcnow()
    the_week = _week(week)
    view = get_action(session, user, action_id, the_week, needed="experimenter")
    action = view.action
    seen = parse_version(data.get("version"))
    errors = FieldErrors()
    status = read_choice(data, "status", errors, ACTION_STATUSES)
    resolution = read_text(data, "resolution", errors, max_length=MAX_RESOLUTION,
                           multiline=True)
    errors.raise_if_any()
    if seen == action.version and status == action.status:
        raise ValidationFailed({"status": f"this action is already {status}"})
    if status == "open":
        values = {"status": "open", "closed_week": None, "closed_at": None,
                  "closed_by_id": None, "resolution": ""}
    else:
        _begun(the_week, now)
        values = {"status": status, "closed_week": the_week.label, "closed_at": now,
                  "closed_by_id": user.id, "resolution": resolution}
    before = {"status": action.status, "closed_week": action.closed_week,
              "resolution": action.resolution}
    compare_and_set(session, action, seen, {**values, "updated_by_id": user.id,
                                            "updated_at": now},
                    what="This action", entity_type="action", entity_id=action.id)
    record_event(session, f"action.{STATUS_VERBS[status]}", actor=user, entity_type="action",
                 entity_id=action.id, team_id=action.team_id,
                 diff={**diff_fields(before, {k: values[k] for k in before}),
                       "title": [action.title, action.title]}, ip=ip)
    return get_action(session, user, action.id, the_week)


def week_experiment_names(session: Session, week: Week | str) -> dict[str, str] | None:
    """Key → name of the experiments on ``week``'s meeting, as its frozen rows saw them
    (what :func:`action_form_choices` offers after a form error on that week); ``None``
    when the week has no meeting yet (then every experiment, by its current name)."""
    the_week = _week(week)
    meeting = session.exec(select(ReviewMeeting).where(
        ReviewMeeting.iso_week == the_week.label)).first()
    rows = [ReviewRow.from_json(i.seen) for i in meeting_items(session, meeting).values()
            if i.seen] if meeting is not None else []
    return {r.key: r.experiment.name for r in rows} or None


def action_form_choices(session: Session, user: User,
                        names: Mapping[str, str] | None = None,
                        catalogue: Sequence[Any] | None = None) -> dict[str, Any]:
    """What the "raise an action" form offers ``user``: the experiments they may act on and
    the people who may own actions on them. With ``names`` (key → name as a frozen review
    saw it) only those experiments, so a past week's page never shows later renames.
    ``catalogue``: every experiment's ``key``, ``name`` and ``team_id`` by key, when the
    caller has read them already."""
    may_edit = editor_check(session, user)
    # Three columns, not whole experiments: the review page offers hundreds (issue 18).
    if catalogue is None:
        catalogue = session.exec(select(Experiment.key, Experiment.name, Experiment.team_id)
                                 .order_by(Experiment.key)).all()
    experiments = [e for e in catalogue
                   if (names is None or e.key in names) and may_edit(e.team_id)]
    teams = {e.team_id for e in experiments} | {None}
    by_team = owner_choices(session, teams)
    owners = {uid: label for choices in by_team.values() for uid, label in choices}
    label = (lambda e: names[e.key]) if names is not None else (lambda e: e.name)
    return {"experiments": [(e.key, f"{label(e)} ({e.key})") for e in experiments],
            "owners": sorted(owners.items(), key=lambda p: p[1].casefold()),
            "general": may_edit(None)}
