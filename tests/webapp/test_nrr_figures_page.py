"""Issue 15 on the results page: each NRR-native figure appears only when its inputs exist,
with one plain line of explanation; the lever sentence names the lever that moved; a failed
guardrail shows beside a win; the numbers on the page are the stored report's.

Two kinds of data: a hand-made DESIGN §4b report stored as the snapshot (so a test can
switch each input off), and a generated account CSV uploaded through the app (so the
figures are the real pipeline's, compared with the stored snapshot and, for the shares of
accounts, with numpy on the uploaded file).
"""

from __future__ import annotations

import copy
import csv
import html as html_module
import io
import re

import numpy as np
import pytest
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot, Dataset, Experiment
from tests.experiments.test_nrr_figures_exports import nrr_report
from tests.webapp.test_results import make_experiment, upload


@pytest.fixture
def analyst(login_as, factory):
    return login_as("viewer", teams={"growth": "analyst"})


def store_report(engine, experiment: Experiment, report: dict, *, verdict: str | None = None):
    """``report`` as the experiment's analysed dataset version 1 (no rows needed to show it)."""
    with Session(engine) as session:
        dataset = Dataset(experiment_id=experiment.id, version=1, filename="accounts.csv",
                          sha256="ab" * 32, content_sha256="ab" * 32, row_count=800)
        session.add(dataset)
        session.flush()
        plan = {"alpha": 0.05, "power": 0.8, "mde": 0.02, "control": "control",
                "sigma": None, "sequential": False, "tuning": None, "required_n": {},
                "variants": [{"key": "control", "name": "", "weight": 1.0},
                             {"key": "treatment", "name": "", "weight": 1.0}]}
        session.add(AnalysisSnapshot(
            experiment_id=experiment.id, dataset_id=dataset.id,
            verdict=verdict or report["comparisons"][0]["verdict"],
            result={**report, "plan": plan}, segments=None))
        session.commit()


def page_of(client, key: str) -> str:
    response = client.get(f"/experiments/{key}/results")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def pts(value: float) -> str:
    """The page's signed points with two decimals (the uplift columns): 0.0123 → '+1.23'."""
    return f"{value * 100:+.2f}"


def test_every_section_shows_with_its_inputs_and_the_stored_numbers(analyst, db_engine):
    experiment = make_experiment(db_engine, "nrr-all")
    report = nrr_report()
    store_report(db_engine, experiment, report)
    html = page_of(analyst, experiment.key)
    text = plain_text(html)
    stored = report["comparisons"][0]
    for heading in ("Where NRR came from", "Levers: what moved NRR",
                    "Accounts lost and accounts expanded", "Guardrails",
                    "Adjusted for the pre-period (CUPED)", "Journey velocity: time to value",
                    "NRR by velocity cohort", "Small-sample check"):
        assert heading in text, heading
    # one waterfall per arm and one KM curve per arm, each an accessible SVG
    assert html.count('class="waterfall-chart"') == 2
    assert html.count('class="km-curve km-arm-') == 2
    assert 'role="img"' in html and "<title id=\"km-title-nrr-all\">" in html
    # lever table: the stored rates, differences and p-values
    rows = table_rows(html, "levers-table")
    for lever, label in (("expansion", "Expansion"), ("contraction", "Contraction"),
                         ("churn", "Churn"), ("grr", "GRR")):
        figure = stored["levers"][lever]
        assert rows[label][1:] == [f"{figure['control'] * 100:.2f}%",
                                   f"{figure['treatment'] * 100:.2f}%", pts(figure["uplift_abs"]),
                                   interval(figure["ci_abs"]), f"{figure['p_value']:.3f}"
                                   if figure["p_value"] >= 0.001 else "< 0.001"], label
    rows = table_rows(html, "proportions-table")
    for label, key in (("Logo churn (accounts lost entirely)", "logo_churn"),
                       ("Expansion incidence (accounts that expanded)", "expansion_incidence")):
        figure = stored[key]
        assert rows[label][1:] == [f"{figure['control'] * 100:.1f}%",
                                   f"{figure['treatment'] * 100:.1f}%", pts(figure["diff"]),
                                   "< 0.001"], label
    rows = table_rows(html, "guardrails-table")
    assert rows["GRR"][1:] == ["1.00 pts", pts(stored["guardrails"][0]["diff"]), "0.999", "Fail"]
    assert rows["logo churn"][1:] == ["2.00 pts", "+7.25", "0.993", "Inconclusive"]
    rows = table_rows(html, "cuped-table")
    assert rows["treatment"][2:] == ["+2.31", "[+1.1, +3.5]", "< 0.001", "62%", "38%"]
    assert "the interval is 38% narrower than the unadjusted one" in text
    rows = table_rows(html, "velocity-table")
    velocity = stored["velocity"]
    assert rows["control (control)"] == [
        "301", "99", "12", f"{velocity['control']['share_by_target'] * 100:.1f}%", "—"]
    assert rows["treatment"] == [
        "340", "60", "8", f"{velocity['treatment']['share_by_target'] * 100:.1f}%", "0.012"]
    rows = table_rows(html, "cohorts-table")
    assert rows["Slow"] == ["60", "214", "150,500.00", "146,000.00", "97.01%"]
    assert rows["Not reached"] == ["—", "159", "99,000.00", "88,000.00", "88.89%"]
    assert "p = 0.031 from 10,000 relabellings (seed 20261130)" in text


