"""The API's route table and the OpenAPI 3.1 document generated from it.

Each endpoint is declared once, with :func:`operation`: its method and path, the least
role it needs, its query, body and answer models (``webapp.api.schemas``) and the error
statuses it can give. The declaration registers the Flask route, marks its permission
for ``webapp.security`` and adds an :class:`Operation` to the blueprint's table; the
OpenAPI document is built from that table and the models' JSON Schemas
(:func:`pydantic.json_schema.models_json_schema`, ``$ref`` into ``components``), so
there is no hand-kept copy to drift from what the code validates.

References
----------
OpenAPI Specification 3.1.0 (2021), §4.8 (OpenAPI Object), §4.8.10 (Operation Object).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from webapp.api.schemas import Problem
from webapp.problems import PROBLEM_MIME, TYPE_BASE
from webapp.security import API_ROUTE, PERMISSION_ATTR, public

API_VERSION = "1.0.0"
JSON = "application/json"
CSV = "text/csv"
MULTIPART = "multipart/form-data"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: What each error status means here (the response descriptions of the document).
ERROR_TEXT: dict[int, str] = {
    400: "The request body is not what the endpoint reads (e.g. not JSON).",
    401: "No API token, or one that is unknown, revoked or expired.",
    403: "The token's scope or the user's role does not allow this.",
    404: "No such object, or another team's (it looks the same).",
    409: "The object is not in a state that allows this (e.g. not a draft).",
    412: "If-Match names a version that is no longer current.",
    413: "The body is larger than the upload limit.",
    415: "The body's media type is not one the endpoint reads.",
    422: "The input breaks a rule; `errors` says which member (or line) and why.",
    428: "The change needs If-Match with the version it was made on.",
    503: "The database is unreachable or busy; try again after Retry-After seconds.",
}

#: The problem types described on the docs page (``type`` is ``/api/v1/docs#problem-<kind>``).
PROBLEM_TYPES: dict[str, str] = {
    "unauthenticated": "No usable API token: send `Authorization: Bearer <token>`. The "
                       "session cookie of the site never authenticates the API.",
    "insufficient-scope": "A read token cannot change anything, and a token never does more "
                          "than its user's role allows.",
    "validation": "The input breaks a rule. `errors` lists each problem with its `field` "
                  "(a dotted path such as `variants.1.key`) and `message`.",
    "upload-invalid": "An uploaded CSV breaks the data contract. `errors` lists each problem "
                      "with its `line` (the header is line 1), `column` and `message`; "
                      "`total` counts them all. Nothing was stored.",
    "conflict": "The object is not in a state that allows this change.",
    "stale-version": "Somebody changed the object after the version named in If-Match. "
                     "GET it again, check the change and retry with its new ETag.",
    "precondition-required": "A change must say which version it was made on: send "
                             "`If-Match` with the ETag from GET.",
    "unsupported-media-type": "The body's Content-Type is not one this endpoint reads.",
}


@dataclass(frozen=True)
class Operation:
    """One endpoint of the API, as declared."""

    method: str
    path: str  # Flask rule, relative to the blueprint
    endpoint: str
    summary: str
    description: str
    role: str | None  # None: public
    tag: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_media: tuple[str, ...] = ()
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    etag: bool = False
    if_match: bool = False
    extra_statuses: dict[int, str] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.method not in SAFE_METHODS


def operations(bp: Blueprint) -> list[Operation]:
    """The operations declared on ``bp`` (its route table)."""
    return bp.__dict__.setdefault("nrrlab_operations", [])


def operation(bp: Blueprint, method: str, path: str, *, summary: str, role: str | None,
              tag: str, query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
              body_media: tuple[str, ...] | None = None, response: type[BaseModel] | None = None,
              status: int = 200, errors: tuple[int, ...] = (), etag: bool = False,
              if_match: bool = False, extra_statuses: dict[int, str] | None = None,
              ) -> Callable[[Callable], Callable]:
    """Declare an endpoint: route, permission (``api:<role>``, or public) and its table entry."""

    def register(view: Callable) -> Callable:
        if role is None:
            public(view)
        else:
            setattr(view, PERMISSION_ATTR, f"{API_ROUTE}{role}")
        bp.add_url_rule(path, endpoint=view.__name__, view_func=view, methods=[method])
        operations(bp).append(Operation(
            method=method, path=path, endpoint=view.__name__, summary=summary,
            description=(view.__doc__ or "").strip(), role=role, tag=tag, query=query, body=body,
            body_media=body_media if body_media is not None else ((JSON,) if body else ()),
            response=response, status=status, errors=errors, etag=etag, if_match=if_match,
            extra_statuses=dict(extra_statuses or {})))
        return view

    return register


_RULE_ARG = re.compile(r"<(?:(\w+):)?(\w+)>")


def openapi_path(prefix: str, rule: str) -> str:
    """``/experiments/<key>`` → ``/api/v1/experiments/{key}``."""
    return prefix + _RULE_ARG.sub(lambda m: "{" + m.group(2) + "}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    parameters = []
    for converter, name in _RULE_ARG.findall(rule):
        schema: dict[str, Any] = ({"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
                                  if converter == "int" else {"type": "string"})
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        entry: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}
        if description:
            entry["description"] = description
        parameters.append(entry)
    return parameters


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _problem_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": {PROBLEM_MIME: {"schema": _ref(Problem)}}}


def _responses(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "OK" if op.status == 200 else "Done"}
    if op.response is not None:
        success["content"] = {JSON: {"schema": _ref(op.response)}}
    if op.etag:
        success["headers"] = {"ETag": {"description": "the version, for If-Match",
                                       "schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    for code, text in op.extra_statuses.items():
        entry: dict[str, Any] = {"description": text}
        if op.response is not None:
            entry["content"] = {JSON: {"schema": _ref(op.response)}}
        responses[str(code)] = entry
    codes = set(op.errors) | {503}
    if op.role is not None:
        codes |= {401, 403}
    if op.query is not None or op.body is not None:
        codes.add(422)
    if op.body is not None:
        codes |= {400, 415}
    if op.if_match:
        codes |= {412, 428}
    for code in sorted(codes):
        responses[str(code)] = _problem_response(ERROR_TEXT[code])
    return responses


def _request_body(op: Operation) -> dict[str, Any] | None:
    if not op.body_media:
        return None
    content: dict[str, Any] = {}
    for media in op.body_media:
        if media == JSON and op.body is not None:
            content[media] = {"schema": _ref(op.body)}
        elif media == CSV:
            content[media] = {"schema": {"type": "string"}}
        elif media == MULTIPART:
            content[media] = {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "contentMediaType": CSV}}}}
    return {"required": True, "content": content}


def openapi_document(bp: Blueprint, prefix: str, *, title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations declared on ``bp``."""
    inputs = {op.body for op in operations(bp) if op.body is not None}
    outputs = {op.response for op in operations(bp) if op.response is not None} | {Problem}
    pairs = [(m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)] + [
        (m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)]
    _, definitions = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in operations(bp):
        item: dict[str, Any] = {
            "operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
            "responses": _responses(op),
        }
        if op.description:
            item["description"] = op.description
        parameters = _path_parameters(op.path)
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if op.if_match:
            parameters.append({"name": "If-Match", "in": "header", "required": False,
                               "description": "the ETag of the version the change was made on "
                                              "(required; without it the answer is 428)",
                               "schema": {"type": "string"}})
        if parameters:
            item["parameters"] = parameters
        body = _request_body(op)
        if body is not None:
            item["requestBody"] = body
        item["security"] = [] if op.role is None else [{"bearerAuth": []}]
        if op.role is not None:
            item["x-nrrlab-role"] = op.role
            item["x-nrrlab-scope"] = "write" if op.writes else "read"
        paths.setdefault(openapi_path(prefix, op.path), {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title, "version": API_VERSION,
            "description": "Register experiments, push account results and read verdicts. "
                           "Authenticate with a personal API token (your account → API "
                           "tokens): `Authorization: Bearer <token>`. Errors are "
                           "`application/problem+json` (RFC 9457).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a personal API token"}},
        },
        "x-problem-types": {f"{TYPE_BASE}{kind}": text for kind, text in PROBLEM_TYPES.items()},
    }


def type_text(schema: dict[str, Any]) -> str:
    """A JSON Schema in a few words for the docs page: ``string``, ``integer | null``,
    ``list of VariantIn``, ``one of: ship, iterate, kill``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_text(part) for part in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {type_text(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema \
            and isinstance(schema["additionalProperties"], dict):
        return f"map of {type_text(schema['additionalProperties'])}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)
