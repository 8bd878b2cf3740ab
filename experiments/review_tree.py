"""The driver-tree summary a week's review keeps: what its meeting saw of the tree.

A week's review shows each tree node's latest actual against its target, and its revenue
impact reads the company start MRR from the revenue ledger. Neither can be recomputed for
a past moment: a hand-entered actual is corrected in place (``DriverActual`` keeps one
row per node and date) and only the current ledger version's figures are stored. So a
week keeps a copy with its meeting (:class:`~experiments.review_models.ReviewTreeSeen`),
on the same terms as the experiment rows of :mod:`experiments.review_rows`:

* while the week runs, each view of its review (page, export, API) computes the summary
  of *every* node as of now and rewrites the copy when it differs (a digest is compared;
  an older view that commits later never overwrites a newer one);
* once the week is over the copy is final and the review renders from it alone: later
  corrections and ledger uploads change the running week, not this one;
* a past week without a copy (frozen before copies were kept, or never opened while it
  ran) gets one at its first view: the summary *reconstructed* from the data of that
  moment, dated as of the week's point in time, and marked so. Two such first views at
  once keep the first copy stored; the other shows it too.

Who sees which node is decided per view (by the tree's teams now), as for the rows; a
node added after the copy was kept is not on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from experiments.generation import unseen_write
from experiments.impact import start_mrr_of
from experiments.models import DriverNode
from experiments.nrr_page import current_ledger
from experiments.review_models import ReviewTreeSeen
from experiments.review_rows import copies_unseen
from experiments.review_weeks import aware, iso, week_of
from experiments.tree_actuals import ActualLine, actuals_summary


@dataclass(frozen=True)
class TreeCopy:
    """The review's tree summary: every node's latest actual dated on or before
    ``dated_by``, and the company start MRR; ``kept_at`` is when a past week's copy was
    written (``None`` while the week runs), ``reconstructed`` that no view of the running
    week wrote it."""

    lines: tuple[ActualLine, ...]
    company_start_mrr: float | None
    dated_by: date
    kept_at: datetime | None = None
    reconstructed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"dated_by": self.dated_by.isoformat(),
                "company_start_mrr": self.company_start_mrr,
                "reconstructed": self.reconstructed,
                "lines": [line.to_json() for line in self.lines]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], kept_at: datetime | None) -> TreeCopy:
        mrr = data.get("company_start_mrr")
        return cls(tuple(ActualLine.from_json(line) for line in data.get("lines") or []),
                   float(mrr) if isinstance(mrr, int | float) else None,
                   date.fromisoformat(data["dated_by"]), aware(kept_at),
                   bool(data.get("reconstructed")))

    def shown(self, node_ids: Iterable[int]) -> list[ActualLine]:
        """The lines of ``node_ids`` (the nodes a user may see, in tree order) that it has."""
        by_node = {line.node_id: line for line in self.lines}
        return [by_node[i] for i in node_ids if i in by_node]

    def kept_json(self) -> dict[str, Any]:
        """What the review's JSON says of where its tree actuals come from."""
        return {"dated_by": self.dated_by.isoformat(), "kept_at": iso(self.kept_at),
                "reconstructed": self.reconstructed}


def tree_digest(seen: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a copy's JSON, canonical: equal figures give equal digests."""
    text = json.dumps(seen, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tree_now(session: Session, nodes: Sequence[DriverNode], dated_by: date, *,
             reconstructed: bool = False) -> TreeCopy:
    """The summary of ``nodes`` from today's actuals and ledger, dated on or before
    ``dated_by``."""
    figures = current_ledger(session)  # one read for the actuals and the start MRR
    lines = actuals_summary(session, nodes, figures, dated_by)
    return TreeCopy(tuple(lines), start_mrr_of(session, figures), dated_by,
                    reconstructed=reconstructed)


def week_tree(session: Session, meeting_id: int, *, frozen: bool, stored: dict | None,
              stored_digest: str | None, stored_at: datetime | None,
              nodes: Sequence[DriverNode], dated_by: date, now: datetime) -> TreeCopy:
    """The tree summary of a meeting's week, kept with it (see the module docstring).

    ``stored``/``stored_digest``/``stored_at`` are the meeting's copy as already read
    (``None``: none was found; a past week may pass only the copy, a running week only
    the digest); ``nodes`` every node of the tree; ``dated_by`` the review's day. A
    running week's copy is rewritten when its digest changed; a past week without one
    stores the reconstruction, unless another view stored one first. Flushed, not
    committed.
    """
    if frozen and stored is not None:
        return TreeCopy.from_json(stored, stored_at)
    copy = tree_now(session, nodes, dated_by, reconstructed=frozen)
    seen = copy.to_json()
    digest = tree_digest(seen)
    if frozen:
        return _store_first(session, meeting_id, copy, seen, digest, now)
    if digest != stored_digest:
        _store_newer(session, meeting_id, seen, digest, now)
    return copy  # still open: ``kept_at`` stays None until the week is over


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect}")
    return insert(ReviewTreeSeen)


def _store_first(session: Session, meeting_id: int, copy: TreeCopy, seen: dict, digest: str,
                 now: datetime) -> TreeCopy:
    """Store a past week's first copy, or show the one another view stored first: the
    copy is made once (PostgreSQL makes this INSERT wait for a concurrent one's commit;
    SQLite's write lock serialises them)."""
    inserted = session.exec(
        _insert(session).values(meeting_id=meeting_id, seen=seen, seen_digest=digest,
                                seen_at=now).on_conflict_do_nothing())
    if inserted.rowcount == 1:
        return TreeCopy(copy.lines, copy.company_start_mrr, copy.dated_by, now, True)
    first = session.exec(select(ReviewTreeSeen.seen, ReviewTreeSeen.seen_at)
                         .where(ReviewTreeSeen.meeting_id == meeting_id)).one()
    return TreeCopy.from_json(first.seen, first.seen_at)


def _store_newer(session: Session, meeting_id: int, seen: dict, digest: str,
                 now: datetime) -> None:
    """Insert or rewrite a running week's copy, unless a view later than ``now`` wrote it
    (two views at once: the later one's figures stay)."""
    insert = _insert(session).values(meeting_id=meeting_id, seen=seen, seen_digest=digest,
                                     seen_at=now)
    # Shown by no cached page while the week runs (its view renders the tree afresh): the
    # data generation stays (experiments.generation), as for the week's item copies, and
    # not in the week's last minutes (review_rows.UNSEEN_COPIES_BEFORE_END). The running
    # week is the one ``now`` lies in.
    if not copies_unseen(now, week_of(now.date()).end):
        _upsert_newer(session, insert)
        return
    with unseen_write(session, ReviewTreeSeen.__tablename__, rewrites=True):
        _upsert_newer(session, insert)


def _upsert_newer(session: Session, insert) -> None:
    session.exec(insert.on_conflict_do_update(
        index_elements=[ReviewTreeSeen.meeting_id],
        set_={"seen": insert.excluded.seen, "seen_digest": insert.excluded.seen_digest,
              "seen_at": insert.excluded.seen_at},
        where=ReviewTreeSeen.seen_at <= insert.excluded.seen_at))
