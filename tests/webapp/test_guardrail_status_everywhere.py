"""Issue 15 item 2 everywhere a verdict is shown: a "win" whose GRR guardrail failed reads
"Win — guardrail failed: GRR" on the experiment list, the dashboard, /me, the weekly
review (page, CSV, JSON, Markdown, HTML) — not only on the results page — and the quarterly
review counts it as "won — guardrail failed", not as won. A win whose guardrails all passed
reads "guardrails passed", as on the results page; an analysis without guardrails shows
nothing extra.

The stored analyses are hand-made DESIGN §4b reports (the results page's test data), so
each guardrail's status is set by the test and every page must carry that one.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from datetime import date, timedelta

import pytest
from sqlmodel import Session

from experiments.models import Experiment, utcnow
from experiments.quarterly import current_quarter
from experiments.review_weeks import current_week
from experiments.verdict_status import VerdictStatus, verdict_status
from tests.experiments.test_nrr_figures_exports import nrr_report
from tests.webapp.test_nrr_figures_page import plain_text, store_report
from tests.webapp.test_results import make_experiment

FAILED = "Win — guardrail failed: GRR"
PASSED = "Win — guardrails passed"


def win_report(status: str | None) -> dict:
    """The results page's report as a win; its two guardrails: GRR ``status`` (the logo
    churn one passes), or no guardrails at all for ``None``."""
    report = copy.deepcopy(nrr_report(guardrails=status is not None))
    comparison = report["comparisons"][0]
    comparison["verdict"] = "win"
    for guardrail in comparison["guardrails"]:
        guardrail["status"] = status if guardrail["metric"] == "grr" else "pass"
    return report


def experiment_with(engine, key: str, status: str | None, *, owner_id: int,
                    lifecycle: str) -> Experiment:
    """An experiment of team growth owned by ``owner_id`` with ``win_report(status)``
    stored: ``decided`` (iterate, a minute ago: before the analysis, so the quarterly review
    takes the analysis in force now) or ``running`` past its
    planned end (so it owes a decision)."""
    experiment = make_experiment(engine, key, status=lifecycle)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(Experiment, experiment.id)
        row.owner_id = owner_id
        row.started_at = now - timedelta(days=20)
        row.planned_start = (now - timedelta(days=20)).date()
        if lifecycle == "decided":
            row.decision, row.decision_rationale = "iterate", "guardrail check"
            row.decided_at = now - timedelta(minutes=1)
        else:
            row.planned_end = date.today() - timedelta(days=1)
        session.add(row)
        session.commit()
    store_report(engine, experiment, win_report(status), verdict="win")
    return experiment


@pytest.fixture
def world(login_as, db_engine):
    client = login_as("viewer", teams={"growth": "analyst"})
    owner = client.user.id
    experiment_with(db_engine, "gr-fail", "fail", owner_id=owner, lifecycle="decided")
    experiment_with(db_engine, "gr-pass", "pass", owner_id=owner, lifecycle="decided")
    experiment_with(db_engine, "gr-live", "fail", owner_id=owner, lifecycle="running")
    experiment_with(db_engine, "gr-none", None, owner_id=owner, lifecycle="running")
    return client


def get(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def rows_of(html: str, key: str) -> list[str]:
    """The text of every table row (or list item) that is about experiment ``key``."""
    found = []
    for tag in ("tr", "li"):
        for body in re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", html, flags=re.S):
            if re.search(rf">\s*{re.escape(key)}\s*<|data-experiment=\"{key}\"|/{key}\"",
                         body):
                found.append(plain_text(body))
    for body in re.findall(rf"<tr data-experiment=\"{key}\">(.*?)</tr>", html, flags=re.S):
        found.append(plain_text(body))
    return found


def assert_shown(html: str, where: str, *, live: bool = True) -> None:
    """Every row about each experiment carries its status beside the verdict."""
    keys = {"gr-fail": FAILED, "gr-pass": PASSED}
    if live:
        keys["gr-live"] = FAILED
    for key, expected in keys.items():
        rows = [r for r in rows_of(html, key) if "Win" in r]
        assert rows, (where, key)
        for row in rows:
            assert expected in row, (where, key, row)
            if expected == PASSED:
                assert "failed" not in row, (where, key, row)
    for row in rows_of(html, "gr-none"):  # no guardrails: nothing beside the verdict
        assert "guardrail" not in row, (where, row)


def test_the_experiment_list_and_the_dashboard_show_the_guardrail_status(world):
    assert_shown(get(world, "/experiments/"), "experiment list")
    dashboard = get(world, "/")
    assert_shown(dashboard, "dashboard")
    live = [r for r in rows_of(dashboard, "gr-live") if "running" in r]
    assert live and FAILED in live[0]  # the running experiment, in the dashboard's table
    assert "▲ Win" in " ".join(rows_of(dashboard, "gr-none"))


def test_me_shows_the_guardrail_status_beside_each_of_my_verdicts(world):
    html = get(world, "/me")
    assert_shown(html, "/me")
    owed = html[html.index('id="decisions-owed"'):html.index('id="my-actions"')]
    assert FAILED in plain_text(owed)  # gr-live passed its planned end: a decision is owed


def test_the_weekly_review_page_shows_it_in_every_section(world):
    week = current_week().label
    html = get(world, f"/review/{week}")
    assert_shown(html, "review")
    sections = {name: plain_text(html[html.index(f'id="{name}"'):])
                for name in ("needs-decision", "changed", "portfolio")}
    assert FAILED in sections["needs-decision"].split("Changed since last review")[0]
    changed = sections["changed"].split("Alerts")[0]
    assert FAILED in changed and PASSED in changed
    portfolio = sections["portfolio"]
    assert portfolio.count(FAILED) >= 2 and PASSED in portfolio
    # the agenda items (notes and decision) carry it in their heading too
    item = re.search(r'id="item-gr-fail".*?</h3>', html, flags=re.S)
    if item:
        assert FAILED in plain_text(item.group(0))


def test_the_weekly_review_exports_carry_the_guardrail_status(world):
    week = current_week().label
    base = f"/review/{week}/export"
    rows = list(csv.DictReader(io.StringIO(get(world, f"{base}.csv"))))
    by_key = {r["experiment_key"]: r for r in rows}
    assert by_key["gr-fail"]["guardrail_status"] == "fail"
    assert by_key["gr-fail"]["guardrails"].startswith("grr margin 0.01: fail")
    assert by_key["gr-live"]["guardrail_status"] == "fail"
    assert by_key["gr-pass"]["guardrail_status"] == "pass"
    assert by_key["gr-none"]["guardrail_status"] == ""
    assert by_key["gr-fail"]["verdict"] == "win"  # the verdict column stays the verdict

    document = json.loads(get(world, f"{base}.json"))
    experiments = {e["experiment"]["key"]: e["review"] for e in document["experiments"]}
    stored = {e["experiment"]["key"]: e for e in document["experiments"]}
    assert (experiments["gr-fail"]["guardrail_status"],
            experiments["gr-fail"]["guardrail_text"]) == ("fail", "guardrail failed: GRR")
    assert experiments["gr-pass"]["guardrail_status"] == "pass"
    assert experiments["gr-none"]["guardrail_status"] is None
    # the stored analysis is still the stored one (the new keys sit beside it)
    assert "guardrail_status" not in stored["gr-fail"]["comparisons"][0]
    assert "guardrail_status" not in stored["gr-fail"]  # the document keeps one shape
    portfolio = {p["key"]: p for p in document["portfolio"]}
    assert portfolio["gr-fail"]["guardrail_status"] == "fail"
    assert portfolio["gr-pass"]["guardrail_status"] == "pass"
    changed = {c["key"]: c for c in document["changed"]}
    assert changed["gr-fail"]["guardrail_status"] == "fail"

    markdown = get(world, f"{base}.md")
    portfolio_md = markdown[markdown.index("## Portfolio"):markdown.index("## Actions")]
    line = next(x for x in portfolio_md.splitlines() if "| gr-fail |" in x)
    assert line.rstrip(" |").endswith("win — guardrail failed: GRR"), line
    line = next(x for x in portfolio_md.splitlines() if "| gr-pass |" in x)
    assert line.rstrip(" |").endswith("win — guardrails passed"), line
    needs = markdown[markdown.index("## Needs a decision"):markdown.index("## Changed")]
    assert "win — guardrail failed: GRR" in next(
        x for x in needs.splitlines() if "gr-live" in x)

    html = plain_text(get(world, f"{base}.html"))
    portfolio_html = html[html.index("Portfolio"):html.index("Actions")]
    assert "gr-fail" in portfolio_html and "win — guardrail failed: GRR" in portfolio_html
    assert "win — guardrails passed" in portfolio_html
    needs_html = html[html.index("Needs a decision"):html.index("Changed since")]
    assert "win — guardrail failed: GRR" in needs_html


def test_the_quarterly_review_counts_a_win_with_a_failed_guardrail_apart(world):
    quarter = current_quarter().label
    html = get(world, f"/quarterly/{quarter}")

    def total(name: str) -> int:
        return int(re.search(rf'data-total="{name}">(\d+)<', html).group(1))

    assert total("won") == 1  # gr-pass only
    assert total("won_guardrail_failed") == 1  # gr-fail
    assert "Won with a failed guardrail: gr-fail" in plain_text(html)
    week = re.search(r'<tr data-week="total">(.*?)</tr>', html, flags=re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", week)
    assert cells[1:3] == ["1", "1"], cells  # won, won — guardrail failed

    document = json.loads(get(world, f"/quarterly/{quarter}/export.json"))
    totals = document["totals"]
    assert (totals["won_keys"], totals["won_guardrail_failed_keys"]) == (["gr-pass"],
                                                                         ["gr-fail"])
    assert sum(w["won_guardrail_failed"] for w in document["weeks"]) == 1
    rows = list(csv.DictReader(io.StringIO(get(world, f"/quarterly/{quarter}/export.csv"))))
    total_row = next(r for r in rows if r["kind"] == "quarter_total")
    assert (total_row["won"], total_row["won_guardrail_failed"]) == ("1", "1")
    assert total_row["won_guardrail_failed_keys"] == "gr-fail"
    markdown = get(world, f"/quarterly/{quarter}/export.md")
    assert "1 won, 1 won — guardrail failed (not counted as won: gr-fail)" in markdown


# ------------------------------------------------------------------ the rule itself


def two_treatments(a: tuple[str, str | None], b: tuple[str, str | None]) -> dict:
    """A report with treatments A and B: (verdict, GRR guardrail status or None)."""
    comparisons = []
    for variant, (verdict, status) in (("A", a), ("B", b)):
        guardrails = [] if status is None else [
            {"metric": "grr", "margin": 0.01, "diff": -0.02, "p_value": 0.5, "status": status}]
        comparisons.append({"variant": variant, "verdict": verdict, "guardrails": guardrails})
    return {"comparisons": comparisons}


@pytest.mark.parametrize(("a", "b", "won_failed", "text"), [
    # one winner with a passing guardrail is a clean win, even if the other failed one
    (("win", "pass"), ("win", "fail"), False, "win — guardrail failed: GRR (B)"),
    (("win", "fail"), ("win", "fail"), True, "win — guardrails failed: GRR (A), GRR (B)"),
    (("win", "fail"), ("inconclusive", "pass"), True, "win — guardrail failed: GRR (A)"),
    # an inconclusive guardrail (or one that could not be computed) is not a failure
    (("win", "inconclusive"), ("loss", "pass"), False,
     "win — guardrail inconclusive: GRR (A)"),
    (("win", None), ("loss", None), False, "win"),
])
def test_won_with_a_failed_guardrail_means_every_winner_failed_one(a, b, won_failed, text):
    status = verdict_status("win", two_treatments(a, b))
    assert status.won_guardrail_failed is won_failed
    assert status.text == text


def test_only_a_win_can_be_won_with_a_failed_guardrail():
    report = two_treatments(("loss", "fail"), ("inconclusive", "fail"))
    status = verdict_status("loss", report)
    assert not status.won_guardrail_failed and status.guardrail_failed
    assert status.text == "loss — guardrails failed: GRR (A), GRR (B)"
    assert verdict_status(None, report) == VerdictStatus(None)
