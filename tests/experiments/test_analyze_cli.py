"""`nrrlab analyze`: reports on stdout, bad input → exit 2 with line/column/flag on stderr."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from experiments.cli import main
from tests.helpers import SAMPLES

HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"


def run(*args):
    result = CliRunner().invoke(main, ["analyze", *map(str, args)])
    return result


@pytest.fixture
def two_arm_file(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "accounts.csv"
    lines = [HEADER.strip()]
    for i in range(600):
        variant = "control" if i % 2 == 0 else "treatment"
        start = round(float(np.exp(rng.normal(6, 1))), 2)
        expansion = (
            round(start * 0.3, 2) if rng.random() < (0.3 if variant == "treatment" else 0.15) else 0
        )
        churned = start if rng.random() < 0.05 else 0
        lines.append(f"a{i},{variant},{start:.2f},{expansion:.2f},0,{churned:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_report_matches_an_independent_computation(two_arm_file):
    result = run(two_arm_file)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"alpha", "power", "mde", "control", "srm", "arms", "comparisons"}
    # Independent: per-arm NRR = Σend/Σstart computed here with the csv module.
    sums = {}
    with two_arm_file.open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        start = float(row["start_mrr"])
        end = (
            start
            + float(row["expansion_mrr"])
            - float(row["contraction_mrr"])
            - float(row["churned_mrr"])
        )
        s = sums.setdefault(row["variant"], [0.0, 0.0])
        s[0] += end
        s[1] += start
    nrr = {arm["variant"]: arm["nrr"] for arm in report["arms"]}
    for variant, (end, start) in sums.items():
        assert nrr[variant] == pytest.approx(end / start, rel=1e-12)
    (comparison,) = report["comparisons"]
    assert comparison["uplift_abs"] == pytest.approx(nrr["treatment"] - nrr["control"], rel=1e-12)


def test_csv_format_is_one_row_per_comparison(two_arm_file):
    result = run(two_arm_file, "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1 and rows[0]["variant"] == "treatment"
    assert float(rows[0]["uplift_abs"]) == pytest.approx(
        json.loads(run(two_arm_file).stdout)["comparisons"][0]["uplift_abs"]
    )


def test_markdown_format_is_readable(two_arm_file):
    result = run(two_arm_file, "--format", "md")
    assert result.exit_code == 0
    text = result.stdout
    assert "| variant | accounts |" in text and "## Uplift vs control" in text
    assert "SRM check" in text
    assert "Treatment" in text and "pts" in text


def test_sample_file_analyses(tmp_path):
    result = run(
        SAMPLES / "accounts_example.csv", "--weights", "control=1,treatment=1", "--mde", "0.05"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["mde"] == 0.05


def _bad(tmp_path, body: str, name="bad.csv"):
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "account_id,variant,expansion_mrr\na,control,1\n",
            "line 1: missing required column: start_mrr",
        ),
        (
            HEADER + "a,control,-5,0,0,0\nb,treatment,5,0,0,0\n",
            "line 2, start_mrr: must be greater than 0",
        ),
        (
            HEADER + "a,control,5,abc,0,0\nb,treatment,5,0,0,0\n",
            'line 2, expansion_mrr: "abc" is not a plain number',
        ),
        (
            HEADER + "a,control,5,0,3,3\nb,treatment,5,0,0,0\n",
            "line 2, churned_mrr: contraction_mrr + churned_mrr",
        ),
        (
            HEADER + "a,control,0,0,0,0\nb,treatment,5,0,0,0\n",
            "line 2, start_mrr: must be greater than 0",
        ),
        (
            HEADER + "a,control,5,0,0,0\na,treatment,5,0,0,0\n",
            "line 3, account_id: duplicate of line 2",
        ),
        ("", "the file is empty"),
        (HEADER, "the file has a header but no data rows"),
        (HEADER + "a,control,5,0,0,0\nb,control,5,0,0,0\n", "only one variant"),
    ],
    ids=[
        "missing-column",
        "negative",
        "non-numeric",
        "loss-exceeds-start",
        "start-zero",
        "duplicate",
        "empty",
        "header-only",
        "one-variant",
    ],
)
def test_bad_files_exit_2_with_the_line_and_column(tmp_path, body, expected):
    result = run(_bad(tmp_path, body))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--control", "baseline"], "--control: variant 'baseline' is not in the file"),
        (["--weights", "control=1,treatment"], "--weights: 'treatment' is not variant=weight"),
        (
            ["--weights", "control=1,treatment=x"],
            "--weights: weight of 'treatment' is not a number",
        ),
        (
            ["--weights", "control=1,treatment=0"],
            "--weights: weight of 'treatment' must be a number greater than 0",
        ),
        (["--weights", "control=1,treatment=1,ghost=1"], "--weights: unknown variant(s) ghost"),
        (["--alpha", "0.7"], "alpha"),
        (["--power", "0.3"], "power"),
        (["--mde", "0"], "mde"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(two_arm_file, args, expected):
    result = run(two_arm_file, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert expected in result.stderr, result.stderr


def test_a_10_mb_single_line_is_a_clean_error(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text(HEADER + "a,control," + "9" * (10 * 1024 * 1024) + ",0,0,0\n")
    result = run(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "line 2" in result.stderr


def test_missing_file_is_exit_2(tmp_path):
    result = run(tmp_path / "nope.csv")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_real_process_prints_no_traceback_and_exit_2(tmp_path):
    path = _bad(tmp_path, HEADER + "a,control,-1,0,0,0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "analyze", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"{path}: line 2, start_mrr: must be greater than 0"
    ]


# --- issue 13 -------------------------------------------------------------------------------


def _write(tmp_path, rows, name="issue13.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows))
    return path


def _lognormal_file(tmp_path, sizes, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for variant, n in sizes.items():
        for i in range(n):
            start = round(float(np.exp(rng.normal(6, 0.8))), 2)
            expansion = round(start * 0.2, 2) if rng.random() < 0.2 else 0
            rows.append(f"{variant}-{i},{variant},{start:.2f},{expansion:.2f},0,0\n")
    return _write(tmp_path, rows)


def test_weights_size_each_arm_for_its_allocation(tmp_path):
    from statsmodels.stats.power import TTestIndPower

    path = _lognormal_file(tmp_path, {"control": 900, "treatment": 300})
    result = run(path, "--weights", "control=3,treatment=1", "--sigma", "0.5")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # statsmodels: nobs1 = control, ratio = n_T / n_C = 1/3
    x = TTestIndPower().solve_power(effect_size=0.02 / 0.5, alpha=0.05, power=0.8, ratio=1 / 3)
    n_control = int(np.ceil(x))
    assert report["required_n"] == {
        "control": n_control,
        "treatment": int(np.ceil(round(n_control / 3, 9))),
    }
    assert report["alpha_sizing"] == 0.05 and report["sigma_source"] == "given"
    # the figures: ≈ 21,405 control / 7,135 treatment at the σ that gives 10,701 per arm
    sigma = 0.02 / TTestIndPower().solve_power(nobs1=10_701, alpha=0.05, power=0.8, ratio=1.0)
    result = run(path, "--weights", "control=3,treatment=1", "--sigma", f"{sigma:.10f}")
    sizes = json.loads(result.stdout)["required_n"]
    assert abs(sizes["control"] - 21_405) <= 6 and abs(sizes["treatment"] - 7_135) <= 3
    (comparison,) = json.loads(result.stdout)["comparisons"]
    assert comparison["required_n_per_arm"] == sizes["control"]


@pytest.mark.parametrize("mde", ["2", "1", "0", "-0.02", "nan"])
def test_mde_in_points_is_refused_with_a_hint(two_arm_file, mde):
    result = run(two_arm_file, "--mde", mde)
    assert result.exit_code == 2
    assert "--mde" in result.stderr and "0.02 = 2 points" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("odd", ["Control", "con\x00trol", "contr\u200bol", "CONTROL"])
def test_variant_names_must_match_exactly(tmp_path, odd):
    rows = [f"a{i},{'control' if i % 2 else 'treatment'},100,{i % 7},0,0\n" for i in range(40)]
    rows.append(f'odd,"{odd}",100,0,0,0\n')
    result = run(_write(tmp_path, rows))
    assert result.exit_code == 2, result.stdout
    assert "variant" in result.stderr and "line 42" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_passing_srm_check_reads_as_passed_and_no_p_equals_less_than(two_arm_file, tmp_path):
    result = run(two_arm_file, "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert "SRM check: **passed**" in result.stdout
    assert "= <" not in result.stdout
    skewed = _lognormal_file(tmp_path, {"control": 400, "treatment": 150})
    flagged = run(skewed, "--format", "md")
    assert "Sample-ratio mismatch** (χ² p < 0.0001)" in flagged.stdout
    assert "= <" not in flagged.stdout


def test_summary_sentence_does_not_repeat_its_reason(tmp_path):
    rows = [f"c{i},control,{100 + i},{i % 5},0,0\n" for i in range(30)]
    rows.append("t0,treatment,100,20,0,0\n")
    result = run(_write(tmp_path, rows), "--weights", "control=30,treatment=1", "--format", "md")
    assert result.exit_code == 0, result.stderr
    verdict = result.stdout.split("## Verdict", 1)[1]
    assert "could not be computed: 'treatment' has a single account" in verdict
    assert "not computed: confidence" not in verdict
    assert "**underpowered**" in result.stdout


def test_sequential_flag_adds_always_valid_figures(two_arm_file):
    result = run(two_arm_file, "--sequential", "--tuning", "5000")
    assert result.exit_code == 0, result.stderr
    (comparison,) = json.loads(result.stdout)["comparisons"]
    assert comparison["sequential"]["tuning"] == 5000
    low, high = comparison["sequential"]["ci_abs"]
    raw_low, raw_high = comparison["ci_abs"]
    assert low < raw_low and high > raw_high  # always-valid intervals are wider
    plain = json.loads(run(two_arm_file).stdout)["comparisons"][0]
    assert plain["sequential"] is None
    refused = run(two_arm_file, "--tuning", "5000")
    assert refused.exit_code == 2 and "--tuning only applies with --sequential" in refused.stderr
