"""Issue 15 in every export: the NRR-native figures (levers, GRR, logo churn, expansion
incidence, guardrails, CUPED, velocity and its cohorts, the permutation p) are in the CSV,
JSON, Markdown and printable HTML of an experiment, with their values, not only headings.

The report is a hand-made DESIGN §4b dict (:func:`nrr_report`): the §4 part is a real
:func:`stats.analyze` of generated accounts, the §4b figures are set by hand, so a test can
say exactly which number must appear where. The lever rates are Σpart/Σstart of the
generated arrays, computed here with numpy.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import numpy as np
import pytest

from experiments.documents import ExperimentDocument
from experiments.export_formats import experiment_csv, experiment_json, experiment_markdown
from experiments.export_html import experiment_html
from experiments.nrr_figures_view import (
    EXPORT_STYLE,
    NRR_COMPARISON_KEYS,
    guardrail_status,
    nrr_figures,
    share_at,
)
from stats import analyze, arm_from_arrays

EXPORTED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _arrays(rng: np.random.Generator, n: int, p_churn: float, p_expand: float):
    start = np.round(np.exp(rng.normal(np.log(600), 0.7, n)), 2)
    churn = rng.random(n) < p_churn
    expand = (~churn) & (rng.random(n) < p_expand)
    contract = (~churn) & (rng.random(n) < 0.08)
    expansion = np.where(expand, np.round(start * 0.3, 2), 0.0)
    contraction = np.where(contract, np.round(start * 0.2, 2), 0.0)
    churned = np.where(churn, start, 0.0)
    return start, expansion, contraction, churned


def base_report(seed: int = 3, n: int = 400) -> tuple[dict, dict]:
    """A real §4 report of 2 × ``n`` generated accounts (treatment churns more, expands more),
    and the arrays per arm."""
    rng = np.random.default_rng(seed)
    arrays = {"control": _arrays(rng, n, 0.05, 0.15), "treatment": _arrays(rng, n, 0.12, 0.35)}
    result = analyze({k: arm_from_arrays(*v) for k, v in arrays.items()}, control="control")
    return result.to_dict(), arrays


def rate(arrays, part: int) -> float:
    """Σ part / Σ start of one arm (part 1 expansion, 2 contraction, 3 churned)."""
    return float(np.sum(arrays[part]) / np.sum(arrays[0]))


def nrr_report(*, velocity: bool = True, cuped: bool = True, guardrails: bool = True,
               permutation: bool = True, levers: bool = True) -> dict:
    """The §4 report with hand-set §4b figures; each switch off makes its key null / []."""
    report, arrays = base_report()
    c, t = arrays["control"], arrays["treatment"]
    comparison = report["comparisons"][0]
    lever_p = {"expansion": 0.0004, "contraction": 0.41, "churn": 0.0012, "grr": 0.0009}
    figures = {}
    for lever, part in (("expansion", 1), ("contraction", 2), ("churn", 3)):
        uplift = rate(t, part) - rate(c, part)
        figures[lever] = {"control": rate(c, part), "treatment": rate(t, part),
                          "uplift_abs": uplift, "ci_abs": [uplift - 0.011, uplift + 0.011],
                          "p_value": lever_p[lever]}
    grr_c = 1 - rate(c, 2) - rate(c, 3)
    grr_t = 1 - rate(t, 2) - rate(t, 3)
    figures["grr"] = {"control": grr_c, "treatment": grr_t, "uplift_abs": grr_t - grr_c,
                      "ci_abs": [grr_t - grr_c - 0.012, grr_t - grr_c + 0.012],
                      "p_value": lever_p["grr"]}
    comparison.update({
        "levers": figures if levers else None,
        "logo_churn": {"control": 0.05, "treatment": 0.1225, "diff": 0.0725, "p_value": 0.00021},
        "expansion_incidence": {"control": 0.1475, "treatment": 0.3125, "diff": 0.165,
                                "p_value": 0.0000031},
        "guardrails": [
            {"metric": "grr", "margin": 0.01, "diff": grr_t - grr_c, "p_value": 0.9987,
             "status": "fail"},
            {"metric": "logo_churn", "margin": 0.02, "diff": 0.0725, "p_value": 0.9931,
             "status": "inconclusive"},
        ] if guardrails else [],
        "sequential": None,
        "cuped": {"uplift_abs": 0.0231, "ci_abs": [0.0112, 0.035], "p_value": 0.00017,
                  "variance_reduction": 0.6156} if cuped else None,
        "velocity": {"target_days": 14, "logrank_p": 0.0123,
                     "control": {"reached": 301, "censored": 99, "median_days": 12.0,
                                 "share_by_target": 0.5625},
                     "treatment": {"reached": 340, "censored": 60, "median_days": 8.0,
                                   "share_by_target": 0.7125}} if velocity else None,
        "permutation": {"p_value": 0.0312, "permutations": 10000, "seed": 20261130}
        if permutation else None,
    })
    report.update({
        "guardrails_plan": [{"metric": "grr", "margin": 0.01},
                            {"metric": "logo_churn", "margin": 0.02}] if guardrails else [],
        "ttv_target_days": 14,
        "velocity_curves": {
            "control": [[0.0, 0.0], [3.0, 0.1], [7.0, 0.3], [12.0, 0.5], [14.0, 0.5625],
                        [30.0, 0.7525], [45.0, 0.7525]],
            "treatment": [[0.0, 0.0], [2.0, 0.15], [5.0, 0.35], [8.0, 0.52], [14.0, 0.7125],
                          [30.0, 0.85], [45.0, 0.85]],
        } if velocity else None,
        "velocity_cohorts": [
            {"cohort": "fast", "accounts": 214, "start_mrr": 151234.5, "end_mrr": 163000.25,
             "nrr": 1.0778, "max_days": 6.0},
            {"cohort": "average", "accounts": 213, "start_mrr": 149000.0, "end_mrr": 151500.0,
             "nrr": 1.0168, "max_days": 15.0},
            {"cohort": "slow", "accounts": 214, "start_mrr": 150500.0, "end_mrr": 146000.0,
             "nrr": 0.9701, "max_days": 60.0},
            {"cohort": "not_reached", "accounts": 159, "start_mrr": 99000.0,
             "end_mrr": 88000.0, "nrr": 0.8889, "max_days": None},
        ] if velocity else None,
    })
    return report


def document_of(report: dict, *, verdict: str | None = None) -> ExperimentDocument:
    """An experiment document around ``report`` (as the export service builds it)."""
    return ExperimentDocument.from_json({
        **report,
        "snapshot_id": 7,
        "verdict": verdict or report["comparisons"][0]["verdict"],
        "experiment": {"key": "nrr-figs", "name": "NRR figures", "status": "running",
                       "team": {"id": 1, "name": "Growth"}},
        "plan": {"primary_metric": "NRR", "mde": 0.02, "alpha": 0.05, "power": 0.8,
                 "control": "control",
                 "variants": [{"key": "control", "weight": 1, "is_control": True},
                              {"key": "treatment", "weight": 1}]},
        "dataset": {"id": 1, "version": 1, "sha256": "ab" * 32, "rows": 800,
                    "filename": "accounts.csv"},
        "computed_at": "2026-11-30T07:00:00+00:00",
    })


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


# ------------------------------------------------------------------ the view model


def test_the_lever_sentence_names_the_lever_with_the_largest_significant_move():
    report = nrr_report()
    levers = report["comparisons"][0]["levers"]
    figures = nrr_figures(report)
    sentence = figures.lever_sentences["treatment"]
    # churn (p = 0.0012) and expansion (p = 0.0004) are both significant; the larger
    # absolute move (computed here from the arrays) is the one named
    moved = max(("expansion", "churn"), key=lambda k: abs(levers[k]["uplift_abs"]))
    assert sentence.startswith(f"The lever that moved is {moved}:"), sentence
    # when nothing is below alpha, the sentence says so and still names the largest change
    for lever in levers.values():
        lever["p_value"] = 0.5
    sentence = nrr_figures(report).lever_sentences["treatment"]
    assert sentence.startswith("No lever moved detectably (every p ≥ 0.05)"), sentence
    biggest = max(("expansion", "contraction", "churn"),
                  key=lambda k: abs(levers[k]["uplift_abs"]))
    assert f"the largest change was in {biggest}" in sentence


def test_the_guardrail_status_is_the_worst_and_names_the_metric():
    figures = nrr_figures(nrr_report())
    assert figures.guardrail_status.status == "fail"
    assert figures.guardrail_status.text == "guardrail failed: GRR"
    report = nrr_report()
    report["comparisons"][0]["guardrails"][0]["status"] = "pass"
    assert nrr_figures(report).guardrail_status.text == "guardrail inconclusive: logo churn"
    for g in report["comparisons"][0]["guardrails"]:
        g["status"] = "pass"
    assert nrr_figures(report).guardrail_status.text == "guardrails passed"
    assert guardrail_status([]) is None
    assert nrr_figures(nrr_report(guardrails=False)).guardrail_status is None


def test_cuped_narrower_is_the_interval_width_ratio():
    (row,) = nrr_figures(nrr_report()).cuped
    # widths scale with the standard error: 1 − √(1 − 0.6156) = 0.38
    assert row.narrower == pytest.approx(1 - np.sqrt(1 - 0.6156))
    assert "the interval is 38% narrower than the unadjusted one" in row.sentence


def test_the_waterfall_steps_are_the_arms_shares_of_start_mrr():
    report = nrr_report()
    for w, arm in zip(nrr_figures(report).waterfalls, report["arms"], strict=True):
        start = arm["start_mrr"]
        shares = [b.share for b in w.bars]
        assert shares == pytest.approx([1.0, arm["expansion_mrr"] / start,
                                        -arm["contraction_mrr"] / start,
                                        -arm["churned_mrr"] / start, arm["end_mrr"] / start])
        assert shares[-1] == pytest.approx(arm["nrr"])
        # bars go up for expansion and down for contraction and churn: each starts where
        # the previous one ended (the connectors), on one scale for both arms
        by_kind = {b.kind: b for b in w.bars}
        assert by_kind["expansion"].y + by_kind["expansion"].height == pytest.approx(
            by_kind["start"].y, abs=0.02)
        assert by_kind["contraction"].y == pytest.approx(by_kind["expansion"].y, abs=0.02)
        assert by_kind["end"].y == pytest.approx(
            by_kind["churn"].y + by_kind["churn"].height, abs=0.02) or \
            by_kind["churn"].height == pytest.approx(1.0)


def test_the_km_steps_follow_the_curve_points():
    report = nrr_report()
    chart = nrr_figures(report).velocity.chart
    control = [tuple(p) for p in report["velocity_curves"]["control"]]
    assert share_at(control, 13.9) == 0.5 and share_at(control, 14) == 0.5625
    assert share_at(control, 2.9) == 0.0 and share_at(control, 46) is None
    row = next(r for r in chart.table if r.day == 14)
    assert row.label == "day 14 (target)" and row.shares == (0.5625, 0.7125)
    # each horizontal run then vertical jump, one per point where the share changes
    path = chart.curves[0].path
    assert path.startswith("M") and path.count("V") == 5, path


def test_missing_inputs_leave_their_parts_out():
    figures = nrr_figures(nrr_report(velocity=False, cuped=False, guardrails=False,
                                     permutation=False, levers=False))
    assert figures.velocity is None and figures.cuped == () and figures.guardrails == ()
    assert figures.permutation == () and figures.levers == () and figures.cohorts == ()
    assert figures.lever_sentences == {}
    assert figures.waterfalls  # the arms are always there


# ------------------------------------------------------------------ the exports


def test_json_export_carries_the_4b_keys_as_stored():
    report = nrr_report()
    exported = json.loads(experiment_json(document_of(report), exported_at=EXPORTED))
    (comparison,) = exported["comparisons"]
    stored = report["comparisons"][0]
    for key in NRR_COMPARISON_KEYS:
        assert comparison[key] == stored[key], key
    for key in ("guardrails_plan", "ttv_target_days", "velocity_curves", "velocity_cohorts"):
        assert exported[key] == report[key], key


def test_exports_of_a_snapshot_from_before_issue_15_show_no_nrr_sections():
    report, _ = base_report()
    # as stored before issue 15: none of the §4b keys
    for key in ("guardrails_plan", "ttv_target_days", "velocity_curves", "velocity_cohorts"):
        report.pop(key, None)
    issue_15 = set(NRR_COMPARISON_KEYS) - {"sequential"}  # sequential is issue 13's
    report["comparisons"] = [{k: v for k, v in c.items() if k not in issue_15}
                             for c in report["comparisons"]]
    document = document_of(report)
    exported = json.loads(experiment_json(document, exported_at=EXPORTED))
    assert exported["comparisons"] == report["comparisons"]  # as stored
    text = experiment_markdown(document, exported_at=EXPORTED)
    assert "### Where NRR came from" in text  # the arms are enough for the waterfall
    for heading in ("### Levers", "### Guardrails", "### CUPED", "### Journey velocity"):
        assert heading not in text, heading
    (row,) = csv.DictReader(io.StringIO(experiment_csv(document)))
    assert row["lever_grr_uplift"] == "" and row["guardrail_status"] == ""
    body = experiment_html(document, exported_at=EXPORTED).split("<body>", 1)[1]
    assert "Guardrails" not in body and "guardrail-" not in body


def test_csv_export_has_the_figures_as_numbers():
    report = nrr_report()
    stored = report["comparisons"][0]
    (row,) = csv.DictReader(io.StringIO(experiment_csv(document_of(report))))
    for lever, figure in stored["levers"].items():
        assert float(row[f"lever_{lever}_uplift"]) == pytest.approx(figure["uplift_abs"])
        assert float(row[f"lever_{lever}_ci_low"]) == pytest.approx(figure["ci_abs"][0])
        assert float(row[f"lever_{lever}_p_value"]) == pytest.approx(figure["p_value"])
    assert float(row["logo_churn_diff"]) == 0.0725
    assert float(row["expansion_incidence_p_value"]) == 0.0000031
    assert row["guardrail_status"] == "fail"
    assert row["guardrails"].startswith("grr margin 0.01: fail")
    assert "logo_churn margin 0.02: inconclusive" in row["guardrails"]
    assert float(row["cuped_uplift"]) == 0.0231
    assert float(row["cuped_variance_reduction"]) == 0.6156
    assert float(row["velocity_logrank_p"]) == 0.0123
    assert float(row["velocity_control_median_days"]) == 12.0
    assert float(row["velocity_treatment_share_by_target"]) == 0.7125
    assert int(row["velocity_cohort_fast_accounts"]) == 214
    assert float(row["velocity_cohort_slow_nrr"]) == 0.9701
    assert float(row["permutation_p_value"]) == 0.0312
    assert int(row["permutation_count"]) == 10000
    # null figures are blank cells, not "None"
    (row,) = csv.DictReader(io.StringIO(experiment_csv(document_of(
        nrr_report(velocity=False, cuped=False)))))
    assert row["cuped_uplift"] == "" and row["velocity_logrank_p"] == ""


def test_markdown_export_has_the_figures():
    report = nrr_report()
    stored = report["comparisons"][0]
    text = experiment_markdown(document_of(report), exported_at=EXPORTED)
    grr = stored["levers"]["grr"]
    assert "### Levers" in text
    assert f"| treatment | GRR | {grr['control'] * 100:.2f}% | {grr['treatment'] * 100:.2f}% | " \
           f"{grr['uplift_abs'] * 100:+.2f} pts |" in text
    assert f"| verdict | {stored['verdict']} — guardrail failed: GRR |" in text
    assert "| treatment | GRR | 1.00 pts |" in text and "| fail |" in text
    assert "| treatment | +2.31 pts | +1.12 pts to +3.50 pts | 0.0002 | 62% | 38% |" in text
    assert "| control (control) | 301 | 99 | 12 | 56.25% | — |" in text
    assert "| treatment | 340 | 60 | 8 | 71.25% | 0.0123 |" in text
    assert "| Slow | 60 | 214 | 150,500.00 | 146,000.00 | 97.01% |" in text
    assert "p = 0.0312 from 10,000 relabellings (seed 20261130)" in text
    assert "The lever that moved is" in text
    # the lever intervals and p are unadjusted, beside a multiplicity-adjusted verdict
    assert "Each interval and p is raw (Welch, no multiplicity adjustment)" in text
    # no section without its inputs
    bare = experiment_markdown(document_of(nrr_report(
        velocity=False, cuped=False, guardrails=False, permutation=False)),
        exported_at=EXPORTED)
    for heading in ("Guardrails", "CUPED", "Journey velocity", "velocity cohort",
                    "Small-sample"):
        assert heading not in bare, heading


def test_html_export_has_the_figures_and_charts():
    report = nrr_report()
    html = experiment_html(document_of(report), exported_at=EXPORTED)
    text = html_text(html)
    assert "guardrail failed: GRR" in text
    assert html.count('class="waterfall-chart"') == 2
    assert html.count('class="km-curve') == 2
    assert "<title>NRR waterfall of treatment</title>" in html
    grr = report["comparisons"][0]["levers"]["grr"]
    assert f"{grr['uplift_abs'] * 100:+.2f} pts" in text
    assert "38% narrower" in text
    assert "Median days to value" in text and "71.25%" in text
    assert "0.0123" in text
    assert "97.01%" in text
    figures = nrr_figures(report, style=EXPORT_STYLE)
    assert figures.lever_sentences["treatment"] in text
    assert "Each interval and p is raw (Welch, no multiplicity adjustment)" in text
    # still self-contained: no script, no external reference
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_figures_that_could_not_be_computed_read_as_dashes_everywhere():
    """DESIGN §4b: a figure that cannot be computed (zero variance, say) is null. Every
    format still renders, with '—' where the number would be."""
    report = nrr_report()
    comparison = report["comparisons"][0]
    for figure in comparison["levers"].values():
        figure.update(ci_abs=[None, None], p_value=None)
    comparison["logo_churn"].update(diff=None, p_value=None)
    comparison["guardrails"][0].update(diff=None, p_value=None, status=None)
    comparison["cuped"].update(ci_abs=[None, None], p_value=None, variance_reduction=None)
    comparison["velocity"]["control"]["median_days"] = None
    comparison["velocity"]["logrank_p"] = None
    figures = nrr_figures(report)
    assert figures.guardrails[0].status_label == "Not computed"
    # a guardrail that could not be judged is not a pass
    assert figures.guardrail_status.text == "guardrails inconclusive: GRR, logo churn"
    assert "no interval" in figures.lever_sentences["treatment"]
    document = document_of(report)
    text = experiment_markdown(document, exported_at=EXPORTED)
    assert "| treatment | GRR | 1.00 pts | — | — | not computed |" in text
    assert "| control (control) | 301 | 99 | not reached | 56.25% | — |" in text
    html = html_text(experiment_html(document, exported_at=EXPORTED))
    assert "Not computed" in html and "not reached" in html
    (row,) = csv.DictReader(io.StringIO(experiment_csv(document)))
    assert row["lever_grr_p_value"] == "" and row["cuped_variance_reduction"] == ""
    assert row["guardrail_status"] == "inconclusive"


def test_no_dead_key_filler_is_left_behind():
    """Exports show the stored analysis exactly as stored (no filled-in §4b keys), so the
    filler that did it is gone rather than left unused."""
    import experiments.nrr_figures_view as view

    assert not hasattr(view, "with_nrr_keys")
