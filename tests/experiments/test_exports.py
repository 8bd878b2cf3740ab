"""Uplift report exports: every format parses and carries the snapshot's figures;
CSV formula injection; the reproduce bundle recomputes the same uplift in a
subprocess; the CLI group; audit events and access."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from experiments.decisions import decide, review_source
from experiments.errors import NotFound
from experiments.exports import cents_text, export_experiment, export_review
from experiments.formatting import neutralise
from experiments.models import (
    AccountRow,
    Amendment,
    AuditEvent,
    DriverNode,
    Experiment,
    JourneyStage,
    ReviewItem,
    ReviewMeeting,
    Team,
    Variant,
)
from experiments.review import build_review, parse_week
from experiments.review_models import Action
from tests.experiments.test_review import add_data, build_scenario

#: What a spreadsheet runs as a formula (OWASP "CSV injection"), written out here rather
#: than read from the module under test.
FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SECTION_KEYS = ("alpha", "power", "mde", "control", "srm", "arms", "comparisons", "warnings")

# Every user-controlled text that reaches a CSV, each starting with a formula character.
HOSTILE = {
    "name": '=HYPERLINK("http://evil.example","x")',
    "hypothesis": "+SUM(1,2)",
    "rationale": "-2+3",
    "branch": "@branch",
    "driver": "=driver",
    "stage": "\tstage",
    "team": "\rteam",
    "owner": "=cmd|' /C calc'!A0",
    "control": "-control",
    "treatment": "=evil",
    "amend_field": "=field",
    "amend_old": "+old",
    "amend_new": "-new",
    "amend_reason": "@reason",
    "note": "=note()",
    "action": "+action",
    "item_rationale": "@item",
}


# ------------------------------------------------------------------ fixtures


def make_experiment(
    session: Session,
    key: str,
    *,
    team_slug: str = "growth",
    names=("control", "treatment"),
    name: str | None = None,
    hypothesis: str = "If we nudge, then NRR rises because admins act.",
    node_name: str = "Expansion",
    driver_name: str | None = None,
    stage_name: str | None = None,
    owner=None,
    status: str = "stopped",
    decision: str | None = None,
    rationale: str = "",
    account_ids: list[str] | None = None,
    segments: list[str] | None = None,
    with_data: bool = True,
    lift: float = 0.1,
    team_name: str | None = None,
):
    from experiments.users import ensure_team

    team = ensure_team(session, team_slug, team_name or team_slug.title())
    root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
    lever = DriverNode(name=node_name, parent_id=root.id, kind="lever", team_id=team.id)
    session.add(lever)
    session.flush()
    node = lever
    if driver_name:
        node = DriverNode(name=driver_name, parent_id=lever.id, kind="driver", team_id=team.id)
        session.add(node)
        session.flush()
    stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()
    if stage_name:
        stage = JourneyStage(journey_id=stage.journey_id, name=stage_name, position=99)
        session.add(stage)
        session.flush()
    started = NOW - timedelta(days=30)
    experiment = Experiment(
        key=key,
        name=name or f"Experiment {key}",
        node_id=node.id,
        stage_id=stage.id,
        team_id=team.id,
        owner_id=owner.id if owner else None,
        hypothesis=hypothesis,
        mde=0.05,
        alpha=0.05,
        power=0.8,
        status=status,
        started_at=started,
        stopped_at=NOW - timedelta(days=2) if status in ("stopped", "decided") else None,
        decided_at=NOW - timedelta(days=1) if decision else None,
        decision=decision,
        decision_rationale=rationale,
        planned_start=started.date(),
        planned_end=date(2026, 12, 31),
        created_at=started - timedelta(days=1),
    )
    session.add(experiment)
    session.flush()
    for position, variant in enumerate(names):
        session.add(
            Variant(
                experiment_id=experiment.id,
                key=variant,
                name=variant,
                weight=1.0,
                is_control=position == 0,
                position=position,
            )
        )
    session.flush()
    snapshot = None
    if with_data:
        snapshot = add_data(
            session,
            experiment,
            at=NOW - timedelta(days=3),
            n_control=300,
            n_treatment=300,
            lift=lift,
            seed=7,
            with_rows=True,
            account_ids=account_ids,
            segments=segments,
        )
    session.commit()
    return experiment, snapshot


@pytest.fixture
def cleanup(session, db_engine):
    yield
    session.rollback()


@pytest.fixture
def people(factory):
    return {
        "admin": factory.user("admin@exports.test", "admin"),
        "viewer": factory.user("viewer@exports.test", "viewer", {"growth": "viewer"}),
        "outsider": factory.user("outsider@exports.test", "viewer", {"success": "experimenter"}),
    }


@pytest.fixture
def report(session, people, cleanup):
    """A stopped experiment with data, an amendment, an XSS name and hypothesis."""
    experiment, snapshot = make_experiment(
        session, "seat-nudge", name=f"Seat nudge {XSS}", hypothesis=XSS, owner=people["viewer"]
    )
    session.add(
        Amendment(
            experiment_id=experiment.id,
            field="mde",
            old_value="0.05",
            new_value="0.04",
            reason=f"Finance {XSS}",
            created_at=NOW - timedelta(days=10),
        )
    )
    session.commit()
    return experiment, snapshot


@pytest.fixture
def hostile(session, factory, cleanup):
    """Every text field that reaches a CSV starts with =, +, -, @, tab or CR."""
    owner = factory.user("hostile@exports.test", "viewer")
    with Session(session.get_bind()) as other:
        from experiments.models import User

        stored = other.get(User, owner.id)
        stored.name = HOSTILE["owner"]
        other.add(stored)
        other.commit()
    experiment, snapshot = make_experiment(
        session,
        "hostile",
        name=HOSTILE["name"],
        hypothesis=HOSTILE["hypothesis"],
        node_name=HOSTILE["branch"],
        driver_name=HOSTILE["driver"],
        stage_name=HOSTILE["stage"],
        team_slug="hostile-team",
        team_name=HOSTILE["team"],
        owner=owner,
        status="decided",
        decision="ship",
        rationale=HOSTILE["rationale"],
        names=(HOSTILE["control"], HOSTILE["treatment"]),
        lift=-0.08,
        account_ids=["=1+2", "-3", "+4", "@5", "\t6", "\r7", "'8"],
        segments=["=seg", "plain"],
    )
    session.add(
        Amendment(
            experiment_id=experiment.id,
            field=HOSTILE["amend_field"],
            old_value=HOSTILE["amend_old"],
            new_value=HOSTILE["amend_new"],
            reason=HOSTILE["amend_reason"],
            created_at=NOW - timedelta(days=10),
        )
    )
    session.commit()
    return experiment, snapshot


# ------------------------------------------------------------------ helpers


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def md_tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table as rows of cells (split on unescaped pipes)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif current:
            tables.append(current)
            current = []
    return tables


def assert_markdown_tables(text: str) -> list[list[list[str]]]:
    tables = md_tables(text)
    assert tables, "no Markdown table"
    for table in tables:
        assert len(table) >= 2
        width = len(table[0])
        assert all(re.fullmatch(r"-{3,}", cell) for cell in table[1]), table[1]
        assert all(len(row) == width for row in table), table
    return tables


class Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        self.attrs += [(tag, name, value) for name, value in attrs]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def parse_html(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    collector.close()
    return collector


def assert_self_contained(text: str) -> Collector:
    page = parse_html(text)
    for tag, name, value in page.attrs:
        if name in ("src", "href", "action", "xlink:href", "srcset", "poster", "data"):
            lowered = (value or "").strip().lower()
            assert not lowered.startswith(("http:", "https:", "//")), (tag, name, value)
    assert not re.search(r"https?:|//[a-z]", page.style), "external reference in the stylesheet"
    assert "@import" not in page.style and "url(" not in page.style
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "style" in page.tags and "svg" in page.tags
    assert "@media print" in page.style and "break-before: page" in page.style
    return page


def figures(snapshot) -> dict:
    return {c["variant"]: c for c in snapshot.result["comparisons"]}


# ------------------------------------------------------------------ JSON


def test_json_is_design_section_4_plus_the_experiment(session, people, report):
    _experiment, snapshot = report
    export = export_experiment(session, people["viewer"], "seat-nudge", "json", now=NOW)
    document = json.loads(export.body)
    for key in SECTION_KEYS:
        assert document[key] == snapshot.result[key], key
    assert document["experiment"]["key"] == "seat-nudge"
    assert set(document["experiment"]) >= {
        "key",
        "name",
        "branch",
        "journey_stage",
        "owner",
        "hypothesis",
        "status",
        "decision",
        "amendments",
    }
    # The registry's experiment object (experiments.registry.experiment_as_dict).
    assert document["experiment"]["branch"]["name"] == "Expansion"
    assert document["experiment"]["amendments"][0]["reason"].startswith("Finance")
    assert document["plan"]["mde"] == 0.05 and document["plan"]["control"] == "control"
    assert [v["key"] for v in document["plan"]["variants"]] == ["control", "treatment"]
    assert (
        document["amendments"][0]["field"] == "mde"
        and document["amendments"][0]["new_value"] == "0.04"
    )
    assert document["dataset"] == {
        **document["dataset"],
        "version": 1,
        "rows": 600,
        "sha256": snapshot.result["dataset"]["sha256"],
    }
    assert datetime.fromisoformat(document["computed_at"]) == NOW - timedelta(days=3)
    assert document["exported_at"].startswith("2026-11-26")
    assert export.filename == "nrr-seat-nudge-2026-11-26.json"
    assert export.content_type == "application/json"


def test_an_experiment_without_data_exports_an_empty_report(session, people, cleanup):
    make_experiment(session, "no-data", status="running", with_data=False)
    for fmt in ("json", "csv", "md", "html", "zip"):
        export = export_experiment(session, people["admin"], "no-data", fmt, now=NOW)
        assert export.body
    document = json.loads(
        export_experiment(session, people["admin"], "no-data", "json", now=NOW).body
    )
    assert document["arms"] == [] and document["comparisons"] == [] and document["dataset"] is None
    rows = list(
        csv.DictReader(
            io.StringIO(
                export_experiment(session, people["admin"], "no-data", "csv", now=NOW).body.decode()
            )
        )
    )
    assert len(rows) == 1 and rows[0]["uplift_abs"] == ""
    archive = zipfile.ZipFile(
        io.BytesIO(export_experiment(session, people["admin"], "no-data", "zip", now=NOW).body)
    )
    assert any(name.endswith("README.txt") for name in archive.namelist())


# ------------------------------------------------------------------ CSV


def test_csv_has_one_row_per_comparison_with_plain_numbers(session, people, report):
    _, snapshot = report
    text = export_experiment(session, people["viewer"], "seat-nudge", "csv", now=NOW).body.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = figures(snapshot)
    assert [r["variant"] for r in rows] == list(expected)
    row, comparison = rows[0], expected["treatment"]
    for name in (
        "uplift_abs",
        "uplift_rel",
        "p_value",
        "p_value_adjusted",
        "p_value_mwu",
        "sigma_lin",
        "power_achieved",
    ):
        assert float(row[name]) == comparison[name], name
    assert (float(row["ci_abs_low"]), float(row["ci_abs_high"])) == tuple(comparison["ci_abs"])
    assert int(row["required_n_per_arm"]) == comparison["required_n_per_arm"]
    arms = {a["variant"]: a for a in snapshot.result["arms"]}
    assert float(row["start_mrr"]) == arms["treatment"]["start_mrr"]
    assert float(row["control_nrr"]) == arms["control"]["nrr"]
    assert row["dataset_rows"] == "600" and row["dataset_version"] == "1"


def test_csv_neutralises_every_text_field_but_keeps_negative_numbers(session, people, hostile):
    _experiment, snapshot = hostile
    text = export_experiment(session, people["admin"], "hostile", "csv", now=NOW).body.decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert len(body) == 1
    for cells in body:
        for name, cell in zip(header, cells, strict=True):
            assert not cell.startswith(FORMULA_CHARS) or is_number(cell), (
                f"{name}: {cell!r} is a live formula"
            )
    row = dict(zip(header, body[0], strict=True))
    expect = {
        "experiment_name": HOSTILE["name"],
        "hypothesis": HOSTILE["hypothesis"],
        "decision_rationale": HOSTILE["rationale"],
        "branch": HOSTILE["branch"],
        "driver": HOSTILE["driver"],
        "journey_stage": HOSTILE["stage"],
        "team": HOSTILE["team"],
        "owner": HOSTILE["owner"],
        "control": HOSTILE["control"],
        "variant": HOSTILE["treatment"],
    }
    for name, original in expect.items():
        assert row[name] == "'" + original, name
    assert row["amendments"].startswith("'=field: +old → -new (@reason)")
    # The treatment lost: a negative uplift is a plain negative number, not text.
    uplift = snapshot.result["comparisons"][0]["uplift_abs"]
    assert uplift < 0 and row["uplift_abs"] == repr(uplift) and float(row["uplift_abs"]) == uplift


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\tx", "\rx"])
def test_neutralise_prefixes_formula_text_only(value):
    assert neutralise(value) == "'" + value
    assert neutralise(-1.5) == -1.5 and neutralise(3) == 3 and neutralise("a=b") == "a=b"


# ------------------------------------------------------------------ Markdown


def test_markdown_tables_carry_the_figures(session, people, report):
    _, snapshot = report
    text = export_experiment(session, people["viewer"], "seat-nudge", "md", now=NOW).body.decode()
    tables = assert_markdown_tables(text)
    uplift = figures(snapshot)["treatment"]["uplift_abs"]
    comparison_table = next(t for t in tables if t[0][0] == "variant" and "uplift" in t[0])
    assert comparison_table[2][0] == "treatment"
    assert comparison_table[2][1] == f"{uplift * 100:+.2f} pts"
    # Markdown syntax in user text is backslash-escaped, never turned into HTML entities.
    assert re.search(r"(?<!\\)<script", text) is None and "\\<script\\>" in text
    assert "&lt;" not in text and "&amp;" not in text
    assert "sha256" in text and "0.04" in text  # data version and the amendment


def test_markdown_cells_cannot_break_the_table(session, people, hostile):
    experiment, _ = hostile
    experiment.hypothesis = "a | b\nc"
    session.add(experiment)
    session.commit()
    text = export_experiment(session, people["admin"], "hostile", "md", now=NOW).body.decode()
    assert_markdown_tables(text)
    assert "a \\| b c" in text


def test_markdown_user_text_makes_no_link_image_or_html(session, people, hostile):
    """Issue 12 item 9 / issue 14 item 5: Markdown syntax in user text is escaped with
    backslashes, so a renderer shows it as typed; no HTML entities in a Markdown file."""
    experiment, _ = hostile
    experiment.name = "R&D [x](javascript:alert(1)) ![](http://evil.example/p.png) <b>"
    experiment.hypothesis = "# not a heading"
    session.add(experiment)
    session.commit()
    text = export_experiment(session, people["admin"], "hostile", "md", now=NOW).body.decode()
    unescaped_link = re.compile(r"(?<!\\)\]\(javascript:|(?<!\\)!(?<!\\)\[")
    assert unescaped_link.search(text) is None and "<b>" not in text
    assert "&amp;" not in text and "&lt;" not in text and "&gt;" not in text
    assert r"R\&D \[x\](javascript:alert(1)) \!\[\](http://evil.example/p.png) \<b\>" in text
    assert r"| hypothesis | \# not a heading |" in text
    review = export_review(session, people["admin"], "2026-W48", "md", now=NOW).body.decode()
    assert unescaped_link.search(review) is None


def test_csv_money_is_exact_decimals(session, people, report):
    """Stored sums carry binary noise (3684065.2200000025); money in a file is exact."""
    _, snapshot = report
    arms = [
        dict(a, start_mrr=3684065.2200000025, end_mrr=0.1 + 0.2) for a in snapshot.result["arms"]
    ]
    snapshot.result = {**snapshot.result, "arms": arms}
    session.add(snapshot)
    session.commit()
    text = export_experiment(session, people["viewer"], "seat-nudge", "csv", now=NOW).body.decode()
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["start_mrr"], row["control_start_mrr"]) == ("3684065.22", "3684065.22")
    assert (row["end_mrr"], row["control_end_mrr"]) == ("0.30", "0.30")
    assert "3684065.2200000025" not in text


# ------------------------------------------------------------------ HTML


def test_html_is_self_contained_printable_and_escaped(session, people, report):
    _, snapshot = report
    text = export_experiment(session, people["viewer"], "seat-nudge", "html", now=NOW).body.decode()
    page = assert_self_contained(text)
    visible = "".join(page.text)
    assert XSS in visible  # shown as text …
    assert "<script" not in text and "<img" not in text  # … never as markup
    assert "img" not in page.tags
    uplift = figures(snapshot)["treatment"]["uplift_abs"]
    assert f"{uplift * 100:+.2f} pts" in visible
    assert snapshot.result["dataset"]["sha256"] in visible
    assert "Amendments" in visible and "Finance" in visible
    assert "2026-11-23 12:00 UTC" in visible  # computed at


def test_forest_plot_draws_each_comparison(session, people, report):
    text = export_experiment(session, people["viewer"], "seat-nudge", "html", now=NOW).body.decode()
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert svg.count('class="point') == 1 and 'class="ci' in svg and 'class="mde"' in svg
    assert "<title>" in svg and "<desc>" in svg and "xmlns" not in svg


# ------------------------------------------------------------------ the reproduce bundle


#: Runs reproduce.py where nothing but the standard library, numpy, scipy and the
#: bundle's own ``stats/`` can be imported, then says which ``stats`` it used.
_ONLY_NUMPY_AND_SCIPY = """
import importlib.abc, runpy, sys
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "scipy", "stats"}
class OnlyNumpyAndScipy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top not in ALLOWED and not top.startswith("_"):  # "_": interpreter internals
            raise ModuleNotFoundError(f"not installed here: {name}")
        return None