def test_sections_without_their_inputs_are_not_shown(analyst, db_engine):
    experiment = make_experiment(db_engine, "nrr-none")
    store_report(db_engine, experiment, nrr_report(
        velocity=False, cuped=False, guardrails=False, permutation=False))
    html = page_of(analyst, experiment.key)
    text = plain_text(html)
    assert "Journey velocity" not in text and "km-chart" not in html  # no days_observed
    assert "NRR by velocity cohort" not in text
    assert "CUPED" not in text  # no pre-period columns
    assert "Guardrails" not in text and "guardrail" not in text  # no guardrails, no badge
    assert "Small-sample check" not in text
    # what has its inputs is still there
    assert "Levers: what moved NRR" in text and "Where NRR came from" in text


def test_a_win_with_a_failed_guardrail_is_shown_as_such(analyst, db_engine):
    experiment = make_experiment(db_engine, "nrr-win")
    report = nrr_report()
    report["comparisons"][0]["verdict"] = "win"
    store_report(db_engine, experiment, report, verdict="win")
    text = plain_text(page_of(analyst, experiment.key))
    headline = text[text.index("Plan in force") - 400:text.index("Plan in force")]
    assert "Win — guardrail failed: GRR" in headline, headline
    # and in the treatment's row of the uplift table
    assert "Win — guardrail failed: GRR" in text[text.index("Uplift against control"):]
    # all guardrails passing: the badge says so, without "failed"
    for g in report["comparisons"][0]["guardrails"]:
        g["status"] = "pass"
    passed = make_experiment(db_engine, "nrr-win-pass")
    store_report(db_engine, passed, report, verdict="win")
    text = plain_text(page_of(analyst, passed.key))
    headline = text[text.index("Plan in force") - 400:text.index("Plan in force")]
    assert "Win — guardrails passed" in headline and "failed" not in headline, headline


def test_the_lever_sentence_names_the_lever_that_moved(analyst, db_engine):
    report = nrr_report()
    levers = report["comparisons"][0]["levers"]
    # make contraction the one significant lever: it is named even though churn moved more
    for name in ("expansion", "churn"):
        levers[name]["p_value"] = 0.2
    levers["contraction"].update(uplift_abs=-0.004, ci_abs=[-0.007, -0.001], p_value=0.01)
    experiment = make_experiment(db_engine, "nrr-lever")
    store_report(db_engine, experiment, report)
    text = plain_text(page_of(analyst, experiment.key))
    assert ("The lever that moved is contraction: treatment's contraction was 0.4 pts of "
            "start MRR lower than control's (95% CI -0.7 to -0.1, p = 0.010), "
            "+0.4 pts on NRR.") in text
    # nothing significant: said plainly, naming the largest change (churn here)
    other = copy.deepcopy(nrr_report())
    for figure in other["comparisons"][0]["levers"].values():
        figure["p_value"] = 0.3
    experiment = make_experiment(db_engine, "nrr-lever-none")
    store_report(db_engine, experiment, other)
    text = plain_text(page_of(analyst, experiment.key))
    assert "No lever moved detectably (every p ≥ 0.05); the largest change was in churn" in text


# ------------------------------------------------------------------ the real pipeline


