"""The NRR page (issue 16 items 2 and 6): every figure it shows is the stored ledger
figure, the charts are accessible SVG with table fallbacks, the breakdown and the
period are chosen by plain GET (htmx swaps the page body), and the CSV, JSON and
printable exports carry the same numbers.

The stored figures themselves are proved against pandas in
``tests/stats/test_stats_ledger.py``; here one monthly and one trailing-twelve-month
figure are recomputed with pandas from the uploaded file as well, so the page is tied
to the file and not only to the stored document.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re

import pandas as pd
import pytest
from sqlmodel import Session, select

from experiments.ledger import import_ledger
from experiments.models import AuditEvent, DriverNode
from tests.factories import store_ledger_file
from tests.ledger_gen import write_csv

HX = {"HX-Request": "true"}


def pct(value: float | None, digits: int = 2) -> str:
    """The page's percent text, written out here (not the app's filter)."""
    return "—" if value is None else f"{value * 100:.{digits}f}%"


@pytest.fixture
def ledger_file(tmp_path):
    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=300, months=15, seed=7)
    return path


@pytest.fixture
def stored(db_engine, ledger_file, admin):
    """The generated ledger imported the service's way; returns the stored figures."""
    with Session(db_engine, expire_on_commit=False) as session:
        return store_ledger_file(session, ledger_file, admin)


@pytest.fixture
def viewer(login_as):
    return login_as("viewer")


def cells(html: str, table_id: str) -> dict[str, dict[str, str]]:
    """``{row key: {data-col: text}}`` of one table of the page."""
    table = re.search(rf'<table class="table" id="{table_id}">(.*?)</table>', html, re.S)
    assert table, f"no table {table_id}"
    rows = {}
    for key, body in re.findall(r'<tr data-[a-z]+="([^"]+)">(.*?)</tr>', table.group(1), re.S):
        rows[key] = dict(re.findall(r'data-col="([a-z-]+)">([^<]*)<', body))
    return rows


def test_without_a_ledger_the_page_says_so_and_links_to_the_upload(viewer, login_as):
    response = viewer.get("/nrr")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "No revenue ledger yet" in html and "nrrlab ledger import" in html
    assert "takes the analyst role" in html and 'href="/nrr/upload"' not in html
    analyst = login_as("analyst")
    assert 'href="/nrr/upload"' in analyst.get("/nrr").get_data(as_text=True)
    assert viewer.get("/nrr.csv").status_code == 404


def test_monthly_and_ttm_figures_are_the_stored_ones(viewer, stored, ledger_file):
    html = viewer.get("/nrr").get_data(as_text=True)
    table = cells(html, "nrr-monthly")
    assert list(table) == stored["periods"]
    for month, ttm in zip(stored["monthly"], stored["ttm"], strict=True):
        row = table[month["period"]]
        assert row["nrr"] == pct(month["nrr"]) and row["grr"] == pct(month["grr"])
        assert row["ttm-nrr"] == pct(ttm["nrr"]) and row["ttm-grr"] == pct(ttm["grr"])
    # the first TTM figure is the 12th period's; before it the table says "—"
    assert table[stored["periods"][10]]["ttm-nrr"] == "—"
    assert table[stored["periods"][11]]["ttm-nrr"] != "—"

    # Independently, from the file (pandas): the last month's NRR and the last TTM NRR.
    frame = pd.read_csv(ledger_file)
    frame["end"] = (frame.start_mrr + frame.expansion_mrr - frame.contraction_mrr
                    - frame.churned_mrr)
    last, base = stored["periods"][-1], stored["periods"][-12]
    active = frame[(frame.period == last) & (frame.start_mrr > 0)]
    monthly_nrr = active.end.sum() / active.start_mrr.sum()
    start = frame[(frame.period == base) & (frame.start_mrr > 0)].set_index("account_id")
    end = frame[(frame.period == last) & (frame.start_mrr > 0)].set_index("account_id").end
    ttm_nrr = end.reindex(start.index).fillna(0).sum() / start.start_mrr.sum()
    assert stored["monthly"][-1]["nrr"] == pytest.approx(monthly_nrr, rel=1e-9)
    assert stored["ttm"][-1]["nrr"] == pytest.approx(ttm_nrr, rel=1e-9)
    assert table[last]["nrr"] == pct(monthly_nrr)
    assert f'data-figure="ttm-nrr"><span class="value">{pct(ttm_nrr, 1)}<' in html


