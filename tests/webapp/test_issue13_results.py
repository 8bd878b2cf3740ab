"""Issue 13 on the results page: intervals consistent with the verdict (k > 1), the
sequential figures of a sequential plan, the inference method and why, Mann–Whitney's
direction, and segments adjusted across segments and labelled exploratory."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from sqlmodel import Session, select
from statsmodels.stats.multitest import multipletests

from experiments.demo import Behaviour, generate_accounts_csv
from experiments.forest import forest_layout
from experiments.models import AnalysisSnapshot, Experiment
from tests.webapp.test_results import make_experiment, points, text_of, upload


@pytest.fixture
def analyst(login_as, factory):
    return login_as("viewer", teams={"growth": "analyst"})


def plain(response) -> str:
    """The page's text without tags, whitespace runs collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text_of(response)))


def three_arm_csv(seed: int = 5) -> bytes:
    return generate_accounts_csv(
        np.random.default_rng(seed),
        {
            "control": (900, Behaviour(p_churn=0.09)),
            "a": (900, Behaviour(p_churn=0.04, p_expand=0.22)),
            "b": (900, Behaviour(p_churn=0.09)),
        },
        prefix="acct",
    )


def stored_snapshot(engine, experiment) -> AnalysisSnapshot:
    with Session(engine) as session:
        return session.exec(
            select(AnalysisSnapshot).where(AnalysisSnapshot.experiment_id == experiment.id)
            .order_by(AnalysisSnapshot.id.desc())
        ).first()


