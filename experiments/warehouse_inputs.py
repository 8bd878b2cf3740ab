"""The analysis inputs of a warehouse dataset: sums pushed down, stored, read back.

A warehouse dataset (issue 18 item 1) has no account rows in our database: the warehouse
computed the per-``(segment, variant)`` moments, incidence counts and time-to-value
tables, and only those came back. :class:`PushedInputs` holds them in the shapes
:func:`experiments.analysis.refresh_snapshot` reads from SQL for an upload, so both
paths run the same analysis; :func:`stored_inputs` reads them back from
``warehouse_result`` (a recompute after an amendment does not ask the warehouse again).

Per-account values come back only for the rank checks (Mann-Whitney, the small-sample
permutation test), as a bounded random sample. When the whole dataset fits in the
bound, the "sample" is every account and the result is the one an upload of the same
rows gives. Otherwise the figures stay on the sums of all accounts and only the
Mann-Whitney p-value is taken on the sample, with a warning saying so (the permutation
test is for small arms, which always fit in the bound).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, select

from experiments.datasets import (
    AccountRatios,
    ArmExtras,
    ArmSumsRow,
    DatedEnrolment,
    pool_extras,
)
from experiments.models import Dataset
from experiments.warehouse_models import WarehouseResult
from stats import Moments
from stats.significance import mann_whitney
from stats.velocity import TimeTable

#: The ``end`` column as a combination of the account moments' columns.
_END = {"start": 1.0, "expansion": 1.0, "contraction": -1.0, "churned": -1.0}
SAMPLE_NOTE = "p_value_mwu from a random sample"


@dataclass(frozen=True)
class AccountSample:
    """Per-account values read for the rank checks (aligned arrays, currency units)."""

    variant: np.ndarray
    segment: np.ndarray
    end: np.ndarray
    start: np.ndarray
    days_to_value: np.ndarray | None
    #: Accounts the query returned in all (the sample is complete when equal to its size).
    total: int

    @property
    def complete(self) -> bool:
        return len(self.variant) == self.total

    def ratios(self) -> AccountRatios:
        """The sample as the upload path's :class:`AccountRatios` (empty unless complete)."""
        if not self.complete:
            empty = np.empty(0, dtype=object)
            return AccountRatios(empty, empty.copy(), np.empty(0, dtype=np.float64))
        return AccountRatios(
            self.variant, self.segment, self.end / self.start, self.end, self.start,
            self.days_to_value,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "variant": self.variant.tolist(),
            "segment": self.segment.tolist(),
            "end": self.end.tolist(),
            "start": self.start.tolist(),
            "days_to_value": None if self.days_to_value is None else [
                None if d != d else d for d in self.days_to_value.tolist()
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountSample:
        days = data.get("days_to_value")
        return cls(
            np.array(data["variant"], dtype=object),
            np.array(data["segment"], dtype=object),
            np.array(data["end"], dtype=np.float64),
            np.array(data["start"], dtype=np.float64),
            None if days is None else np.array(
                [np.nan if d is None else d for d in days], dtype=np.float64),
            int(data["total"]),
        )


def sums_row(variant: str, moments: Moments) -> ArmSumsRow:
    """One arm's :class:`ArmSumsRow` (x = end, y = start) from its account moments."""
    n = moments.n
    start = moments.total("start")
    end = sum(coef * moments.total(name) for name, coef in _END.items())
    mean_x, mean_y = (end / n, start / n) if n else (0.0, 0.0)
    start_only = {"start": 1.0}
    return ArmSumsRow(
        variant,
        n,
        start,
        moments.total("expansion"),
        moments.total("contraction"),
        moments.total("churned"),
        end,
        start,
        moments.linear_comoment(_END, _END) + n * mean_x * mean_x,
        moments.linear_comoment(start_only, start_only) + n * mean_y * mean_y,
        moments.linear_comoment(_END, start_only) + n * mean_x * mean_y,
    )


@dataclass(frozen=True)
class PushedInputs:
    """What :func:`experiments.analysis.refresh_snapshot` needs, computed in a warehouse.

    ``extras`` and ``times`` are keyed ``(segment, variant)`` with segment ``None``
    unless ``by_segment``; ``sample`` holds the per-account values of the rank checks.
    """

    extras: Mapping[tuple[str | None, str], ArmExtras]
    times: Mapping[tuple[str | None, str], TimeTable]
    sample: AccountSample
    by_segment: bool = False
    #: Enrolment counted by enrolled_on in the warehouse (every account dated): ISO
    #: ``cut`` and ``last`` days and ``{variant: accounts}`` ``now`` and ``before`` the cut
    #: (:func:`experiments.datasets.dated_enrolment`'s inputs); ``None`` otherwise.
    enrolment: Mapping[str, Any] | None = None

    @property
    def sums(self) -> list[ArmSumsRow]:
        """Per-variant sums pooled over the segments, sorted by variant."""
        pooled = pool_extras(dict(self.extras))
        return [sums_row(v, pooled[v].moments) for v in sorted(pooled)]

    @property
    def sums_by_segment(self) -> dict[str | None, list[ArmSumsRow]] | None:
        """``{segment: per-variant sums}`` (``None`` without segments), as the SQL path."""
        if not self.by_segment:
            return None
        out: dict[str | None, list[ArmSumsRow]] = {}
        for (segment, variant), extra in sorted(
            self.extras.items(), key=lambda item: (str(item[0][0]), item[0][1])
        ):
            out.setdefault(segment, []).append(sums_row(variant, extra.moments))
        return out

    @property
    def total(self) -> int:
        return self.sample.total

    def dated_enrolment(self, variants: list[str]) -> DatedEnrolment | None:
        """The smallest planned arm at the last enrolment day and at the window's start."""
        if self.enrolment is None or not variants:
            return None
        now, before = self.enrolment["now"], self.enrolment["before"]
        smallest = min(variants, key=lambda v: now.get(v, 0))
        return DatedEnrolment(
            date.fromisoformat(self.enrolment["cut"]), int(before.get(smallest, 0)),
            date.fromisoformat(self.enrolment["last"]) + timedelta(days=1),
            int(now.get(smallest, 0)),
        )

    def label(self, result):
        """``result`` with the Mann-Whitney check taken on the sample when it is partial.

        A complete sample went into the analysis itself: nothing to change.
        """
        sample = self.sample
        if sample.complete:
            return result
        ratio = sample.end / sample.start
        control = ratio[sample.variant == result.control]
        note = (
            f"{SAMPLE_NOTE}: {len(sample.variant):,} of {sample.total:,} accounts read from "
            "the warehouse (every other figure uses the sums of all accounts)"
        )
        comparisons = []
        for c in result.comparisons:
            test = mann_whitney(ratio[sample.variant == c.variant], control)
            kept = tuple(w for w in c.warnings if not w.startswith("p_value_mwu not computed"))
            comparisons.append(replace(
                c,
                p_value_mwu=test.p_value,
                mann_whitney={
                    "p_value": test.p_value,
                    "prob_superiority": test.prob_superiority,
                    "direction": None if test.direction is None else {
                        "higher": "treatment", "lower": "control", "same": "none"
                    }[test.direction],
                    "note": None,
                    "sample": {"accounts": len(sample.variant), "of": sample.total},
                },
                warnings=(*kept, note),
            ))
        return replace(result, comparisons=tuple(comparisons))

    # ---------------------------------------------------------------- stored form
    def to_json(self) -> dict[str, Any]:
        return {
            "by_segment": self.by_segment,
            "groups": [
                {
                    "segment": segment,
                    "variant": variant,
                    "moments": extra.moments.to_dict(),
                    "logo_churned": extra.logo_churned,
                    "expanded": extra.expanded,
                    "times": None if (segment, variant) not in self.times else [
                        list(self.times[segment, variant].times),
                        list(self.times[segment, variant].events),
                        list(self.times[segment, variant].censored),
                    ],
                }
                for (segment, variant), extra in self.extras.items()
            ],
            "sample": self.sample.to_json(),
            "enrolment": None if self.enrolment is None else dict(self.enrolment),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushedInputs:
        extras, times = {}, {}
        for group in data["groups"]:
            key = (group["segment"], group["variant"])
            extras[key] = ArmExtras(
                Moments.from_dict(group["moments"]), int(group["logo_churned"]),
                int(group["expanded"]),
            )
            if group.get("times") is not None:
                t, e, c = group["times"]
                times[key] = TimeTable(tuple(t), tuple(e), tuple(c))
        return cls(extras, times, AccountSample.from_json(data["sample"]),
                   bool(data.get("by_segment")), data.get("enrolment"))


def stored_inputs(session: Session, dataset: Dataset) -> PushedInputs | None:
    """The inputs a warehouse refresh stored for ``dataset`` (``None``: an upload)."""
    if dataset.source != "warehouse":
        return None
    row = session.exec(
        select(WarehouseResult).where(WarehouseResult.dataset_id == dataset.id)
    ).first()
    return None if row is None else PushedInputs.from_json(row.inputs)
