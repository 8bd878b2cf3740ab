"""The quarterly business review page (issue 17 item 4): OKR forms without JavaScript
(303 after a save, 422 with the message beside the field and the input kept, one 409 for
two editors), read-only for viewers, 404 for other teams and bad quarters; downloads."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from experiments.review_models import KeyResult, Objective
from tests.factories import make_node, make_team, team_clients


@pytest.fixture
def world(session, login_as):
    clients = team_clients(login_as)
    growth = make_team(session, "growth")
    node = make_node(session, "Expansion", team_id=growth.id, target=1.05)
    session.commit()
    return clients, growth, node


def _post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def test_objectives_and_key_results_through_the_page(session, world):
    clients, growth, node = world
    exp = clients["exp"]
    url = "/quarterly/2026-Q4"
    response = _post(exp, f"{url}/objectives", title="Grow expansion", team_id=str(growth.id),
                     owner_id=str(exp.user.id))
    objective = session.exec(select(Objective)).one()
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{url}#objective-{objective.id}")

    bad = _post(exp, f"{url}/objectives/{objective.id}/key-results", title="Expansion rate",
                node_id=str(node.id), target="three percent")
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "must be a number, such as 1.05" in html and 'aria-invalid="true"' in html
    assert 'value="three percent"' in html  # what was typed stays
    assert session.exec(select(KeyResult)).all() == []

    good = _post(exp, f"{url}/objectives/{objective.id}/key-results", title="Expansion rate",
                 node_id=str(node.id), target="0.03", owner_id=str(exp.user.id))
    assert good.status_code == 303
    kr = session.exec(select(KeyResult)).one()
    page = clients["viewer"].get(url).get_data(as_text=True)
    row = re.search(rf'<tr id="kr-{kr.id}".*?</tr>', page, re.S).group(0)
    assert "Expansion rate" in row and "Expansion" in row and "0.03" in row
    assert "Add an objective" not in page and "Save key result" not in page  # read-only

    form = {"version": "1", "title": "Expansion rate", "node_id": str(node.id), "target": "0.03"}
    first = _post(exp, f"{url}/key-results/{kr.id}", **form, actual="0.02")
    assert first.status_code == 303
    second = _post(clients["mate"], f"{url}/key-results/{kr.id}", **form, actual="0.05")
    assert second.status_code == 409
    assert "This key result was changed by" in second.get_data(as_text=True)
    session.expire_all()
    assert (session.get(KeyResult, kr.id).actual, session.get(KeyResult, kr.id).version) == (
        0.02, 2)

    # Another team: the objective does not exist for them.
    other = clients["other"]
    assert _post(other, f"{url}/key-results/{kr.id}", **form).status_code == 404
    assert _post(other, f"{url}/objectives/{objective.id}/key-results",
                 title="x", node_id=str(node.id)).status_code == 404
    assert "Grow expansion" not in other.get(url).get_data(as_text=True)


def test_the_quarter_downloads_in_every_format_and_a_bad_quarter_is_404(world):
    clients, _, _ = world
    for quarter in ("2026-Q5", "2026-q4", "garbage", "10000-Q1"):
        assert clients["viewer"].get(f"/quarterly/{quarter}").status_code == 404, quarter
    for fmt in ("html", "md", "csv", "json", "zip"):
        response = clients["viewer"].get(f"/quarterly/2026-Q4/export.{fmt}")
        assert response.status_code == 200, fmt
        assert re.fullmatch(rf'attachment; filename="nrr-qbr-2026-Q4-\d{{4}}-\d\d-\d\d\.{fmt}"',
                            response.headers["Content-Disposition"])
    assert clients["viewer"].get("/quarterly/2026-Q4/export.pdf").status_code == 404
    page = clients["viewer"].get("/quarterly/2026-Q4").get_data(as_text=True)
    assert 'href="/quarterly/2026-Q4/export.csv"' in page
    assert 'href="/quarterly/2026-Q3"' in page and 'href="/quarterly/2027-Q1"' in page
    # the shrunk impact total is a point estimate: the page says so and where its interval is
    assert "Annual impact: the ships' shrunk annual MRR impacts added up — a point estimate" in page
