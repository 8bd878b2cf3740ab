"""One verdict badge and one field-error markup on every page (templates/_macros.html)."""

from __future__ import annotations

import re

import pytest

from experiments.demo import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD
from tests.helpers import Auth, dispose_app

pytestmark = pytest.mark.db

# The badge markup, written out by hand: mark (not colour alone) and a readable label.
EXPECTED_BADGES = {
    "win": '<span class="badge verdict verdict-win"><span aria-hidden="true">▲ </span>Win</span>',
    "loss": '<span class="badge verdict verdict-loss"><span aria-hidden="true">▼ </span>'
    "Loss</span>",
    "inconclusive": '<span class="badge verdict verdict-inconclusive"><span aria-hidden="true">'
    "● </span>Inconclusive</span>",
    "underpowered": '<span class="badge verdict verdict-underpowered"><span aria-hidden="true">'
    "◐ </span>Underpowered</span>",
    "srm": '<span class="badge verdict verdict-srm"><span aria-hidden="true">⚠ </span>'
    "Sample ratio mismatch</span>",
}
BADGE = re.compile(r'<span class="badge verdict verdict-(\w+)">.*?</span>[^<]*</span>')
# What the five inline copies used to render: a bare class and the raw verdict word.
OLD_PLAIN_BADGE = re.compile(r'<span class="badge verdict-\w+">')


@pytest.fixture(scope="module")
def demo_client(tmp_path_factory, scratch_database):
    """The demo workspace (migrations, then the seed), signed in as its admin."""
    from experiments import migrate
    from experiments.db import make_engine, session_scope
    from experiments.demo import seed
    from experiments.setup import ensure_defaults
    from webapp import create_app

    url = scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        ensure_defaults(session)
        seed(session)
    engine.dispose()
    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "s" * 40, "DATABASE_URL": url,
                      "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance"))})
    client = app.test_client()
    assert Auth(client).login(DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD).status_code == 303
    yield client
    dispose_app(app)


def badges(html: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(0)) for m in BADGE.finditer(html)]


PAGES = {
    "dashboard": "/",
    "list": "/experiments/",
    "tree": "/tree/",
    "results": "/experiments/onboarding-checklist",
    "review": "/review/",
}


def test_the_same_verdict_renders_the_same_badge_on_every_page(demo_client):
    seen: dict[str, set[str]] = {}
    for name, path in PAGES.items():
        response = demo_client.get(path, follow_redirects=True)
        assert response.status_code == 200, name
        html = response.get_data(as_text=True)
        found = badges(html)
        assert found, f"no verdict badge on the {name} page"
        assert not OLD_PLAIN_BADGE.search(html), f"an inline verdict badge is left on {name}"
        for verdict, markup in found:
            assert markup == EXPECTED_BADGES[verdict], (name, markup)
        seen[name] = {v for v, _ in found}
    # The demo's shipped experiment carries its verdict on the results page, its list row
    # and the dashboard, in the one markup.
    [headline] = {
        v for v, _ in badges(demo_client.get(PAGES["results"]).get_data(as_text=True))[:1]
    }
    for name in ("dashboard", "list", "tree", "results"):
        assert headline in seen[name], (name, seen[name])


def test_field_errors_share_one_markup(demo_client):
    """The planner, the admin form and the experiment form render a field's error alike:
    one paragraph, class field-error, id "<field id>-error" (what aria-describedby names)."""
    from tests.helpers import csrf_token_of

    token = csrf_token_of(demo_client)
    pages = {
        "planner": demo_client.get("/planner/?mde=abc"),
        "admin": demo_client.post("/admin/teams", data={"name": "", "slug": "Not A Slug!",
                                                        "csrf_token": token}),
        "experiment": demo_client.post("/experiments/new", data={"key": "", "name": "",
                                                                 "csrf_token": token}),
    }
    markup = re.compile(r'<p class="field-error" id="([\w-]+)-error">([^<]+)</p>')
    found = {}
    for name, response in pages.items():
        assert response.status_code == 422, name
        html = response.get_data(as_text=True)
        found[name] = markup.findall(html)
        assert found[name], f"no field error on the {name} form"
        # Fields point at their message (the variants table's group message is not a field).
        described = [field_id for field_id, _ in found[name]
                     if re.search(rf'aria-describedby="[^"]*\b{field_id}-error\b', html)]
        assert described, (name, found[name])
    assert [field_id for field_id, _ in found["planner"]] == ["plan-mde"]
    # The admin form starts the message with the field's label.
    assert any(text.startswith("Slug ") for _, text in found["admin"]), found["admin"]
