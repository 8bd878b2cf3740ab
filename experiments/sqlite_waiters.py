"""Writers waiting for SQLite's write lock, made visible to a long writer that holds it.

SQLite's write lock is not fair. A connection that finds it taken sleeps in its busy
handler (up to 100 ms between tries) and keeps missing the instant between a long
writer's COMMIT and its next BEGIN, so the long writer (the upload job) used to pause
~0.15 s after every 0.5 s of work whether anyone waited or not.

Here every app connection *announces* its wait: it holds a shared ``flock`` on the file
``<database>-wait`` while its ``BEGIN IMMEDIATE`` runs (:func:`begin_immediate`, called by
the engine's hooks in :mod:`experiments.db`). A long writer asks between statements
whether anyone holds that lock (:func:`someone_waiting`); if so it commits and waits
until every announced writer has had its turn (:func:`let_waiters_in`). Nobody waiting
costs it one system call per check. ``flock`` locks belong to an open file description,
so threads of one process announce independently; a process that dies drops its lock.
A forked child closes the announcements it inherited (:func:`_forget_in_child`): they
are its parent's threads' waits, and the child's copies would keep them held for as long
as it lives.

Where ``flock`` is missing (not POSIX) or the file cannot be opened, nothing is announced
and :func:`someone_waiting` answers True: the long writer pauses as it did before.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, suppress

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

#: Longest a long writer waits for announced writers to get the lock once it let go
#: (their busy handler sleeps at most 100 ms between tries; more only under heavy load).
LET_IN_SECONDS = 1.0
_POLL_SECONDS = 0.002


def database_file(dbapi_connection) -> str | None:
    """The file of the ``main`` database of an sqlite3 connection; None in memory/temp."""
    for _seq, name, path in dbapi_connection.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return path or None
    return None


#: Descriptors of announcements being held in this process (see _forget_in_child).
_HELD: set[int] = set()


def _forget_in_child() -> None:
    # Closing a copy drops nothing the parent holds: the lock goes once every copy is
    # closed, so the parent's thread still releases it when its BEGIN is through.
    for fd in list(_HELD):
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _open(database: str | None) -> int | None:
    if fcntl is None or not database:
        return None
    try:
        # Read-only is enough for flock; O_CREAT so that the first writer makes the file.
        return os.open(f"{database}-wait", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        return None


@contextmanager
def announced(database: str | None):
    """Hold the shared "I am waiting to write" lock of ``database`` during the body."""
    fd = _open(database)
    if fd is None:
        yield
        return
    _HELD.add(fd)  # before the lock is taken: a fork from now on leaves the child's copy
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # drops the lock


def begin_immediate(dbapi_connection, database: str | None) -> None:
    """``BEGIN IMMEDIATE`` on ``dbapi_connection``, announced while it waits for the lock."""
    with announced(database):
        dbapi_connection.execute("BEGIN IMMEDIATE")


class Watch:
    """A long writer's view of ``database``'s announced writers (close it when done)."""

    def __init__(self, database: str | None):
        self.fd = _open(database)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _nobody(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return True

    def someone_waiting(self) -> bool:
        """Whether a writer is waiting now (True when waits cannot be seen: pause anyway)."""
        return self.fd is None or not self._nobody()

    def let_waiters_in(self, limit: float = LET_IN_SECONDS) -> bool:
        """After a COMMIT: return once every announced writer got the lock (or gave up).

        False after ``limit`` seconds with someone still waiting (held up by another
        writer, not by us), or when waits cannot be seen (then it sleeps 0.15 s, the
        old fixed pause that a busy handler polling every 100 ms cannot miss).
        """
        if self.fd is None:
            time.sleep(0.15)
            return False
        deadline = time.monotonic() + limit
        while not self._nobody():
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_exc) -> None:
        with suppress(OSError):
            self.close()
