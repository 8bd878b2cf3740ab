"""The OpenAPI 3.1 document is generated from the models the code validates with and the
route table; the docs page renders it without scripts or styles of its own (strict CSP)."""

from __future__ import annotations

import re

import pytest

from webapp.api import schemas
from webapp.security import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.db


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_document_is_openapi_31_from_the_route_table_and_the_models(app, client):
    from webapp.api.spec import openapi_path, operations
    from webapp.api.views import PREFIX, bp

    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    declared = {(op.method.lower(), openapi_path(PREFIX, op.path)) for op in operations(bp)}
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    assert documented == declared
    # every Flask route of the API is in the document (no undeclared endpoint)
    rules = {(m.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule))
             for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")
             for m in r.methods - {"HEAD", "OPTIONS"}}
    assert rules == declared
    components = document["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in components
               for ref in _refs(document))
    # the components are the models' own JSON Schemas (no hand-kept copy)
    create = components["ExperimentCreate"]
    own = schemas.ExperimentCreate.model_json_schema(
        ref_template="#/components/schemas/{model}")
    assert create["properties"] == own["properties"] and create["required"] == own["required"]
    assert create["additionalProperties"] is False
    patch = document["paths"]["/api/v1/experiments/{key}"]["patch"]
    assert {"412", "428", "422", "401", "403", "404"} <= set(patch["responses"])
    assert patch["responses"]["412"]["content"]["application/problem+json"]
    assert patch["x-nrrlab-role"] == "experimenter" and patch["x-nrrlab-scope"] == "write"
    upload = document["paths"]["/api/v1/experiments/{key}/datasets"]["post"]
    assert set(upload["requestBody"]["content"]) == {"text/csv", "multipart/form-data"}
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_docs_page_renders_every_operation_under_the_csp(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = page.get_data(as_text=True)
    document = client.get("/api/v1/openapi.json").get_json()
    for item in document["paths"].values():
        for op in item.values():
            assert f'id="op-{op["operationId"]}"' in html
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert 'id="problem-stale-version"' in html and 'id="problem-upload-invalid"' in html
    # nothing the CSP would block: no inline script or style, nothing from another origin
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


def test_refused_tokens_are_audited_without_the_cookie_user(app, login_as, db_engine):
    from sqlmodel import Session, select

    from experiments.models import AuditEvent

    browser = login_as("admin")
    answer = browser.get("/api/v1/me", headers={"Authorization": "Bearer nrrlab_" + "y" * 43})
    assert answer.status_code == 401
    with Session(db_engine) as session:
        denied = session.exec(select(AuditEvent).where(
            AuditEvent.action == "authz.denied")).all()
    assert len(denied) == 1 and denied[0].actor_id is None
    assert "the token is unknown" in denied[0].diff["reason"][1]
