"""Issue 16 item 5: the planning σ comes from the revenue ledger when one exists.

The ledger's σ is DESIGN §4's sigma_lin = sd(end − R·start, ddof 1) / mean(start) over the
last period's active accounts (of a segment, or all of them). Expected σ values are computed
here with numpy from the CSV rows, and sample sizes with statsmodels' ``TTestIndPower`` —
never with the code under test. Without a ledger every path keeps its old behaviour
(tests/experiments/test_planning.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlmodel import select
from statsmodels.stats.power import TTestIndPower

from experiments.ledger import import_ledger
from experiments.ledger_models import LedgerFigures
from experiments.models import DriverNode
from experiments.planning import (
    ALL_ACCOUNTS,
    DEFAULT_SIGMA,
    ledger_segment,
    ledger_segments,
    plan,
    planning_sigma,
    sample_size_hint,
)
from experiments.registry import start_experiment
from tests.experiments.test_planning import experiment_with_snapshot
from tests.factories import make_experiment

pytestmark = pytest.mark.db

#: (account, period, start, expansion, contraction, churned, plan). MRR varies 200-fold.
ROWS = [
    ("a1", "2026-09", 5000, 0, 0, 0, "enterprise"),
    ("a7", "2026-09", 300, 0, 0, 300, "pro"),
    ("a1", "2026-10", 5000, 1000, 0, 0, "enterprise"),
    ("a2", "2026-10", 20000, 0, 2000, 0, "enterprise"),
    ("a3", "2026-10", 8000, 0, 0, 0, "enterprise"),
    ("a4", "2026-10", 500, 250, 0, 0, "pro"),
    ("a5", "2026-10", 700, 0, 0, 700, "pro"),
    ("a8", "2026-10", 900, 90, 0, 0, "pro"),
    ("a6", "2026-10", 100, 0, 0, 0, "basic"),
]
HEADER = "account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,plan\n"
CSV = (HEADER + "".join(",".join(str(v) for v in row) + "\n" for row in ROWS)).encode()


def by_hand(plan_value: str | None = None) -> tuple[float, float, int]:
    """(sigma_lin, NRR, accounts) of the last period, numpy only."""
    rows = [r for r in ROWS if r[1] == "2026-10" and plan_value in (None, r[6])]
    start = np.array([r[2] for r in rows], dtype=float)
    end = start + np.array([r[3] - r[4] - r[5] for r in rows], dtype=float)
    ratio = end.sum() / start.sum()
    return float(np.std(end - ratio * start, ddof=1) / start.mean()), ratio, len(rows)


def solve(mde: float, sigma: float, alpha: float = 0.05, power: float = 0.8) -> int:
    return math.ceil(
        TTestIndPower().solve_power(
            effect_size=mde / sigma, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
        )
    )


@pytest.fixture
def ledger(session, admin):
    import_ledger(session, CSV, dimensions="plan", actor=admin, filename="ledger.csv")
    session.commit()


@pytest.fixture
def lever(session, root):
    node = DriverNode(parent_id=root.id, name="Lever", kind="lever")
    session.add(node)
    session.flush()
    experiment_with_snapshot(session, node, "earlier", sigma=0.44)
    session.commit()
    return node


def test_the_ledger_sigma_is_sigma_lin_not_the_sd_of_end_over_start(session, ledger):
    sigma, nrr, accounts = by_hand()
    segment = ledger_segment(session)
    assert segment.sigma == pytest.approx(sigma, rel=1e-9)
    assert segment.baseline_nrr == pytest.approx(nrr, rel=1e-12)
    assert (segment.accounts, segment.period, segment.key) == (accounts, "2026-10", "all")
    # Here the plain sd of end/start is more than twice the linearised σ (small accounts
    # move most); sizing on it would ask for over 4× the accounts.
    plain = np.std([(r[2] + r[3] - r[4] - r[5]) / r[2] for r in ROWS if r[1] == "2026-10"], ddof=1)
    assert plain > 2 * segment.sigma
    enterprise = ledger_segment(session, "plan", "enterprise")
    assert enterprise.sigma == pytest.approx(by_hand("enterprise")[0], rel=1e-9)
    assert (
        enterprise.source
        == "measured on the revenue ledger: plan = enterprise, 2026-10, 3 accounts"
    )
    assert ledger_segment(session, "plan", "basic") is None  # one account: no σ
    assert ledger_segment(session, "plan", "nope") is None
    assert [s.key for s in ledger_segments(session)] == ["all", "plan=enterprise", "plan=pro"]


def test_planning_sigma_prefers_the_ledger_over_the_branch_and_says_where(
    session, admin, ledger, lever
):
    found = planning_sigma(session, admin, lever.id)
    sigma, _, accounts = by_hand()
    assert found.measured and found.sigma == pytest.approx(sigma, rel=1e-9)
    assert found.source == (
        f"measured on the revenue ledger: all accounts, 2026-10, {accounts} accounts"
    )


def test_without_a_ledger_the_branch_and_the_default_still_answer(session, admin, lever, root):
    assert planning_sigma(session, admin, lever.id).sigma == 0.44
    other = DriverNode(parent_id=root.id, name="Other", kind="lever")
    session.add(other)
    session.flush()
    assert planning_sigma(session, admin, other.id).sigma == DEFAULT_SIGMA
    assert ledger_segments(session) == [] and ledger_segment(session) is None
    assert "segment" not in plan(session, admin, {}).errors


def test_a_ledger_stored_before_sigma_lin_falls_back_to_the_branch(session, admin, ledger, lever):
    row = session.exec(select(LedgerFigures)).one()
    row.figures = {k: v for k, v in row.figures.items() if k != "sigma_lin"}
    session.add(row)
    session.commit()
    assert ledger_segments(session) == []
    found = planning_sigma(session, admin, lever.id)
    assert found.sigma == 0.44 and "'earlier'" in found.source
    assert plan(session, admin, {}).sigma == DEFAULT_SIGMA  # the old first view


def test_the_planner_defaults_to_the_ledger_and_takes_a_chosen_segment(session, admin, ledger):
    sigma, nrr, _ = by_hand()
    first = plan(session, admin, {})
    assert first.errors == {} and first.values["segment"] == ALL_ACCOUNTS
    assert first.sigma == pytest.approx(sigma, rel=1e-9)
    assert first.baseline_nrr == pytest.approx(nrr, rel=1e-12)
    assert first.allocation.control == solve(0.02, sigma)
    pro = plan(session, admin, {"segment": "plan=pro", "mde": "0.05"})
    assert pro.errors == {} and pro.segment.label == "plan = pro"
    assert pro.sigma == pytest.approx(by_hand("pro")[0], rel=1e-9)
    assert pro.allocation.control == solve(0.05, by_hand("pro")[0])
    # "No" uses the typed numbers, as before the ledger existed.
    typed = plan(session, admin, {"segment": "", "sigma": "0.3", "mde": "0.02"})
    assert typed.segment is None and typed.sigma == 0.3
    assert typed.allocation.control == solve(0.02, 0.3)


def test_an_explicit_past_experiment_wins_over_the_ledger_default(session, admin, ledger, lever):
    result = plan(session, admin, {"experiment": "earlier"})
    assert result.errors == {} and result.segment is None and result.sigma == 0.44


@pytest.mark.parametrize("value", ["plan=basic", "plan=nope", "nope=pro", "all\x00", "x" * 600])
def test_an_unusable_segment_is_a_field_error(session, admin, ledger, value):
    result = plan(session, admin, {"segment": value})
    assert set(result.errors) == {"segment"} and result.allocation is None
    assert result.errors["segment"]


def test_the_registry_hint_and_the_lock_use_the_ledger_sigma(session, admin, ledger, lever):
    sigma, _, accounts = by_hand()
    data = {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "node_id": str(lever.id),
        "control": "0",
        "variants": [{"key": "control", "weight": "1"}, {"key": "treat", "weight": "1"}],
    }
    hint = sample_size_hint(session, admin, data)
    assert hint.measured and hint.sigma == pytest.approx(sigma, rel=1e-9)
    assert hint.allocation.control == solve(0.02, sigma)
    assert hint.sigma_source == (
        f"sigma = {sigma:.3f}, measured on the revenue ledger: all accounts, 2026-10, "
        f"{accounts} accounts"
    )
    draft = make_experiment(session, "ledgered", status="draft", node=lever)
    session.commit()
    start_experiment(session, "ledgered", actor=admin)
    session.commit()
    assert draft.sigma == pytest.approx(sigma, rel=1e-9)
    assert draft.sigma_source.startswith("measured on the revenue ledger: all accounts")
