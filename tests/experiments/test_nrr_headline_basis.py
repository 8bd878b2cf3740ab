"""The dashboard headline holds only a trailing-twelve-month figure to the tree's (TTM)
targets: before the 12th period it shows a monthly NRR, which no target gap is drawn for."""

from experiments.nrr_page import Headline, Targets


def _headline(basis: str) -> Headline:
    return Headline("2026-10", basis, 1.01, 0.97, Targets(nrr=1.08, grr=0.95), trend=None)


def test_a_monthly_headline_is_not_measured_against_the_ttm_target():
    monthly = _headline("monthly")
    assert not monthly.ttm and monthly.nrr_gap == "" and monthly.grr_gap == ""


def test_a_ttm_headline_says_its_gap_to_target():
    ttm = _headline("trailing twelve months")
    assert ttm.ttm and "short of the target of 108.0%" in ttm.nrr_gap
    assert "above the target of 95.0%" in ttm.grr_gap
