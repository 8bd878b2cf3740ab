"""The ledger upload page and the version history (issue 16, item 1), through the app."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, func, select

from experiments.ledger_models import LedgerRow, LedgerVersion
from tests.webapp.test_results import multipart, text_of

GOOD = (
    "account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,plan\n"
    "a,2025-01,100,10,0,0,pro\n"
    "b,2025-01,50,0,0,50,basic\n"
    "a,2025-02,110,0,0,0,pro\n"
    "c,2025-02,0,0,0,0,\n"
)


@pytest.fixture
def analyst(login_as):
    return login_as("analyst")


def post(client, data: bytes | None, dimensions: str = "plan", *, htmx: bool = False,
         filename: str = "ledger.csv"):
    headers = {"HX-Request": "true", "X-CSRFToken": client.csrf} if htmx else {}
    fields = {"dimensions": dimensions}
    if not htmx:
        fields["csrf_token"] = client.csrf
    return client.post("/nrr/upload", headers=headers, **multipart(fields, data, filename))


def stored(engine) -> tuple[int, int]:
    with Session(engine) as session:
        return tuple(session.exec(select(func.count()).select_from(m)).one()
                     for m in (LedgerVersion, LedgerRow))


def test_a_good_upload_redirects_to_the_history_which_lists_it(analyst, db_engine):
    form = analyst.get("/nrr/upload")
    assert form.status_code == 200
    assert 'name="dimensions"' in form.get_data(as_text=True)

    response = post(analyst, GOOD.encode())
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/nrr/versions?uploaded=1")
    assert stored(db_engine) == (1, 4)

    page = text_of(analyst.get("/nrr/versions?uploaded=1"))
    assert "Stored as ledger version 1" in page
    assert "2025-01 – 2025-02 (2)" in page
    assert analyst.user.email in page and "ledger.csv" in page and "all its periods" in page


def test_errors_are_listed_by_line_with_nothing_stored(analyst, db_engine):
    bad = GOOD.replace("a,2025-02,110", "a,2025-01,110") + "d,2025-13,5,0,0,0,pro\n"
    response = post(analyst, bad.encode())
    assert response.status_code == 422
    page = text_of(response)
    assert "line 4, period: duplicate of line 2 (same account_id and period)" in page
    assert 'line 6, period: "2025-13" is not a month written YYYY-MM (e.g. 2025-01)' in page
    assert "the current ledger is unchanged" in page
    assert stored(db_engine) == (0, 0)

    undeclared = post(analyst, GOOD.encode(), dimensions="")
    assert undeclared.status_code == 422
    assert 'line 1: unknown column "plan": declare it as a dimension or remove it' in text_of(
        undeclared)
    missing = post(analyst, None)
    assert missing.status_code == 422 and "Choose a CSV file to upload." in text_of(missing)
    assert stored(db_engine) == (0, 0)


def test_htmx_upload_swaps_the_component_and_a_repeat_is_recognised(analyst, db_engine):
    response = post(analyst, GOOD.encode(), htmx=True)
    assert response.status_code == 200
    body = text_of(response)
    assert "<html" not in body and 'id="ledger-upload"' in body
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", body))
    assert "Stored ledger.csv as ledger version 1: 4 rows, 2 periods (2025-01 – 2025-02)" in words
    again = post(analyst, GOOD.encode(), htmx=True)
    assert again.status_code == 409
    assert "identical to ledger version 1" in text_of(again)
    assert stored(db_engine) == (1, 4)


def test_periods_uploaded_again_show_as_a_partly_replaced_version(analyst):
    assert post(analyst, GOOD.encode()).status_code == 303
    fix = "account_id,period,start_mrr,plan\na,2025-02,120,pro\n"
    assert post(analyst, fix.encode(), filename="fix.csv").status_code == 303
    page = text_of(analyst.get("/nrr/versions"))
    assert page.index("fix.csv") < page.index("ledger.csv")  # newest first
    assert "1 of 2: 2025-01" in page


def test_a_viewer_reads_the_history_but_cannot_upload(login_as):
    viewer = login_as("viewer")
    assert viewer.get("/nrr/versions").status_code == 200
    assert "Upload a ledger CSV" not in text_of(viewer.get("/nrr/versions"))
    assert viewer.get("/nrr/upload").status_code == 403
    assert post(viewer, GOOD.encode()).status_code == 403


def test_a_team_analyst_is_not_a_company_analyst(login_as, factory):
    factory.team("growth")
    team_analyst = login_as("viewer", teams={"growth": "analyst"})
    assert post(team_analyst, GOOD.encode()).status_code == 403
