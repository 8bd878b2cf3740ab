"""A rendered-page cache for read pages that never serves a stale page or another user's.

A read page (dashboard, experiment list, results, tree, review, NRR, My week) costs
7–21 ms of CPU to build, mostly decoding stored analyses and rendering templates; a
repeated read of an unchanged page costs ~2–3 ms when its rendered body is kept
(issue 18). A view opts in with :func:`cached_page`; everything else is untouched.

**When a kept body is still right.** A page is a function of the data, the signed-in
user, the request and the clock. The key holds each:

* the data: the **data generation** (``experiments.generation``), one number every
  committed write moves in the writing transaction itself — web forms, the JSON API,
  background jobs, the CLI, other processes and other engines alike, because it is
  counted at the engine's commit, not in the views. It is read (one primary-key
  ``SELECT``) *before* the view runs, so a body kept under generation *g* shows data at
  least as new as *g*; a body can only be reused by a request that read *g* too. The
  read is the transaction's: the review rows kept per generation (``experiments.review_rows``)
  ask later in the same request and get this first read, which is right for them too
  (their rows are computed after it) and saves a statement per first view after a write;
  a newer number read later would not be right for this key. (Writes
  no cached view reads — refused requests' audit rows, sign-in counters, API token
  stamps, export audit rows, notification deliveries, a background upload's progress and
  rows — are exempted there, checked at commit: ``unseen_write``.)
  Reading it on every request (instead of trusting a recent read) keeps "my next page
  shows my write": the write committed before its response was sent.
* the user: their id (roles, team memberships and the user row are data, so a change
  to them moves the generation);
* the request: endpoint, scheme, host, path and query string (``HEAD`` and ``GET``
  alike), and the htmx headers a view may read (``HX-Request``, ``HX-History-Restore-Request``,
  ``HX-Target``): a fragment is kept apart from its page;
* the clock: today's UTC date (pages say "ends in 3 days", this week's review, overdue
  actions; users have no time zone of their own yet). Everything finer (an hour-level
  remark) is bounded by the **time to live** of an entry, ``PAGE_CACHE_TTL_SECONDS``
  (60 s).

**Never kept**: anything but a ``200`` ``text/html`` answer to ``GET``/``HEAD``; pages of
anonymous users; a request whose session holds flashed messages (they are rendered once,
into that page) or whose view flashed or read them; a response that sets a cookie of its
own (the session cookie is added after the view, per request, and is never part of the
body); a request before the database holds the generation (an un-migrated database, or an
emptied table: the number is ``None``).

**Per-request pieces of a kept body.** The CSRF token (Flask-WTF's ``generate_csrf``, a
signed, timestamped copy of the session's secret) is rendered as a sentinel — the view
runs with ``g.csrf_token`` preset to it — and each answer substitutes the token of its own
session, so two sessions of one user never share one. The app has no CSP nonces (the
policy is ``script-src 'self'``) and no request ids in pages; the sentinel is ASCII
letters and digits, so no escaping can change it.

**Browsers.** An answer from the cache carries an ``ETag`` (a hash of the entry's identity
and the session's CSRF secret) and a matching ``If-None-Match`` gets a ``304`` with no
body. ``Cache-Control`` stays the app's ``no-store`` (``webapp.security``: sensitive pages
are not written to a browser's disk, and a test holds it), so a browser does not
revalidate; a client that keeps bodies itself (htmx history, scripts) can.

**Size and threads.** One cache per app (a gunicorn worker process), an LRU bounded in
bytes (``PAGE_CACHE_MAX_MB``, 32) shared by the worker's threads under one lock; a body
larger than a quarter of the bound is not kept. Two threads missing one key at once both
render (no stampede lock: a render is milliseconds). ``PAGE_CACHE`` switches it off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, make_response, request, session
from flask.globals import request_ctx
from flask_wtf.csrf import generate_csrf

from experiments.generation import has_generation_table, read_generation
from experiments.models import utcnow
from webapp.db import get_engine, get_session
from webapp.security import acting_user

F = TypeVar("F", bound=Callable[..., Any])
_KEY = "nrrlab.page_cache"
_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
#: Set on a view :func:`cached_page` wraps (found again through any outer decorator that
#: keeps ``__wrapped__``'s attributes, as ``functools.wraps`` does).
_MARK = "_nrrlab_cached_page"
#: Request headers a view may branch on (``webapp.rendering.is_htmx`` and htmx targets).
_VARYING_HEADERS = ("HX-Request", "HX-History-Restore-Request", "HX-Target")
#: Response headers never replayed from a kept entry (set per answer, or not keepable).
_PER_ANSWER_HEADERS = frozenset({"content-length", "set-cookie", "etag", "cache-control"})
log = logging.getLogger("nrrlab.page_cache")


@dataclass(frozen=True)
class Entry:
    """One kept body: the view's headers, the body with the CSRF sentinel, and when it
    expires (``time.monotonic()``)."""

    body: bytes
    headers: tuple[tuple[str, str], ...]
    identity: str
    expires: float
    #: What the entry counts against the byte bound: body, key text, headers, overhead.
    cost: int = 0


#: Bytes charged per entry beyond its body, key and headers (the entry, key tuple and
#: dictionary slot): without it many tiny fragments under long keys escape the bound.
ENTRY_OVERHEAD = 512


def _cost(key: tuple, body: bytes, headers: tuple[tuple[str, str], ...]) -> int:
    text = sum(len(part) for part in key if isinstance(part, str | bytes))
    return len(body) + text + sum(len(k) + len(v) for k, v in headers) + ENTRY_OVERHEAD


class PageCache:
    """A thread-safe LRU of :class:`Entry`, bounded by the bytes of bodies, keys and
    headers (:func:`_cost`)."""

    def __init__(self, *, max_bytes: int, ttl_seconds: float):
        if max_bytes < 1 or ttl_seconds <= 0:
            raise ValueError(f"page cache bounds must be positive, not max_bytes={max_bytes}, "
                             f"ttl_seconds={ttl_seconds}")
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.sentinel = "nrrlabcsrfsentinel" + secrets.token_hex(16)
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            if entry.expires <= time.monotonic():
                self._drop(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple, body: bytes, headers: tuple[tuple[str, str], ...]) -> Entry:
        cost = _cost(key, body, headers)
        entry = Entry(body, headers, secrets.token_hex(8), time.monotonic() + self.ttl_seconds,
                      cost)
        if cost > self.max_bytes // 4:
            return entry
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._bytes += cost
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: tuple) -> None:
        self._bytes -= self._entries.pop(key).cost


def init_page_cache(app: Flask) -> None:
    """Give the app its cache (used while ``PAGE_CACHE`` is on, which is read per request,
    so a test can switch it off), and read a cached view's generation before anything
    else of its request (:func:`_generation_first`)."""
    app.extensions[_KEY] = PageCache(
        max_bytes=int(app.config.get("PAGE_CACHE_MAX_MB", 32)) * 1024 * 1024,
        ttl_seconds=float(app.config.get("PAGE_CACHE_TTL_SECONDS", 60)),
    )
    # First of the app's before-request hooks: one that reads the signed-in user (or any
    # data) must come after the generation is read.
    app.before_request_funcs.setdefault(None, []).insert(0, _generation_first)


def _generation_first() -> None:
    """Read the data generation of a cached view's request before its user is loaded.

    The key's number must be read before every piece of data the page shows, and the
    signed-in user (name, roles, teams) is such data — loaded by Flask-Login when
    :func:`webapp.security.allow` first asks, before :func:`cached_page` runs. On
    PostgreSQL (READ COMMITTED) a role or name change committed between the two reads
    would otherwise be kept for that user under the *new* number with the *old* user
    (R1, issue 18), and served until the entry's time to live. Reading here makes
    :func:`_key`'s later read the transaction's first (``read_generation`` answers it
    again in the same transaction). SQLite reads one snapshot per transaction anyway."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if view is None or not getattr(view, _MARK, False):
        return
    if request.method not in _CACHEABLE_METHODS or page_cache() is None:
        return
    read_generation(get_session().connection())


