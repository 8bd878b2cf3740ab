"""Per-arm inputs: sufficient statistics, money totals and the arrays they come from.

Every statistic in :mod:`stats` except the Mann-Whitney check is a function of
six numbers per arm, ``n, Σx, Σy, Σx², Σy², Σxy`` with ``x`` the end MRR and
``y`` the start MRR of an account. They add up across chunks of rows, so they
can be computed by one SQL ``GROUP BY`` or chunk by chunk from a large file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from stats._checks import check_count, check_finite
from stats.moments import Moments, _as_vector, pool_centred

if TYPE_CHECKING:
    from stats.velocity import TimeTable

#: Per-account NRR is rounded to this many decimals. end = start + expansion -
#: contraction - churned picks up float noise (about 1e-16), which would split
#: accounts with the same ratio (e.g. every "+10 %" account) into arbitrary ranks
#: and change the Mann-Whitney tie correction; 12 decimals is far below any
#: meaningful difference in NRR.
ACCOUNT_NRR_DECIMALS = 12

#: A linearised sum of squares computed from co-moments smaller than this
#: fraction of the co-moments it cancels from is rounding noise (the co-moments
#: themselves carry a relative error of a few ``eps``). Per-account NRR that
#: varies by 1e-6 is about 1e-12 of that scale, ten times above this floor.
COMOMENT_TOLERANCE = 1e-13

#: (16 eps)²: a centred deviation is off by about eps·|x_i|, so a centred sum
#: of squares below this fraction of the raw one is noise around a true zero.
CENTRED_NOISE_FLOOR = (16 * 2.220446049250313e-16) ** 2

#: Centred sums computed from raw sums lose about ``eps * log2(n)`` of the raw
#: magnitude to rounding (more when a database adds naively). A centred sum
#: smaller than this fraction of its raw counterpart is rounding noise around a
#: true zero, e.g. an arm where every account has the same MRR.
ROUNDING_TOLERANCE = 1e-12


def centred_sum(sum_ab: float, sum_a: float, sum_b: float, n: int, scale: float) -> float:
    """Centred sum of products ``Σ(a - ā)(b - b̄)`` from raw sums.

    Parameters
    ----------
    sum_ab, sum_a, sum_b : float
        Raw sums ``Σab``, ``Σa`` and ``Σb``.
    n : int
        Number of observations, ``n >= 1``.
    scale : float
        Magnitude of the raw sums the result was cancelled from; a result
        within ``ROUNDING_TOLERANCE * scale`` of zero is returned as ``0.0``.

    Returns
    -------
    float
        ``Σab - Σa·Σb/n``, snapped to zero when it is rounding noise.

    Notes
    -----
    .. math:: S_{ab} = \\sum a_i b_i - \\frac{(\\sum a_i)(\\sum b_i)}{n}

    References
    ----------
    .. [1] Chan, T. F., Golub, G. H. & LeVeque, R. J. (1983). Algorithms for
       computing the sample variance: analysis and recommendations. The
       American Statistician, 37(3), 242-247.

    Examples
    --------
    >>> centred_sum(14.0, 6.0, 6.0, 3, scale=14.0)  # a = b = [1, 2, 3]
    2.0
    """
    value = sum_ab - sum_a * sum_b / n
    if abs(value) <= ROUNDING_TOLERANCE * abs(scale):
        return 0.0
    return value


@dataclass(frozen=True)
class CoMoments:
    """Centred co-moments of paired ``x`` (end MRR) and ``y`` (start MRR).

    The numerically stable counterpart of the raw sums: variances computed as
    ``Σx² - (Σx)²/n`` lose every digit when the spread is tiny next to the
    mean (e.g. per-account NRR varying by 1e-6), centred sums do not.

    Parameters
    ----------
    n : int
        Number of accounts.
    mean_x, mean_y : float
        Means of ``x`` and ``y`` (0 when ``n == 0``).
    m2x, m2y : float
        ``Σ(x - x̄)²`` and ``Σ(y - ȳ)²``, >= 0.
    cxy : float
        ``Σ(x - x̄)(y - ȳ)``.

    Notes
    -----
    Two sets pool by the parallel formulas of Chan et al. through
    :func:`stats.moments.pool_centred` (the two-column case of
    :class:`stats.moments.Moments`, whose Notes give the formulas and references):
    ``m2x``, ``m2y`` and ``cxy`` are the entries of the 2×2 co-moment matrix.

    Examples
    --------
    >>> a = CoMoments.from_arrays([1.0, 2.0], [1.0, 1.0])
    >>> b = CoMoments.from_arrays([3.0], [4.0])
    >>> pooled = a + b
    >>> pooled.n, pooled.mean_x, pooled.m2x, pooled.cxy
    (3, 2.0, 2.0, 3.0)
    """

    n: int
    mean_x: float
    mean_y: float
    m2x: float
    m2y: float
    cxy: float

    @classmethod
    def from_arrays(cls, x: ArrayLike, y: ArrayLike) -> CoMoments:
        """Two-pass co-moments of two vectors of equal length."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n = int(x.size)
        if n == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        mean_x = float(x.mean())
        mean_y = float(y.mean())
        dx = x - mean_x
        dy = y - mean_y
        return cls(
            n, mean_x, mean_y, float(np.dot(dx, dx)), float(np.dot(dy, dy)), float(np.dot(dx, dy))
        )

    def __add__(self, other: object) -> CoMoments:
        if not isinstance(other, CoMoments):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n, mean, c = pool_centred(
            self.n, np.array([self.mean_x, self.mean_y]),
            np.array([[self.m2x, self.cxy], [self.cxy, self.m2y]]),
            other.n, np.array([other.mean_x, other.mean_y]),
            np.array([[other.m2x, other.cxy], [other.cxy, other.m2y]]),
        )
        return CoMoments(
            n=n,
            mean_x=float(mean[0]),
            mean_y=float(mean[1]),
            m2x=float(c[0, 0]),
            m2y=float(c[1, 1]),
            cxy=float(c[0, 1]),
        )


