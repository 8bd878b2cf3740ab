"""Reading API requests and writing API answers: JSON bodies, queries, ETags, pages.

Every refusal here is a problem document (``webapp.problems``) raised as
:class:`ApiProblem` and answered by the blueprint's handler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from flask import Response, request, url_for
from pydantic import BaseModel, ValidationError

from experiments.errors import ValidationFailed
from webapp.problems import problem

M = TypeVar("M", bound=BaseModel)


class ApiProblem(Exception):
    """An answer that is a problem document (raised, answered by the blueprint)."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def field_problems(errors: Mapping[str, str]) -> list[dict[str, Any]]:
    """A service's ``{field: message}`` as ``[{"field", "message"}]`` (``""`` → no field)."""
    return [{"field": name or None, "message": message} for name, message in errors.items()]


def validation_problem(errors: Mapping[str, str], status: int = 422) -> Response:
    shown = "; ".join(f"{k}: {v}" if k else v for k, v in errors.items())
    return problem(status, f"The input was not accepted: {shown}"[:2000], kind="validation",
                   errors=field_problems(errors))


def _pydantic_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in error["loc"])
        errors.setdefault(name, error["msg"])
    return errors


def parse_model(model: type[M], data: Any) -> M:
    """``data`` validated against ``model``; a 422 problem naming each member otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiProblem(validation_problem(_pydantic_errors(exc))) from None


def parse_query(model: type[M]) -> M:
    """The query string read with ``model`` (a repeated parameter: its first value)."""
    return parse_model(model, {name: request.args.get(name) for name in request.args})


def json_body(model: type[M]) -> M:
    """The JSON body read with ``model``; 415 for another media type, 400 for broken JSON."""
    if not request.is_json:
        raise ApiProblem(problem(415, "Send the body as application/json.",
                                 kind="unsupported-media-type"))
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(problem(400, f"The body is not valid JSON: {exc}"[:500])) from None
    if not isinstance(data, dict):
        raise ApiProblem(validation_problem({"": "the body must be a JSON object"}))
    return parse_model(model, data)


def as_form(model: BaseModel, *, exclude_unset: bool = False) -> dict[str, Any]:
    """The model's members as plain JSON values (dates as ISO text), for the services."""
    return model.model_dump(mode="json", exclude_unset=exclude_unset, by_alias=False)


def answer(model: BaseModel, status: int = 200, *, etag: int | None = None,
           location: str | None = None, next_page: str | None = None) -> Response:
    """A JSON answer from an output model (with ``ETag``, ``Location`` and a ``Link`` to the
    next page (RFC 8288) when given)."""
    body = model.model_dump_json(by_alias=True)
    response = Response(body, status=status, mimetype="application/json")
    if next_page is not None:
        response.headers["Link"] = f'<{next_page}>; rel="next"'

    if etag is not None:
        response.headers["ETag"] = etag_of(etag)
    if location is not None:
        response.headers["Location"] = location
    return response


def etag_of(version: int) -> str:
    """The strong entity tag of a row's compare-and-set version (RFC 9110 §8.8.3)."""
    return f'"{version}"'


def if_match_version() -> str | None:
    """The version ``If-Match`` names, for the services' compare-and-set.

    ``*`` means "whatever is current" (``None``). Missing: 428; a weak or malformed tag
    can never match: 412 (RFC 9110 §13.1.1 compares If-Match strongly).
    """
    raw = request.headers.get("If-Match")
    if raw is None or not raw.strip():
        raise ApiProblem(problem(
            428, "Send If-Match with the ETag of the version you changed (from GET): a change "
                 "made without knowing the version could overwrite somebody else's.",
            kind="precondition-required"))
    raw = raw.strip()
    if raw == "*":
        return None
    tags = [t.strip() for t in raw.split(",")]
    for tag in tags:
        if len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isascii() \
                and tag[1:-1].isdigit() and len(tag) <= 11:
            return tag[1:-1]
    raise ApiProblem(problem(412, f"If-Match {raw[:80]!r} names no current version of this "
                                  "object; GET it again for its ETag.", kind="stale-version"))


def version_problem(exc: ValidationFailed) -> Response:
    """A service refused the version (e.g. a stale or unreadable If-Match): 412."""
    return problem(412, str(exc), kind="stale-version")


def page_of(items: Sequence[Any], page: int, per_page: int, endpoint: str,
            args: Mapping[str, Any]) -> tuple[list[Any], int, str | None]:
    """The slice for ``page`` and the next page's URL (``None`` on the last)."""
    start = (page - 1) * per_page
    chunk = list(items[start:start + per_page])
    has_next = start + per_page < len(items)
    following = url_for(endpoint, **{**args, "page": page + 1, "per_page": per_page}) \
        if has_next else None
    return chunk, len(items), following
