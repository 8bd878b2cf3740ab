"""Every endpoint of /api/v1 through a token: the same services and rules as the pages."""

from __future__ import annotations

import io

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent, Dataset, DriverNode, Experiment, JourneyStage
from tests.factories import accounts_csv

pytestmark = pytest.mark.db


def _stage_id(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(JourneyStage.id).order_by(JourneyStage.position)).first()


def _root_id(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(DriverNode.id).where(DriverNode.parent_id.is_(None))).one()


def _plan(engine, key: str = "onboarding-email", **changes) -> dict:
    return {"key": key, "name": "Onboarding email", "node_id": _root_id(engine),
            "stage_id": _stage_id(engine), "hypothesis": "If we email, then NRR rises because.",
            "mde": 0.02, "alpha": 0.05, "power": 0.8, "analysis": "fixed",
            "variants": [{"key": "control"}, {"key": "treatment", "weight": 1}], **changes}


def test_register_read_change_start_upload_stop_decide(api_as, db_engine):
    """The whole life of an experiment through the API, as a pipeline would drive it."""
    api = api_as("experimenter")
    created = api.post("/api/v1/experiments", json=_plan(db_engine))
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["status"] == "draft" and body["owner_id"] == api.user.id
    assert [v["key"] for v in body["variants"]] == ["control", "treatment"]
    assert body["variants"][0]["is_control"] and created.headers["ETag"] == '"1"'
    assert created.headers["Location"].endswith("/api/v1/experiments/onboarding-email")

    got = api.get("/api/v1/experiments/onboarding-email")
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'

    changed = api.patch("/api/v1/experiments/onboarding-email", json={"name": "Welcome email"},
                        headers={"If-Match": '"1"'})
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert changed.get_json()["name"] == "Welcome email" and changed.headers["ETag"] == '"2"'
    assert changed.get_json()["hypothesis"] == _plan(db_engine)["hypothesis"]  # kept

    started = api.post("/api/v1/experiments/onboarding-email/start", headers={"If-Match": '"2"'})
    assert started.status_code == 200, started.get_data(as_text=True)
    assert started.get_json()["status"] == "running"
    assert all(v["required_n"] for v in started.get_json()["variants"])

    # the plan is locked now: a change of the MDE needs a reason and becomes an amendment
    unreasoned = api.patch("/api/v1/experiments/onboarding-email", json={"mde": 0.03},
                           headers={"If-Match": '"3"'})
    assert unreasoned.status_code == 422
    assert [e["field"] for e in unreasoned.get_json()["errors"]] == ["reason"]
    amended = api.patch("/api/v1/experiments/onboarding-email",
                        json={"mde": 0.03, "reason": "finance asked for 3 points"},
                        headers={"If-Match": '"3"'})
    assert amended.status_code == 200, amended.get_data(as_text=True)
    assert amended.get_json()["mde"] == 0.03
    [amendment] = amended.get_json()["amendments"]
    assert (amendment["field"], amendment["reason"]) == ("mde", "finance asked for 3 points")
    assert amendment["old_value"].startswith("0.02") and amendment["actor_id"] == api.user.id

    data = accounts_csv(seed=3, n=150)
    uploaded = api.post("/api/v1/experiments/onboarding-email/datasets", data=data,
                        headers={"Content-Type": "text/csv"},
                        query_string={"filename": "week1.csv"})
    assert uploaded.status_code == 201, uploaded.get_data(as_text=True)
    assert uploaded.get_json()["rows_read"] == 300

    stopped = api.post("/api/v1/experiments/onboarding-email/stop", headers={"If-Match": '"4"'})
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    decided = api.post("/api/v1/experiments/onboarding-email/decide",
                       json={"decision": "kill", "rationale": "no lift worth the cost"},
                       headers={"If-Match": stopped.headers["ETag"]})
    assert decided.status_code == 200, decided.get_data(as_text=True)
    assert decided.get_json()["decision"] == "kill"
    assert decided.get_json()["status"] == "decided"
    with Session(db_engine) as session:
        actions = set(session.exec(select(AuditEvent.action)).all())
        experiment = session.exec(select(Experiment)).one()
    # the pages' services wrote their audit rows; the token's use is audited too
    assert {"experiment.create", "experiment.start", "experiment.stop",
            "api_token.use"} <= actions
    assert experiment.decision_rationale == "no lift worth the cost"

