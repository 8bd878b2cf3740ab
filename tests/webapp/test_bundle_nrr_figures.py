"""The reproduce bundle re-derives the DESIGN §4b lever figures, logo churn, expansion
incidence and guardrails from its accounts.csv with numpy and scipy alone, and they equal
the stored ones.

A generated account file (three arms: one treatment raises churn, the other has no
contraction at all) goes through the real upload; the stored snapshot's figures come from
the SQL sums of ``experiments/datasets.py`` and ``stats/levers.py``. The bundle's script
runs in a subprocess where only the standard library, numpy, scipy and the bundle's own
folder can be imported (the runner of ``tests/experiments/test_exports.py``); its printed
numbers are compared with the stored snapshot. A report whose lever figure was altered is
said to differ, with exit status 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot, Experiment
from tests.experiments.test_exports import _ONLY_NUMPY_AND_SCIPY, _run_bundle
from tests.webapp.test_results import make_experiment, upload

ARMS = ("control", "churny", "steady")
GUARDRAILS = [{"metric": "grr", "margin": 0.01}, {"metric": "logo_churn", "margin": 0.02}]


@pytest.fixture
def analyst(login_as):
    return login_as("viewer", teams={"growth": "analyst"})


def accounts_csv(seed: int = 2026, n: int = 260) -> bytes:
    """Three arms; ``churny`` churns about three times as often, ``steady`` never contracts."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["account_id", "variant", "start_mrr", "expansion_mrr", "contraction_mrr",
                     "churned_mrr"])
    for arm, p_churn, p_contract in (("control", 0.05, 0.1), ("churny", 0.15, 0.1),
                                     ("steady", 0.05, 0.0)):
        for i in range(n):
            start = round(float(np.exp(rng.normal(np.log(500), 0.7))), 2)
            churned = start if rng.random() < p_churn else 0.0
            contraction = round(start * float(rng.uniform(0.05, 0.5)), 2) \
                if not churned and rng.random() < p_contract else 0.0
            expansion = round(start * float(rng.uniform(0.05, 0.6)), 2) \
                if not churned and rng.random() < 0.3 else 0.0
            writer.writerow([f"{arm}-{i:04d}", arm, f"{start:.2f}", f"{expansion:.2f}",
                             f"{contraction:.2f}", f"{churned:.2f}"])
    return out.getvalue().encode()


def uploaded(analyst, db_engine, key: str) -> dict:
    experiment = make_experiment(db_engine, key, variants=ARMS)
    with Session(db_engine) as session:
        row = session.get(Experiment, experiment.id)
        row.guardrails = GUARDRAILS
        session.add(row)
        session.commit()
    response = upload(analyst, experiment.key, accounts_csv())
    assert response.status_code in (200, 303), response.status_code
    with Session(db_engine) as session:
        return session.exec(select(AnalysisSnapshot.result).where(
            AnalysisSnapshot.experiment_id == experiment.id)).one()


def bundle_of(analyst, key: str) -> bytes:
    response = analyst.get(f"/experiments/{key}/export.zip")
    assert response.status_code == 200, response.status_code
    return response.get_data()


def printed(stdout: str) -> dict[tuple[str, str], dict[str, float | None]]:
    """``{(variant, figure): {key: value}}`` from the script's re-derived lines."""
    found = {}
    for variant, label, cells in re.findall(
            r"^  (\S+) ((?:lever |guardrail )?\w+): (.*?) "
            r"(?:same|DIFFERENT|\(not in the report\))$", stdout, flags=re.M):
        found[(variant, label)] = {k: value(v) for k, v in re.findall(r"(\w+)=(\S+)", cells)}
    return found


def value(text: str) -> float | str | None:
    if text == "None":
        return None
    return text.strip("'") if text.startswith("'") else float(text)


def test_the_bundle_rederives_levers_and_logo_churn_equal_to_the_stored(
        analyst, db_engine, tmp_path):
    report = uploaded(analyst, db_engine, "bundle-levers")
    stdout, where = _run_bundle(bundle_of(analyst, "bundle-levers"), tmp_path)
    assert "MATCHES the report" in stdout, stdout
    assert "DIFFERENT" not in stdout and "not in the report" not in stdout, stdout
    figures = printed(stdout)
    # two treatments × (four levers, two shares, two guardrails)
    assert len(figures) == 2 * 8, stdout
    for comparison in report["comparisons"]:
        variant = comparison["variant"]
        for lever, stored in comparison["levers"].items():
            mine = figures[(variant, f"lever {lever}")]
            for key in ("control", "treatment", "uplift_abs", "p_value"):
                assert mine[key] == pytest.approx(stored[key], rel=1e-9, abs=1e-15), \
                    (variant, lever, key)
            assert [mine["ci_low"], mine["ci_high"]] == pytest.approx(
                stored["ci_abs"], rel=1e-9), (variant, lever)
        for name in ("logo_churn", "expansion_incidence"):
            mine, stored = figures[(variant, name)], comparison[name]
            for key in ("control", "treatment", "diff", "p_value"):
                assert mine[key] == pytest.approx(stored[key], rel=1e-9, abs=1e-15), \
                    (variant, name, key)
        for stored in comparison["guardrails"]:
            mine = figures[(variant, f"guardrail {stored['metric']}")]
            assert mine["status"] == stored["status"], (variant, stored)
            for key in ("diff", "p_value"):
                assert mine[key] == pytest.approx(stored[key], rel=1e-9, abs=1e-15), \
                    (variant, stored["metric"], key)
    # the churn-raising arm fails the logo-churn guardrail, the steady one passes it
    assert figures[("churny", "guardrail logo_churn")]["status"] == "fail"
    assert figures[("steady", "guardrail logo_churn")]["status"] != "fail"
    # what a user notices: the churn-raising arm loses about three times the logos, and
    # its lost share is the bundled file's own count
    with (where / "accounts.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lost = {arm: np.mean([r["churned_mrr"] == r["start_mrr"] for r in rows
                          if r["variant"] == arm]) for arm in ARMS}
    assert figures[("churny", "logo_churn")]["treatment"] == pytest.approx(lost["churny"])
    assert figures[("churny", "logo_churn")]["control"] == pytest.approx(lost["control"])
    assert lost["churny"] > 2 * lost["control"]
    # the arm with no contraction at all: a rate of 0 on its side, still an interval
    steady = figures[("steady", "lever contraction")]
    assert steady["treatment"] == 0.0 and steady["ci_low"] is not None


def test_an_altered_lever_in_the_report_is_said_to_differ(analyst, db_engine, tmp_path):
    uploaded(analyst, db_engine, "bundle-altered")
    archive = zipfile.ZipFile(io.BytesIO(bundle_of(analyst, "bundle-altered")))
    archive.extractall(tmp_path)
    script = next(tmp_path.rglob("reproduce.py"))
    expected_path = script.parent / "expected.json"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    churn = expected["comparisons"][0]["levers"]["churn"]
    churn["treatment"] += 0.001  # a tenth of a point: small, but not the data's
    expected_path.write_text(json.dumps(expected), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", "-c", _ONLY_NUMPY_AND_SCIPY, str(script)],
        cwd=script.parent, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
        timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    variant = expected["comparisons"][0]["variant"]
    line = next(x for x in result.stdout.splitlines()
                if x.startswith(f"  {variant} lever churn:"))
    assert line.endswith("DIFFERENT")
    assert "DIFFERS from the report" in result.stdout
