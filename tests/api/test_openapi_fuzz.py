"""Property-based fuzz of the whole API from its own OpenAPI description (schemathesis).

Every operation of ``/api/v1/openapi.json`` is called with generated input through the
WSGI app and a real write token of an admin, over a world with an experiment in each
state: no answer may be a 5xx, every answer to valid input must be one the document
declares, with the declared media type and a body that matches its schema, and input
that breaks the document (schemathesis' negative mode) must be refused without a 5xx.
Examples are bounded (:data:`EXAMPLES` and :data:`NEGATIVE_EXAMPLES` per operation) so
the file runs in under a minute.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session

from tests.api.conftest import issue_token
from tests.factories import accounts_csv, store_accounts

pytestmark = pytest.mark.db
#: ``NRRLAB_FUZZ_EXAMPLES=200`` runs a longer, randomised fuzz by hand (CI: 12, fixed seed).
EXAMPLES = int(os.environ.get("NRRLAB_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = "NRRLAB_FUZZ_EXAMPLES" not in os.environ
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Input that breaks the document (wrong types, missing members, bad media types): it
#: must be refused with a 4xx problem, never a 5xx.
NEGATIVE_EXAMPLES = max(6, EXAMPLES // 2)
NEGATIVE_CHECKS = [not_a_server_error, content_type_conformance]


@pytest.fixture
def fuzz_world(app, factory, db_engine):
    """The app, an admin's write token and experiments in every state (one with data)."""
    admin = factory.user("fuzz@example.com", "admin")
    for status in ("draft", "running", "stopped", "decided"):
        factory.experiment(f"exp-{status}", status=status)
    with Session(db_engine, expire_on_commit=False) as session:
        from sqlmodel import select

        from experiments.models import Experiment

        running = session.exec(select(Experiment).where(Experiment.key == "exp-running")).one()
        store_accounts(session, running, accounts_csv(seed=2, n=30))
        session.commit()
    app.extensions["fuzz_token"] = issue_token(db_engine, admin)
    return app


def _fuzz(strategy, examples: int, checks: list, token: str,
          statuses: dict[str, set[int]]) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, derandomize=DERANDOMIZE, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case):
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                          checks=checks)
        statuses.setdefault(case.operation.label, set()).add(response.status_code)

    call()


def test_no_server_errors_and_answers_as_documented(fuzz_world):
    """Each operation in turn (the document's own list), :data:`EXAMPLES` cases each."""
    token = fuzz_world.extensions["fuzz_token"]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_world)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    statuses: dict[str, set[int]] = {}

    for operation in operations:
        for mode, examples, checks in ((GenerationMode.POSITIVE, EXAMPLES, CHECKS),
                                       (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES,
                                        NEGATIVE_CHECKS)):
            try:
                _fuzz(operation.as_strategy(mode), examples, checks, token, statuses)
            except Unsatisfiable:
                # no input of this operation can break the document (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE and not operation.body \
                    and not list(operation.iter_parameters()), operation.label
    # the fuzz reached the code behind the checks: every operation was called, and the
    # reading ones succeeded at least once
    assert len(statuses) == len(operations)
    served = {label for label, codes in statuses.items() if any(200 <= c < 300 for c in codes)}
    assert {"GET /api/v1/experiments", "GET /api/v1/nodes", "GET /api/v1/me"} <= served