def test_two_treatments_show_the_adjusted_interval_beside_the_raw_one(analyst, db_engine):
    """Before: one unlabelled raw 95 % interval, which can exclude 0 beside a Holm verdict of
    'no detectable change'. Now the Bonferroni interval (97.5 % for k = 2) is labelled and
    the raw one stays beside it, labelled as unadjusted."""
    experiment = make_experiment(db_engine, "three-arms", variants=("control", "a", "b"))
    assert upload(analyst, experiment.key, three_arm_csv()).status_code in (200, 303)
    snapshot = stored_snapshot(db_engine, experiment)
    page = plain(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "97.5% CI, Bonferroni-adjusted for 2 treatments (pts)" in page
    assert "95% CI, raw (unadjusted) (pts)" in page
    for comparison in snapshot.result["comparisons"]:
        assert comparison["ci_method"] == "bonferroni"
        lo, hi = comparison["ci_abs_adjusted"]
        raw_lo, raw_hi = comparison["ci_abs"]
        assert lo < raw_lo and hi > raw_hi  # wider than the raw one
        assert f"[{points(lo)}, {points(hi)}] [{points(raw_lo)}, {points(raw_hi)}]" in page
    # How each arm was tested, and the Mann–Whitney size and direction.
    assert "How each comparison was tested" in page
    for comparison in snapshot.result["comparisons"]:
        mw = comparison["mann_whitney"]
        shown = f"{mw['prob_superiority'] * 100:.1f}%"
        assert f"a {comparison['variant']} account beats a control account with probability " \
               f"{shown}" in page
    # The experiment was made without a sequential plan: no sequential figures.
    assert "Sequential figures" not in page


def test_a_sequential_plan_shows_the_sequential_figures_with_the_fixed_ones(analyst, db_engine):
    experiment = make_experiment(db_engine, "seq-page")
    with Session(db_engine) as session:
        row = session.get(Experiment, experiment.id)
        row.sequential = True
        session.add(row)
        session.commit()
    data = generate_accounts_csv(np.random.default_rng(6), {
        "control": (900, Behaviour()), "treatment": (900, Behaviour(p_expand=0.22))},
        prefix="acct")
    assert upload(analyst, experiment.key, data).status_code in (200, 303)
    snapshot = stored_snapshot(db_engine, experiment)
    (comparison,) = snapshot.result["comparisons"]
    sequential = comparison["sequential"]
    page = plain(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "Sequential figures (the plan's analysis)" in page
    lo, hi = sequential["ci_abs"]
    assert f"[{points(lo)}, {points(hi)}]" in page
    assert f"{sequential['tuning']:,.0f}" in page
    # The fixed-horizon interval is still on the page, for reference.
    raw_lo, raw_hi = comparison["ci_abs"]
    assert f"[{points(raw_lo)}, {points(raw_hi)}]" in page


def test_segment_rows_are_adjusted_across_segments_and_exploratory(analyst, db_engine):
    """Before: each segment's Holm p only, and a verdict badge per segment like the primary
    one. Now the BH p across all segment rows (statsmodels fdr_bh here) and no badge."""
    experiment = make_experiment(db_engine, "segments", variants=("control", "a", "b"))
    upload(analyst, experiment.key, three_arm_csv(8))
    snapshot = stored_snapshot(db_engine, experiment)
    keys, holm = [], []
    for name in sorted(snapshot.segments):
        for c in snapshot.segments[name]["comparisons"]:
            keys.append((name, c["variant"]))
            holm.append(c["p_value_adjusted"])
    expected = multipletests(holm, method="fdr_bh")[1]
    page = analyst.get(f"/experiments/{experiment.key}/results").get_data(as_text=True)
    table = page[page.index('class="table segments-table exploratory"'):]
    table = table[:table.index("</table>")]
    assert "Segments (exploratory)" in table and "BH p across segments" in table
    assert "verdict-badge" not in table and "badge" not in table
    text = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "adjusted across all" in text and "(Benjamini–Hochberg)" in text
    shown = [f"{p:.3f}" if p >= 0.001 else "< 0.001" for p in expected]
    for value in shown:
        assert value in table


def test_the_forest_plot_draws_the_adjusted_interval_for_several_treatments():
    comparisons = [
        {"variant": "a", "uplift_abs": 0.0, "ci_abs": [-0.01, 0.01],
         "ci_abs_adjusted": [-0.02, 0.02], "ci_method": "bonferroni", "verdict": "inconclusive"},
        {"variant": "b", "uplift_abs": 0.0, "ci_abs": [-0.01, 0.01],
         "ci_abs_adjusted": [-0.02, 0.02], "ci_method": "bonferroni", "verdict": "inconclusive"},
    ]
    fp = forest_layout(comparisons, mde=0.02, alpha=0.05)
    assert fp.rows[0].label == "+0.0 [-2.0, +2.0]"
    assert fp.level == "97.5% Bonferroni-adjusted (2 treatments)"
    one = forest_layout(comparisons[:1] and [dict(comparisons[0], ci_method="unadjusted")],
                        mde=0.02, alpha=0.05)
    assert one.rows[0].label == "+0.0 [-1.0, +1.0]" and one.level == "95%"


def test_the_exports_carry_the_adjusted_interval_the_page_shows(analyst, db_engine):
    """Before: the CSV had no adjusted interval and the HTML/Markdown exports only the raw
    one, so an export disagreed with the page's (and the verdict's) interval for k > 1."""
    experiment = make_experiment(db_engine, "three-exports", variants=("control", "a", "b"))
    upload(analyst, experiment.key, three_arm_csv(9))
    snapshot = stored_snapshot(db_engine, experiment)
    comparisons = {c["variant"]: c for c in snapshot.result["comparisons"]}
    body = analyst.get(f"/experiments/{experiment.key}/export.csv").get_data(as_text=True)
    rows = {row["variant"]: row for row in csv.DictReader(io.StringIO(body))}
    for variant, comparison in comparisons.items():
        lo, hi = comparison["ci_abs_adjusted"]
        assert float(rows[variant]["ci_abs_adjusted_low"]) == lo
        assert float(rows[variant]["ci_abs_adjusted_high"]) == hi
        assert rows[variant]["ci_method"] == "bonferroni"
    for fmt in ("md", "html"):
        text = plain(analyst.get(f"/experiments/{experiment.key}/export.{fmt}"))
        assert "97.5% CI, Bonferroni (2 treatments)" in text, fmt