def test_trend_shows_the_100_percent_line_and_the_tree_target(viewer, stored, db_engine):
    with Session(db_engine) as session:
        root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
        root.target = 1.08
        session.add(DriverNode(name="Gross retention", parent_id=root.id, kind="lever",
                               metric="grr", target=0.93))
        session.commit()
    html = viewer.get("/nrr").get_data(as_text=True)
    trend = re.search(r'<svg class="chart line-chart" id="nrr-trend".*?</svg>', html, re.S).group(0)
    assert 'class="ref ref-hundred"' in trend and 'class="ref ref-target"' in trend
    assert "NRR target: 108.0%" in trend and "GRR target: 93.0%" in trend
    assert "target 108.0%" in html  # beside the headline TTM NRR
    last = stored["ttm"][-1]["nrr"]
    gap = abs(last - 1.08) * 100
    assert f"{gap:.1f} pts {'above' if last > 1.08 else 'short of'} the target of 108.0%" in html


def test_waterfall_of_a_chosen_period_adds_up(viewer, stored):
    period = stored["periods"][5]
    month = stored["monthly"][5]
    html = viewer.get(f"/nrr?period={period}").get_data(as_text=True)
    assert f"Movements in {period}" in html
    svg = re.search(r'<svg class="chart waterfall".*?</svg>', html, re.S).group(0)
    assert f"<title id=\"nrr-waterfall-title\">MRR movements in {period}</title>" in svg
    movements = re.search(r'<table class="table" id="nrr-movements">(.*?)</table>', html,
                          re.S).group(1)
    money = [float(m.replace(",", "")) for m in re.findall(r'<td class="num">([\d,]+\.\d\d)</td>',
                                                             movements)]
    start, expansion, contraction, churned, end = money
    assert start == pytest.approx(month["start_mrr"], abs=0.005)
    assert end == pytest.approx(start + expansion - contraction - churned, abs=0.02)
    assert end == pytest.approx(month["end_mrr"], abs=0.005)


def test_breakdown_by_a_dimension_equals_the_stored_breakdown(viewer, stored):
    plan = stored["dimensions"]["plan"]
    for url in ("/nrr?dimension=plan", "/nrr/dimension/plan"):
        html = viewer.get(url).get_data(as_text=True)
        table = cells(html, "nrr-breakdown")
        assert list(table) == plan["values"]
        for label in plan["values"]:
            assert table[label]["nrr"] == pct(plan["monthly"][label][-1]["nrr"])
            assert table[label]["ttm-nrr"] == pct(plan["ttm"][label][-1]["nrr"])
        # one small multiple per plan, all on one vertical scale
        multiples = re.findall(r'<svg class="chart line-chart" id="nrr-multiple-\d+".*?</svg>',
                               html, re.S)
        assert len(multiples) == len(plan["values"])
        scales = {tuple(re.findall(r'text-anchor="end">([^<]+)<', m)) for m in multiples}
        assert len(scales) == 1


def test_unknown_dimension_or_period_is_a_404_naming_what_exists(viewer, stored):
    assert viewer.get("/nrr/dimension/colour").status_code == 404
    assert viewer.get("/nrr?dimension=colour").status_code == 404
    assert viewer.get("/nrr?period=1999-01").status_code == 404


def test_cohorts_and_velocity_cohorts_are_the_stored_ones(viewer, stored):
    html = viewer.get("/nrr").get_data(as_text=True)
    for cohort in stored["cohorts"]:
        row = re.search(rf'<tr data-cohort="{cohort["cohort"]}">(.*?)</tr>', html, re.S).group(1)
        shown = re.findall(r'<td class="num">([^<]*)</td>', row)[2:]
        assert shown[: len(cohort["nrr_by_age"])] == [pct(v, 1) for v in cohort["nrr_by_age"]]
    for group in stored["velocity_cohorts"]:
        row = re.search(rf'<tr data-velocity="{group["cohort"]}">(.*?)</tr>', html, re.S).group(1)
        assert f"{group['accounts']:,}" in row and pct(group["ttm_nrr"], 1) in row


def test_charts_are_accessible_svg_and_the_page_has_no_inline_style_or_script(viewer, stored):
    html = viewer.get("/nrr?dimension=region").get_data(as_text=True)
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", html, re.S)
    assert len(svgs) >= 5  # trend, rates, waterfall, cohorts, small multiples
    for svg in svgs:
        opening = svg[: svg.index(">")]
        assert 'role="img"' in opening
        ids = re.search(r'aria-labelledby="([^"]+)"', opening).group(1).split()
        for id_ in ids:
            assert f'id="{id_}"' in svg
        assert re.search(r"<title id=[^>]*>[^<]+</title>", svg)
        assert re.search(r"<desc id=[^>]*>[^<]+</desc>", svg)
    assert "<script>" not in html and " style=" not in html and "<style" not in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_htmx_request_gets_the_page_body_only(viewer, stored):
    response = viewer.get("/nrr?dimension=plan", headers=HX)
    html = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<div id="nrr-page"') and "<html" not in html
    full = viewer.get("/nrr").get_data(as_text=True)
    assert 'hx-get="/nrr"' in full and 'method="get" action="/nrr"' in full  # works without JS