@dataclass(frozen=True)
class SufficientStats:
    """Sufficient statistics of one arm for the ratio metric ``Σx / Σy``.

    ``x`` is the end MRR and ``y`` the start MRR of each account. Instances
    pool by addition, so sums computed per chunk (or per SQL partition) can be
    combined exactly.

    Parameters
    ----------
    n : int
        Number of accounts.
    sum_x, sum_y : float
        ``Σx`` and ``Σy``.
    sum_xx, sum_yy, sum_xy : float
        ``Σx²``, ``Σy²`` and ``Σxy``.

    Raises
    ------
    ValueError
        If ``n`` is not a whole number >= 0, a sum is not finite, a sum of
        squares is negative, or ``n == 0`` with non-zero sums.

    Notes
    -----
    With :math:`S_{ab} = \\sum a b - \\sum a \\sum b / n` the properties are

    .. math::
        \\bar x = \\frac{\\sum x}{n}, \\quad
        v_x = \\frac{S_{xx}}{n-1}, \\quad
        v_y = \\frac{S_{yy}}{n-1}, \\quad
        c_{xy} = \\frac{S_{xy}}{n-1}

    (``ddof = 1``; ``None`` when ``n < 2``, means ``None`` when ``n == 0``).
    The covariance is clipped to :math:`|c_{xy}| \\le \\sqrt{v_x v_y}` so that
    rounding can never produce an impossible correlation. Decimal sums from
    SQL are converted to float on construction.

    Built from rows (:meth:`from_arrays`) or from centred sums
    (:meth:`from_comoments`), an instance also carries :class:`CoMoments`, and
    every variance is then taken from those (Chan et al.), which keeps a tiny
    but real spread that the raw-sum formula cancels to zero. Raw sums alone
    (the positional constructor) keep working with the raw-sum formula.

    References
    ----------
    .. [1] Chan, T. F., Golub, G. H. & LeVeque, R. J. (1983). Algorithms for
       computing the sample variance: analysis and recommendations. The
       American Statistician, 37(3), 242-247.

    Examples
    --------
    >>> part1 = SufficientStats.from_arrays([110.0, 90.0], [100.0, 100.0])
    >>> part2 = SufficientStats.from_arrays([0.0], [50.0])
    >>> pooled = part1 + part2
    >>> pooled.n, pooled.sum_x, pooled.sum_y
    (3, 200.0, 250.0)
    >>> round(pooled.var_y, 4)
    833.3333
    """

    n: int
    sum_x: float
    sum_y: float
    sum_xx: float
    sum_yy: float
    sum_xy: float
    #: Centred co-moments when the arm was built from rows or from centred
    #: sums (exact to rounding); ``None`` when only raw sums are known.
    moments: CoMoments | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Frozen, so normalise through object.__setattr__: SQL drivers hand back
        # Decimal and numpy hands back float64, reports want plain floats.
        object.__setattr__(self, "n", check_count("n", self.n))
        for name in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy"):
            object.__setattr__(self, name, check_finite(name, getattr(self, name)))
        for name in ("sum_xx", "sum_yy"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} is a sum of squares and cannot be negative; "
                    f"got {getattr(self, name)!r}"
                )
        if self.n == 0 and any(
            getattr(self, name) != 0 for name in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy")
        ):
            raise ValueError(f"n is 0 but the sums are not all zero: {self!r}")

    @classmethod
    def from_arrays(cls, x: ArrayLike, y: ArrayLike) -> SufficientStats:
        """Sufficient statistics of paired arrays ``x`` (end MRR) and ``y`` (start MRR).

        Raises
        ------
        ValueError
            If the arrays are not one-dimensional, differ in length or hold
            non-finite values.

        Examples
        --------
        >>> SufficientStats.from_arrays([1.0, 2.0], [1.0, 1.0])
        SufficientStats(n=2, sum_x=3.0, sum_y=2.0, sum_xx=5.0, sum_yy=2.0, sum_xy=3.0)
        """
        xs = _as_vector("x", x)
        ys = _as_vector("y", y)
        if xs.shape != ys.shape:
            raise ValueError(f"x and y must have the same length; got {xs.size} and {ys.size}")
        return cls(
            n=xs.size,
            sum_x=float(xs.sum()),
            sum_y=float(ys.sum()),
            # dot products are one BLAS pass each, no temporary arrays
            sum_xx=float(np.dot(xs, xs)),
            sum_yy=float(np.dot(ys, ys)),
            sum_xy=float(np.dot(xs, ys)),
            moments=CoMoments.from_arrays(xs, ys),
        )

    @classmethod
    def from_comoments(
        cls, n: int, mean_x: float, mean_y: float, m2x: float, m2y: float, cxy: float
    ) -> SufficientStats:
        """Statistics from centred sums, e.g. a two-pass SQL aggregate.

        ``m2x = Σ(x - x̄)²``, ``m2y = Σ(y - ȳ)²``, ``cxy = Σ(x - x̄)(y - ȳ)``.
        The raw sums are derived for display and pooling; variances use the
        centred sums.

        Raises
        ------
        ValueError
            If ``n`` is not a whole number >= 0, a value is not finite or a
            sum of squares is negative.

        Examples
        --------
        >>> s = SufficientStats.from_comoments(3, 2.0, 1.0, 2.0, 0.0, 0.0)
        >>> s.sum_x, s.sum_xx, s.var_x
        (6.0, 14.0, 1.0)
        """
        n = check_count("n", n)
        values = {
            name: check_finite(name, value)
            for name, value in (
                ("mean_x", mean_x), ("mean_y", mean_y), ("m2x", m2x), ("m2y", m2y), ("cxy", cxy)
            )
        }
        for name in ("m2x", "m2y"):
            if values[name] < 0:
                raise ValueError(f"{name} is a sum of squares and cannot be negative")
        if n == 0:
            return cls.empty()
        moments = CoMoments(n, **values)
        mx, my = moments.mean_x, moments.mean_y
        return cls(
            n=n,
            sum_x=n * mx,
            sum_y=n * my,
            sum_xx=moments.m2x + n * mx * mx,
            sum_yy=moments.m2y + n * my * my,
            sum_xy=moments.cxy + n * mx * my,
            moments=moments,
        )

    @classmethod
    def empty(cls) -> SufficientStats:
        """Statistics of no accounts, the identity for ``+``.

        Examples
        --------
        >>> SufficientStats.empty().n
        0
        """
        return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def __add__(self, other: object) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        return SufficientStats(
            n=self.n + other.n,
            sum_x=self.sum_x + other.sum_x,
            sum_y=self.sum_y + other.sum_y,
            sum_xx=self.sum_xx + other.sum_xx,
            sum_yy=self.sum_yy + other.sum_yy,
            sum_xy=self.sum_xy + other.sum_xy,
            moments=_pool_moments(self, other),
        )

    def __radd__(self, other: object) -> SufficientStats:
        # Lets the builtin sum(chunks) work: it starts from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    @property
    def mean_x(self) -> float | None:
        """Mean end MRR, ``None`` for an empty arm."""
        return self.sum_x / self.n if self.n else None

    @property
    def mean_y(self) -> float | None:
        """Mean start MRR, ``None`` for an empty arm."""
        return self.sum_y / self.n if self.n else None

    def _variance(
        self, sum_of_squares: float, total: float, centred: float | None
    ) -> float | None:
        if self.n < 2:
            return None
        if centred is None:
            centred = centred_sum(sum_of_squares, total, total, self.n, sum_of_squares)
        elif centred <= CENTRED_NOISE_FLOOR * sum_of_squares:
            centred = 0.0
        return max(centred, 0.0) / (self.n - 1)

    @property
    def var_x(self) -> float | None:
        """Sample variance of ``x`` (ddof=1), ``None`` when ``n < 2``."""
        m2x = self.moments.m2x if self.moments is not None else None
        return self._variance(self.sum_xx, self.sum_x, m2x)

    @property
    def var_y(self) -> float | None:
        """Sample variance of ``y`` (ddof=1), ``None`` when ``n < 2``."""
        m2y = self.moments.m2y if self.moments is not None else None
        return self._variance(self.sum_yy, self.sum_y, m2y)

    @property
    def cov_xy(self) -> float | None:
        """Sample covariance of ``x`` and ``y`` (ddof=1), ``None`` when ``n < 2``."""
        var_x, var_y = self.var_x, self.var_y
        if var_x is None or var_y is None:
            return None
        if self.moments is not None:
            cov = self.moments.cxy / (self.n - 1)
        else:
            scale = math.sqrt(self.sum_xx * self.sum_yy)
            cov = centred_sum(self.sum_xy, self.sum_x, self.sum_y, self.n, scale) / (self.n - 1)
        bound = math.sqrt(var_x * var_y)
        return min(max(cov, -bound), bound)


