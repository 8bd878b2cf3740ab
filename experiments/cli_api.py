"""``nrrlab push`` and ``nrrlab pull``: the command line as a client of the JSON API.

Nothing here opens the database: both commands talk to a running server
(``--server``, or ``NRRLAB_SERVER``) with a personal API token from the environment
(``NRRLAB_TOKEN``; never an option, so it stays out of shell history and process
lists). ``push`` sends an account CSV to ``/api/v1/experiments/<key>/datasets`` and
waits for the import job; ``pull`` reads ``/api/v1/experiments/<key>/results`` and
writes it with the same renderers as the site's exports.

Exit status: 0 done, 1 refused or unreachable (one line on stderr), 2 the file broke the
data contract (one line per problem, with its line number).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

TOKEN_ENV = "NRRLAB_TOKEN"  # noqa: S105 (the name of the variable, not a secret)
SERVER_ENV = "NRRLAB_SERVER"
PULL_FORMATS = ("json", "csv", "md")
#: Seconds between two looks at a queued upload, and the most ``push`` waits by default.
POLL_SECONDS = 1.0
DEFAULT_WAIT_SECONDS = 600


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str]


class ApiUnreachable(Exception):
    """The server did not answer (refused, unknown host, timeout)."""


def _call(server: str, token: str, method: str, path: str, *, data: bytes | None = None,
          content_type: str | None = None, timeout: float = 120) -> ApiAnswer:
    if urllib.parse.urlsplit(server).scheme not in ("http", "https"):
        raise ApiUnreachable(f"--server must be an http:// or https:// URL, not {server!r}")
    url = urllib.parse.urljoin(server.rstrip("/") + "/", path.lstrip("/"))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    # the scheme is checked above: only http(s), never file: or custom ones
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiUnreachable(f"cannot reach {server}: {reason}") from None
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return ApiAnswer(status, body, got)


def _fail(command: str, message: str, code: int = 1) -> None:
    click.echo(f"nrrlab {command}: {message}", err=True)
    sys.exit(code)


def _refusal(answer: ApiAnswer) -> str:
    body = answer.body if isinstance(answer.body, dict) else {}
    detail = body.get("detail") or f"the server answered {answer.status}"
    errors = [e for e in body.get("errors") or () if isinstance(e, dict)]
    fields = "; ".join(f"{e['field']}: {e['message']}" for e in errors if e.get("field"))
    return f"{detail} ({fields})" if fields and fields not in detail else detail


def _token(command: str) -> str:
    import os

    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        _fail(command, f"set {TOKEN_ENV} to a personal API token (make one on the site: "
                       "your account → API tokens)")
    return token


def _quote(key: str) -> str:
    return urllib.parse.quote(key, safe="")


_SERVER = click.option("--server", envvar=SERVER_ENV, required=True, metavar="URL",
                       help=f"The NRR Lab site, e.g. https://nrr.example.com ({SERVER_ENV}).")


@click.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--experiment", "key", required=True, metavar="KEY",
              help="The experiment the account results belong to.")
@_SERVER
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the import to finish (else print the job's URL and return).")
@click.option("--timeout", default=DEFAULT_WAIT_SECONDS, show_default=True, type=float,
              help="Seconds to wait for the import.")
def push(file: Path, key: str, server: str, wait: bool, timeout: float) -> None:
    """Upload FILE.csv (DESIGN §3 account results) to an experiment through the API.

    The token comes from NRRLAB_TOKEN (a write token of an analyst or above). Problems in
    the file are listed one per line with their line number (exit 2); nothing is stored.
    """
    token = _token("push")
    query = urllib.parse.urlencode({"filename": file.name})
    try:
        answer = _call(server, token, "POST",
                       f"/api/v1/experiments/{_quote(key)}/datasets?{query}",
                       data=file.read_bytes(), content_type="text/csv")
        started = time.monotonic()
        while wait and answer.status in (200, 202) and isinstance(answer.body, dict) \
                and answer.body.get("state") in ("queued", "running"):
            if time.monotonic() - started > timeout:
                _fail("push", f"the import is still {answer.body['state']} after {timeout:g} s; "
                              f"follow it at {answer.body['links']['self']}")
            time.sleep(POLL_SECONDS)
            answer = _call(server, token, "GET", answer.body["links"]["self"])
    except ApiUnreachable as exc:
        _fail("push", str(exc))
    _report_push(file, key, answer)


def _report_push(file: Path, key: str, answer: ApiAnswer) -> None:
    body = answer.body if isinstance(answer.body, dict) else {}
    state = body.get("state")
    if answer.status in (200, 201, 202) and state in ("done", "duplicate", "queued", "running"):
        if state == "done":
            click.echo(f"{file.name}: stored as dataset version {body['dataset_version']} of "
                       f"{key} ({body['rows_read']:,} accounts) and analysed.")
        elif state == "duplicate":
            click.echo(f"{file.name}: identical to dataset version {body['dataset_version']} "
                       f"of {key}; nothing new was stored.")
        else:
            click.echo(f"{file.name}: import {state}; follow it at {body['links']['self']}")
        return
    problems = [e for e in body.get("errors") or () if isinstance(e, dict) and e.get("line")]
    if problems or state == "failed":
        for problem in problems:
            column = f", {problem['column']}" if problem.get("column") else ""
            click.echo(f"{file.name}: line {problem['line']}{column}: {problem['message']}",
                       err=True)
        total = body.get("total", body.get("error_total", len(problems)))
        if total > len(problems):
            click.echo(f"{file.name}: … and {total - len(problems)} more problem(s)", err=True)
        if not problems:
            click.echo(f"{file.name}: {body.get('detail') or body.get('message')}", err=True)
        sys.exit(2)
    _fail("push", _refusal(answer))


@click.command("pull")
@click.argument("key")
@_SERVER
@click.option("--format", "fmt", type=click.Choice(PULL_FORMATS), default="json",
              show_default=True, help="json (the API's document), csv or md (as the exports).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
def pull(key: str, server: str, fmt: str, output: Path | None) -> None:
    """Read an experiment's results (verdict, arms, comparisons, plan) through the API.

    The token comes from NRRLAB_TOKEN (a read token is enough).
    """
    from datetime import UTC, datetime

    from experiments.documents import ExperimentDocument
    from experiments.export_formats import experiment_csv, experiment_json, experiment_markdown

    token = _token("pull")
    try:
        answer = _call(server, token, "GET", f"/api/v1/experiments/{_quote(key)}/results")
    except ApiUnreachable as exc:
        _fail("pull", str(exc))
    if answer.status != 200 or not isinstance(answer.body, dict):
        _fail("pull", _refusal(answer))
    document = ExperimentDocument.from_json(answer.body)
    now = datetime.now(UTC)
    text = {"json": lambda: experiment_json(document, exported_at=now),
            "csv": lambda: experiment_csv(document),
            "md": lambda: experiment_markdown(document, exported_at=now)}[fmt]()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