def test_csv_export_rows_are_the_stored_figures(viewer, stored):
    response = viewer.get("/nrr.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    company = [r for r in rows if r["scope"] == "company"]
    assert [r["period"] for r in company] == stored["periods"]
    for row, month, ttm in zip(company, stored["monthly"], stored["ttm"], strict=True):
        assert float(row["nrr"]) == month["nrr"]  # repr round-trip: the exact stored float
        assert float(row["start_mrr"]) == month["start_mrr"]
        assert (row["ttm_nrr"] == "") == (ttm["nrr"] is None)
    by_plan = [r for r in rows if r["scope"] == "dimension" and r["dimension"] == "plan"]
    assert len(by_plan) == len(stored["periods"]) * len(stored["dimensions"]["plan"]["values"])
    assert {r["scope"] for r in rows} >= {"company", "dimension", "cohort", "velocity"}


def test_json_export_is_the_stored_document_with_the_targets(viewer, stored, db_engine):
    response = viewer.get("/nrr.json")
    document = json.loads(response.get_data(as_text=True))
    assert document["figures"] == stored
    assert set(document["targets"]) >= {"nrr", "grr"}
    with Session(db_engine) as session:
        actions = session.exec(select(AuditEvent.action).where(
            AuditEvent.entity_type == "nrr")).all()
    assert actions == ["export.json"]


def test_printable_page_is_self_contained_and_allowed_by_its_style_hash(viewer, stored):
    response = viewer.get("/nrr/print")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "inline" in response.headers["Content-Disposition"]
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = response.headers["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in policy and "script-src" not in policy
    assert "<script" not in html and 'src="http' not in html and "<link" not in html
    assert pct(stored["monthly"][-1]["nrr"]) in html
    assert html.count('role="img"') >= 2


def _cli(database_url: str, *args: str):
    from click.testing import CliRunner

    from experiments.cli_export import export

    return CliRunner().invoke(export, list(args), env={"DATABASE_URL": database_url},
                              catch_exceptions=False)


def test_cli_exports_the_nrr_page_in_each_format(database_url, stored, tmp_path, db_engine):
    result = _cli(database_url, "nrr", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["figures"] == stored
    out = tmp_path / "nrr.csv"
    result = _cli(database_url, "nrr", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0 and "wrote" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    company = [r for r in rows if r["scope"] == "company"]
    assert [float(r["nrr"]) for r in company] == [m["nrr"] for m in stored["monthly"]]
    html = _cli(database_url, "nrr", "--format", "html").stdout
    assert html.startswith("<!doctype html>") and "<script" not in html
    with Session(db_engine) as session:
        actions = session.exec(select(AuditEvent.action).where(
            AuditEvent.entity_type == "nrr").order_by(AuditEvent.id)).all()
    assert actions == ["export.json", "export.csv", "export.html"]
    assert "--format [csv|json|html]" in _cli(database_url, "nrr", "--help").output


def test_cli_without_a_ledger_says_so_in_one_line(database_url, db_engine):
    result = _cli(database_url, "nrr", "--format", "csv")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("nrrlab export: there is no revenue ledger yet: upload "
                                     "one first (nrrlab ledger import FILE)")


def test_a_ledger_stored_without_figures_says_why(viewer, stored, db_engine):
    from experiments.ledger_models import LedgerFigures

    with Session(db_engine) as session:
        row = session.exec(select(LedgerFigures)).one()
        row.figures = {"error": "a period has no active account"}
        session.add(row)
        session.commit()
    # the cache is keyed by the stored row: a rewritten row (tests only) needs a new key
    from experiments import ledger

    ledger._PARSED.clear()
    html = viewer.get("/nrr").get_data(as_text=True)
    assert "could not be computed at upload: a period has no active account" in html


def test_hostile_dimension_values_are_escaped_on_the_page_and_neutralised_in_the_csv(
    viewer, db_engine, admin
):
    lines = ["account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,plan"]
    for i in range(6):
        plan = "=HYPERLINK(\"http://x\")" if i % 2 else "<b>pro</b>"
        for month in ("2026-01", "2026-02"):
            lines.append(f'a{i},{month},100,{i},0,0,"{plan.replace(chr(34), chr(34) * 2)}"')
    with Session(db_engine) as session:
        import_ledger(session, ("\n".join(lines) + "\n").encode(), dimensions=("plan",),
                      actor=admin, filename="hostile.csv")
        session.commit()
    html = viewer.get("/nrr?dimension=plan").get_data(as_text=True)
    assert "<b>pro</b>" not in html and "&lt;b&gt;pro&lt;/b&gt;" in html
    rows = list(csv.DictReader(io.StringIO(viewer.get("/nrr.csv").get_data(as_text=True))))
    groups = {r["group"] for r in rows if r["scope"] == "dimension"}
    assert groups == {"<b>pro</b>", "'=HYPERLINK(\"http://x\")"}