def page_cache(app: Flask | None = None) -> PageCache | None:
    """The app's cache, or ``None`` when switched off or the database has no generation."""
    app = app or current_app
    cache = app.extensions.get(_KEY)
    if cache is None or not app.config.get("PAGE_CACHE", True):
        return None
    ready = app.extensions.get(_KEY + ".ready")
    if ready is None:
        with get_engine().connect() as connection:
            ready = has_generation_table(connection)
        if not ready:
            log.warning("page cache off: the database has no data_generation table "
                        "(run `nrrlab db upgrade`)")
        app.extensions[_KEY + ".ready"] = ready
    return cache if ready else None


def cached_page(view: F) -> F:
    """Keep this read view's rendered page per user and data generation (module docstring)."""

    @functools.wraps(view)
    def serve(*args: Any, **kwargs: Any) -> Any:
        cache = page_cache() if request.method in _CACHEABLE_METHODS else None
        key = _key() if cache is not None else None
        if key is None:
            return view(*args, **kwargs)
        entry = cache.get(key)
        if entry is None:
            entry, response = _render(cache, key, view, args, kwargs)
            if entry is None:
                return response
        return _answer(cache, entry)

    setattr(serve, _MARK, True)
    return serve  # type: ignore[return-value]


def _key() -> tuple | None:
    user = acting_user()
    if user is None or session.get("_flashes"):
        return None
    generation = read_generation(get_session().connection())
    if generation is None:
        return None
    headers = request.headers
    # root_path: one app mounted under two prefixes renders each prefix's own links.
    return (request.endpoint, request.scheme, request.host, request.root_path, request.path,
            request.query_string, user.id, generation, utcnow().date().toordinal(),
            *(headers.get(name) for name in _VARYING_HEADERS))


