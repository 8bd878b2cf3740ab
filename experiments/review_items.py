"""Editing the weekly review's items: one per experiment and meeting, holding the
meeting's note, action (owner, due date) and decision, saved with a compare-and-set
on the item's version, attributed and audited. A decision recorded here decides the
experiment through the one decision service (:mod:`experiments.decisions`), so the item
and the experiment page show the same record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from experiments.access import require
from experiments.audit import diff_fields, record_event
from experiments.decisions import attach_records, decide_in_review, review_wants_decision
from experiments.documents import user_label
from experiments.errors import Conflict, NotFound
from experiments.input_rules import FieldErrors, read_choice, read_text
from experiments.models import (
    DECISIONS,
    Experiment,
    ReviewItem,
    ReviewMeeting,
    TeamMembership,
    User,
    utcnow,
)
from experiments.reference_rows import all_rows
from experiments.review_rows import ReviewRow
from experiments.review_weeks import aware, iso, parse_week
from experiments.versioning import parse_version

MAX_TEXT = 10_000
MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
# Actions are rows of their own, carried across weeks (experiments.actions).
EDITABLE_FIELDS: tuple[str, ...] = ("note", "decision", "decision_rationale")


@dataclass
class ItemView:
    """One agenda item as the page shows it."""

    item: ReviewItem
    row: ReviewRow | None
    key: str
    can_edit: bool
    updated_by: str | None
    message: str | None = None
    message_kind: str = "success"
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] | None = None
    # The experiment's one decision record (experiments.decisions.DecisionRecord), the
    # treatments a ship may name, and the experiment version the decision form is made on.
    record: Any = None
    treatments: list[str] = field(default_factory=list)
    experiment_version: int | None = None

    def value(self, name: str) -> str:
        """The form value of ``name``: what was submitted (after an error), else what is stored."""
        if self.values is not None and name in self.values:
            return self.values[name]
        # Only the item's own columns hold a value (a pydantic miss costs an exception).
        current = getattr(self.item, name, None) if hasattr(type(self.item), name) else None
        if current is None:
            return ""
        return current.isoformat() if isinstance(current, date) else str(current)

    def to_json(self) -> dict[str, Any]:
        item = self.item
        record = self.record
        decided = record is not None and record.decided
        return {"note": item.note,
                # The experiment's decision, wherever it was made (one record).
                "decision": record.decision if decided else None,
                "decision_rationale": record.rationale if decided else "",
                "decision_record": record.to_json() if record is not None else None,
                "updated_by": self.updated_by,
                "updated_at": iso(item.updated_at), "version": item.version}


def owner_choices(session: Session, team_ids: Iterable[int | None]
                  ) -> dict[int | None, list[tuple[int, str]]]:
    """Who may own an action on an item of each team: its members and the admins
    (all users for no team). The users and memberships are the transaction's shared copy
    (:mod:`experiments.reference_rows`): the review asks twice (its actions and the
    "raise an action" form)."""
    users = [u for u in _people(session).values() if u.is_active]
    members: dict[int, set[int]] = defaultdict(set)
    for membership in all_rows(session, TeamMembership):
        members[membership.team_id].add(membership.user_id)
    choices = {}
    for team_id in set(team_ids):
        choices[team_id] = [(u.id, user_label(u)) for u in users
                            if team_id is None or u.role == "admin"
                            or u.id in members.get(team_id, set())]
    return choices


def _people(session: Session) -> dict[int, User]:
    """Every user by id, in name order: the transaction's one copy of the users table for
    the review's owner lists, item editors and deciders."""
    return {u.id: u for u in all_rows(session, User, User.name, User.email)}


def item_views(session: Session, user: User,
               pairs: Sequence[tuple[ReviewItem, ReviewRow | None]],
               experiments: Mapping[int, Experiment] | None = None) -> list[ItemView]:
    """The page's view of each (item, row it belongs to) pair, with the user's edit right.

    The statements do not depend on how many items there are, nor on which (the page's
    count stays the same whichever items its agenda page holds:
    tests/webapp/test_query_counts.py): the items' experiments in full (shared with their
    decision records), their variants, the users (the transaction's shared copy) and, for
    a user who is no admin, their team roles once. ``experiments``: the items'
    experiments by id when the caller has read them (with the items)."""
    from experiments.actions import editor_check  # actions imports this module

    ids = sorted({item.experiment_id for item, _ in pairs})
    if experiments is None:
        experiments = {e.id: e for e in session.exec(
            select(Experiment).where(Experiment.id.in_(ids))).all()} if ids else {}
    users = _people(session) if pairs else {}
    may_edit = editor_check(session, user) if pairs else None
    views = []
    for item, row in pairs:
        experiment = experiments.get(item.experiment_id)
        team_id = experiment.team_id if experiment is not None else None
        key = row.key if row else (experiment.key if experiment is not None else "")
        views.append(ItemView(
            item=item, row=row, key=key,
            # experimenter or above in the experiment's team (experiments.access)
            can_edit=may_edit(team_id),
            updated_by=user_label(users.get(item.updated_by_id)),
        ))
    attach_records(session, views, experiments, users)
    return views


