"""Revenue impact of the quarter's ships, raw and shrunk (issue 15 item 5): experiments.impact.

Every figure is checked against an independent computation: numpy by hand for the standard
errors, DerSimonian–Laird τ², the posterior means and sds, and plain arithmetic for
uplift × base × share × 12, company points and the totals' intervals.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments import decisions
from experiments.documents import ExperimentDocument
from experiments.impact import portfolio_impact, standard_error
from experiments.review import build_review, current_week
from tests.factories import make_experiment, make_team, make_user

SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
Z = scipy_stats.norm.ppf(0.975)


def document(key, comparisons, *, decision=None, decided_at="2026-11-20T10:00:00+00:00",
             shipped=None, share=None, base=None, branch=(1, "Expansion"), alpha=0.05):
    return ExperimentDocument.from_json({
        "experiment": {"key": key, "name": key.title(), "status": "decided" if decision
                       else "running", "branch": {"id": branch[0], "name": branch[1]},
                       "decision": decision, "decided_at": decided_at if decision else None,
                       "shipped_variant": shipped, "rollout_share": share,
                       "eligible_base_mrr": base},
        "snapshot_id": 1, "alpha": alpha, "arms": [], "comparisons": comparisons,
    })


def comp(variant, uplift, half):
    return {"variant": variant, "uplift_abs": uplift, "ci_abs": [uplift - half, uplift + half],
            "verdict": "win"}


def by_hand_dl(x, se):
    """DerSimonian–Laird τ² and the normal–normal posterior, written out with numpy."""
    x, se = np.asarray(x, float), np.asarray(se, float)
    w = 1 / se**2
    mean_fixed = np.sum(w * x) / np.sum(w)
    q = np.sum(w * (x - mean_fixed) ** 2)
    tau2 = max(0.0, (q - (len(x) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    wr = 1 / (se**2 + tau2)
    m = np.sum(wr * x) / np.sum(wr)
    b = tau2 / (tau2 + se**2)
    return tau2, m, m + b * (x - m), np.sqrt(b) * se


def test_raw_and_shrunk_impact_equal_an_independent_computation():
    docs = [
        document("a", [comp("t", 0.060, 0.040)], decision="ship", shipped="t", share=0.5,
                 base="200000"),
        document("b", [comp("t", -0.010, 0.030), comp("u", 0.020, 0.030)], decision="ship",
                 shipped="u", share=1.0, base="50000.50", branch=(2, "Churn")),
        document("c", [comp("t", 0.005, 0.020)]),
        document("d", [comp("t", 0.030, 0.050)]),
        document("e", [comp("t", 0.090, 0.045)], decision="ship", shipped="t", share=0.25,
                 base="80000", decided_at="2026-09-30T23:59:00+00:00"),  # last quarter
    ]
    company = 1_000_000.0
    result = portfolio_impact(docs, since=SINCE, until=UNTIL, company_mrr=company)

    # The shrinkage's inputs: every comparison with an interval, se from the 95% interval.
    x = [0.060, -0.010, 0.020, 0.005, 0.030, 0.090]
    se = [h / Z for h in (0.040, 0.030, 0.030, 0.020, 0.050, 0.045)]
    assert result.estimates == 6
    tau2, m, post, sd = by_hand_dl(x, se)
    assert result.shrinkage.prior_var == pytest.approx(tau2, rel=1e-12)
    assert result.shrinkage.prior_mean == pytest.approx(m, rel=1e-12)

    ships = {s.key: s for s in result.ships}
    assert set(ships) == {"a", "b"}  # e was decided last quarter
    a, b = ships["a"], ships["b"]
    assert a.uplift == 0.060 and b.uplift == 0.020  # b shipped 'u', not its first comparison
    assert a.shrunk == pytest.approx(post[0]) and b.shrunk == pytest.approx(post[2])
    assert a.shrunk_ci[1] - a.shrunk == pytest.approx(Z * sd[0])

    # uplift × base × share, × 12; company points = monthly ÷ company start MRR.
    assert a.raw_impact.monthly_mrr == pytest.approx(0.060 * 200_000 * 0.5)
    assert a.raw_impact.annual == pytest.approx(0.060 * 200_000 * 0.5 * 12)
    assert a.raw_impact.annual_ci[0] == pytest.approx(0.020 * 200_000 * 0.5 * 12)
    assert a.raw_impact.company_points == pytest.approx(0.060 * 100_000 / company)
    assert b.raw_impact.annual == pytest.approx(0.020 * 50_000.50 * 1.0 * 12)
    assert a.shrunk_impact.annual == pytest.approx(post[0] * 100_000 * 12)
    assert b.shrunk_impact.annual == pytest.approx(post[2] * 50_000.50 * 12)

    # Totals: sums, intervals combined in quadrature.
    raw_annual = 0.060 * 100_000 * 12 + 0.020 * 50_000.50 * 12
    assert result.raw.annual == pytest.approx(raw_annual)
    half = math.hypot(0.040 * 100_000 * 12, 0.030 * 50_000.50 * 12)
    assert result.raw.annual_ci == pytest.approx((raw_annual - half, raw_annual + half))
    shrunk_annual = post[0] * 100_000 * 12 + post[2] * 50_000.50 * 12
    assert result.shrunk.annual == pytest.approx(shrunk_annual)
    shrunk_half = math.hypot(Z * sd[0] * 100_000 * 12, Z * sd[2] * 50_000.50 * 12)
    assert result.shrunk.annual_ci[1] == pytest.approx(shrunk_annual + shrunk_half)
    assert result.shrunk.points == pytest.approx(
        (post[0] * 100_000 + post[2] * 50_000.50) / company)
    # Per branch.
    assert result.branch_totals(1)[0].annual == pytest.approx(0.060 * 100_000 * 12)
    assert result.branch_totals(2)[1].annual == pytest.approx(post[2] * 50_000.50 * 12)
    assert result.branch_totals(3)[0].ships == 0
    data = result.to_json()
    assert data["total_raw"]["annual"] == pytest.approx(raw_annual)
    assert data["ships"][0]["raw"]["annual"] == pytest.approx(0.060 * 100_000 * 12)


def test_standard_error_uses_the_analysis_alpha():
    c = comp("t", 0.01, 0.02)
    assert standard_error(c, 0.05) == pytest.approx(0.02 / scipy_stats.norm.ppf(0.975))
    assert standard_error(c, 0.10) == pytest.approx(0.02 / scipy_stats.norm.ppf(0.95))
    assert standard_error({"ci_abs": [None, 0.1]}, 0.05) is None
    assert standard_error({"ci_abs": [0.1, 0.1]}, 0.05) is None  # zero width: no noise info


def test_ships_without_a_record_or_a_company_base_say_why():
    docs = [
        document("old", [comp("t", 0.05, 0.02)], decision="ship"),  # before the record
        document("gone", [comp("t", 0.05, 0.02)], decision="ship", shipped="x", share=1.0,
                 base="100"),
        document("ok", [comp("t", 0.05, 0.02)], decision="ship", shipped="t", share=1.0,
                 base="100"),
    ]
    result = portfolio_impact(docs, since=SINCE, until=UNTIL, company_mrr=None)
    why = {s.key: s.missing for s in result.ships}
    assert "decided before the decision record" in why["old"]
    assert why["gone"] == "no results for the shipped variant 'x'"
    assert why["ok"] is None
    assert result.raw.ships == 1 and result.raw.points is None  # no ledger: no company points
    assert result.to_json()["total_raw"]["company_points"] is None
    # Fewer than three estimates: nothing is shrunk, the note says so, shrunk = raw.
    alone = portfolio_impact(docs[2:], since=SINCE, until=UNTIL, company_mrr=None)
    assert alone.shrinkage.method == "none" and "not shrunk" in alone.shrinkage.note
    assert alone.shrunk.annual == pytest.approx(alone.raw.annual)


def test_shrinking_removes_most_of_the_winners_curse():
    """Simulation: many experiments with true effects N(0.01, 0.015²) and se 0.02; the mean
    raw uplift of the significant wins overstates the truth, the shrunk mean much less."""
    rng = np.random.default_rng(20261130)
    n = 400
    true = rng.normal(0.01, 0.015, n)
    se = np.full(n, 0.02)
    raw = true + rng.normal(0.0, se)
    docs = [document(f"e{i}", [comp("t", float(raw[i]), float(Z * se[i]))],
                     decision="ship" if raw[i] / se[i] > Z else None, shipped="t", share=1.0,
                     base="1000") for i in range(n)]
    result = portfolio_impact(docs, since=SINCE, until=UNTIL, company_mrr=None)
    wins = [int(s.key[1:]) for s in result.ships]
    assert len(wins) > 20
    true_mean = true[wins].mean()
    raw_mean = np.mean([s.uplift for s in result.ships])
    shrunk_mean = np.mean([s.shrunk for s in result.ships])
    # Monte Carlo: ~50 wins, se of a mean ≈ 0.015/√50 ≈ 0.002; the gaps below are ≫ that.
    assert raw_mean - true_mean > 0.02
    assert abs(shrunk_mean - true_mean) < (raw_mean - true_mean) / 3


# ------------------------------------------------------------------ in the review


def test_the_review_quarter_total_shows_raw_and_shrunk_impact(session, monkeypatch):
    import experiments.ledger

    monkeypatch.setattr(experiments.ledger, "latest_start_mrr", lambda s, **kw: 2_000_000.0)
    make_team(session, "growth")
    person = make_user(session, "exp@i.test", "viewer", {"growth": "experimenter"})
    from sqlmodel import select

    from experiments.models import AnalysisSnapshot, Dataset, Team

    team = session.exec(select(Team).where(Team.slug == "growth")).one()
    experiments = []
    for i, (uplift, half) in enumerate([(0.04, 0.02), (0.0, 0.02), (-0.01, 0.03)]):
        e = make_experiment(session, f"x{i}", status="stopped", team_id=team.id)
        d = Dataset(experiment_id=e.id, version=1, sha256=f"{i}" * 64,
                    content_sha256=f"{i}" * 64)
        session.add(d)
        session.flush()
        session.add(AnalysisSnapshot(
            experiment_id=e.id, dataset_id=d.id, verdict="win",
            computed_at=datetime.now(UTC) - timedelta(minutes=5),
            result={"alpha": 0.05, "control": "control", "arms": [], "warnings": [],
                    "comparisons": [comp("treatment", uplift, half)]}))
        experiments.append(e)
    session.commit()
    decisions.decide(session, experiments[0], {
        "decision": "ship", "rationale": "Won.", "shipped_variant": "treatment",
        "rollout_share": "0.5", "eligible_base": "300000"}, actor=person,
        source=decisions.SOURCE_PAGE)
    session.commit()
    review = build_review(session, person, current_week().label)
    data = review.to_dict()
    impact = data["impact"]
    assert [s["key"] for s in impact["ships"]] == ["x0"]
    assert impact["total_raw"]["annual"] == pytest.approx(0.04 * 300_000 * 0.5 * 12)
    assert impact["total_raw"]["company_points"] == pytest.approx(0.04 * 150_000 / 2_000_000)
    _, _, post, _ = by_hand_dl([0.04, 0.0, -0.01], [0.02 / Z, 0.02 / Z, 0.03 / Z])
    assert impact["total_shrunk"]["annual"] == pytest.approx(post[0] * 150_000 * 12)
    assert impact["company_start_mrr"] == 2_000_000.0
    summary = data["driver_tree_summary"][0]
    assert summary["shipped"] == ["x0"]
    assert summary["impact_raw"]["annual"] == pytest.approx(0.04 * 150_000 * 12)
    assert summary["impact_shrunk"]["annual"] == pytest.approx(post[0] * 150_000 * 12)
    assert "nrr_points_won" not in summary
    # The exports say the same: JSON as above, Markdown and HTML with raw and shrunk totals.
    from experiments.documents import finite
    from experiments.export_formats import review_json, review_markdown
    from experiments.export_html import review_html

    data = finite({**data, "exported_at": "2026-11-30T08:00:00+00:00"})
    assert '"total_shrunk"' in review_json(data)
    markdown = review_markdown(data)
    assert "## Revenue impact of this quarter's ships" in markdown
    assert f"raw {0.04 * 150_000 * 12:,.2f}" in markdown
    assert f"shrunk {post[0] * 150_000 * 12:,.2f}" in markdown
    assert "NRR points won" not in markdown
    # (the per-experiment sections need full §4 comparisons; this review's are minimal)
    html = review_html({**data, "portfolio": [], "items": {}})
    assert "Revenue impact of this quarter&#39;s ships" in html or \
        "Revenue impact of this quarter's ships" in html
    assert f"{post[0] * 150_000 * 12:,.2f}" in html and "NRR points won" not in html
