"""Static files under content-hashed names, cached for a year (issue 18, item 4).

``url_for("static", filename="app.css")`` becomes ``/static/app.3f2a1b9c0d.css``: the
name carries the first 10 hex digits of the file's SHA-256, so a browser (or a proxy in
front of gunicorn) may keep it for a year without asking again — a changed file has
another name. A request for a hashed name whose hash is not the file's current one (a
page rendered before a deploy) still gets the current file, but with a short cache
lifetime, so nobody keeps a stale copy for a year. Plain names keep working with a short
lifetime too (a bookmark, a hand-typed URL).

The manifest is built once when the app is created: static files change only with a
deploy, and a deploy restarts the workers.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Flask, Response, abort, send_from_directory

#: Cache lifetime of a hashed name: one year, never revalidated.
IMMUTABLE_SECONDS = 365 * 24 * 3600
#: Cache lifetime of a plain name or a hashed name from an older deploy.
SHORT_SECONDS = 300
#: Hex digits of the SHA-256 kept in a name: 40 bits, ample for one app's files.
HASH_DIGITS = 10

_HASHED = re.compile(
    rf"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{{{HASH_DIGITS}}})(?P<suffix>\.[^./]+)$")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_DIGITS]


def hashed_name(name: str, digest: str) -> str:
    """``app.css`` → ``app.<digest>.css`` (a name without a suffix gets ``.<digest>``).

    Examples
    --------
    >>> hashed_name("vendor/htmx.min.js", "0123456789")
    'vendor/htmx.min.0123456789.js'
    """
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.rpartition(".")
    renamed = f"{stem}.{digest}.{suffix}" if dot and stem else f"{base}.{digest}"
    return f"{folder}/{renamed}" if folder else renamed


def build_manifest(folder: Path) -> dict[str, str]:
    """Map every file under ``folder`` (POSIX relative path) to its hashed name."""
    manifest: dict[str, str] = {}
    if not folder.is_dir():
        return manifest
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = path.relative_to(folder).as_posix()
            manifest[name] = hashed_name(name, _digest(path))
    return manifest


def init_static_assets(app: Flask) -> None:
    """Serve static files under hashed names with long-lived cache headers."""
    folder = Path(app.static_folder or "")
    manifest = build_manifest(folder)
    originals = {hashed: name for name, hashed in manifest.items()}
    app.extensions["nrrlab_static_manifest"] = manifest

    @app.url_defaults
    def _hash_static_names(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "filename" in values:
            values["filename"] = manifest.get(values["filename"], values["filename"])

    def static(filename: str) -> Response:
        if filename in originals:
            response = send_from_directory(folder, originals[filename],
                                           max_age=IMMUTABLE_SECONDS)
            response.headers["Cache-Control"] = (
                f"public, max-age={IMMUTABLE_SECONDS}, immutable")
            return response
        name = filename
        match = _HASHED.match(filename)
        if filename not in manifest and match:
            # A hashed name from another deploy: the file as it is now, briefly cached.
            name = f"{match['stem']}{match['suffix']}"
        if name not in manifest:
            abort(404)
        response = send_from_directory(folder, name, max_age=SHORT_SECONDS)
        response.headers["Cache-Control"] = f"public, max-age={SHORT_SECONDS}"
        return response

    app.view_functions["static"] = static