sys.meta_path.insert(0, OnlyNumpyAndScipy())
script = sys.argv[1]
sys.argv = [script]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as done:
    code = done.code
else:
    code = 0
print("stats from", sys.modules["stats"].__file__)
sys.exit(code)
"""


def _run_bundle(body: bytes, tmp_path: Path) -> tuple[str, Path]:
    archive = zipfile.ZipFile(io.BytesIO(body))
    archive.extractall(tmp_path)
    script = next(tmp_path.rglob("reproduce.py"))
    # Isolated mode (-I), no PYTHONPATH, run from the bundle's folder: what a reader who
    # only installed numpy and scipy gets (issue 14 item 5).
    result = subprocess.run(
        [sys.executable, "-I", "-c", _ONLY_NUMPY_AND_SCIPY, str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    used = result.stdout.rsplit("stats from ", 1)[1].strip()
    assert Path(used).resolve().is_relative_to(script.parent.resolve()), used
    return result.stdout, script.parent


def test_the_reproduce_bundle_recomputes_the_same_uplift(session, people, report, tmp_path):
    _, snapshot = report
    export = export_experiment(session, people["viewer"], "seat-nudge", "zip", now=NOW)
    assert export.filename == "nrr-seat-nudge-2026-11-26.zip"
    names = zipfile.ZipFile(io.BytesIO(export.body)).namelist()
    folder = "nrr-seat-nudge-2026-11-26"
    assert {
        f"{folder}/{n}"
        for n in (
            "accounts.csv",
            "reproduce.py",
            "expected.json",
            "README.txt",
            "report.json",
            "report.html",
        )
    } <= set(names)
    stdout, where = _run_bundle(export.body, tmp_path)
    match = re.search(r"comparison treatment: uplift_abs=(\S+) ", stdout)
    assert match, stdout
    assert float(match.group(1)) == pytest.approx(
        figures(snapshot)["treatment"]["uplift_abs"], rel=1e-9
    )
    assert "MATCHES the report" in stdout
    # Money went back to exact decimals.
    with (where / "accounts.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cents = session.exec(select(AccountRow.start_cents).order_by(AccountRow.id)).all()
    assert [r["start_mrr"] for r in rows] == [cents_text(c) for c in cents]
    assert len(rows) == 600


def test_the_bundle_quotes_hostile_text_reversibly(session, people, hostile, tmp_path):
    _, _snapshot = hostile
    export = export_experiment(session, people["admin"], "hostile", "zip", now=NOW)
    stdout, where = _run_bundle(export.body, tmp_path)
    assert "MATCHES the report" in stdout
    assert f"comparison {HOSTILE['treatment']}: uplift_abs=" in stdout
    with (where / "accounts.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for name in ("account_id", "variant", "segment"):
            assert not row[name].startswith(FORMULA_CHARS), row
    assert [r["account_id"] for r in rows[:7]] == [
        "'=1+2",
        "'-3",
        "'+4",
        "'@5",
        "'\t6",
        "'\r7",
        "''8",
    ]


def test_cents_text_is_exact():
    assert cents_text(12345) == "123.45" and cents_text(5) == "0.05" and cents_text(100) == "1.00"
    assert cents_text(-250) == "-2.50" and cents_text(10**15 + 1) == "10000000000000.01"


# ------------------------------------------------------------------ audit and access


@pytest.mark.parametrize("fmt", ["json", "csv", "md", "html", "zip"])
def test_every_export_is_audited(session, people, report, fmt):
    export_experiment(session, people["viewer"], "seat-nudge", fmt, now=NOW, ip="10.0.0.1")
    session.commit()
    event = session.exec(select(AuditEvent).where(AuditEvent.action == f"export.{fmt}")).one()
    assert event.actor_id == people["viewer"].id and event.entity_id == "seat-nudge"
    assert event.diff["format"] == [None, fmt] and event.ip == "10.0.0.1"


def test_another_teams_experiment_and_unknown_formats_are_not_found(session, people, report):
    with pytest.raises(NotFound):
        export_experiment(session, people["outsider"], "seat-nudge", "json", now=NOW)
    with pytest.raises(NotFound):
        export_experiment(session, people["admin"], "seat-nudge", "pdf", now=NOW)
    with pytest.raises(NotFound):
        export_experiment(session, people["admin"], "no-such-key", "json", now=NOW)
    assert session.exec(select(AuditEvent).where(AuditEvent.action.like("export.%"))).all() == []


# ------------------------------------------------------------------ the review export


@pytest.fixture
def week_scenario(session, factory, cleanup):
    owner = factory.user("owner@exports.test", "viewer", {"growth": "experimenter"})
    return build_scenario(session, parse_week("2026-W48"), owner=owner)


def _note_item(session, week: str, experiment_id: int, **fields) -> None:
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).one()
    item = session.exec(
        select(ReviewItem).where(
            ReviewItem.meeting_id == meeting.id, ReviewItem.experiment_id == experiment_id
        )
    ).one()
    for name, value in fields.items():
        setattr(item, name, value)
    session.add(item)
    session.commit()


def test_review_exports_parse_and_match_the_page(session, people, week_scenario):
    win = week_scenario.experiments["win-late"]
    # One decision record: the item's rationale is the experiment's decision (issue 17).
    decide(session, win, {"decision": "iterate", "rationale": HOSTILE["item_rationale"]},
           actor=people["admin"], source=review_source("2026-W48"), stop_running=True)
    session.commit()
    review = build_review(session, people["admin"], "2026-W48", now=NOW)
    session.commit()
    _note_item(session, "2026-W48", win.id, note=f"{HOSTILE['note']} {XSS}")
    session.add(Action(title=HOSTILE["action"], experiment_id=win.id, team_id=win.team_id,
                       raised_week="2026-W48"))
    session.commit()
    exports = {
        fmt: export_review(session, people["admin"], "2026-W48", fmt, now=NOW)
        for fmt in ("json", "csv", "md", "html", "zip")
    }
    assert exports["json"].filename == "nrr-review-2026-W48-2026-11-26.json"

    document = json.loads(exports["json"].body)
    sections = {
        name: {entry["key"] for entry in document[name]}
        for name in ("needs_decision", "changed", "alerts")
    }
    assert sections == {
        name: {r.key for r in getattr(review, name)}
        for name in ("needs_decision", "changed", "alerts")
    }
    bh = {(p["key"], p["variant"]): p["p_value_bh_portfolio"] for p in document["portfolio"]}
    assert bh == {
        (line["row"].key, line["comparison"]["variant"]): line["p_value_bh"]
        for line in review.portfolio
    }
    win_uplift = week_scenario.snapshots["win-late"][1].result["comparisons"][0]["uplift_abs"]
    assert (
        next(p for p in document["portfolio"] if p["key"] == "win-late")["uplift_abs"] == win_uplift
    )

    rows = list(csv.DictReader(io.StringIO(exports["csv"].body.decode())))
    by_key = {r["experiment_key"]: r for r in rows}
    assert float(by_key["win-late"]["uplift_abs"]) == win_uplift
    assert float(by_key["win-late"]["p_value_bh_portfolio"]) == bh[("win-late", "treatment")]
    assert by_key["win-late"]["item_note"] == "'" + f"{HOSTILE['note']} {XSS}"
    assert by_key["win-late"]["item_actions"] == "'" + HOSTILE["action"] + " (open, no owner)"
    assert [a["title"] for a in document["actions"]] == [HOSTILE["action"]]
    assert by_key["win-late"]["item_decision_rationale"] == "'" + HOSTILE["item_rationale"]
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(FORMULA_CHARS) or is_number(cell), (name, cell)

    markdown = exports["md"].body.decode()
    assert_markdown_tables(markdown)
    assert "Benjamini-Hochberg" in markdown and f"{win_uplift * 100:+.2f} pts" in markdown

    html = exports["html"].body.decode()
    page = assert_self_contained(html)
    visible = "".join(page.text)
    assert XSS in visible and "<script>" not in html
    assert "Benjamini-Hochberg" in visible and "Driver tree summary" in visible
    assert html.count('<section class="experiment') == len(
        {p["key"] for p in document["portfolio"]} | set(document["items"])
    )

    names = zipfile.ZipFile(io.BytesIO(exports["zip"].body)).namelist()
    folder = "nrr-review-2026-W48-2026-11-26"
    assert f"{folder}/review.json" in names and f"{folder}/review.html" in names
    # Scenario snapshots have no account rows: each experiment folder says so.
    assert f"{folder}/win-late/README.txt" in names
    events = session.exec(select(AuditEvent.action).where(AuditEvent.action.like("export.%"))).all()
    assert sorted(events) == ["export.csv", "export.html", "export.json", "export.md", "export.zip"]


def test_review_export_for_a_branch_and_a_range(session, people, week_scenario):
    churn = week_scenario.nodes["Churn"].id
    export = export_review(session, people["admin"], "2026-W48", "json", branch_id=churn, now=NOW)
    assert export.filename == f"nrr-review-2026-W48-branch-{churn}-2026-11-26.json"
    document = json.loads(export.body)
    assert {r["experiment"]["key"] for r in document["experiments"]} == {
        "stopped-undecided",
        "amended",
        "other-team",
    }
    ranged = export_review(
        session,
        people["admin"],
        "2026-W48",
        "md",
        date_from="2026-11-09",
        date_to="2026-11-22",
        now=NOW,
    )
    assert ranged.filename == "nrr-review-2026-11-09-to-2026-11-22-2026-11-26.md"
    assert "Review 2026-11-09 to 2026-11-22" in ranged.body.decode()


def test_review_export_hides_other_teams(session, people, week_scenario):
    document = json.loads(
        export_review(session, people["viewer"], "2026-W48", "json", now=NOW).body
    )
    keys = {r["experiment"]["key"] for r in document["experiments"]}
    assert "other-team" not in keys and "win-late" in keys


# ------------------------------------------------------------------ the CLI


def _cli(database_url: str, *args: str):
    from experiments.cli_export import export

    return CliRunner().invoke(
        export, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False
    )


def test_cli_exports_an_experiment_in_every_format(
    session, database_url, report, tmp_path, monkeypatch
):
    _, snapshot = report
    result = _cli(database_url, "experiment", "seat-nudge", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["comparisons"] == snapshot.result["comparisons"]
    out = tmp_path / "report.csv"
    result = _cli(database_url, "experiment", "seat-nudge", "--format", "csv", "--output", str(out))
    assert result.exit_code == 0 and "wrote" in result.stderr
    with out.open(newline="") as handle:
        assert (
            float(next(csv.DictReader(handle))["uplift_abs"])
            == snapshot.result["comparisons"][0]["uplift_abs"]
        )
    for fmt in ("md", "html"):
        result = _cli(database_url, "experiment", "seat-nudge", "--format", fmt)
        assert result.exit_code == 0 and "Seat nudge" in result.stdout
    monkeypatch.chdir(
        tmp_path
    )  # a zip without --output goes to its own name in the working directory
    result = _cli(database_url, "experiment", "seat-nudge", "--format", "zip")
    assert result.exit_code == 0, result.output
    written = list(tmp_path.glob("nrr-seat-nudge-*.zip"))
    assert len(written) == 1 and zipfile.is_zipfile(written[0])
    session.expire_all()
    events = session.exec(select(AuditEvent).where(AuditEvent.action.like("export.%"))).all()
    assert len(events) == 5 and all(
        e.actor_id is None and e.diff["via"] == [None, "cli"] for e in events
    )


def test_cli_exports_a_review(session, database_url, week_scenario, people):
    result = _cli(database_url, "review", "2026-W47", "--format", "md")
    assert result.exit_code == 0, result.output
    assert "# Weekly review 2026-W47" in result.stdout
    assert_markdown_tables(result.stdout)
    churn = week_scenario.nodes["Churn"].id
    result = _cli(database_url, "review", "2026-W47", "--format", "json", "--branch", str(churn))
    keys = {r["experiment"]["key"] for r in json.loads(result.stdout)["experiments"]}
    assert keys == {"stopped-undecided", "amended", "other-team"}
    result = _cli(
        database_url, "review", "2026-W47", "--format", "json", "--as", "viewer@exports.test"
    )
    assert "other-team" not in {
        r["experiment"]["key"] for r in json.loads(result.stdout)["experiments"]
    }
    result = _cli(
        database_url,
        "review",
        "2026-W47",
        "--format",
        "csv",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-15",
    )
    assert result.exit_code == 0 and list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["review", "2026-W60"], "2026 has no ISO week 60"),
        (["review", "next-week"], "week must look like 2026-W48"),
        (["review", "2026-W47", "--from", "soon"], "from: must be a date"),
        (["review", "2026-W47", "--branch", "99999"], "no driver-tree node 99999"),
        (["experiment", "no-such-key"], "no experiment 'no-such-key'"),
        (["experiment", "seat-nudge", "--as", "nobody@exports.test"], "no active user"),
        (
            ["experiment", "seat-nudge", "--as", "outsider@exports.test"],
            "no experiment 'seat-nudge'",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(database_url, report, people, args, message):
    result = _cli(database_url, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.startswith("nrrlab export: ")


def test_cli_unknown_format_is_refused_by_click(database_url):
    result = _cli(database_url, "experiment", "x", "--format", "pdf")
    assert result.exit_code == 2 and "pdf" in result.output


def test_team_fixture_names(session, hostile):
    # The hostile fixture really stored the hostile team name (guards the CSV test's premise).
    assert (
        session.exec(select(Team.name).where(Team.slug == "hostile-team")).one() == HOSTILE["team"]
    )