def test_upload_as_csv_body_and_multipart_then_results(api_as, factory, db_engine):
    factory.experiment("checkout", status="running")
    api = api_as("analyst")
    data = accounts_csv(seed=5, n=120)
    first = api.post("/api/v1/experiments/checkout/datasets", data=data,
                     headers={"Content-Type": "text/csv"}, query_string={"filename": "a.csv"})
    assert first.status_code == 201, first.get_data(as_text=True)
    job = first.get_json()
    assert job["state"] == "done" and job["dataset_version"] == 1 and job["filename"] == "a.csv"
    again = api.post("/api/v1/experiments/checkout/datasets",
                     data={"file": (io.BytesIO(data), "same.csv")},
                     content_type="multipart/form-data")
    assert again.status_code == 200 and again.get_json()["state"] == "duplicate"
    status = api.get(job["links"]["self"])
    assert status.status_code == 200 and status.get_json()["state"] == "done"

    results = api.get("/api/v1/experiments/checkout/results")
    assert results.status_code == 200
    report = results.get_json()
    assert report["experiment"]["key"] == "checkout" and report["dataset"]["version"] == 1
    arms = {a["variant"]: a["accounts"] for a in report["arms"]}
    assert arms == {"control": 120, "treatment": 120}
    assert {"levers", "logo_churn", "guardrails"} <= set(report["comparisons"][0])
    with Session(db_engine) as session:
        assert session.exec(select(Dataset)).one().row_count == 240


def test_nodes_list_get_create_and_change_with_if_match(api_as, db_engine):
    api = api_as("experimenter")
    root = _root_id(db_engine)
    created = api.post("/api/v1/nodes", json={"parent_id": root, "name": "Expansion",
                                              "kind": "lever", "baseline": 0.2})
    assert created.status_code == 201, created.get_data(as_text=True)
    node = created.get_json()
    assert node["parent_id"] == root and node["version"] == 1 and node["baseline"] == 0.2
    listed = api.get("/api/v1/nodes").get_json()
    assert [n["id"] for n in listed["items"]] == [root, node["id"]]  # parent first
    assert listed["total"] == 2 and listed["next"] is None

    url = f"/api/v1/nodes/{node['id']}"
    assert api.get(url).headers["ETag"] == '"1"'
    changed = api.patch(url, json={"target": 0.3}, headers={"If-Match": '"1"'})
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert changed.get_json()["target"] == 0.3 and changed.get_json()["baseline"] == 0.2
    # somebody else saved version 2 meanwhile: a write made on version 1 is refused
    stale = api.patch(url, json={"target": 0.4}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert stale.get_json()["type"].endswith("#problem-stale-version")
    assert stale.get_json()["current_version"] == 2
    missing = api.patch(url, json={"target": 0.4})
    assert missing.status_code == 428
    with Session(db_engine) as session:
        assert session.get(DriverNode, node["id"]).target == 0.3  # neither stale write landed


def test_experiment_list_filters_and_pages(api_as, factory):
    for index in range(5):
        factory.experiment(f"exp-{index}", status="running" if index % 2 else "draft")
    api = api_as("viewer")
    answer = api.get("/api/v1/experiments", query_string={"per_page": 2})
    first = answer.get_json()
    assert answer.headers["Link"] == f'<{first["next"]}>; rel="next"'
    assert first["total"] == 5 and len(first["items"]) == 2
    keys = [e["key"] for e in first["items"]]
    second = api.get(first["next"]).get_json()
    third = api.get(second["next"]).get_json()
    keys += [e["key"] for e in second["items"] + third["items"]]
    assert sorted(keys) == [f"exp-{i}" for i in range(5)] and third["next"] is None
    running = api.get("/api/v1/experiments", query_string={"status": "running"}).get_json()
    assert sorted(e["key"] for e in running["items"]) == ["exp-1", "exp-3"]
    found = api.get("/api/v1/experiments", query_string={"q": "EXP-4"}).get_json()
    assert [e["key"] for e in found["items"]] == ["exp-4"]
    bad = api.get("/api/v1/experiments", query_string={"status": "paused", "per_page": 0})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"status", "per_page"}


