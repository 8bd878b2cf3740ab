"""Whole small tables read once per session transaction (issue 18: fewer statements per page).

A read page looks up names and people in a few small tables — driver-tree nodes,
users, teams — from several services (the documents, the tree, the registry). Each
used to send its own ``SELECT`` of the whole table; :func:`all_rows` keeps the first
answer in the session for the others.

The copy is only used while it is certainly current for this session: it is dropped
whenever the session flushes, commits or rolls back, and it is not used while the
session holds unflushed changes (a plain query would autoflush them first and see
them). Another transaction's commit is not seen before this session's transaction
ends, exactly as with a repeated query inside one transaction on PostgreSQL; on SQLite
a read transaction's snapshot behaves the same way.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

T = TypeVar("T")
_KEY = "nrrlab.reference_rows"


def all_rows(session: Session, model: type[T], *order_by: Any) -> list[T]:
    """Every row of ``model`` (a small reference table), in ``order_by`` order."""
    if session.new or session.dirty or session.deleted:
        return list(session.exec(select(model).order_by(*order_by)).all())
    cache: dict[tuple, list] = session.info.setdefault(_KEY, {})
    key = (model, tuple(str(column) for column in order_by))
    if key not in cache:
        cache[key] = list(session.exec(select(model).order_by(*order_by)).all())
    return cache[key]


def by_id(session: Session, model: type[T]) -> dict[int, T]:
    """``{id: row}`` of every row of ``model``."""
    return {row.id: row for row in all_rows(session, model)}


@event.listens_for(OrmSession, "after_flush")
@event.listens_for(OrmSession, "after_commit")
@event.listens_for(OrmSession, "after_rollback")
@event.listens_for(OrmSession, "after_soft_rollback")
def _forget(session: OrmSession, *args: Any) -> None:
    session.info.pop(_KEY, None)


@event.listens_for(OrmSession, "do_orm_execute")
def _forget_on_statement_write(state: Any) -> None:
    # An INSERT/UPDATE/DELETE sent with session.execute fires no flush: drop the copy too.
    if not state.is_select:
        state.session.info.pop(_KEY, None)
