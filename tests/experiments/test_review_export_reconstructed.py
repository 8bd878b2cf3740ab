"""A past week's review exports say when its driver-tree actuals were reconstructed (H5).

A week frozen before the tree summary was kept (experiments.review_tree) shows today's
actuals, dated by the week's point in time, and its page and JSON mark them as a
reconstruction. The Markdown and printable HTML exports carry the same mark (and the
ZIP bundle, which holds both); a week whose copy was kept while it ran exports as before.
The review CSV has one row per comparison and none of the tree's figures, so it has no
mark and is the same either way.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete

from experiments.exports import export_review
from experiments.review import build_review
from experiments.review_models import ReviewTreeSeen
from experiments.tree_actuals import record_actual
from tests.experiments.test_review_tree_kept import correct
from tests.factories import make_experiment, make_node, make_user

pytestmark = pytest.mark.db

WEEK = "2026-W47"  # Monday 16 to Sunday 22 November 2026
DURING = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the meeting looks at the running week
FIRST_VIEW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)  # a past week's first view, no copy
AFTER = datetime(2026, 12, 10, 12, tzinfo=UTC)  # the export
MARK = ("This week kept no copy of its tree actuals while it ran, so these were "
        "reconstructed from the actuals and revenue ledger as they stood on "
        "2026-12-03 09:30 UTC, and kept from then on.")
HEADER = "driver-tree actuals reconstructed later"


@pytest.fixture
def ana(session):
    ana = make_user(session, "ana@example.com", "admin")
    session.commit()
    return ana


@pytest.fixture
def seats(session, ana):
    """A hand-entered node with an actual of 2.5 on the week's Monday, an experiment, and
    the meeting's view of the running week (which keeps the tree copy)."""
    node = make_node(session, "Seats per account", baseline=2.0, target=3.0)
    make_experiment(session, "nudge", node=node, started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                    created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    session.commit()
    record_actual(session, node, {"measured_on": "2026-11-16", "value": "2.5"}, actor=ana)
    session.commit()
    build_review(session, ana, WEEK, now=DURING)
    session.commit()
    return node


def exports(session, user) -> dict[str, str]:
    files = {fmt: export_review(session, user, WEEK, fmt, now=AFTER).body
             for fmt in ("json", "csv", "md", "html", "zip")}
    session.commit()
    bundle = zipfile.ZipFile(io.BytesIO(files.pop("zip")))
    folder = bundle.namelist()[0].split("/")[0]
    return {**{fmt: body.decode() for fmt, body in files.items()},
            "zip.md": bundle.read(f"{folder}/review.md").decode(),
            "zip.html": bundle.read(f"{folder}/review.html").decode(),
            "zip.csv": bundle.read(f"{folder}/review.csv").decode()}


def reconstruct(session, node, ana) -> None:
    """As a week frozen before copies were kept: no copy, and a correction since."""
    session.exec(delete(ReviewTreeSeen))
    session.commit()
    correct(session, node, "2.9", ana)
    build_review(session, ana, WEEK, now=FIRST_VIEW)  # the first view keeps the reconstruction
    session.commit()


def test_every_export_of_a_reconstructed_week_says_so(session, ana, seats):
    kept = exports(session, ana)
    reconstruct(session, seats, ana)
    rebuilt = exports(session, ana)

    assert json.loads(rebuilt["json"])["driver_tree_actuals_kept"]["reconstructed"] is True
    for fmt in ("md", "zip.md"):
        text = rebuilt[fmt]
        assert f"**Reconstructed:** {MARK}" in text
        summary = text[text.index("## Driver tree summary"):text.index("## Revenue impact")]
        assert "| Seats per account |" in summary and "| 2.9 |" in summary
        assert MARK in summary  # beside the figures it is about
        assert HEADER in text.splitlines()[2]  # and under the title, beside "as the meeting saw it"
    for fmt in ("html", "zip.html"):
        text = rebuilt[fmt]
        assert (f'<p class="alert" id="tree-actuals-reconstructed"><strong>Reconstructed:'
                f'</strong> {MARK}') in text
        assert text.index("<h3>Actuals against target</h3>") \
            < text.index('id="tree-actuals-reconstructed"') \
            < text.index("<h2>Revenue impact of this quarter's ships</h2>")
        assert f"(as the meeting saw it); {HEADER}" in text
    # The CSV has no tree figures (one row per comparison): nothing to mark, nothing moved.
    assert rebuilt["csv"] == kept["csv"] == rebuilt["zip.csv"]
    header = next(csv.reader(io.StringIO(rebuilt["csv"])))
    assert not [c for c in header if "tree" in c or "actual" in c or "impact" in c]


def test_a_week_whose_copy_was_kept_carries_no_mark(session, ana, seats):
    files = exports(session, ana)
    for fmt in ("md", "zip.md", "html", "zip.html", "csv"):
        assert "Reconstructed" not in files[fmt] and "reconstructed" not in files[fmt]
        assert HEADER not in files[fmt]
    assert "(as the meeting saw it); exported" in files["md"]
    assert json.loads(files["json"])["driver_tree_actuals_kept"]["reconstructed"] is False
    # A correction after the week changes nothing in them (the kept copy is shown).
    correct(session, seats, "2.9", ana)
    assert exports(session, ana) == files


def test_a_running_week_carries_no_mark(session, ana, seats):
    """The running week is today's figures by design: no copy yet is not a reconstruction."""
    session.exec(delete(ReviewTreeSeen))
    session.commit()
    for fmt in ("md", "html"):
        body = export_review(session, ana, WEEK, fmt, now=DURING).body.decode()
        assert "econstructed" not in body