def _pool_moments(a: SufficientStats, b: SufficientStats) -> CoMoments | None:
    # An empty side adds nothing; otherwise both must be exact to stay exact.
    if b.n == 0:
        return a.moments
    if a.n == 0:
        return b.moments
    if a.moments is None or b.moments is None:
        return None
    return a.moments + b.moments


@dataclass(frozen=True)
class ArmTotals:
    """Money totals of one arm, in currency units.

    Parameters
    ----------
    accounts : int
        Number of enrolled accounts.
    start_mrr, expansion_mrr, contraction_mrr, churned_mrr : float
        Sums over the arm's accounts.

    Raises
    ------
    ValueError
        If ``accounts`` is not a whole number >= 0 or a total is not finite.

    Notes
    -----
    .. math::
        \\mathrm{end} = \\mathrm{start} + \\mathrm{expansion}
                        - \\mathrm{contraction} - \\mathrm{churned}

    .. math::
        \\mathrm{NRR} = \\frac{\\mathrm{end}}{\\mathrm{start}}, \\quad
        \\mathrm{GRR} = \\frac{\\mathrm{start} - \\mathrm{contraction}
                              - \\mathrm{churned}}{\\mathrm{start}}

    Both ratios are ``None`` when the start MRR is zero (an empty arm).

    References
    ----------
    .. [1] NRR Lab design, section 4 "Statistics".

    Examples
    --------
    >>> totals = ArmTotals(2, start_mrr=200.0, expansion_mrr=30.0,
    ...                    contraction_mrr=10.0, churned_mrr=20.0)
    >>> totals.end_mrr, totals.nrr, totals.grr
    (200.0, 1.0, 0.85)
    """

    accounts: int
    start_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", check_count("accounts", self.accounts))
        for name in ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr"):
            object.__setattr__(self, name, check_finite(name, getattr(self, name)))

    @classmethod
    def empty(cls) -> ArmTotals:
        """Totals of no accounts, the identity for ``+``."""
        return cls(0, 0.0, 0.0, 0.0, 0.0)

    def __add__(self, other: object) -> ArmTotals:
        if not isinstance(other, ArmTotals):
            return NotImplemented
        return ArmTotals(
            accounts=self.accounts + other.accounts,
            start_mrr=self.start_mrr + other.start_mrr,
            expansion_mrr=self.expansion_mrr + other.expansion_mrr,
            contraction_mrr=self.contraction_mrr + other.contraction_mrr,
            churned_mrr=self.churned_mrr + other.churned_mrr,
        )

    @property
    def end_mrr(self) -> float:
        """End MRR: start + expansion - contraction - churned."""
        return self.start_mrr + self.expansion_mrr - self.contraction_mrr - self.churned_mrr

    @property
    def nrr(self) -> float | None:
        """Net revenue retention ``end / start``, ``None`` when start is 0."""
        return self.end_mrr / self.start_mrr if self.start_mrr else None

    @property
    def grr(self) -> float | None:
        """Gross revenue retention ``(start - contraction - churned) / start``, ``None`` when
        start is 0."""
        if not self.start_mrr:
            return None
        return (self.start_mrr - self.contraction_mrr - self.churned_mrr) / self.start_mrr


