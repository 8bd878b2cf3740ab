"""The Mann–Whitney and chi-square checks computed without ``scipy.stats`` (issue 18) agree
with ``scipy.stats`` itself, and ``nrrlab analyze`` no longer imports ``scipy.stats``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from stats.significance import mann_whitney, mann_whitney_p, srm_test

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed", range(40))
def test_mann_whitney_equals_scipy_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(9, 3000, 2)
    if seed % 2:  # heavy ties, as per-account NRR has (churned accounts all at 0)
        a = rng.integers(0, 6, n1) / 4.0
        b = rng.integers(0, 7, n2) / 4.0
    else:
        a = rng.lognormal(0.0, 0.5, n1)
        b = rng.lognormal(0.05, 0.5, n2)
    ours = mann_whitney(a, b)
    theirs = scipy.stats.mannwhitneyu(a, b, alternative="two-sided")
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-10, abs=1e-300)
    assert ours.prob_superiority == pytest.approx(theirs.statistic / (n1 * n2), rel=1e-12)
    assert mann_whitney_p(a, b) == ours.p_value


def test_mann_whitney_edge_cases_match_scipy():
    same = np.ones(30)
    assert mann_whitney(same, np.ones(40)).p_value == scipy.stats.mannwhitneyu(
        same, np.ones(40)).pvalue == 1.0
    apart = mann_whitney(np.arange(50.0), np.arange(100.0, 150.0))
    assert apart.p_value == pytest.approx(
        scipy.stats.mannwhitneyu(np.arange(50.0), np.arange(100.0, 150.0)).pvalue, rel=1e-10)
    assert apart.prob_superiority == 0.0
    # small samples keep scipy's exact distribution
    small = mann_whitney([1.0, 1.1, 0.9, 1.2], [0.5, 0.7, 0.6, 0.8])
    assert small.p_value == pytest.approx(0.0286, abs=1e-4)


@pytest.mark.parametrize("counts", [(480, 520), (5000, 5300, 4900), (10, 30)])
def test_srm_p_value_equals_scipy_chisquare(counts):
    variants = [f"v{i}" for i in range(len(counts))]
    result = srm_test(dict(zip(variants, counts, strict=True)),
                      dict.fromkeys(variants, 1.0))
    total = sum(counts)
    expected = [total / len(counts)] * len(counts)
    assert result.p_value == pytest.approx(
        scipy.stats.chisquare(counts, expected).pvalue, rel=1e-12)


def test_nrrlab_analyze_does_not_import_scipy_stats(tmp_path):
    rng = np.random.default_rng(3)
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"]
    for i in range(400):
        start = round(float(rng.uniform(50, 500)), 2)
        lines.append(f"a{i},{'control' if i % 2 else 'treatment'},{start},"
                     f"{round(start * 0.1, 2) if i % 3 == 0 else 0},0,"
                     f"{start if i % 11 == 0 else 0}")
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join(lines) + "\n")
    code = ("import sys\n"
            "from experiments.cli import main\n"
            f"sys.argv = ['nrrlab', 'analyze', {str(path)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('SCIPY_STATS', 'scipy.stats' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Mann" in done.stdout or "mann" in done.stdout.lower()
    assert done.stdout.strip().endswith("SCIPY_STATS False"), done.stdout[-500:]
