"""The results body, rendered once per distinct input and kept per process (issue 18).

The results body (``results/_body.html`` with the NRR figures, the forest plot and the
progress block) is the largest part of the experiment page and the results page, and it
only changes when what it shows changes: a new analysis, another dataset version, a plan
amendment, a status change. The page cache (``webapp.page_cache``) cannot keep it across
writes: every committed write anywhere moves the data generation and so renders every
page again. This cache keeps the *body* across writes, because its key is not the
generation but the body's inputs themselves:

* ``repr`` of every field of the :class:`~experiments.analysis.Results` the page passes
  (the analysis, the plan, the versions, progress, amendments, …) except ``document``,
  which carries the moment it was read (the templates read nothing from it; a test holds
  that), plus the experiment's key and status and whether the user may upload (the
  "Analyse it now" / "Recompute" forms), hashed (BLAKE2b, 128 bits). These are dataclasses,
  tuples, mappings, strings, numbers and datetimes, whose ``repr`` spells out every value
  (floats exactly); a ``repr`` holding an object address (``… at 0x…``, which a later
  object may reuse) or a NumPy array (abbreviated) is never used as a key — that body is
  rendered and not kept.
* the request's ``root_path`` (links are relative to the mount point);
* the loaded template object (so a reloaded template is a new key; while templates
  auto-reload, in development, nothing is kept at all: an edited partial shows at once).

Nothing per user beyond ``may_upload`` is in the body (the team check happened before the
results were loaded), and nothing per request: the CSRF token of those forms is rendered
as a sentinel and each use fills in its own ``csrf_token()`` — under the page cache that
is the page cache's own sentinel, which it fills per session in turn.

Bounded in bytes (``RESULTS_BODY_CACHE_MB``, 8; a body is 2–40 kB), least recently used
out first, shared by a worker's threads; ``RESULTS_BODY_CACHE`` (default on) switches it
off. Entries expire after a day only to let memory go; time never changes a body (every
date it shows is in ``Results``).
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from typing import Any

from flask import current_app, g, render_template, request
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from webapp.page_cache import PageCache

TEMPLATE = "results/_body.html"
_KEY = "nrrlab.results_body"
#: ``Results`` fields left out of the key: ``document`` carries the moment it was read.
_NOT_IN_KEY = frozenset({"document"})
#: What a ``repr`` must not contain to serve as a key (see the module docstring).
_UNSAFE_REPR = (" at 0x", "array(")
_DAY = 24 * 3600.0


def body_cache() -> PageCache | None:
    """The process's cache of results bodies; ``None`` when switched off or while
    templates auto-reload."""
    app = current_app
    if not app.config.get("RESULTS_BODY_CACHE", True) or app.jinja_env.auto_reload:
        return None
    cache = app.extensions.get(_KEY)
    if cache is None:
        cache = app.extensions.setdefault(_KEY, PageCache(
            max_bytes=int(app.config.get("RESULTS_BODY_CACHE_MB", 8)) * 1024 * 1024,
            ttl_seconds=_DAY))
    return cache


def inputs_digest(experiment: Any, results: Any, controls: Any) -> str | None:
    """The digest of everything the body shows, or ``None`` when it cannot be trusted."""
    parts: tuple = (experiment.key, experiment.status, bool(controls.may_upload))
    if results is not None:
        parts += tuple((f.name, getattr(results, f.name)) for f in fields(results)
                       if f.name not in _NOT_IN_KEY)
    text = repr(parts)
    if any(marker in text for marker in _UNSAFE_REPR):
        return None
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _render(experiment: Any, results: Any, controls: Any) -> str:
    return render_template(TEMPLATE, experiment=experiment, results=results, controls=controls)


def results_body(experiment: Any, results: Any, controls: Any) -> Markup:
    """The rendered results body for these inputs, from the cache when it holds it."""
    cache = body_cache()
    digest = inputs_digest(experiment, results, controls) if cache is not None else None
    if cache is None or digest is None:
        return Markup(_render(experiment, results, controls))  # noqa: S704 - autoescaped template
    key = ("results-body", current_app.jinja_env.get_template(TEMPLATE), request.root_path,
           digest)
    entry = cache.get(key)
    if entry is None:
        entry = cache.put(key, _render_with_sentinel(cache.sentinel, experiment, results,
                                                     controls).encode(), ())
    body = entry.body.decode()
    if cache.sentinel in body:
        body = body.replace(cache.sentinel, generate_csrf())
    return Markup(body)  # noqa: S704 - an autoescaped template's output, kept


def _render_with_sentinel(sentinel: str, experiment: Any, results: Any, controls: Any) -> str:
    """Render with ``csrf_token()`` answering ``sentinel`` (Flask-WTF reads the token from
    ``g`` once generated), then give ``g`` back what it held."""
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    had, before = field in g, g.get(field)
    setattr(g, field, sentinel)
    try:
        return _render(experiment, results, controls)
    finally:
        if had:
            setattr(g, field, before)
        else:
            g.pop(field, None)