@dataclass(frozen=True)
class ArmData:
    """Everything :func:`stats.analyze` needs about one arm.

    Parameters
    ----------
    totals : ArmTotals
        Money totals (for the arms table and SRM counts).
    sums : SufficientStats
        Sufficient statistics of ``x = end``, ``y = start`` (for inference).
    account_nrr : numpy.ndarray, optional
        Per-account ``end / start``, used only by the Mann-Whitney robustness
        check. Leave it ``None`` when only sums are available (e.g. aggregated
        in a warehouse); ``p_value_mwu`` is then reported as ``None`` with a
        warning.

    Raises
    ------
    ValueError
        If ``totals.accounts`` differs from ``sums.n`` or ``account_nrr`` has
        the wrong length or non-finite values.

    moments : Moments, optional
        Count, means and co-moments of the account columns ``start``,
        ``expansion``, ``contraction``, ``churned`` (and ``pre_start``,
        ``pre_end`` when every account has them): the levers, guardrails and
        CUPED (DESIGN §4c) read them. ``None``: those figures are null.
    logo_churned, expanded : int, optional
        Accounts with ``churned = start`` (logo churn) and with
        ``expansion > 0`` (expansion incidence); ``None`` when unknown.
    times : stats.velocity.TimeTable, optional
        Time to value per distinct day (events and censored accounts), when
        the data has ``days_observed``; ``None``: velocity is null.

    Raises
    ------
    ValueError
        If a count is negative or above the arm's accounts, or ``moments``
        counts other accounts than ``sums``.

    Notes
    -----
    Arms pool by addition (chunked reading); ``account_nrr`` is concatenated,
    or dropped when either side lacks it. The optional inputs pool the same
    way and are dropped when either side lacks them.

    References
    ----------
    .. [1] NRR Lab design, section 4 "Statistics".

    Examples
    --------
    >>> arm = arm_from_arrays([100.0, 50.0], [10.0, 0.0], [0.0, 0.0], [0.0, 50.0])
    >>> arm.totals.nrr, arm.sums.n, arm.account_nrr.tolist()
    (0.7333333333333333, 2, [1.1, 0.0])
    """

    totals: ArmTotals
    sums: SufficientStats
    # Arrays have no useful == or hash; identity of an arm is its totals and sums.
    account_nrr: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: Per-account ``(end, start)`` MRR when the rows are at hand (a file, not
    #: SQL sums): the permutation test and the skewness check need them.
    rows: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)
    moments: Moments | None = field(default=None, compare=False, repr=False)
    logo_churned: int | None = None
    expanded: int | None = None
    times: TimeTable | None = field(default=None, compare=False, repr=False)
    #: Days to value per account (NaN = not reached), aligned with ``rows``: the
    #: velocity cohorts need them; ``None`` without the column.
    days_to_value: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("logo_churned", "expanded"):
            value = getattr(self, name)
            if value is not None:
                value = check_count(name, value)
                if value > self.totals.accounts:
                    raise ValueError(
                        f"{name} ({value}) cannot exceed the arm's accounts "
                        f"({self.totals.accounts})"
                    )
                object.__setattr__(self, name, value)
        if self.days_to_value is not None and len(self.days_to_value) != self.totals.accounts:
            raise ValueError("days_to_value must hold one value per account")
        if self.moments is not None and self.moments.n != self.totals.accounts:
            raise ValueError(
                f"moments count {self.moments.n} accounts but the arm has {self.totals.accounts}"
            )
        if not isinstance(self.totals, ArmTotals):
            raise ValueError(f"totals must be an ArmTotals; got {self.totals!r}")
        if not isinstance(self.sums, SufficientStats):
            raise ValueError(f"sums must be a SufficientStats; got {self.sums!r}")
        if self.totals.accounts != self.sums.n:
            raise ValueError(
                f"totals.accounts ({self.totals.accounts}) and sums.n ({self.sums.n}) "
                "must count the same accounts"
            )
        if self.account_nrr is not None:
            values = _as_vector("account_nrr", self.account_nrr)
            if values.size != self.sums.n:
                raise ValueError(
                    f"account_nrr has {values.size} values but the arm has {self.sums.n} accounts"
                )
            object.__setattr__(self, "account_nrr", values)
        if self.rows is not None:
            end, start = (
                _as_vector(name, v) for name, v in zip(("end", "start"), self.rows, strict=True)
            )
            if end.size != self.sums.n or start.size != self.sums.n:
                raise ValueError(f"rows must hold {self.sums.n} end and start values")
            object.__setattr__(self, "rows", (end, start))

    def __add__(self, other: object) -> ArmData:
        if not isinstance(other, ArmData):
            return NotImplemented
        if self.account_nrr is None or other.account_nrr is None:
            account_nrr = None
        else:
            account_nrr = np.concatenate([self.account_nrr, other.account_nrr])
        rows = None
        if self.rows is not None and other.rows is not None:
            rows = (
                np.concatenate([self.rows[0], other.rows[0]]),
                np.concatenate([self.rows[1], other.rows[1]]),
            )
        moments = None
        if self.moments is not None and other.moments is not None:
            moments = pool_common(self.moments, other.moments)
        times = None
        if self.times is not None and other.times is not None:
            times = self.times + other.times
        days = None
        if self.days_to_value is not None and other.days_to_value is not None:
            days = np.concatenate([self.days_to_value, other.days_to_value])
        return ArmData(
            self.totals + other.totals,
            self.sums + other.sums,
            account_nrr,
            rows,
            moments=moments,
            logo_churned=_add_counts(self.logo_churned, other.logo_churned),
            expanded=_add_counts(self.expanded, other.expanded),
            times=times,
            days_to_value=days,
        )


