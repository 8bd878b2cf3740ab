"""Template globals and filters shared by every page.

Links built once (issue 18: ``url_for`` costs 10-30 µs a call, and every page's frame
draws ~26 links — the stylesheets, the navigation, the account links — and the review and
dashboard another one per experiment row): :func:`fixed_url` keeps each link that is the
same on every page per app and URL prefix (``request.script_root``: one app mounted under
two prefixes builds each prefix's own), and :func:`key_url` builds an experiment's link
from its endpoint's URL built once around a marker, as the tree's ``node_url`` does with
node ids. Both give exactly what ``url_for`` gives (tests/webapp/test_fixed_links.py).
They rest on the app's ``url_defaults`` reading nothing of the request (today only the
static files' hashed names, fixed per process) and on no rule having a host or subdomain.
"""

from __future__ import annotations

import re

from flask import Flask, current_app, has_request_context, request, url_for
from flask_wtf.csrf import generate_csrf

from experiments import formatting
from experiments.nrr_export import chart_svg
from webapp.security import acting_user

# The pages show one decimal fewer than the exports; the formatting itself is shared.


def pts(value: float | None, digits: int = 1) -> str:
    """An NRR difference as signed percentage points: 0.021 → '+2.1 pts'."""
    return formatting.pts(value, digits)


def size_pts(value: float | None, digits: int = 1) -> str:
    """A size in NRR points, unsigned (an MDE is a two-sided size): 0.02 → '2.0 pts'."""
    return formatting.points(value, digits)


def pct(value: float | None, digits: int = 1) -> str:
    return formatting.pct(value, digits)


def pvalue(value: float | None) -> str:
    return formatting.pvalue(value, 3)


#: ``app.extensions`` key: URL prefix → {(endpoint, *values): url}.
_FIXED_URLS = "nrrlab.fixed_urls"
#: The most URL prefixes kept per app (a prefix comes from the WSGI server or a trusted
#: proxy; more than this many only rebuilds).
_MAX_PREFIXES = 8
#: Where a key goes in an endpoint's URL built once (:func:`key_url`); characters
#: ``url_for`` never escapes in a path part.
_KEY_MARK = "nrrlab-key-mark-6c1e"
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]+")


class _Links:
    """The links built for one app and URL prefix: each fixed link's URL, and each keyed
    endpoint's URL around :data:`_KEY_MARK` split in two."""

    __slots__ = ("built", "parts")

    def __init__(self) -> None:
        self.built: dict[tuple, str] = {}
        self.parts: dict[str, list[str]] = {}

    def fixed_url(self, endpoint: str, **values: str) -> str:
        key = (endpoint, *values.items())
        url = self.built.get(key)
        if url is None:
            url = self.built[key] = url_for(endpoint, **values)
        return url

    def key_url(self, endpoint: str, key: str, _anchor: str | None = None) -> str:
        parts = self.parts.get(endpoint)
        if parts is None:
            parts = self.parts[endpoint] = url_for(endpoint, key=_KEY_MARK).split(_KEY_MARK)
        if len(parts) != 2 or not isinstance(key, str) or not _PLAIN.fullmatch(key) \
                or (_anchor is not None and not _PLAIN.fullmatch(_anchor)):
            return url_for(endpoint, key=key, _anchor=_anchor)
        url = f"{parts[0]}{key}{parts[1]}"
        return f"{url}#{_anchor}" if _anchor is not None else url


def _links() -> _Links:
    """This request's app and URL prefix's links (module docstring)."""
    by_prefix: dict[str, _Links] = current_app.extensions.setdefault(_FIXED_URLS, {})
    prefix = request.script_root
    links = by_prefix.get(prefix)
    if links is None:
        if len(by_prefix) >= _MAX_PREFIXES:
            by_prefix.clear()
        links = by_prefix[prefix] = _Links()
    return links


def fixed_url(endpoint: str, **values: str) -> str:
    """``url_for(endpoint, **values)`` for a link the same on every page: built once per
    app and URL prefix (module docstring). Only for values that are constants of the
    template (a stylesheet's name), never the request's or a row's. A page's own render
    gets the prefix's :class:`_Links` method (``inject_user``), resolved once per render
    (the request and app proxies cost more than the lookup); this global serves macros
    imported without the page's context."""
    if not has_request_context():
        return url_for(endpoint, **values)
    return _links().fixed_url(endpoint, **values)


def key_url(endpoint: str, key: str, _anchor: str | None = None) -> str:
    """``url_for(endpoint, key=key, _anchor=_anchor)``: the endpoint's URL is built once
    per app and prefix around a marker and a plain key (letters, digits, ``-._~``, which
    ``url_for`` never escapes) put in its place; any other key or anchor is built in full."""
    if not has_request_context():
        return url_for(endpoint, key=key, _anchor=_anchor)
    return _links().key_url(endpoint, key, _anchor)


def init_templating(app: Flask) -> None:
    app.jinja_env.filters.update(
        pts=pts, size_pts=size_pts, pct=pct, money=formatting.money, pvalue=pvalue
    )
    app.jinja_env.globals.update(csrf_token=generate_csrf, chart_svg=chart_svg,
                                 fixed_url=fixed_url, key_url=key_url)

    @app.context_processor
    def inject_user() -> dict:
        if not has_request_context():
            return {"me": acting_user()}
        links = _links()
        return {"me": acting_user(), "fixed_url": links.fixed_url, "key_url": links.key_url}
