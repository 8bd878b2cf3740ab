"""Sample-size planning: the planner's answer, where sigma comes from, and the registry hint."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session
from statsmodels.stats.power import TTestIndPower

from experiments.models import AnalysisSnapshot, Dataset, DriverNode, Experiment
from experiments.planning import (
    DEFAULT_SIGMA,
    branch_history,
    experiment_history,
    experiments_with_history,
    plan,
    sample_size_hint,
    size_arms,
)
from experiments.users import create_user, ensure_team, set_team_role
from stats import required_sample_size
from tests.factories import make_experiment
from tests.helpers import TEST_PASSWORD


def experiment_with_snapshot(
    session: Session,
    node: DriverNode,
    key: str,
    *,
    sigma: float | None,
    nrr: float = 1.03,
    team_id: int | None = None,
) -> Experiment:
    experiment = make_experiment(session, key, node=node, variants=("control",), team_id=team_id)
    dataset = Dataset(experiment_id=experiment.id, version=1, sha256="a" * 64)
    session.add(dataset)
    session.flush()
    result = {
        "control": "control",
        "arms": [{"variant": "control", "nrr": nrr}, {"variant": "treatment", "nrr": nrr + 0.01}],
        "comparisons": [{"variant": "treatment", "sigma_lin": sigma}],
    }
    session.add(
        AnalysisSnapshot(
            experiment_id=experiment.id,
            dataset_id=dataset.id,
            verdict="inconclusive",
            result=result,
        )
    )
    session.flush()
    return experiment


def test_size_arms_matches_stats_for_even_and_uneven_splits():
    even = size_arms(0.02, 0.25, alpha=0.05, power=0.8, weights=(1.0, 1.0))
    # 2454 per arm: stats.required_sample_size's own doctest (pingouin.power_ttest, d = 0.08)
    assert even.control == 2454 and even.treatments == (2454,) and even.total == 4908
    uneven = size_arms(0.02, 0.25, alpha=0.05, power=0.8, weights=(2.0, 1.0))
    n_control = required_sample_size(0.02, 0.25, alpha=0.05, power=0.8, ratio=0.5)
    assert uneven.control == n_control and uneven.treatments == (math.ceil(n_control * 0.5),)
    three = size_arms(0.02, 0.25, alpha=0.05, power=0.8, weights=(1.0, 1.0, 2.0))
    assert three.control == max(
        required_sample_size(0.02, 0.25, ratio=1.0), required_sample_size(0.02, 0.25, ratio=2.0)
    )
    assert three.treatments == (three.control, 2 * three.control)


def test_size_arms_says_when_the_sample_is_out_of_reach():
    hopeless = size_arms(1e-6, 5.0, alpha=0.05, power=0.8, weights=(1.0, 1.0))
    assert hopeless.control is None and hopeless.total is None


def test_the_planner_answers_its_defaults_on_first_view(session, admin):
    result = plan(session, admin, {})
    assert result.errors == {}
    assert result.sigma == DEFAULT_SIGMA and result.allocation.control == 2454
    assert result.weeks == math.ceil(4908 / 250)
    assert result.relative_mde == pytest.approx(0.02)


def test_the_planner_uses_the_treatment_share_and_weekly_enrolment(session, admin):
    result = plan(
        session,
        admin,
        {
            "baseline_nrr": "1.05",
            "sigma": "0.3",
            "mde": "0.03",
            "alpha": "0.05",
            "power": "0.9",
            "treatment_share": "0.25",
            "weekly_enrolment": "100",
        },
    )
    n_control = required_sample_size(0.03, 0.3, alpha=0.05, power=0.9, ratio=1 / 3)
    assert result.allocation.control == n_control
    assert result.allocation.treatments == (math.ceil(n_control / 3),)
    assert result.weeks == math.ceil(result.allocation.total / 100)
    blank_week = plan(
        session,
        admin,
        {
            "sigma": "0.3",
            "mde": "0.03",
            "alpha": "0.05",
            "power": "0.9",
            "treatment_share": "0.5",
            "weekly_enrolment": "",
        },
    )
    assert blank_week.weeks is None and blank_week.allocation.control is not None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sigma", "", "is required"),
        ("sigma", "-1", "greater than 0"),
        ("baseline_nrr", "102%", "must be a number"),
        ("baseline_nrr", "0", "fraction greater than 0"),
        ("mde", "0", "greater than 0 and below 1"),
        ("mde", "1.5", "greater than 0 and below 1"),
        ("alpha", "0.6", "at most 0.5"),
        ("power", "0.3", "between 0.5 and 0.99"),
        ("treatment_share", "1", "between 0.01 and 0.99"),
        ("weekly_enrolment", "-5", "greater than 0"),
        ("experiment", "no-such-experiment", "no analysis results"),
    ],
)
def test_the_planner_reports_bad_inputs_per_field(session, admin, field, value, message):
    args = {
        "baseline_nrr": "1.0",
        "sigma": "0.25",
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "treatment_share": "0.5",
        "weekly_enrolment": "250",
        field: value,
    }
    result = plan(session, admin, args)
    assert message in result.errors[field]
    assert result.allocation is None


def test_the_planner_takes_sigma_and_baseline_from_a_past_experiment(session, admin, root):
    experiment_with_snapshot(session, root, "old-test", sigma=0.5, nrr=1.04)
    assert [e.key for e in experiments_with_history(session, admin)] == ["old-test"]
    result = plan(
        session,
        admin,
        {
            "experiment": "old-test",
            "sigma": "",
            "mde": "0.02",
            "alpha": "0.05",
            "power": "0.8",
            "treatment_share": "0.5",
        },
    )
    assert result.errors == {}
    assert (result.sigma, result.baseline_nrr) == (0.5, 1.04)
    assert result.history.experiment_key == "old-test"
    assert result.allocation.control == required_sample_size(0.02, 0.5)


def test_history_ignores_unusable_snapshots_and_hidden_teams(session, admin, root):
    experiment_with_snapshot(session, root, "no-sigma", sigma=None)
    assert experiment_history(session, admin, "no-sigma") is None
    team = ensure_team(session, "success", "Success")
    experiment_with_snapshot(session, root, "secret", sigma=0.4, team_id=team.id)
    outsider = create_user(session, "out@plan.test", TEST_PASSWORD, role="viewer")
    growth = ensure_team(session, "growth", "Growth")
    set_team_role(session, outsider, growth, "viewer", actor=None)
    assert experiment_history(session, outsider, "secret") is None
    assert experiment_history(session, admin, "secret").sigma == 0.4


def test_the_registry_hint_uses_the_branch_history_or_states_the_default(session, admin, root):
    lever = DriverNode(parent_id=root.id, name="Lever", kind="lever")
    other = DriverNode(parent_id=root.id, name="Other", kind="lever")
    session.add_all([lever, other])
    session.flush()
    driver = DriverNode(parent_id=lever.id, name="Driver")
    session.add(driver)
    session.flush()
    experiment_with_snapshot(session, driver, "below", sigma=0.35)
    assert branch_history(session, admin, lever.id).experiment_key == "below"
    data = {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "node_id": str(lever.id),
        "control": "0",
        "variants": [{"key": "control", "weight": "1"}, {"key": "treat", "weight": "1"}],
    }
    hint = sample_size_hint(session, admin, data)
    assert hint.sigma == 0.35 and hint.allocation.control == required_sample_size(0.02, 0.35)
    assert "'below'" in hint.sigma_source and hint.variant_keys == ("control", "treat")
    default = sample_size_hint(session, admin, {**data, "node_id": str(other.id)})
    assert default.sigma == DEFAULT_SIGMA and not default.measured
    assert default.sigma_source == "sigma = 0.250, assumed — no measurement yet"
    assert default.allocation.control == 2454


def test_the_hint_reads_weights_with_the_control_first_and_is_lenient(session, admin):
    data = {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "control": "1",
        "variants": [{"key": "big", "weight": "2"}, {"key": "ctl", "weight": "1"}],
    }
    hint = sample_size_hint(session, admin, data)
    assert hint.variant_keys == ("ctl", "big")
    assert hint.allocation.control == required_sample_size(0.02, DEFAULT_SIGMA, ratio=2.0)
    broken = sample_size_hint(
        session, admin, {**data, "variants": [{"key": "a", "weight": "x"}, {"key": "b"}]}
    )
    assert broken.allocation.ratios == (1.0,)  # equal weights until the rows are usable
    incomplete = sample_size_hint(session, admin, {"mde": "0", "alpha": "0.05", "power": "0.8"})
    assert incomplete.allocation is None and "Enter an MDE" in incomplete.message


def test_a_partial_link_fills_the_missing_inputs_with_defaults(session):
    from experiments.planning import plan
    from experiments.users import create_user

    user = create_user(session, "partial@planner.test", "a long passphrase", role="viewer")
    result = plan(session, user, {"mde": "0.04", "sigma": "0.35"})
    assert not result.errors
    full = plan(
        session,
        user,
        {
            "mde": "0.04",
            "sigma": "0.35",
            "alpha": "0.05",
            "power": "0.8",
            "baseline_nrr": "1.0",
            "treatment_share": "0.5",
            "weekly_enrolment": "250",
        },
    )
    assert result.values == full.values | {"experiment": ""}
    blank = plan(session, user, {"mde": "", "sigma": "0.35"})
    assert "mde" in blank.errors  # a field sent blank is answered, not silently defaulted


def test_the_hint_gives_weeks_to_go_only_from_dated_enrolment(session, admin, root):
    """Issue 13 item 1: weeks to go from the branch's recent enrolment rate, measured
    between two uploads (400 more rows over 7 days = 400 a week), else unknown."""
    lever = DriverNode(parent_id=root.id, name="Dated", kind="lever")
    session.add(lever)
    session.flush()
    data = {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "node_id": str(lever.id),
        "control": "0",
        "variants": [{"key": "control", "weight": "1"}, {"key": "treat", "weight": "1"}],
    }
    running = make_experiment(session, "dated", node=lever)
    first = datetime(2026, 11, 2, tzinfo=UTC)
    session.add(
        Dataset(
            experiment_id=running.id, version=1, sha256="b" * 64, row_count=600, uploaded_at=first
        )
    )
    session.flush()
    assert sample_size_hint(session, admin, data).weeks is None  # one upload: undated
    session.add(
        Dataset(
            experiment_id=running.id,
            version=2,
            sha256="c" * 64,
            row_count=1000,
            uploaded_at=first + timedelta(days=7),
        )
    )
    session.flush()
    hint = sample_size_hint(session, admin, data)
    assert hint.weekly_enrolment == pytest.approx(400.0)
    assert hint.weeks == math.ceil(4908 / 400)  # 2,454 per arm (pingouin) in two arms


def test_the_hint_sizes_three_arms_at_alpha_over_k(session, admin):
    """Before: each arm at alpha (0.05) whatever the number of treatments."""
    data = {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "control": "0",
        "variants": [
            {"key": "c", "weight": "1"},
            {"key": "a", "weight": "1"},
            {"key": "b", "weight": "1"},
        ],
    }
    hint = sample_size_hint(session, admin, data)
    expected = math.ceil(
        TTestIndPower().solve_power(effect_size=0.08, alpha=0.025, power=0.8, ratio=1.0)
    )
    assert hint.allocation.control == expected and hint.allocation.treatments == (expected,) * 2
    assert hint.alpha_sizing == 0.025
