"""Static files: content-hashed names on every page, cached for a year; stale or plain
names still answer, briefly cached; nothing outside the static folder is reachable."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from webapp.static_assets import HASH_DIGITS, IMMUTABLE_SECONDS, SHORT_SECONDS

STATIC = Path(__file__).resolve().parents[2] / "webapp" / "static"


def _sha(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:HASH_DIGITS]


def test_login_page_links_hashed_names_of_the_current_files(client):
    page = client.get("/login").get_data(as_text=True)
    stylesheet = f"/static/app.{_sha('app.css')}.css"
    assert stylesheet in page
    assert re.search(r'/static/vendor/htmx\.min\.[0-9a-f]{10}\.js', page)
    assert "/static/app.css" not in page


def test_a_hashed_name_is_cached_for_a_year_and_is_the_file(client):
    response = client.get(f"/static/app.{_sha('app.css')}.css")
    body = response.get_data()
    response.close()
    assert response.status_code == 200
    assert body == (STATIC / "app.css").read_bytes()
    assert response.headers["Cache-Control"] == (
        f"public, max-age={IMMUTABLE_SECONDS}, immutable")
    assert "no-store" not in response.headers["Cache-Control"]


@pytest.mark.parametrize("path", ["/static/app.css", "/static/app.0123456789.css"])
def test_plain_and_stale_names_get_the_current_file_briefly_cached(client, path):
    response = client.get(path)
    body = response.get_data()
    response.close()
    assert response.status_code == 200
    assert body == (STATIC / "app.css").read_bytes()
    assert response.headers["Cache-Control"] == f"public, max-age={SHORT_SECONDS}"


@pytest.mark.parametrize("path", [
    "/static/nothing.css", "/static/../__init__.py", "/static/%2e%2e/__init__.py",
    "/static/nothing.0123456789.css",
])
def test_unknown_names_and_escapes_are_404(client, path):
    response = client.get(path)
    response.close()
    assert response.status_code == 404


def test_pages_and_the_printable_export_style_charts_from_one_stylesheet(client):
    """The chart rules live once (experiments/templates/charts/charts.css); the pages load
    that file, the printable export inlines it, and no other sheet repeats them."""
    from experiments.nrr_export import print_style

    source = (STATIC.parents[1] / "experiments" / "templates" / "charts" / "charts.css")
    page = client.get("/login").get_data(as_text=True)
    assert f"/static/charts.{_sha('charts.css')}.css" in page
    response = client.get(f"/static/charts.{_sha('charts.css')}.css")
    body = response.get_data()
    response.close()
    assert response.status_code == 200 and body == source.read_bytes()
    assert source.read_text() in print_style()
    for sheet in STATIC.glob("*.css"):
        if sheet.name != "charts.css":
            assert "svg.chart" not in sheet.read_text(), sheet.name