def test_review_week_ledger_and_me(api_as, factory):
    factory.experiment("running-one", status="running")
    api = api_as("viewer", scope="read")
    week = api.get("/api/v1/review-weeks/2026-W48")
    assert week.status_code == 200, week.get_data(as_text=True)
    assert week.get_json()["review"]["week"] == "2026-W48"
    assert api.get("/api/v1/review-weeks/not-a-week").status_code == 404
    figures = api.get("/api/v1/ledger/figures")
    assert figures.status_code == 404 and "No revenue ledger" in figures.get_json()["detail"]
    assert api.get("/api/v1/ledger/versions").get_json() == {"items": []}
    me = api.get("/api/v1/me").get_json()
    assert me["email"] == api.user.email and me["token"]["scope"] == "read"
    assert me["token"]["prefix"] == api.secret[:15]


def test_ledger_figures_are_the_stored_ones(api_as, session, admin, tmp_path):
    import json

    from experiments.ledger import current_figures
    from experiments.ledger_models import LedgerVersion
    from tests.factories import store_ledger_file
    from tests.ledger_gen import write_csv

    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=200, months=6, seed=2)
    store_ledger_file(session, path, admin)
    api = api_as("viewer")
    figures = api.get("/api/v1/ledger/figures")
    assert figures.status_code == 200
    # the stored document, number for number (JSON round trip of the stored figures)
    assert figures.get_json() == json.loads(json.dumps(current_figures(session)))
    versions = api.get("/api/v1/ledger/versions").get_json()["items"]
    assert [v["version"] for v in versions] == [session.exec(select(LedgerVersion.version)).one()]
    assert versions[0]["status"] == "current" and len(versions[0]["periods"]) == 6


def test_two_pipelines_changing_the_same_version_at_once(api_as, factory, db_engine):
    """Both send If-Match "1" at the same moment: one change lands, the other is a 412 and
    changes nothing (the services' compare-and-set, through the API)."""
    import threading

    first, second = api_as("admin"), api_as("admin")
    factory.experiment("shared", status="draft", hypothesis="h", mde=0.02,
                       stage_id=_stage_id(db_engine), owner_id=first.user.id)
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def change(api, name: str) -> None:
        barrier.wait()
        response = api.patch("/api/v1/experiments/shared", json={"name": name},
                             headers={"If-Match": '"1"'})
        answers[name] = response.status_code

    threads = [threading.Thread(target=change, args=(api, name))
               for api, name in ((first, "From A"), (second, "From B"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers.values()) == [200, 412], answers
    winner = next(name for name, status in answers.items() if status == 200)
    with Session(db_engine) as session:
        stored = session.exec(select(Experiment).where(Experiment.key == "shared")).one()
    assert stored.name == winner and stored.version == 2


def test_ledger_upload_by_a_global_analyst(api_as, tmp_path, db_engine):
    from experiments.ledger import current_figures
    from tests.ledger_gen import write_csv

    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=150, months=4, seed=9)
    body = path.read_bytes()
    api = api_as("analyst")
    stored = api.post("/api/v1/ledger/versions", data=body,
                      headers={"Content-Type": "text/csv"},
                      query_string={"dimensions": "plan,region,size", "filename": "q4.csv"})
    assert stored.status_code == 201, stored.get_data(as_text=True)
    version = stored.get_json()
    assert version["version"] == 1 and version["filename"] == "q4.csv"
    assert version["dimensions"] == ["plan", "region", "size"] and len(version["periods"]) == 4
    with Session(db_engine) as session:
        assert api.get("/api/v1/ledger/figures").get_json()["periods"] == \
            current_figures(session)["periods"]
    again = api.post("/api/v1/ledger/versions", data=body, headers={"Content-Type": "text/csv"},
                     query_string={"dimensions": "plan,region,size"})
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    bad = api.post("/api/v1/ledger/versions", headers={"Content-Type": "text/csv"},
                   data=b"account_id,period,start_mrr\nA,2026-01,-5\n")
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["line"] == 2
    # the ledger is the company's: a team's analyst who is a viewer globally may not
    team_analyst = api_as("viewer", teams={"growth": "analyst"})
    refused = team_analyst.post("/api/v1/ledger/versions", data=body,
                                headers={"Content-Type": "text/csv"})
    assert refused.status_code == 403
