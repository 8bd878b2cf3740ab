"""Errors of the API are application/problem+json (RFC 9457) with field-level details and
line numbers for uploads; bad input is never a 500 and stores nothing."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from experiments.models import Dataset, Experiment, UploadJob

pytestmark = pytest.mark.db
PROBLEM = "application/problem+json"


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"] == "about:blank" or body["type"].startswith("/api/v1/docs#problem-")
    return body


def _count(engine, model) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_body_problems_name_the_member(api_as, db_engine):
    api = api_as("experimenter")
    _problem(api.post("/api/v1/experiments", data="{not json",
                      headers={"Content-Type": "application/json"}), 400)
    _problem(api.post("/api/v1/experiments", data="key=x"), 415)
    shape = _problem(api.post("/api/v1/experiments", json={"key": "x", "mde": "lots",
                                                          "surprise": 1}), 422)
    fields = {e["field"] for e in shape["errors"]}
    assert {"mde", "surprise", "name", "variants"} <= fields  # pydantic: types and members
    # the registration form's own rules, with its messages, beside the member
    rules = _problem(api.post("/api/v1/experiments", json={
        "key": "Bad Key", "name": "x", "node_id": 999_999, "stage_id": 1, "hypothesis": "h\x00",
        "mde": 2, "variants": [{"key": "control"}, {"key": "control"}]}), 422)
    messages = {e["field"]: e["message"] for e in rules["errors"]}
    assert {"key", "node_id", "hypothesis", "mde", "variants.1.key"} <= set(messages)
    assert "control characters" in messages["hypothesis"]
    assert "already the key of variant 1" in messages["variants.1.key"]
    assert _count(db_engine, Experiment) == 0


def test_upload_problems_have_line_numbers(api_as, factory, db_engine):
    factory.experiment("checkout", status="running")
    api = api_as("analyst")
    bad = ("account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
           "a1,control,100,0,0,0\n"
           "a2,treatment,-5,0,0,0\n"
           "a3,purple,100,0,0,0\n")
    body = _problem(api.post("/api/v1/experiments/checkout/datasets", data=bad,
                             headers={"Content-Type": "text/csv"}), 422)
    assert body["type"].endswith("#problem-upload-invalid") and body["total"] == 2
    assert [(e["line"], e["column"]) for e in body["errors"]] == [(3, "start_mrr"),
                                                                  (4, "variant")]
    assert "greater than 0" in body["errors"][0]["message"]
    job = api.get(body["job"]).get_json()  # the job keeps the same list
    assert job["state"] == "failed" and job["errors"][0]["line"] == 3
    assert _count(db_engine, Dataset) == 0
    _problem(api.post("/api/v1/experiments/checkout/datasets", data=b"",
                      headers={"Content-Type": "text/csv"}), 422)
    _problem(api.post("/api/v1/experiments/checkout/datasets", data=b"x",
                      headers={"Content-Type": "application/pdf"}), 415)


def test_upload_to_a_draft_is_a_conflict(api_as, factory, db_engine):
    factory.experiment("draft-one", status="draft")
    body = _problem(api_as("analyst").post("/api/v1/experiments/draft-one/datasets",
                                           data=b"account_id\n",
                                           headers={"Content-Type": "text/csv"}), 409)
    assert "draft" in body["detail"]
    assert _count(db_engine, UploadJob) == 0


def test_lifecycle_conflicts_and_preconditions(api_as, factory):
    factory.experiment("live", status="running")
    api = api_as("experimenter")
    _problem(api.post("/api/v1/experiments/live/start"), 428)
    conflict = _problem(api.post("/api/v1/experiments/live/start",
                                 headers={"If-Match": "*"}), 409)
    assert "only a draft" in conflict["detail"]
    _problem(api.post("/api/v1/experiments/live/stop", headers={"If-Match": 'W/"1"'}), 412)
    _problem(api.post("/api/v1/experiments/live/stop", headers={"If-Match": '"7"'}), 412)
    decide = _problem(api.post("/api/v1/experiments/live/decide", json={"decision": "maybe"},
                               headers={"If-Match": "*"}), 422)
    assert {e["field"] for e in decide["errors"]} == {"decision", "rationale"}


def test_http_errors_under_the_api_are_problems(api_as, app):
    api = api_as("viewer")
    _problem(api.get("/api/v1/no-such-thing"), 404)
    _problem(api.get("/api/v1/experiments/no-such-key"), 404)
    _problem(api.open("DELETE", "/api/v1/experiments"), 405)
    _problem(api.get("/api/v1/experiments", query_string={"q": "a\x01b"}), 422)
    _problem(api.get("/api/v1/nodes/99999999999"), 404)
    app.config["MAX_CONTENT_LENGTH"] = 100
    big = api_as("analyst").post("/api/v1/experiments/x/datasets", data=b"a" * 500,
                                 headers={"Content-Type": "text/csv"})
    _problem(big, 413)


@pytest.mark.parametrize("url", ["/api/v1/experiments/checkout/datasets", "/login"])
def test_a_multipart_part_without_a_name_is_no_500(api_as, factory, client, url):
    """Found by the schemathesis fuzz: werkzeug reads a form part whose Content-Disposition
    has no name as the field None, which the site-wide control-character guard (and then
    Flask-WTF's CSRF check) choked on: a 500 on any route taking a form, the sign-in page
    included. The guard now refuses it with a 422 before anything else reads the form."""
    factory.experiment("checkout", status="running")
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n"
            f"--{boundary}--\r\n").encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if url.startswith("/api/"):
        body = _problem(api_as("analyst").post(url, data=body, headers=headers), 422)
        assert "without a name" in body["detail"]
    else:
        response = client.post(url, data=body, headers=headers)
        assert response.status_code == 422 and "without a name" in response.get_data(as_text=True)
