"""What a first-time user trips over (issue 14), the remaining points seen in the browser:
one owner rule on the tree and on registration, with the branch's team and owner as the
experiment's defaults (item 2); exports that are Markdown, exact money and a reproduce
bundle that runs with a bare interpreter (item 5); σ with its source beside the sample
size and a Mann–Whitney line per comparison (item 8)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

from playwright.sync_api import expect

from experiments.demo import Behaviour
from tests.e2e.conftest import screenshot
from tests.e2e.pages import WIN, accounts_csv, fill_new_experiment
from tests.experiments.test_exports import _ONLY_NUMPY_AND_SCIPY

HOSTILE = "[x](javascript:alert(1)) & <b>bold</b>"
MONEY = re.compile(r"^-?\d+(\.\d{1,2})?$")


def _node(page, name: str):
    return page.locator("article.node", has=page.locator("strong", has_text=re.compile(
        rf"^{re.escape(name)}$")))


def test_one_owner_rule_and_the_branch_lends_its_team_and_owner(admin_page, server):
    page = admin_page
    page.goto(f"{server}/tree/")
    page.get_by_role("navigation", name="Actions for Expansion").get_by_role(
        "link", name="Add child"
    ).click()
    add = page.get_by_role("form", name="Add a node under Expansion")
    add.get_by_label("Name").fill("E2E analyst-owned driver")
    add.get_by_label("Team").select_option(label="Growth")
    # someone outside Growth is refused as owner on the tree, as on registration
    add.get_by_label("Owner").select_option(label="Jonas Berg")
    page.problems.allow_status(422)
    add.get_by_role("button", name="Add node").click()
    expect(add).to_contain_text("the owner must be a member of the node's team")
    # Priya is an analyst of Growth: a member, so she may own the driver ...
    add.get_by_label("Owner").select_option(label="Priya Raman")
    add.get_by_role("button", name="Add node").click()
    node = _node(page, "E2E analyst-owned driver")
    expect(node.get_by_role("status")).to_have_text("Saved")
    expect(node).to_contain_text("Priya Raman")
    name_id = node.locator("strong").first.get_attribute("id")
    node_id = re.fullmatch(r"node-(\d+)-name", name_id or "").group(1)

    # ... and "new experiment" from that driver takes its team and owner
    page.goto(f"{server}/experiments/new?node_id={node_id}")
    expect(page.locator("#node_id option:checked")).to_contain_text("E2E analyst-owned driver")
    expect(page.locator("#team_id option:checked")).to_have_text("Growth")
    expect(page.locator("#owner_id option:checked")).to_have_text("Priya Raman")
    fill_new_experiment(
        page, key="e2e-owner-rule", name="E2E owner rule", node="E2E analyst-owned driver",
        stage="Customer lifecycle · adoption", treatment="treatment",
    )
    screenshot(page, "owner-rule-new-experiment")
    page.get_by_role("button", name="Register draft").click()
    page.wait_for_url(re.compile(r"/experiments/e2e-owner-rule$"))
    assert "must be a member" not in page.content()
    details = page.locator("main")
    expect(details).to_contain_text("Priya Raman")
    expect(details).to_contain_text("Growth")
    screenshot(page, "owner-rule-registered")


def _experiment_with_data(page, server, tmp_path, key: str) -> None:
    """A running experiment with a hostile hypothesis and 2 × 400 accounts of data."""
    page.goto(f"{server}/experiments/new")
    fill_new_experiment(
        page, key=key, name=f"E2E {key}", node="Adoption",
        stage="Customer lifecycle · adoption", treatment="treatment",
        hypothesis=f"If we show the upgrade prompt {HOSTILE}, then NRR rises by 2 points "
        "because more accounts expand.",
    )
    page.get_by_role("button", name="Register draft").click()
    page.wait_for_url(re.compile(rf"/experiments/{re.escape(key)}$"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start experiment").click()
    expect(page.locator("h1 .badge.status-running")).to_have_text("running")
    data = accounts_csv(
        tmp_path, f"{key}.csv", {"control": (400, Behaviour()), "treatment": (400, WIN)}, seed=14
    )
    page.get_by_label("Account CSV").set_input_files(data)
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator(".upload .alert-success")).to_contain_text(
        "as dataset version 1 (800 accounts)", timeout=60_000
    )


def _download(page, name: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("navigation", name="Uplift report").get_by_role(
            "link", name=name
        ).click()
    path = info.value.path()
    with open(path, "rb") as handle:
        return handle.read()


def test_exports_are_markdown_exact_money_and_a_bundle_that_runs(admin_page, server, tmp_path):
    page = admin_page
    key = "e2e-exports"
    _experiment_with_data(page, server, tmp_path, key)
    page.goto(f"{server}/experiments/{key}")
    expect(page.locator("main")).to_contain_text(HOSTILE)
    screenshot(page, "exports-experiment")

    markdown = _download(page, "Markdown").decode("utf-8")
    assert "&amp;" not in markdown and "&lt;" not in markdown and "&gt;" not in markdown
    # the user's text is escaped as Markdown: no live link, no raw tag
    assert "[x](javascript:alert(1))" not in markdown, markdown
    assert "<b>" not in markdown, markdown
    assert "\\[x\\]" in markdown, markdown
    line = next(x for x in markdown.splitlines() if "upgrade prompt" in x)
    # CommonMark backslash escapes: they render as the characters the user typed
    assert " \\& \\<b\\>bold\\</b\\>" in line, line

    table = _download(page, "CSV").decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["variant"] for r in rows] == ["treatment"], table[:2000]
    row = rows[0]
    money = [name for name in row if name.endswith("_mrr")]
    assert {"start_mrr", "end_mrr", "control_start_mrr", "control_end_mrr"} <= set(money)
    noisy = {name: row[name] for name in money if not MONEY.match(row[name])}
    assert noisy == {}, f"money cells that are not exact decimals: {noisy}"
    # the totals are the uploaded file's, summed exactly
    with (tmp_path / f"{key}.csv").open(encoding="utf-8", newline="") as handle:
        uploaded = list(csv.DictReader(handle))
    for arm, prefix in (("treatment", ""), ("control", "control_")):
        start = sum(Decimal(r["start_mrr"]) for r in uploaded if r["variant"] == arm)
        assert Decimal(row[f"{prefix}start_mrr"]) == start, (arm, row[f"{prefix}start_mrr"])

    bundle = _download(page, "Reproduce bundle (ZIP)")
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(folder)
    script = next(folder.rglob("reproduce.py"))
    # -I and a finder that refuses everything but the standard library, numpy, scipy and
    # the bundle's own stats/: the venv's editable install must not lend the project's code
    done = subprocess.run(
        [sys.executable, "-I", "-c", _ONLY_NUMPY_AND_SCIPY, str(script)],
        cwd=script.parent, capture_output=True,
        text=True, env={"PATH": "/usr/bin:/bin"}, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MATCHES the report" in done.stdout, done.stdout
    used = Path(done.stdout.rsplit("stats from ", 1)[1].strip()).resolve()
    assert used.is_relative_to(script.parent.resolve()), used


def test_results_show_sigma_with_its_source_and_a_mann_whitney_line(admin_page, server):
    page = admin_page
    page.goto(f"{server}/experiments/seat-limit-nudge")
    sample = page.locator(".progress-block")
    expect(sample.get_by_role("heading", name="Sample size")).to_be_visible()
    expect(sample.locator("progress").first).to_be_visible()
    note = sample.locator(".hint").first.inner_text()
    assert re.search(
        r"σ\s*(=\s*[\d.]+)?[^.]*\b(measured|assumed|estimated|given|history|historical)\b",
        note,
    ), note
    tested = page.locator(".inference-list")
    expect(page.get_by_role("heading", name="How each comparison was tested")).to_be_visible()
    items = tested.get_by_role("listitem")
    assert items.count() >= 1
    first = items.first.inner_text()
    assert re.search(
        r"Mann–Whitney: a \S+ account beats a control account with probability "
        r"\d+(\.\d)?\s?% \((favours \S+|no direction), p [=<] ",
        first,
    ), first
    # Welch's p is 0.94 and Mann–Whitney's 0.017 here: one line says why they disagree
    expect(items.first.locator(".mwu-note")).to_contain_text("NRR did not move detectably")
    sample.scroll_into_view_if_needed()
    screenshot(page, "results-sigma-and-mann-whitney")
