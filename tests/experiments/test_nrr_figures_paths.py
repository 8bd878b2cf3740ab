"""Issue 15 end to end: an uploaded dataset (SQL moments, counts, time tables) and
``nrrlab analyze`` on the same file give the same NRR-native figures; the CLI's flags and
formats; guardrails and the ttv target are locked plan fields; enrolled_on dates enrolment."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlmodel import select

from experiments.accounts_csv import read_accounts
from experiments.analysis import current_plan, load_results, refresh_snapshot
from experiments.analyze_file import AnalysisRequest, analyze_file
from experiments.cli import main
from experiments.datasets import AccountRatios, store_dataset
from experiments.errors import ValidationFailed
from experiments.models import Amendment, DriverNode, JourneyStage
from experiments.registry import amend_experiment, register_experiment, start_experiment
from stats.levers import GuardrailSpec
from tests import factories
from tests.experiments.nrr_figures_data import accounts, to_csv

REL = 1e-9
#: Keys of the stored report that only the web path has (plan, dataset, enrolment, ...).
WEB_ONLY = {"plan", "dataset", "segments_omitted", "enrolment"}


def assert_close(actual, expected, path="report"):
    """Numbers to 1e-9 relative, everything else exactly (recursively)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(expected), f"{path}: {set(actual) ^ set(expected)}"
        for key, value in expected.items():
            assert_close(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual is not None, path
        assert math.isclose(actual, expected, rel_tol=REL, abs_tol=1e-12), (
            f"{path}: {actual} != {expected}"
        )
    else:
        assert actual == expected, path


@pytest.fixture(autouse=True)
def flatten_tree_afterwards(db_engine):
    """As in test_registry.py: SQLite refuses the shared teardown of a nested tree."""
    yield
    with db_engine.begin() as connection:
        connection.execute(text("UPDATE driver_node SET parent_id = NULL"))


@pytest.mark.db
@pytest.mark.parametrize("observed, pre", [(True, True), (False, False)])
def test_uploaded_dataset_and_cli_give_the_same_figures(session, tmp_path, observed, pre):
    columns = accounts(1500, seed=8, observed=observed, pre=pre)
    data = to_csv(columns)
    guardrails = [{"metric": "grr", "margin": 0.01}, {"metric": "logo_churn", "margin": 0.02}]
    experiment = factories.make_experiment(
        session, "paths", guardrails=guardrails, ttv_target_days=10
    )
    table = read_accounts(data, variants=["control", "treatment"])
    dataset = store_dataset(session, experiment, table, filename="a.csv", actor=None)
    snapshot = refresh_snapshot(session, experiment, dataset)
    session.commit()

    path = tmp_path / "accounts.csv"
    path.write_bytes(data)
    cli = analyze_file(
        AnalysisRequest(
            str(path),
            guardrails=tuple(GuardrailSpec(g["metric"], g["margin"]) for g in guardrails),
            ttv_target=10,
        )
    ).to_dict()
    web = {k: v for k, v in snapshot.result.items() if k not in WEB_ONLY}
    assert_close(web, cli)
    (comparison,) = web["comparisons"]
    assert (comparison["velocity"] is not None) == observed
    assert (comparison["cuped"] is not None) == pre
    assert [g["metric"] for g in comparison["guardrails"]] == ["grr", "logo_churn"]
    # and the segments carry the figures too (from the GROUP BY segment, variant)
    for name, report in snapshot.segments.items():
        (segment,) = report["comparisons"]
        assert segment["levers"] is not None, name
        assert (segment["velocity"] is not None) == observed
    # An import hands over the rows it has just written: the same figures from its arrays.
    from_import = refresh_snapshot(
        session, experiment, dataset, ratios=AccountRatios.of_table(table)
    )
    assert_close(from_import.result, snapshot.result)
    assert_close(from_import.segments, snapshot.segments)


@pytest.mark.db
def test_the_results_page_model_reads_the_new_figures_back(session):
    experiment = factories.make_experiment(session, "page")
    table = read_accounts(to_csv(accounts(400, seed=2)), variants=["control", "treatment"])
    dataset = store_dataset(session, experiment, table, filename="p.csv", actor=None)
    refresh_snapshot(session, experiment, dataset)
    session.commit()
    results = load_results(session, experiment)
    (comparison,) = results.result.comparisons
    assert comparison.levers["grr"].uplift_abs is not None
    assert comparison.permutation is not None  # 400 accounts: arms below 300
    assert not results.plan_outdated


def run_cli(*args):
    return CliRunner().invoke(main, ["analyze", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "small.csv"
    path.write_bytes(to_csv(accounts(500, seed=4)))
    return str(path)


def test_cli_json_has_every_key(small_file):
    result = run_cli(small_file, "--guardrail", "grr:0.01", "--guardrail", "logo_churn:0.005",
                     "--ttv-target", "21")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["guardrails_plan"] == [
        {"metric": "grr", "margin": 0.01},
        {"metric": "logo_churn", "margin": 0.005},
    ]
    assert report["ttv_target_days"] == 21
    for key in ("velocity_curves", "velocity_cohorts", "required_n", "alpha_sizing"):
        assert report[key] is not None, key
    (comparison,) = report["comparisons"]
    for key in ("levers", "logo_churn", "expansion_incidence", "cuped", "velocity",
                "permutation"):
        assert comparison[key] is not None, key
    assert comparison["sequential"] is None
    assert comparison["velocity"]["target_days"] == 21


@pytest.mark.parametrize(
    "args, message",
    [
        (["--guardrail", "grr"], "--guardrail: guardrail 'grr' must look like 'grr:0.01'"),
        (["--guardrail", "nrr:0.01"], "guardrail metric must be grr or logo_churn"),
        (["--guardrail", "grr:1.5"], "guardrail margin is a fraction between 0 and 1"),
        (["--guardrail", "grr:0.01", "--guardrail", "grr:0.02"], "grr is given more than once"),
        (["--ttv-target", "0"], "--ttv-target must be a number of days greater than 0"),
        (["--ttv-target", "nan"], "--ttv-target must be a number of days greater than 0"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(small_file, args, message):
    result = run_cli(small_file, *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_cli_markdown_and_csv_show_the_new_figures(small_file):
    md = run_cli(small_file, "--guardrail", "grr:0.01", "--format", "md")
    assert md.exit_code == 0
    for heading in ("## Levers", "## Accounts lost and accounts expanded", "## Guardrails",
                    "## CUPED", "## Journey velocity", "## NRR by velocity cohort",
                    "## Small-sample check"):
        assert heading in md.output, heading
    csv_out = run_cli(small_file, "--format", "csv")
    header, row = csv_out.output.splitlines()[:2]
    names = header.split(",")
    for name in ("lever_grr_uplift", "logo_churn_p_value", "cuped_uplift", "velocity_logrank_p",
                 "permutation_p_value"):
        assert name in names, name
    cells = dict(zip(names, row.split(","), strict=True))
    assert cells["lever_grr_uplift"] and cells["velocity_logrank_p"]


def test_cli_help_names_the_new_options():
    result = CliRunner().invoke(main, ["analyze", "--help"])
    assert "--guardrail METRIC:MARGIN" in result.output and "--ttv-target DAYS" in result.output


# ------------------------------------------------------------------ the plan


@pytest.fixture
def registered(session, admin):
    root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
    stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()
    data = {
        "key": "guarded",
        "name": "Guarded",
        "node_id": str(root.id),
        "stage_id": str(stage.id),
        "owner_id": str(admin.id),
        "hypothesis": "If we onboard faster, then NRR rises because value comes sooner.",
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "analysis": "fixed",
        "guardrails": "grr:0.01\nlogo_churn:0.005",
        "ttv_target_days": "21",
        "variants": [{"key": "control", "weight": "1"}, {"key": "treatment", "weight": "1"}],
        "control": "0",
    }
    experiment = register_experiment(session, data, actor=admin)
    session.commit()
    return experiment, data


@pytest.mark.db
def test_registration_stores_guardrails_and_the_ttv_target(session, registered):
    experiment, _ = registered
    assert experiment.guardrails == [
        {"metric": "grr", "margin": 0.01},
        {"metric": "logo_churn", "margin": 0.005},
    ]
    assert experiment.ttv_target_days == 21
    plan = current_plan(session, experiment)
    assert plan.guardrails == (GuardrailSpec("grr", 0.01), GuardrailSpec("logo_churn", 0.005))
    assert plan.to_dict()["guardrails"] == experiment.guardrails
    assert plan.to_dict()["ttv_target_days"] == 21


@pytest.mark.db
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("guardrails", "grr:0.01\nnrr:0.1", "entry 2: guardrail 'nrr:0.1'"),
        ("guardrails", "grr:0.01, grr:0.02", "grr is given more than once"),
        ("guardrails", "grr", "must look like 'grr:0.01'"),
        ("ttv_target_days", "0", "must be a whole number from 1 to 365"),
        ("ttv_target_days", "2.5", "must be a whole number from 1 to 365"),
    ],
)
def test_bad_plan_values_are_field_errors(session, registered, admin, field, value, message):
    _, data = registered
    with pytest.raises(ValidationFailed) as caught:
        register_experiment(session, {**data, "key": "other", field: value}, actor=admin)
    assert message in caught.value.errors[field]


@pytest.mark.db
def test_after_the_start_changing_guardrails_is_an_amendment(session, registered, admin):
    experiment, _ = registered
    start_experiment(session, experiment.key, actor=admin)
    session.commit()
    with pytest.raises(ValidationFailed) as caught:
        amend_experiment(session, experiment.key, {"guardrails": "grr:0.02"}, reason="",
                         actor=admin)
    assert caught.value.errors["reason"] == "is required"
    amendments = amend_experiment(
        session, experiment.key, {"guardrails": "grr:0.02", "ttv_target_days": "30"},
        reason="Finance wants a wider GRR margin.", actor=admin,
    )
    session.commit()
    shown = {(a.field, a.old_value, a.new_value) for a in amendments}
    assert shown == {
        ("guardrails", "grr:0.01, logo_churn:0.005", "grr:0.02"),
        ("ttv_target_days", "21", "30"),
    }
    assert experiment.guardrails == [{"metric": "grr", "margin": 0.02}]
    assert session.exec(select(Amendment).where(Amendment.experiment_id == experiment.id)).all()


# ------------------------------------------------------------------ enrolment


@pytest.mark.db
def test_enrolled_on_dates_the_enrolment_of_a_single_upload(session):
    columns = accounts(600, seed=9)
    experiment = factories.make_experiment(session, "dated")
    table = read_accounts(to_csv(columns), variants=["control", "treatment"])
    dataset = store_dataset(session, experiment, table, filename="d.csv", actor=None)
    snapshot = refresh_snapshot(session, experiment, dataset)
    enrolment = snapshot.result["enrolment"]
    assert enrolment["source"] == "enrolled_on"
    days = columns["enrolled_on"].astype("datetime64[D]")
    last = days.max()
    cut = last - np.timedelta64(28, "D")
    counts = {v: int((columns["variant"] == v).sum()) for v in ("control", "treatment")}
    smallest = min(counts, key=counts.get)
    before = int(((columns["variant"] == smallest) & (days < cut)).sum())
    assert enrolment["earlier_smallest"] == before
    assert enrolment["observed_smallest"] == counts[smallest]
    assert enrolment["earlier_at"].startswith(str(cut))
    assert date.fromisoformat(enrolment["observed_at"][:10]) == date.fromisoformat(
        str(last + np.timedelta64(1, "D"))
    )
    from_import = refresh_snapshot(session, experiment, dataset,
                                   ratios=AccountRatios.of_table(table))
    assert from_import.result["enrolment"] == enrolment


@pytest.mark.db
def test_without_enrolled_on_the_upload_dates_are_used(session):
    experiment = factories.make_experiment(session, "undated")
    table = read_accounts(to_csv(accounts(300, seed=9, enrolled=False)),
                          variants=["control", "treatment"])
    dataset = store_dataset(session, experiment, table, filename="u.csv", actor=None)
    snapshot = refresh_snapshot(session, experiment, dataset)
    assert snapshot.result["enrolment"]["source"] == "uploads"
    assert snapshot.result["enrolment"]["earlier_at"] is None