def _add_counts(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def pool_common(a: Moments, b: Moments) -> Moments:
    """``a + b`` over the columns both have (e.g. one part lacks a pre-period value).

    Examples
    --------
    >>> a = Moments.from_arrays({"start": [1.0, 2.0], "pre_start": [1.0, 1.0]})
    >>> b = Moments.from_arrays({"start": [3.0]})
    >>> pooled = pool_common(a, b)
    >>> pooled.names, pooled.n, pooled.total("start")
    (('start',), 3, 6.0)
    """
    if set(a.names) == set(b.names):
        return a + b
    common = [name for name in a.names if name in b.names]
    return _select(a, common) + _select(b, common)


def _select(moments: Moments, names: list[str]) -> Moments:
    """The moments of a subset of the columns (a sub-matrix: nothing to recompute)."""
    index = [moments.names.index(name) for name in names]
    return Moments(
        moments.n,
        tuple(names),
        tuple(moments.mean[i] for i in index),
        tuple(tuple(moments.comoment[i][j] for j in index) for i in index),
        moments.tolerance,
    )


def arm_from_arrays(
    start: ArrayLike,
    expansion: ArrayLike,
    contraction: ArrayLike,
    churned: ArrayLike,
    *,
    pre_start: ArrayLike | None = None,
    pre_end: ArrayLike | None = None,
    days_to_value: ArrayLike | None = None,
    days_observed: ArrayLike | None = None,
) -> ArmData:
    """Build an arm's totals, sufficient statistics and per-account NRR from row arrays.

    Parameters
    ----------
    start, expansion, contraction, churned : array_like of float
        One value per account, all the same length. ``start`` must be > 0
        (an existing customer, per the data contract).

    pre_start, pre_end : array_like of float, optional
        The pre-period MRR (CUPED covariate); NaN = blank. The moments carry
        them only when both are given and no value is blank.
    days_to_value, days_observed : array_like of float, optional
        Time to value (NaN = not reached) and follow-up days (NaN = blank);
        the arm's :class:`~stats.velocity.TimeTable` is built when
        ``days_observed`` is given.

    Returns
    -------
    ArmData
        With ``account_nrr``, ``rows``, ``moments``, ``logo_churned`` and
        ``expanded`` filled in (and ``times`` with ``days_observed``).

    Raises
    ------
    ValueError
        If the arrays differ in length, are not one-dimensional, hold
        non-finite values, or a start MRR is not greater than 0.

    Notes
    -----
    Per account :math:`x = \\mathrm{start} + \\mathrm{expansion} -
    \\mathrm{contraction} - \\mathrm{churned}`, :math:`y = \\mathrm{start}` and
    ``account_nrr`` :math:`= x / y`, rounded to ``ACCOUNT_NRR_DECIMALS`` (12)
    decimals so that equal ratios tie despite float noise in :math:`x`.
    Everything is vectorised; no Python loop runs per account.

    References
    ----------
    .. [1] NRR Lab design, section 3 "Account data contract".

    Examples
    --------
    >>> arm = arm_from_arrays([100.0, 200.0], [20.0, 0.0], [0.0, 50.0], [0.0, 0.0])
    >>> arm.totals  # doctest: +NORMALIZE_WHITESPACE
    ArmTotals(accounts=2, start_mrr=300.0, expansion_mrr=20.0, contraction_mrr=50.0,
              churned_mrr=0.0)
    >>> arm.sums.sum_x, arm.account_nrr.tolist()
    (270.0, [1.2, 0.75])
    """
    columns = {
        "start": _as_vector("start", start),
        "expansion": _as_vector("expansion", expansion),
        "contraction": _as_vector("contraction", contraction),
        "churned": _as_vector("churned", churned),
    }
    lengths = {name: values.size for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"start, expansion, contraction and churned must have the same length; got {lengths}"
        )
    y = columns["start"]
    not_positive = np.flatnonzero(y <= 0)
    if not_positive.size:
        index = int(not_positive[0])
        raise ValueError(f"start must be greater than 0; got {float(y[index])!r} at index {index}")
    x = y + columns["expansion"] - columns["contraction"] - columns["churned"]
    totals = ArmTotals(
        accounts=y.size,
        start_mrr=float(y.sum()),
        expansion_mrr=float(columns["expansion"].sum()),
        contraction_mrr=float(columns["contraction"].sum()),
        churned_mrr=float(columns["churned"].sum()),
    )
    account_nrr = np.divide(x, y)
    np.round(account_nrr, ACCOUNT_NRR_DECIMALS, out=account_nrr)
    moment_columns = {
        "start": y,
        "expansion": columns["expansion"],
        "contraction": columns["contraction"],
        "churned": columns["churned"],
    }
    if pre_start is not None and pre_end is not None:
        pre = {
            "pre_start": np.asarray(pre_start, dtype=np.float64),
            "pre_end": np.asarray(pre_end, dtype=np.float64),
        }
        if all(v.shape == y.shape and not np.isnan(v).any() for v in pre.values()):
            moment_columns.update(pre)
    moments = _chunked_moments(moment_columns)
    times = None
    if days_observed is not None:
        from stats.velocity import TimeTable

        observed = np.asarray(days_observed, dtype=np.float64)
        reached = (
            np.full(y.size, np.nan)
            if days_to_value is None
            else np.asarray(days_to_value, dtype=np.float64)
        )
        times = TimeTable.from_arrays(reached, observed)
    return ArmData(
        totals=totals,
        sums=sums_from_moments(moments),
        account_nrr=account_nrr,
        rows=(x, y),
        moments=moments,
        logo_churned=int(np.count_nonzero(columns["churned"] == y)),
        expanded=int(np.count_nonzero(columns["expansion"] > 0)),
        times=times,
        days_to_value=(
            None if days_to_value is None else np.asarray(days_to_value, dtype=np.float64)
        ),
    )


#: Rows per block when the account moments are computed from arrays: blocks merged by
#: Chan's formula keep the two-pass precision without copying every column at once (a
#: million accounts with the pre-period columns would otherwise hold ~100 MB of copies).
MOMENT_BLOCK_ROWS = 1 << 17


def _chunked_moments(columns: dict[str, np.ndarray]) -> Moments:
    n = next(iter(columns.values())).size
    if n <= MOMENT_BLOCK_ROWS:
        return Moments.from_arrays(columns)
    return sum(
        (
            Moments.from_arrays({k: v[i : i + MOMENT_BLOCK_ROWS] for k, v in columns.items()})
            for i in range(0, n, MOMENT_BLOCK_ROWS)
        ),
        Moments.empty(tuple(columns)),
    )


#: ``end = start + expansion - contraction - churned`` as coefficients of the columns.
END_COEFFICIENTS = {"start": 1.0, "expansion": 1.0, "contraction": -1.0, "churned": -1.0}


def sums_from_moments(moments: Moments) -> SufficientStats:
    """The ratio metric's statistics (``x = end``, ``y = start``) from the account moments.

    Parameters
    ----------
    moments : Moments
        Moments holding at least ``start``, ``expansion``, ``contraction`` and
        ``churned``.

    Returns
    -------
    SufficientStats
        Built from centred sums (:meth:`SufficientStats.from_comoments`), so
        the NRR variance keeps the precision of the co-moments.

    Notes
    -----
    With :math:`k` the coefficients of ``end`` and :math:`e` those of
    ``start``, :math:`M_{2,x} = k^\\top C k`, :math:`C_{xy} = k^\\top C e` and
    :math:`M_{2,y} = C_{\\mathrm{start},\\mathrm{start}}`.

    References
    ----------
    .. [1] Pébay, P. (2008). Formulas for robust, one-pass parallel computation
       of covariances and arbitrary-order statistical moments. Sandia report
       SAND2008-6212.

    Examples
    --------
    >>> m = Moments.from_arrays({"start": [100.0, 200.0], "expansion": [10.0, 0.0],
    ...                          "contraction": [0.0, 0.0], "churned": [0.0, 50.0]})
    >>> s = sums_from_moments(m)
    >>> s.sum_x, s.sum_y, round(s.var_x, 6)
    (260.0, 300.0, 800.0)
    """
    if moments.n == 0:
        return SufficientStats.empty()
    start = {"start": 1.0}
    mean_x = sum(c * moments.mean_of(name) for name, c in END_COEFFICIENTS.items())
    m2x = max(moments.linear_comoment(END_COEFFICIENTS, END_COEFFICIENTS), 0.0)
    return SufficientStats.from_comoments(
        moments.n,
        mean_x,
        moments.mean_of("start"),
        m2x,
        max(moments.linear_comoment(start, start), 0.0),
        moments.linear_comoment(END_COEFFICIENTS, start),
    )
