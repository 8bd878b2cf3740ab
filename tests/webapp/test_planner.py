"""The sample-size planner page: a GET form (works without JS) that htmx re-asks as
you type, answering only the result fragment; invalid inputs are a 422 that names
the field."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot, Dataset, DriverNode, Experiment, Team, Variant

HX = {"HX-Request": "true"}
ARGS = {
    "baseline_nrr": "1.02",
    "sigma": "0.25",
    "mde": "0.02",
    "alpha": "0.05",
    "power": "0.8",
    "treatment_share": "0.5",
    "weekly_enrolment": "300",
}


def test_first_view_answers_the_defaults_and_is_live(login_as):
    client = login_as("viewer")
    response = client.get("/planner/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body
    assert 'method="get" action="/planner/"' in body
    assert 'hx-get="/planner/"' in body and 'hx-trigger="input changed delay:300ms, submit"' in body
    assert 'hx-target="#planner-result"' in body and 'hx-push-url="true"' in body
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', body):
        assert f'for="{field_id}"' in body, field_id
    assert "2,454</strong> accounts" in body and "20 weeks" in body  # 4,908 at 250 a week


def test_the_htmx_request_gets_only_the_answer(login_as):
    client = login_as("viewer")
    response = client.get("/planner/?" + urlencode(ARGS), headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert 'id="planner-result"' in body and "<form" not in body
    assert "2,454</strong> accounts" in body and "17 weeks" in body  # ceil(4,908 / 300)
    assert "from 102.0% to 104.0%" in body
    assert "HX-Request" in response.headers["Vary"]


def test_without_js_the_form_submits_to_the_same_page(login_as):
    client = login_as("viewer")
    body = client.get(
        "/planner/?" + urlencode({**ARGS, "mde": "0.04", "treatment_share": "0.25"})
    ).get_data(as_text=True)
    assert "<html" in body and 'value="0.04"' in body and 'value="0.25"' in body
    assert "Treatment" in body and "weeks" in body


def test_invalid_inputs_are_a_422_naming_the_field(login_as):
    client = login_as("viewer")
    page = client.get("/planner/?" + urlencode({**ARGS, "mde": "0", "power": "lots"}))
    body = page.get_data(as_text=True)
    assert page.status_code == 422
    assert re.search(r'id="plan-mde-error">must be greater than 0 and below 1', body)
    assert re.search(r'id="plan-power-error">must be a number', body)
    assert 'aria-invalid="true"' in body
    fragment = client.get(
        "/planner/?" + urlencode({**ARGS, "sigma": "<script>x</script>"}), headers=HX
    )
    fbody = fragment.get_data(as_text=True)
    assert fragment.status_code == 422 and "<html" not in fbody
    assert 'href="#plan-sigma"' in fbody and "<script>x" not in fbody


def test_a_past_experiment_supplies_sigma_and_baseline(db_engine, login_as):
    client = login_as("viewer", teams={"growth": "viewer"})
    with Session(db_engine) as session:
        root = session.exec(select(DriverNode)).first()
        team = session.exec(select(Team).where(Team.slug == "growth")).one()
        experiment = Experiment(
            key="old-test", name="Old test", node_id=root.id, status="decided", team_id=team.id
        )
        hidden = Experiment(key="hidden-test", name="Hidden", node_id=root.id, status="decided")
        session.add_all([experiment, hidden])
        session.flush()
        session.add(Variant(experiment_id=experiment.id, key="control", is_control=True))
        dataset = Dataset(experiment_id=experiment.id, version=1, sha256="b" * 64)
        session.add(dataset)
        session.flush()
        session.add(
            AnalysisSnapshot(
                experiment_id=experiment.id,
                dataset_id=dataset.id,
                result={
                    "control": "control",
                    "arms": [{"variant": "control", "nrr": 1.05}],
                    "comparisons": [{"variant": "t", "sigma_lin": 0.5}],
                },
            )
        )
        session.commit()
    page = client.get("/planner/").get_data(as_text=True)
    assert '<option value="old-test">Old test (old-test)</option>' in page
    assert "hidden-test" not in page  # no snapshot, nothing to take
    fragment = client.get(
        "/planner/?" + urlencode({**ARGS, "experiment": "old-test", "sigma": ""}), headers=HX
    )
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert (
        "sigma = 0.500 and baseline NRR 105.0%" in body and 'href="/experiments/old-test"' in body
    )
    assert "9,813</strong> accounts" in body  # required_sample_size(0.02, 0.5): pingouin, d = 0.04
    missing = client.get("/planner/?" + urlencode({**ARGS, "experiment": "nope"}), headers=HX)
    assert missing.status_code == 422 and "no analysis results" in missing.get_data(as_text=True)