def _csrf_field() -> str:
    return current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")


def _render(cache: PageCache, key: tuple, view: Callable, args: tuple,
            kwargs: dict) -> tuple[Entry | None, Response]:
    """Run the view with the CSRF sentinel; keep its page when it may be kept. Returns
    the entry (``None`` when not kept) and the view's own response for that case."""
    field = _csrf_field()
    setattr(g, field, cache.sentinel)
    try:
        response = make_response(view(*args, **kwargs))
    finally:
        if g.get(field) == cache.sentinel:
            g.pop(field)
    if response.direct_passthrough:
        return None, response  # a file, never rendered with the sentinel
    keepable = (
        response.status_code == 200
        and response.mimetype == "text/html"
        and "Set-Cookie" not in response.headers
        and not session.get("_flashes")
        and not getattr(request_ctx, "flashes", None)
        # A token in a header (not the body) would be replayed as the sentinel.
        and not any(cache.sentinel in value for value in response.headers.values())
    )
    body = response.get_data()
    if not keepable:
        _put_token(response, body, cache.sentinel)
        return None, response
    headers = tuple((k, v) for k, v in response.headers.items()
                    if k.lower() not in _PER_ANSWER_HEADERS)
    return cache.put(key, body, headers), response


def _put_token(response: Response, body: bytes, sentinel: str) -> None:
    """The request's own CSRF token where the view wrote the sentinel (body and headers)."""
    marker = sentinel.encode()
    if marker in body:
        response.set_data(body.replace(marker, generate_csrf().encode()))
    for name, value in list(response.headers.items()):
        if sentinel in value:
            response.headers[name] = value.replace(sentinel, generate_csrf())


def _answer(cache: PageCache, entry: Entry) -> Response:
    token = generate_csrf()  # also gives a new session its CSRF secret
    secret = str(session.get(_csrf_field(), ""))
    etag = hashlib.blake2b(f"{entry.identity}:{secret}".encode(), digest_size=16).hexdigest()
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        for name, value in entry.headers:
            if name.lower() == "vary":
                response.headers.add(name, value)
    else:
        response = Response(entry.body.replace(cache.sentinel.encode(), token.encode()),
                            status=200, headers=list(entry.headers))
    response.set_etag(etag)
    response.vary.add("Cookie")
    return response
