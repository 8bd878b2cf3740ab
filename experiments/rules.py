"""The rules every rendering of an experiment shares: its headline verdict and the
projection of its enrolment. The results page (:mod:`experiments.analysis`), the experiment
document (:mod:`experiments.documents`) and the weekly review call these and nothing else.

The headline verdict is ``srm`` when the sample-ratio check flags, otherwise the most
decisive verdict among the treatments, in the order win > loss > underpowered >
inconclusive: one winning treatment is what a reader has to act on, and an underpowered
one means "keep collecting" even if another arm is merely inconclusive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from experiments.review_weeks import aware
from stats import ExperimentResult

#: Headline verdict priority, most decisive first (see the module docstring).
HEADLINE_ORDER: tuple[str, ...] = ("srm", "win", "loss", "underpowered", "inconclusive")


def headline_of(srm_flag: bool, verdicts: Iterable[str | None]) -> str | None:
    """The one headline rule: ``srm`` when flagged, else the most decisive of ``verdicts``.

    ``None`` when there is no comparison (see :data:`HEADLINE_ORDER`).
    """
    if srm_flag:
        return "srm"
    present = set(verdicts)
    return next((v for v in HEADLINE_ORDER if v in present), None)


def headline_verdict(result: ExperimentResult) -> str | None:
    """:func:`headline_of` for a computed result."""
    return headline_of(result.srm.flag, (c.verdict for c in result.comparisons))


def stored_headline_verdict(report: Mapping[str, Any] | None) -> str | None:
    """:func:`headline_of` for a stored DESIGN §4 report (a snapshot's ``result``)."""
    if not report:
        return None
    srm = report.get("srm") if isinstance(report.get("srm"), Mapping) else {}
    comparisons = [c for c in report.get("comparisons") or [] if isinstance(c, Mapping)]
    return headline_of(bool(srm.get("flag")), (c.get("verdict") for c in comparisons))


#: A projection further out than this many days is no projection at all.
MAX_PROJECTION_DAYS = 3650


@dataclass(frozen=True)
class Projection:
    """Where enrolment is heading at the dated rate (see :func:`project_enrolment`)."""

    rate_per_day: float
    expected_date: date | None  # when the smallest arm reaches the required n
    projected: int | None  # accounts in the smallest arm by the planned end, if one is set
    reaches: bool | None  # whether ``projected`` reaches the required n


#: Why no date is projected when enrolment is not dated (shown by the page and the review).
UNDATED_ENROLMENT = ("unknown: the data arrived in one upload, so there is no dated "
                     "enrolment to project from (a later upload dates it)")


def project_enrolment(*, earlier_at: datetime | None, earlier_smallest: int | None,
                      observed_at: datetime | None, smallest: int | None,
                      required: int | None, planned_end: date | None = None
                      ) -> Projection | None:
    """The one enrolment projection, for the results page and the weekly review.

    Only dated enrolment is projected (issue 13 item 10): the rate is the smallest arm's
    growth between two uploads, ``earlier_smallest`` accounts at ``earlier_at`` and
    ``smallest`` at ``observed_at``, over the exact time between them. A single upload
    carries no dates (a whole CSV arriving at once says nothing about when its accounts
    enrolled), so without an earlier upload the answer is ``None``: the date is unknown
    (:data:`UNDATED_ENROLMENT`). ``None`` too once the required n is reached, or when the
    uploads are not in order.
    """
    earlier, observed = aware(earlier_at), aware(observed_at)
    if earlier is None or observed is None or earlier_smallest is None or smallest is None:
        return None
    if not required or smallest >= required:
        return None
    days = (observed - earlier).total_seconds() / 86400
    if days <= 0:
        return None
    rate = max(smallest - earlier_smallest, 0) / days
    expected = None
    if rate > 0:
        days_needed = (required - smallest) / rate
        if days_needed <= MAX_PROJECTION_DAYS:
            expected = (observed + timedelta(days=days_needed)).date()
    projected = reaches = None
    if planned_end is not None:
        end = datetime.combine(planned_end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        days_left = max((end - observed).total_seconds() / 86400, 0.0)
        projected = int(smallest + rate * days_left)
        reaches = projected >= required
    return Projection(rate, expected, projected, reaches)