def churn_raising_csv(seed: int = 15, n: int = 500) -> bytes:
    """Accounts with days_to_value/days_observed and a pre-period; treatment churns more."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["account_id", "variant", "start_mrr", "expansion_mrr", "contraction_mrr",
                     "churned_mrr", "days_to_value", "days_observed", "pre_start_mrr",
                     "pre_end_mrr"])
    for arm, p_churn, speed in (("control", 0.04, 14.0), ("treatment", 0.14, 8.0)):
        for i in range(n):
            # an account's health shows in its pre-period growth and in this period's
            # expansion and churn, so CUPED has something to adjust with
            health = float(rng.normal())
            start = round(float(np.exp(rng.normal(np.log(600), 0.6))), 2)
            pre_start = round(start * float(rng.uniform(0.8, 1.1)), 2)
            churned = start if rng.random() < p_churn * (1.6 if health < 0 else 0.4) else 0.0
            expansion = (round(start * (0.3 + 0.1 * health), 2)
                         if not churned and health > 0 and rng.random() < 0.4 else 0.0)
            contraction = round(start * 0.2, 2) if not churned and rng.random() < 0.08 else 0.0
            observed = int(rng.integers(10, 60))
            days = float(np.ceil(rng.exponential(speed)))
            writer.writerow([f"{arm[0]}{i:05d}", arm, f"{start:.2f}", f"{expansion:.2f}",
                             f"{contraction:.2f}", f"{churned:.2f}",
                             f"{days:g}" if days <= observed else "", observed,
                             f"{pre_start:.2f}",
                             f"{max(pre_start * (1 + 0.12 * health), 0.0):.2f}"])
    return out.getvalue().encode()


def test_uploaded_figures_on_the_page_are_the_stored_ones(analyst, db_engine):
    experiment = make_experiment(db_engine, "nrr-upload")
    with Session(db_engine) as session:
        row = session.get(Experiment, experiment.id)
        if not hasattr(row, "guardrails"):
            pytest.skip("the plan's guardrails column (P15) is not there yet")
        row.guardrails = [{"metric": "grr", "margin": 0.01}]
        session.add(row)
        session.commit()
    data = churn_raising_csv()
    assert upload(analyst, experiment.key, data).status_code in (200, 303)
    with Session(db_engine) as session:
        snapshot = session.exec(select(AnalysisSnapshot).where(
            AnalysisSnapshot.experiment_id == experiment.id)).one()
        report = snapshot.result
    (stored,) = report["comparisons"]
    html = page_of(analyst, experiment.key)
    text = plain_text(html)
    # the guardrail the plan set, failed: the treatment churns 10 points more
    (guard,) = stored["guardrails"]
    assert guard["status"] == "fail"
    assert "guardrail failed: GRR" in text
    assert table_rows(html, "guardrails-table")["GRR"][-1] == "Fail"
    # logo churn: the page, the stored figure and numpy on the file agree
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    share = {arm: np.mean([float(r["churned_mrr"]) == float(r["start_mrr"])
                           for r in rows if r["variant"] == arm])
             for arm in ("control", "treatment")}
    assert stored["logo_churn"]["control"] == pytest.approx(share["control"])
    assert stored["logo_churn"]["treatment"] == pytest.approx(share["treatment"])
    logo = table_rows(html, "proportions-table")["Logo churn (accounts lost entirely)"]
    assert logo[1:3] == [f"{share['control'] * 100:.1f}%", f"{share['treatment'] * 100:.1f}%"]
    # levers, CUPED and velocity exactly as stored
    grr = stored["levers"]["grr"]
    assert table_rows(html, "levers-table")["GRR"][3] == pts(grr["uplift_abs"])
    assert stored["cuped"] is not None
    assert table_rows(html, "cuped-table")["treatment"][2] == pts(stored["cuped"]["uplift_abs"])
    velocity = stored["velocity"]
    shown = table_rows(html, "velocity-table")["treatment"]
    assert shown[0] == f"{velocity['treatment']['reached']:,}"
    assert shown[3] == f"{velocity['treatment']['share_by_target'] * 100:.1f}%"
    assert html.count('class="km-curve km-arm-') == 2


# ------------------------------------------------------------------ helpers


def plain_text(html: str) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace(" ,", ",").strip()
    return html_module.unescape(text)


def interval(pair) -> str:
    """The page's interval macro: ``[+1.1, +3.5]`` (one decimal)."""
    return f"[{pair[0] * 100:+.1f}, {pair[1] * 100:+.1f}]"


def table_rows(html: str, css_class: str) -> dict[str, list[str]]:
    """The rows of the table with ``css_class``, keyed by their row header (``th``) text,
    each the list of its ``td`` texts (a leading ``td`` — the treatment — comes first)."""
    start = html.index(css_class)
    body = html[start:html.index("</table>", start)]
    body = body[body.index("<tbody>"):]
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        header = re.search(r"<th[^>]*>(.*?)</th>", tr, flags=re.S)
        cells = [plain_cell(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)]
        key = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", header.group(1))).strip()
        rows[key] = cells
    return rows


def plain_cell(value: str) -> str:
    return html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", value)).strip())


def test_an_upload_without_the_optional_columns_shows_only_what_it_supports(analyst,
                                                                            db_engine):
    """A file without days_observed and without pre-period columns, an experiment without
    guardrails: the stored report has velocity, cuped null and guardrails [] — and the
    page has no velocity chart, no CUPED line and no guardrail badge."""
    from tests.webapp.test_issue13_results import three_arm_csv

    experiment = make_experiment(db_engine, "nrr-plain", variants=("control", "a", "b"))
    assert upload(analyst, experiment.key, three_arm_csv(9)).status_code in (200, 303)
    with Session(db_engine) as session:
        report = session.exec(select(AnalysisSnapshot).where(
            AnalysisSnapshot.experiment_id == experiment.id)).one().result
    for comparison in report["comparisons"]:
        assert comparison["velocity"] is None and comparison["cuped"] is None
        assert comparison["guardrails"] == []
    html = page_of(analyst, experiment.key)
    text = plain_text(html)
    assert "Journey velocity" not in text and "km-chart" not in html
    assert "CUPED" not in text and "Guardrails" not in text and "guardrail" not in text
    # levers, shares of accounts and the waterfalls need only the required columns
    assert html.count('class="waterfall-chart"') == 3
    rows = table_rows(html, "levers-table")
    assert rows["GRR"][0] in ("a", "b")  # one row per lever and treatment (keys collide)
    for comparison in report["comparisons"]:
        churn = comparison["logo_churn"]
        assert f"{churn['treatment'] * 100:.1f}%" in html