def _seen_row(item: ReviewItem) -> ReviewRow | None:
    return ReviewRow.from_json(item.seen) if item.seen else None



def _clean_item_form(session: Session, data: Mapping[str, Any],
                     team_id: int | None) -> dict[str, Any]:
    """The item form read through the validation kit (:mod:`experiments.input_rules`)."""
    errors = FieldErrors()
    clean: dict[str, Any] = {
        name: read_text(data, name, errors, max_length=MAX_TEXT, multiline=True)
        for name in ("note", "decision_rationale")
    }
    clean["decision"] = None
    if str(data.get("decision") or "").strip():
        clean["decision"] = read_choice(data, "decision", errors, DECISIONS)
        if clean["decision"] and not clean["decision_rationale"]:
            errors.add("decision_rationale", "a decision needs a rationale")
    errors.raise_if_any()
    return clean


def get_item(session: Session, user: User, week: str, item_id: int, *,
             needed: str = "viewer") -> ItemView:
    """One item of ``week``'s meeting, checked against the user's role in its team.

    Raises
    ------
    NotFound
        Bad week, no such item in that week, or another team's.
    PermissionDenied
        The user's role in the team is below ``needed``.
    """
    try:
        the_week = parse_week(week)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    item = session.get(ReviewItem, item_id) if 0 < item_id <= MAX_ID else None
    meeting = session.get(ReviewMeeting, item.meeting_id) if item is not None else None
    if item is None or meeting is None or meeting.iso_week != the_week.label:
        raise NotFound(f"no item {item_id} in the review of {the_week.label}")
    experiment = session.get(Experiment, item.experiment_id)
    require(session, user, experiment.team_id if experiment else None, needed)
    return item_views(session, user, [(item, _seen_row(item))])[0]


def update_item(
    session: Session,
    user: User,
    week: str,
    item_id: int,
    data: Mapping[str, Any],
    *,
    now: datetime | None = None,
    ip: str = "",
) -> ItemView:
    """Save one item's note, action (owner, due date) and decision, attributed and audited.

    ``data`` holds the form's strings, including the ``version`` the edit was made
    on. A decision also decides the experiment through the registry's lifecycle
    (stopping it first if it is still running) unless it already carries that
    decision. Flushed, not committed.

    Raises
    ------
    NotFound
        Bad week or item, or the experiment belongs to another team.
    PermissionDenied
        The user is not an experimenter (or above) in the experiment's team.
    ValidationFailed
        Malformed fields, or a decision that conflicts with the experiment's.
    Conflict
        The item changed since ``version`` (someone else saved first).
    """
    now = aware(now) or utcnow()
    view = get_item(session, user, week, item_id, needed="experimenter")
    item = view.item
    experiment = session.get(Experiment, item.experiment_id)
    expected = parse_version(data.get("version"))
    if expected != item.version:
        raise Conflict(_stale_message(session, item, expected))
    clean = _clean_item_form(session, data, experiment.team_id)
    deciding = review_wants_decision(session, experiment, item, clean, data)

    before = {name: getattr(item, name) for name in EDITABLE_FIELDS}
    changed = diff_fields(before, clean)
    if not changed and not deciding:
        return view
    if deciding:  # the one decision service: same record, history and audit as the page
        decide_in_review(session, experiment, data, actor=user, week=week, ip=ip)
    claimed = session.exec(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.version == expected)
        .values(version=expected + 1, updated_by_id=user.id, updated_at=now, **clean)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.expire(item)
        raise Conflict(_stale_message(session, item, expected))
    session.expire(item)
    session.refresh(item)
    record_event(session, "review.update", actor=user, entity_type="review_item",
                 entity_id=item.id, team_id=experiment.team_id,
                 diff={"experiment": [None, experiment.key], "week": [None, week], **changed},
                 ip=ip)
    return item_views(session, user, [(item, _seen_row(item))])[0]


def _stale_message(session: Session, item: ReviewItem, expected: int) -> str:
    session.refresh(item)
    who = user_label(session.get(User, item.updated_by_id)) if item.updated_by_id \
        else "someone else"
    when = aware(item.updated_at).strftime("%Y-%m-%d %H:%M UTC") if item.updated_at \
        else "meanwhile"
    return (f"Not saved: {who} changed this item at {when} after you opened it (you edited "
            f"version {expected}, it is now version {item.version}). Reload to see their "
            "changes, then edit again.")
