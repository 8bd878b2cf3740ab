"""One experiment, every rendering: the results page, the experiment JSON, the weekly
review (page and JSON export) and every experiment export agree field by field
(issue 11 item 1: one experiment document)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile
from datetime import UTC, datetime

import pytest

from tests.experiments.test_exports import make_experiment

#: Fields that name the moment of a rendering rather than the experiment.
MOMENTS = ("as_of", "exported_at")


def _week_label(day) -> str:
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


@pytest.fixture
def one(session, db_engine, login_as):
    admin = login_as("admin")
    owner = login_as("viewer", teams={"growth": "experimenter"})
    experiment, snapshot = make_experiment(
        session,
        "one-doc",
        name="One document",
        node_name="Expansion",
        driver_name="Seats",
        owner=owner.user,
        status="running",
        lift=0.0,
    )
    yield admin, owner.user, experiment, snapshot
    session.rollback()


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def test_every_rendering_of_one_experiment_agrees(one):
    client, owner, experiment, snapshot = one
    stored = snapshot.result
    (comparison,) = stored["comparisons"]
    owner_label = owner.name or owner.email
    week = _week_label(datetime.now(UTC).date())

    exported = json.loads(client.get("/experiments/one-doc/export.json").get_data())
    api = client.get("/experiments/one-doc.json").get_json()
    archive = zipfile.ZipFile(io.BytesIO(client.get("/experiments/one-doc/export.zip").get_data()))
    zipped = json.loads(
        archive.read(next(n for n in archive.namelist() if n.endswith("/report.json")))
    )
    review = json.loads(client.get(f"/review/{week}/export.json").get_data())
    (in_review,) = [r for r in review["experiments"] if r["experiment"]["key"] == "one-doc"]

    # The JSON renderings are one document: equal but for the moment they were made.
    def document(data):
        return {k: v for k, v in data.items() if k not in (*MOMENTS, "review")}

    assert document(exported) == document(api) == document(zipped) == document(in_review)

    # … and that document says what the database holds (literal names, stored figures).
    info = exported["experiment"]
    assert (info["key"], info["name"], info["status"], info["decision"]) == (
        "one-doc",
        "One document",
        "running",
        None,
    )
    assert info["team"] == {"id": experiment.team_id, "name": "Growth"}
    assert info["branch"]["name"] == "Expansion" and info["driver"]["name"] == "Seats"
    assert info["owner"] == owner_label and info["journey_stage"] is not None
    stage = info["journey_stage"]
    assert exported["dataset"]["version"] == 1 and exported["verdict"] == snapshot.verdict
    (figures,) = exported["comparisons"]
    for name in ("uplift_abs", "ci_abs", "p_value", "p_value_adjusted", "p_value_mwu"):
        assert figures[name] == comparison[name], name

    # CSV: the same fields, flat.
    (row,) = list(
        csv.DictReader(
            io.StringIO(client.get("/experiments/one-doc/export.csv").get_data(as_text=True))
        )
    )
    assert (
        row["experiment_key"],
        row["experiment_name"],
        row["team"],
        row["branch"],
        row["driver"],
        row["journey_stage"],
        row["owner"],
        row["status"],
        row["decision"],
        row["verdict"],
        row["dataset_version"],
    ) == (
        "one-doc",
        "One document",
        "Growth",
        "Expansion",
        "Seats",
        stage,
        owner_label,
        "running",
        "",
        snapshot.verdict,
        "1",
    )
    for name in ("uplift_abs", "p_value", "p_value_adjusted", "p_value_mwu"):
        assert float(row[name]) == comparison[name], name
    assert (float(row["ci_abs_low"]), float(row["ci_abs_high"])) == tuple(comparison["ci_abs"])

    # Markdown and HTML exports: the same words and the same figures, as text.
    uplift = f"{comparison['uplift_abs'] * 100:+.2f} pts"
    low, high = (f"{v * 100:+.2f} pts" for v in comparison["ci_abs"])
    for fmt in ("md", "html"):
        text = _text(client.get(f"/experiments/one-doc/export.{fmt}"))
        if fmt == "md":
            text = text.replace("\\", "")  # Markdown escapes are not part of the words
        for expected in (
            "One document",
            "one-doc",
            "Growth",
            "Expansion",
            "Seats",
            stage,
            owner_label,
            "running",
            snapshot.verdict,
            "v1",
            uplift,
            f"{low} to {high}",
        ):
            assert expected in text, (fmt, expected)

    # The weekly review's page shows the same experiment, verdict and uplift.
    page = _text(client.get(f"/review/{week}"))
    for expected in ("One document", "Expansion", snapshot.verdict, uplift, f"{low} to {high}"):
        assert expected in page, expected

    # The results page: verdict, uplift with its CI, p-values, data version.
    results = _text(client.get("/experiments/one-doc/results"))
    points = f"{comparison['uplift_abs'] * 100:+.2f}"
    assert points in results and snapshot.verdict.capitalize() in results
    assert (
        f"[{comparison['ci_abs'][0] * 100:+.1f}, {comparison['ci_abs'][1] * 100:+.1f}]" in results
    )

    # One enrolment projection, from dated enrolment only: the fixture's data arrived in
    # one upload, so neither the review nor the page projects a date (issue 13 item 10).
    smallest = min(a["accounts"] for a in stored["arms"])
    required = comparison["required_n_per_arm"]
    assert required > smallest  # the fixture's data is still short of the plan
    assert in_review["review"]["projection"] is None
    assert "<time datetime=" not in results.split("Sample size")[-1]
    assert "the data arrived in one upload" in results
