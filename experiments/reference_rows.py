"""Whole small tables read once per session transaction (issue 18: fewer statements per page).

A read page looks up names and people in a few small tables — driver-tree nodes,
users, teams — from several services (the documents, the tree, the registry). Each
used to send its own ``SELECT`` of the whole table; :func:`all_rows` keeps the first
answer in the session for the others.

The copy is only used while it is certainly current for this session: it is dropped
whenever the session flushes or its transaction ends (commit, rollback, close), and it
is not used while the session holds unflushed changes (a plain query would autoflush
them first and see them). A commit by another transaction after the first read is not
seen until this session's transaction ends, though a plain second query could see it
(PostgreSQL's READ COMMITTED; SQLite, where a web request reads outside a transaction
until it first writes, ``experiments.db``): the copy shows the table as this transaction
first read it. Callers look rows up with ``.get``, so a row added in between is shown
without its name, never an error.

A lookup by id (:func:`by_id`) needs no order: it uses whichever copy of the table the
transaction already holds, and when there is none it reads the table in the order the
pages list it (:data:`USUAL_ORDER`), so a later ordered read of the same table is the same
copy (the review page read nodes and users twice before: once for the documents' lookups
by id, once in tree or name order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from experiments.models import DriverNode, User

T = TypeVar("T")
_KEY = "nrrlab.reference_rows"

#: The order in which pages list a table (tree order; people by name): what
#: :func:`by_id` reads a table in when the transaction holds no copy of it yet.
USUAL_ORDER: dict[type, tuple[Any, ...]] = {
    DriverNode: (DriverNode.position, DriverNode.id),
    User: (User.name, User.email),
}


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
    """``{id: row}`` of every row of ``model``: from any copy of the table the transaction
    already holds (in whatever order), else read in its :data:`USUAL_ORDER`."""
    if not (session.new or session.dirty or session.deleted):
        for (kept, _order), rows in session.info.get(_KEY, {}).items():
            if kept is model:
                return {row.id: row for row in rows}
    return {row.id: row for row in all_rows(session, model, *USUAL_ORDER.get(model, ()))}


@contextmanager
def kept_across(session: Session, *models: type) -> Iterator[None]:
    """Keep the transaction's copies across the block, which writes only ``models``' tables.

    A flush or an ORM write statement drops every copy (:func:`_forget`): it cannot know
    which tables it wrote. A caller that writes only other tables (the review's frozen
    rows, ``review_item``) keeps them, so a read after its write sends no second
    ``SELECT`` of the users. Raises ``ValueError`` when a copy is of one of ``models``;
    nothing is kept when the session held unflushed changes before the block (their
    flush may write any table) or when the block raises (its transaction may end)."""
    copies = session.info.get(_KEY)
    written = {model.__table__.name for model in models}
    for model, _order in copies or {}:
        if model.__table__.name in written:
            raise ValueError(f"kept_across: {model.__name__} has a copy and is written")
    if session.new or session.dirty or session.deleted:
        copies = None
    yield
    if copies is not None and not (session.new or session.dirty or session.deleted):
        session.info[_KEY] = {**copies, **session.info.get(_KEY, {})}


@event.listens_for(OrmSession, "after_flush")
# Every end of a transaction: commit, rollback, and close (which rolls back without
# firing the rollback events, and leaves the session usable for a new transaction).
@event.listens_for(OrmSession, "after_transaction_end")
def _forget(session: OrmSession, *args: Any) -> None:
    session.info.pop(_KEY, None)


@event.listens_for(OrmSession, "do_orm_execute")
def _forget_on_statement_write(state: Any) -> None:
    # An INSERT/UPDATE/DELETE sent with session.execute fires no flush: drop the copy too.
    if not state.is_select:
        state.session.info.pop(_KEY, None)
