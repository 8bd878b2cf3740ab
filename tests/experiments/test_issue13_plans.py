"""Issue 13 in the domain layer: the plan's sigma and its source, the required n locked at
start (per arm, for its weight and alpha/k), the stored analysis run under the locked plan,
and the sequential/fixed-horizon choice.

Expected sample sizes are statsmodels' ``TTestIndPower().solve_power`` computed here, not
the code under test (DESIGN §4c: nobs1 = control, ratio = w_T / w_C, alpha / k).
"""

from __future__ import annotations

import math

import pytest
from sqlmodel import select
from statsmodels.stats.power import TTestIndPower

from experiments.analysis import load_results, refresh_snapshot
from experiments.errors import ValidationFailed
from experiments.models import AuditEvent, DriverNode, JourneyStage, Variant
from experiments.registry import form_values, start_experiment, update_experiment
from tests.experiments.test_analysis import Behaviour, generated, stored
from tests.experiments.test_planning import experiment_with_snapshot
from tests.factories import make_experiment


def solve(mde: float, sigma: float, alpha: float, power: float, ratio: float) -> int:
    """n_C for one treatment (statsmodels), as DESIGN §4c defines it."""
    return math.ceil(TTestIndPower().solve_power(effect_size=mde / sigma, alpha=alpha,
                                                 power=power, ratio=ratio,
                                                 alternative="two-sided"))


def variants(session, experiment) -> dict[str, int | None]:
    rows = session.exec(select(Variant).where(Variant.experiment_id == experiment.id)).all()
    return {v.key: v.required_n for v in rows}


def test_start_locks_each_arms_n_on_the_sigma_measured_on_the_branch(session, admin, root):
    """Before: nothing was locked (sizes were re-estimated from every later upload), and the
    hint sized at the default 0.25 with alpha, not alpha/k, ignoring the weights."""
    lever = DriverNode(parent_id=root.id, name="Lever", kind="lever")
    session.add(lever)
    session.flush()
    experiment_with_snapshot(session, lever, "earlier", sigma=0.44)
    draft = make_experiment(session, "locked", status="draft", node=lever,
                            variants=(("control", 3.0), ("a", 1.0), ("b", 1.0)))
    session.commit()

    start_experiment(session, "locked", actor=admin)
    session.commit()

    # k = 2 treatments: alpha* = 0.025; each treatment at ratio 1/3.
    n_control = solve(0.02, 0.44, 0.025, 0.8, 1 / 3)
    assert draft.sigma == 0.44 and "'earlier'" in draft.sigma_source
    assert draft.sigma_source.startswith("measured")
    assert variants(session, draft) == {"control": n_control, "a": math.ceil(n_control / 3),
                                        "b": math.ceil(n_control / 3)}
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.start")).one()
    assert event.diff["locked_plan"][1]["required_n"]["control"] == n_control


def test_without_a_measurement_the_assumed_sigma_is_flagged(session, admin):
    draft = make_experiment(session, "assumed", status="draft")
    session.commit()
    start_experiment(session, "assumed", actor=admin)
    session.commit()
    assert draft.sigma == 0.25
    assert draft.sigma_source == "assumed — no measurement yet"
    n = solve(0.02, 0.25, 0.05, 0.8, 1.0)
    assert n == 2454  # pingouin.power_ttest(d=0.08, power=0.8) rounds up to the same
    assert variants(session, draft) == {"control": n, "treatment": n}
    results = load_results(session, draft)
    assert [p.required for p in results.progress] == [n, n]


def test_progress_and_underpowered_are_judged_against_the_locked_n(session, admin):
    """The n locked at start stays the yardstick after data arrives: the old page replaced it
    with a size re-estimated from the control arm's sigma of every upload."""
    draft = make_experiment(session, "yardstick", status="draft", mde=0.05)
    session.commit()
    start_experiment(session, "yardstick", actor=admin)
    session.commit()
    locked = solve(0.05, 0.25, 0.05, 0.8, 1.0)
    _, dataset = stored(session, draft, generated(
        11, {"control": (300, Behaviour()), "treatment": (300, Behaviour())}))
    snapshot = refresh_snapshot(session, draft, dataset)
    report = snapshot.result
    # The stored analysis runs under the locked sigma ("given"), so its sizes are the lock's.
    assert report["sigma_planning"] == 0.25 and report["sigma_source"] == "given"
    assert report["required_n"] == {"control": locked, "treatment": locked}
    assert report["plan"]["required_n"] == {"control": locked, "treatment": locked}
    assert report["plan"]["sequential"] is False
    results = load_results(session, draft)
    assert [(p.accounts, p.required) for p in results.progress] == [(300, locked), (300, locked)]
    assert results.required_n == locked
    session.rollback()


def test_a_new_plan_is_sequential_and_the_choice_is_locked_at_start(session, admin):
    stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()
    draft = make_experiment(session, "seq", status="draft", hypothesis="If we …",
                            stage_id=stage.id, owner_id=admin.id)
    session.commit()
    assert draft.sequential is False  # a row made without the plan form: fixed horizon
    data = {**form_values(session, draft), "analysis": "sequential"}
    data["variants"] = [dict(v, weight=str(v["weight"])) for v in data["variants"]]
    update_experiment(session, "seq", data, actor=admin)
    session.commit()
    assert draft.sequential is True
    start_experiment(session, "seq", actor=admin)
    session.commit()
    with pytest.raises(ValidationFailed) as refused:
        update_experiment(session, "seq", {**form_values(session, draft), "analysis": "fixed"},
                          actor=admin)
    assert "locked since the start" in refused.value.errors["analysis"]
    session.rollback()
    _, dataset = stored(session, draft, generated(
        12, {"control": (200, Behaviour()), "treatment": (200, Behaviour())}))
    report = refresh_snapshot(session, draft, dataset).result
    (comparison,) = report["comparisons"]
    assert comparison["sequential"] is not None
    assert comparison["sequential"]["tuning"] == 2 * 2454  # tau = n_C + n_T locked
    session.rollback()


def test_before_the_start_the_page_sizes_with_the_registered_sigma(session, admin, root):
    """A draft sized on a measured sigma says so (and which experiment measured it); its
    sigma is not yet locked, so an analysis of a draft still measures its own control."""
    draft = make_experiment(session, "draft-sigma", status="draft", sigma=0.44,
                            sigma_source="measured: the control arm of 'earlier' on this branch")
    session.commit()
    results = load_results(session, draft)
    expected = solve(0.02, 0.44, 0.05, 0.8, 1.0)
    assert results.assumed_sigma is None and results.required_n == expected
    assert results.sigma_note.startswith("σ = 0.440, measured: the control arm of 'earlier'")
    _, dataset = stored(session, draft, generated(
        13, {"control": (200, Behaviour()), "treatment": (200, Behaviour())}))
    assert refresh_snapshot(session, draft, dataset).result["sigma_source"] == "control"
    session.rollback()
