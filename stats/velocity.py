"""Journey velocity: time to value per arm (DESIGN §4c "Velocity").

Each account either reached value after ``days_to_value`` days (an event) or
was followed for ``days_observed`` days without reaching it (right-censored).
Counts per distinct time are sufficient for the Kaplan-Meier curve and the
log-rank test, so a SQL ``GROUP BY`` can hand over one small table per arm.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from stats._checks import check_count, check_finite

#: Default target for ``share_by_target`` (days), DESIGN §4c.
DEFAULT_TARGET_DAYS = 14.0

#: ``S`` is a product of many factors; an exact 0.5 may come out as 0.5 + 1 ulp.
#: The median compares ``S <= 0.5 + MEDIAN_SLACK``.
MEDIAN_SLACK = 1e-12

VelocityCohortName = Literal["fast", "average", "slow", "not_reached"]
VELOCITY_COHORTS: tuple[VelocityCohortName, ...] = ("fast", "average", "slow", "not_reached")


@dataclass(frozen=True)
class TimeTable:
    """Per-arm counts of events and censorings at each distinct time.

    Parameters
    ----------
    times : tuple of float
        Distinct times (days), ascending, finite and >= 0.
    events : tuple of int
        Accounts that reached value at each time.
    censored : tuple of int
        Accounts last seen at each time without reaching value.

    Raises
    ------
    ValueError
        If the lengths differ, the times are not strictly ascending, finite
        and >= 0, or a count is not a whole number >= 0.

    Examples
    --------
    >>> table = TimeTable.from_arrays([3.0, float("nan"), 3.0, 10.0], [30.0, 7.0, 30.0, 30.0])
    >>> table
    TimeTable(times=(3.0, 7.0, 10.0), events=(2, 0, 1), censored=(0, 1, 0))
    >>> (table + table).events
    (4, 0, 2)
    """

    times: tuple[float, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]

    def __post_init__(self) -> None:
        times = tuple(check_finite("time", t) for t in self.times)
        events = tuple(check_count("events", e) for e in self.events)
        censored = tuple(check_count("censored", c) for c in self.censored)
        if not len(times) == len(events) == len(censored):
            raise ValueError("times, events and censored must have the same length")
        if any(t < 0 for t in times):
            raise ValueError(f"times must be >= 0; got {min(times)!r}")
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("times must be distinct and ascending")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "censored", censored)

    @classmethod
    def empty(cls) -> TimeTable:
        """No accounts, the identity for ``+``."""
        return cls((), (), ())

    @classmethod
    def from_arrays(cls, days_to_value: ArrayLike, days_observed: ArrayLike | None) -> TimeTable:
        """Count events and censorings from per-account columns (NaN = blank).

        A row with ``days_to_value`` is an event at that time; a row with only
        ``days_observed`` is censored there; a row with neither is left out.
        ``days_observed=None`` means the column is absent (every blank
        ``days_to_value`` is left out).

        Raises
        ------
        ValueError
            If the columns differ in length or hold a negative or infinite
            value (named with its index).
        """
        reached = _days("days_to_value", days_to_value)
        if days_observed is None:
            observed = np.full(reached.shape, np.nan)
        else:
            observed = _days("days_observed", days_observed)
        if observed.shape != reached.shape:
            raise ValueError(
                "days_to_value and days_observed must have the same length; "
                f"got {reached.size} and {observed.size}"
            )
        event = ~np.isnan(reached)
        censor = ~event & ~np.isnan(observed)
        time = np.where(event, reached, observed)[event | censor]
        is_event = event[event | censor]
        if time.size == 0:
            return cls.empty()
        unique, inverse = np.unique(time, return_inverse=True)
        events = np.bincount(inverse, weights=is_event, minlength=unique.size)
        censored = np.bincount(inverse, weights=~is_event, minlength=unique.size)
        return cls(
            tuple(unique.tolist()),
            tuple(int(e) for e in events),
            tuple(int(c) for c in censored),
        )

    @classmethod
    def from_counts(cls, rows: Iterable[tuple[Any, Any, Any]]) -> TimeTable:
        """Build from ``(time, events, censored)`` rows, e.g. a SQL ``GROUP BY`` time.

        Rows may come in any order and repeat a time (they are added up).
        """
        totals: dict[float, list[int]] = {}
        for row in rows:
            time, events, censored = row
            key = check_finite("time", time)
            entry = totals.setdefault(key, [0, 0])
            entry[0] += check_count("events", events)
            entry[1] += check_count("censored", censored)
        times = sorted(totals)
        return cls(
            tuple(times),
            tuple(totals[t][0] for t in times),
            tuple(totals[t][1] for t in times),
        )

    def __add__(self, other: object) -> TimeTable:
        if not isinstance(other, TimeTable):
            return NotImplemented
        return TimeTable.from_counts(
            [
                *zip(self.times, self.events, self.censored, strict=True),
                *zip(other.times, other.events, other.censored, strict=True),
            ]
        )

    @property
    def accounts(self) -> int:
        """Accounts in the table (events + censored)."""
        return sum(self.events) + sum(self.censored)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form, inverse of :meth:`from_dict`."""
        return {
            "times": list(self.times),
            "events": list(self.events),
            "censored": list(self.censored),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeTable:
        """Rebuild from :meth:`to_dict`; ``ValueError`` on a malformed document."""
        try:
            return cls(tuple(data["times"]), tuple(data["events"]), tuple(data["censored"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a TimeTable document: {error!r}") from None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.times, dtype=np.float64),
            np.asarray(self.events, dtype=np.float64),
            np.asarray(self.censored, dtype=np.float64),
        )


def _days(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {array.shape}")
    bad = np.isinf(array) | (array < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be blank or a finite number >= 0; "
            f"got {float(array[index])!r} at index {index}"
        )
    return array


def _at_risk(table: TimeTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, events and accounts at risk (time >= t) at each distinct time."""
    times, events, censored = table._arrays()
    leaving = events + censored
    at_risk = np.cumsum(leaving[::-1])[::-1]
    return times, events, at_risk


def kaplan_meier(table: TimeTable) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the share not yet reaching value.

    Parameters
    ----------
    table : TimeTable
        One arm's counts.

    Returns
    -------
    times : numpy.ndarray
        The event times (times with at least one event), ascending.
    survival : numpy.ndarray
        ``S(t)`` just after each event time (right-continuous).

    Notes
    -----
    .. math:: S(t) = \\prod_{t_i \\le t} \\left(1 - \\frac{d_i}{n_i}\\right)

    with :math:`d_i` events at :math:`t_i` and :math:`n_i` accounts whose time
    is :math:`\\ge t_i` (those censored at :math:`t_i` included).

    References
    ----------
    .. [1] Kaplan, E. L. & Meier, P. (1958). Nonparametric estimation from
       incomplete observations. JASA, 53(282), 457-481.

    Examples
    --------
    >>> times, survival = kaplan_meier(TimeTable((2.0, 5.0, 9.0), (1, 0, 2), (0, 1, 0)))
    >>> times.tolist(), survival.tolist()
    ([2.0, 9.0], [0.75, 0.0])
    """
    times, events, at_risk = _at_risk(table)
    hit = events > 0
    survival = np.cumprod(1.0 - events[hit] / at_risk[hit])
    return times[hit], survival


def _survival_at(times: np.ndarray, survival: np.ndarray, t: float) -> float:
    index = int(np.searchsorted(times, t, side="right"))
    return 1.0 if index == 0 else float(survival[index - 1])


def velocity_arm(table: TimeTable, target_days: float = DEFAULT_TARGET_DAYS) -> dict[str, Any]:
    """Reached, censored, median days and share reached by the target for one arm.

    Parameters
    ----------
    table : TimeTable
        One arm's counts.
    target_days : float
        Days by which value should be reached (an event on that day counts).

    Returns
    -------
    dict
        ``{"reached", "censored", "median_days", "share_by_target"}``:
        ``median_days`` is the smallest event time with ``S <= 0.5`` (``None``
        when the curve never gets there; no midpoint rule);
        ``share_by_target`` is ``1 - S(target_days)`` (``None`` for an empty
        arm).

    Raises
    ------
    ValueError
        If ``target_days`` is negative or not finite.

    References
    ----------
    .. [1] Kaplan, E. L. & Meier, P. (1958). Nonparametric estimation from
       incomplete observations. JASA, 53(282), 457-481.
    .. [2] Klein, J. P. & Moeschberger, M. L. (2003). Survival Analysis, 2nd
       ed., §4.5 (median from the Kaplan-Meier curve). Springer.

    Examples
    --------
    >>> table = TimeTable.from_arrays([3.0, 14.0, float("nan"), 20.0], [30.0, 30.0, 10.0, 30.0])
    >>> velocity_arm(table, 14)
    {'reached': 3, 'censored': 1, 'median_days': 14.0, 'share_by_target': 0.625}
    """
    target = check_finite("target_days", target_days)
    if target < 0:
        raise ValueError(f"target_days must be >= 0; got {target_days!r}")
    reached, censored = sum(table.events), sum(table.censored)
    if reached + censored == 0:
        return {"reached": 0, "censored": 0, "median_days": None, "share_by_target": None}
    times, survival = kaplan_meier(table)
    below = np.flatnonzero(survival <= 0.5 + MEDIAN_SLACK)
    median = float(times[below[0]]) if below.size else None
    return {
        "reached": reached,
        "censored": censored,
        "median_days": median,
        "share_by_target": 1.0 - _survival_at(times, survival, target),
    }


def logrank_p(control: TimeTable, treatment: TimeTable) -> float | None:
    """Two-sided log-rank p-value, accumulated in float64 (no integer overflow).

    Parameters
    ----------
    control, treatment : TimeTable

    Returns
    -------
    float or None
        ``None`` when an arm is empty or the variance is 0 (no events, or
        every event happens when only one account is left).

    Notes
    -----
    At each distinct event time :math:`t` with :math:`d` events among
    :math:`n` accounts at risk, :math:`n_T` of them treated,

    .. math::
        U = \\sum_t \\left(d_{T,t} - d_t \\frac{n_{T,t}}{n_t}\\right), \\quad
        V = \\sum_t d_t \\frac{n_{T,t}}{n_t}\\left(1 - \\frac{n_{T,t}}{n_t}\\right)
            \\frac{n_t - d_t}{n_t - 1}

    (hypergeometric variance, corrected for ties), and
    :math:`p = 2(1 - \\Phi(|U|/\\sqrt V))`. ``scipy.stats.logrank`` forms
    products of counts in 64-bit integers, which overflow at about 100,000
    accounts per arm with whole-day times; here every count is a float.

    References
    ----------
    .. [1] Mantel, N. (1966). Evaluation of survival data and two new rank
       order statistics arising in its consideration. Cancer Chemotherapy
       Reports, 50(3), 163-170.
    .. [2] Klein, J. P. & Moeschberger, M. L. (2003). Survival Analysis, 2nd
       ed., §7.3. Springer.

    Examples
    --------
    >>> c = TimeTable.from_arrays([1.0, 2.0, 3.0, 4.0], [9.0] * 4)
    >>> t = TimeTable.from_arrays([5.0, 6.0, 7.0, 8.0], [9.0] * 4)
    >>> round(logrank_p(c, t), 4)
    0.0067
    """
    if control.accounts == 0 or treatment.accounts == 0:
        return None
    union = np.union1d(np.asarray(control.times), np.asarray(treatment.times))

    def aligned(table: TimeTable) -> tuple[np.ndarray, np.ndarray]:
        times, events, at_risk = _at_risk(table)
        index = np.searchsorted(times, union)
        padded_risk = np.append(at_risk, 0.0)
        padded_events = np.append(events, 0.0)
        present = np.append(times, np.inf)[index] == union
        return np.where(present, padded_events[index], 0.0), padded_risk[index]

    d_c, n_c = aligned(control)
    d_t, n_t = aligned(treatment)
    d, n = d_c + d_t, n_c + n_t
    hit = d > 0
    d, n, d_t, n_t = d[hit], n[hit], d_t[hit], n_t[hit]
    share = n_t / n
    u = float(np.sum(d_t - d * share))
    with np.errstate(invalid="ignore", divide="ignore"):
        ties = np.where(n > 1, (n - d) / (n - 1), 0.0)
    v = float(np.sum(d * share * (1.0 - share) * ties))
    if not v > 0:
        return None
    return float(special.erfc(abs(u) / math.sqrt(v) / math.sqrt(2.0)))


def km_curve(table: TimeTable, max_points: int = 200) -> list[list[float]]:
    """Steps of the share reached, ``[[t, 1 - S(t)], ...]``, for drawing.

    Starts at ``[0, 0]``, has one point per event time (thinned evenly to at
    most ``max_points`` event points, always keeping the last), and ends at
    the longest follow-up so the flat tail is drawn. Empty for no accounts.

    Examples
    --------
    >>> km_curve(TimeTable((2.0, 5.0, 9.0), (1, 0, 1), (0, 1, 1)))
    [[0.0, 0.0], [2.0, 0.25], [9.0, 0.625]]
    """
    max_points = check_count("max_points", max_points)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points}")
    if table.accounts == 0:
        return []
    times, survival = kaplan_meier(table)
    if times.size > max_points:
        keep = np.unique(np.linspace(0, times.size - 1, max_points).round().astype(int))
        times, survival = times[keep], survival[keep]
    points = [[0.0, 0.0]] + [
        [float(t), float(1.0 - s)] for t, s in zip(times, survival, strict=True)
    ]
    last = table.times[-1]
    if last > points[-1][0]:
        points.append([float(last), points[-1][1]])
    return points


def velocity_groups(days_to_value: ArrayLike) -> np.ndarray:
    """Tercile group index per account: 0 fast, 1 average, 2 slow, 3 not reached (NaN).

    ``q1, q2`` are the linear-interpolation quantiles 1/3 and 2/3 (Hyndman &
    Fan definition 7, numpy's default) of the accounts that reached value;
    fast :math:`\\le q_1 <` average :math:`\\le q_2 <` slow.

    References
    ----------
    .. [1] Hyndman, R. J. & Fan, Y. (1996). Sample quantiles in statistical
       packages. The American Statistician, 50(4), 361-365.

    Examples
    --------
    >>> velocity_groups([1.0, 2.0, 3.0, float("nan"), 4.0, 5.0, 6.0]).tolist()
    [0, 0, 1, 3, 1, 2, 2]
    """
    days = _days("days_to_value", days_to_value)
    group = np.full(days.shape, 3, dtype=np.int64)
    reached = ~np.isnan(days)
    if reached.any():
        q1, q2 = np.quantile(days[reached], [1.0 / 3.0, 2.0 / 3.0])
        values = days[reached]
        group[reached] = np.where(values <= q1, 0, np.where(values <= q2, 1, 2))
    return group


def velocity_cohorts(
    days_to_value: ArrayLike, start: ArrayLike, end: ArrayLike
) -> list[dict[str, Any]]:
    """NRR of the fast, average and slow terciles of time to value, and of the rest.

    Parameters
    ----------
    days_to_value : array_like of float
        Per account, NaN when value was not reached.
    start, end : array_like of float
        Start and end MRR per account.

    Returns
    -------
    list of dict
        Four rows in the order fast, average, slow, not_reached:
        ``{"cohort", "accounts", "start_mrr", "end_mrr", "nrr", "max_days"}``
        with ``nrr = Σend/Σstart`` (``None`` without start MRR) and
        ``max_days`` the group's largest days_to_value (``None`` for
        not_reached or an empty group).

    Raises
    ------
    ValueError
        If the columns differ in length or hold invalid values.

    References
    ----------
    .. [1] Hyndman, R. J. & Fan, Y. (1996). Sample quantiles in statistical
       packages. The American Statistician, 50(4), 361-365.

    Examples
    --------
    >>> rows = velocity_cohorts([1.0, 5.0, 5.0, 9.0, float("nan")], [100.0] * 5,
    ...                         [130.0, 110.0, 90.0, 100.0, 80.0])
    >>> [(r["cohort"], r["accounts"], r["nrr"]) for r in rows]
    [('fast', 3, 1.1), ('average', 0, None), ('slow', 1, 1.0), ('not_reached', 1, 0.8)]
    """
    group = velocity_groups(days_to_value)
    days = np.asarray(days_to_value, dtype=np.float64)
    start_mrr = _money("start", start, group.size)
    end_mrr = _money("end", end, group.size)
    accounts = np.bincount(group, minlength=4)
    start_sum = np.bincount(group, weights=start_mrr, minlength=4)
    end_sum = np.bincount(group, weights=end_mrr, minlength=4)
    rows = []
    for index, name in enumerate(VELOCITY_COHORTS):
        members = group == index
        max_days = float(days[members].max()) if index < 3 and members.any() else None
        rows.append(
            {
                "cohort": name,
                "accounts": int(accounts[index]),
                "start_mrr": float(start_sum[index]),
                "end_mrr": float(end_sum[index]),
                "nrr": float(end_sum[index] / start_sum[index]) if start_sum[index] else None,
                "max_days": max_days,
            }
        )
    return rows


def _money(name: str, values: ArrayLike, size: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must hold one value per account ({size}); got {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} must hold finite numbers; got nan or inf at index {index}")
    return array
