"""Count, means and centred co-moments of named per-account columns (DESIGN §4c).

Every NRR-native figure (levers, guardrails, CUPED) is a ratio of sums whose
delta-method variance is the variance of a *linear combination* of the
account columns, e.g. ``var(expansion - R·start)``. The full co-moment matrix
of ``start, expansion, contraction, churned`` (and the pre-period columns when
present) answers every such variance from one aggregate, so a SQL ``GROUP BY``
or a chunked file reader can hand the statistics one small object per arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from stats._checks import check_count, check_finite

#: The per-account columns the statistics know about, in canonical order.
MOMENT_COLUMNS = ("start", "expansion", "contraction", "churned", "pre_start", "pre_end")

#: Relative noise of co-moments computed from centred deviations (two-pass or
#: merged): a deviation is off by about eps·|a_i|, so a linear sum of squares
#: below (16 eps)² of its raw magnitude is rounding noise around a true zero.
CENTRED_NOISE = (16 * 2.220446049250313e-16) ** 2

#: Relative noise of co-moments cancelled from raw float sums (``Σab - ΣaΣb/n``):
#: about eps·log2(n) of the raw magnitude, more when a database adds naively.
RAW_SUM_NOISE = 1e-12

#: A linear sum of squares smaller than this fraction of the co-moments it
#: cancels from is noise (the co-moments carry a relative error of a few eps).
CANCELLATION_NOISE = 1e-13


def _exact(value: Any) -> bool:
    return isinstance(value, int | Decimal | Fraction) and not isinstance(value, bool)


def pool_centred(
    n_a: int, mean_a: np.ndarray, comoment_a: np.ndarray,
    n_b: int, mean_b: np.ndarray, comoment_b: np.ndarray,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Pool two non-empty sets of means and centred co-moments (Chan et al.).

    The one implementation of the parallel merge behind :class:`Moments` and
    :class:`stats.sums.CoMoments`; the formulas and references are in the
    Notes of :class:`Moments`. ``n_a`` and ``n_b`` must be positive.

    Examples
    --------
    >>> n, mean, c = pool_centred(2, np.array([1.5]), np.array([[0.5]]),
    ...                           1, np.array([3.0]), np.array([[0.0]]))
    >>> n, mean.tolist(), c.tolist()
    (3, [2.0], [[2.0]])
    """
    n = n_a + n_b
    delta = mean_b - mean_a
    comoment = comoment_a + comoment_b + np.outer(delta, delta) * (n_a * n_b / n)
    return n, mean_a + delta * (n_b / n), comoment


@dataclass(frozen=True)
class Moments:
    """Count, means and centred co-moments of named columns of one arm.

    Parameters
    ----------
    n : int
        Number of accounts.
    names : tuple of str
        Column names (e.g. ``MOMENT_COLUMNS[:4]``), unique.
    mean : tuple of float
        Column means, 0 when ``n == 0``.
    comoment : tuple of tuple of float
        Symmetric matrix :math:`C_{ab} = \\sum_i (a_i - \\bar a)(b_i - \\bar b)`.
    tolerance : float, optional
        Relative rounding noise of ``comoment`` against the raw sums
        (``CENTRED_NOISE`` from rows, ``RAW_SUM_NOISE`` from float sums).
    noise : tuple of float, optional
        Per column, the absolute rounding-noise scale :math:`\\nu_c` of the
        co-moments: :math:`|err(C_{cd})| \\lesssim \\nu_c \\nu_d`. Defaults to
        :math:`\\sqrt{tolerance \\cdot (C_{cc} + n \\bar c^2)}`, i.e. relative
        to the raw sum of squares; :meth:`from_sums` with ``shift`` sets it
        from the shifted sums actually added. :meth:`linear_var` snaps a sum
        of squares below :math:`(\\sum_c |k_c| \\nu_c)^2` to 0.

    Raises
    ------
    ValueError
        If the shapes disagree, a value is not finite, a name repeats, a
        diagonal entry is negative, or ``n == 0`` with non-zero moments.

    Notes
    -----
    Two sets pool by the parallel formulas of Chan et al. [1]_ (Pébay [2]_
    for co-moments): with :math:`n = n_a + n_b` and
    :math:`\\delta_c = \\bar c_b - \\bar c_a`,

    .. math::
        \\bar c = \\bar c_a + \\delta_c \\frac{n_b}{n}, \\qquad
        C_{cd} = C_{cd,a} + C_{cd,b} + \\delta_c \\delta_d \\frac{n_a n_b}{n}

    A linear combination :math:`u = \\sum_c k_c\\, c` has
    :math:`\\sum_i (u_i - \\bar u)^2 = k^\\top C k`, hence
    :math:`\\operatorname{var}(u) = k^\\top C k / (n - 1)`.

    References
    ----------
    .. [1] Chan, T. F., Golub, G. H. & LeVeque, R. J. (1979). Updating formulae
       and a pairwise algorithm for computing sample variances. Stanford
       report STAN-CS-79-773.
    .. [2] Pébay, P. (2008). Formulas for robust, one-pass parallel computation
       of covariances and arbitrary-order statistical moments. Sandia report
       SAND2008-6212.

    Examples
    --------
    >>> a = Moments.from_arrays({"start": [100.0, 200.0], "expansion": [10.0, 0.0]})
    >>> b = Moments.from_arrays({"start": [300.0], "expansion": [50.0]})
    >>> pooled = a + b
    >>> pooled.n, pooled.total("start"), pooled.cov("start", "expansion")
    (3, 600.0, 2000.0)
    >>> pooled.linear_var({"expansion": 1.0, "start": -0.1})
    400.0
    """

    n: int
    names: tuple[str, ...]
    mean: tuple[float, ...]
    comoment: tuple[tuple[float, ...], ...]
    tolerance: float = field(default=CENTRED_NOISE, compare=False)
    noise: tuple[float, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_count("n", self.n))
        names = tuple(self.names)
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"names must be non-empty strings; got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique; got {names!r}")
        k = len(names)
        if len(tuple(self.mean)) != k:
            raise ValueError(f"mean must hold {k} values, one per name")
        mean = tuple(
            check_finite(f"mean of {name}", v) for name, v in zip(names, self.mean, strict=True)
        )
        rows = tuple(tuple(row) for row in self.comoment)
        if len(rows) != k or any(len(row) != k for row in rows):
            raise ValueError(f"comoment must be a {k}×{k} matrix")
        matrix = [
            [check_finite(f"comoment {names[i]}×{names[j]}", rows[i][j]) for j in range(k)]
            for i in range(k)
        ]
        for i in range(k):
            if matrix[i][i] < 0:
                raise ValueError(
                    f"comoment {names[i]}×{names[i]} is a sum of squares and cannot be "
                    f"negative; got {matrix[i][i]!r}"
                )
            for j in range(i):
                # Symmetrise: merged or SQL-built matrices may differ by rounding.
                matrix[i][j] = matrix[j][i] = 0.5 * (matrix[i][j] + matrix[j][i])
        if self.n == 0 and (any(mean) or any(any(row) for row in matrix)):
            raise ValueError("n is 0 but the means or co-moments are not all zero")
        tolerance = check_finite("tolerance", self.tolerance)
        if tolerance < 0:
            raise ValueError(f"tolerance cannot be negative; got {tolerance!r}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "comoment", tuple(tuple(row) for row in matrix))
        object.__setattr__(self, "tolerance", tolerance)
        if self.noise is None:
            noise = tuple(
                math.sqrt(tolerance * (matrix[i][i] + self.n * mean[i] * mean[i])) for i in range(k)
            )
        else:
            noise = tuple(check_finite("noise", v) for v in self.noise)
            if len(noise) != k or any(v < 0 for v in noise):
                raise ValueError(f"noise must hold {k} values >= 0, one per name")
        object.__setattr__(self, "noise", noise)

    # ------------------------------------------------------------------ build
    @classmethod
    def empty(cls, names: tuple[str, ...] = MOMENT_COLUMNS[:4]) -> Moments:
        """Moments of no accounts, the identity for ``+``.

        Examples
        --------
        >>> Moments.empty().n, Moments.empty().names
        (0, ('start', 'expansion', 'contraction', 'churned'))
        """
        k = len(names)
        return cls(0, tuple(names), (0.0,) * k, ((0.0,) * k,) * k)

    @classmethod
    def from_arrays(cls, columns: Mapping[str, ArrayLike]) -> Moments:
        """Two-pass moments of equally long one-dimensional columns.

        Raises
        ------
        ValueError
            If the columns differ in length, are not one-dimensional or hold a
            non-finite value (named with its index).

        Examples
        --------
        >>> m = Moments.from_arrays({"start": [1.0, 2.0, 3.0], "churned": [0.0, 0.0, 3.0]})
        >>> m.mean, m.comoment
        ((2.0, 1.0), ((2.0, 3.0), (3.0, 6.0)))
        """
        if not columns:
            raise ValueError("columns must name at least one column")
        arrays = {name: _as_vector(name, values) for name, values in columns.items()}
        lengths = {name: a.size for name, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns must have the same length; got {lengths}")
        names = tuple(arrays)
        n = next(iter(lengths.values()))
        if n == 0:
            return cls.empty(names)
        data = np.vstack([arrays[name] for name in names])
        means = data.mean(axis=1)
        deviations = data - means[:, None]
        matrix = deviations @ deviations.T
        return cls(n, names, tuple(means.tolist()), tuple(map(tuple, matrix.tolist())))

    @classmethod
    def from_sums(
        cls,
        n: int,
        sums: Mapping[str, Any],
        products: Mapping[tuple[str, str], Any],
        shift: Mapping[str, float] | None = None,
    ) -> Moments:
        """Moments from raw sums ``Σa`` and ``Σab`` (a one-pass SQL aggregate).

        Parameters
        ----------
        n : int
            Number of accounts.
        sums : mapping of str to number
            ``Σa`` per column; its keys name the columns.
        products : mapping of (str, str) to number
            ``Σab`` for every pair of columns including ``(a, a)``; either key
            order is accepted.
        shift : mapping of str to float, optional
            When the sums are of shifted values ``a - shift[a]`` (the shifted-data
            algorithm, which keeps a large mean from cancelling the digits of a
            small spread), the shift per column; the means are shifted back and
            the rounding noise is judged against the shifted sums.

        Returns
        -------
        Moments
            When every sum is an integer or ``Decimal`` (exact money from
            SQL), the centred sums are computed exactly; with float sums a
            centred sum within ``RAW_SUM_NOISE`` of its raw magnitude is
            snapped to 0 (e.g. an arm where every account has the same MRR).

        Raises
        ------
        ValueError
            If a product is missing or a value is not finite.

        Notes
        -----
        .. math:: C_{ab} = \\sum a b - \\frac{\\sum a \\sum b}{n}

        References
        ----------
        .. [1] Chan, T. F., Golub, G. H. & LeVeque, R. J. (1983). Algorithms
           for computing the sample variance: analysis and recommendations.
           The American Statistician, 37(3), 242-247.

        Examples
        --------
        >>> m = Moments.from_sums(3, {"start": 6, "churned": 3},
        ...                       {("start", "start"): 14, ("churned", "start"): 9,
        ...                        ("churned", "churned"): 9})
        >>> m.comoment
        ((2.0, 3.0), (3.0, 6.0))
        """
        n = check_count("n", n)
        names = tuple(sums)
        if not names:
            raise ValueError("sums must name at least one column")

        def product(a: str, b: str) -> Any:
            for key in ((a, b), (b, a)):
                if key in products:
                    return products[key]
            raise ValueError(f"products is missing Σ{a}·{b}")

        raw_sums = {name: sums[name] for name in names}
        raw_products = {(a, b): product(a, b) for a in names for b in names}
        for name, value in raw_sums.items():
            check_finite(f"Σ{name}", value)
        for (a, b), value in raw_products.items():
            check_finite(f"Σ{a}·{b}", value)
        offsets = dict.fromkeys(names, 0.0)
        for name, value in (shift or {}).items():
            if name not in offsets:
                raise ValueError(f"shift names unknown column {name!r}; have {names}")
            offsets[name] = check_finite(f"shift of {name}", value)
        if n == 0:
            return cls.empty(names)
        exact = all(_exact(v) for v in raw_sums.values()) and all(
            _exact(v) for v in raw_products.values()
        )
        k = len(names)
        matrix = [[0.0] * k for _ in range(k)]
        if exact:
            fs = {name: Fraction(value) for name, value in raw_sums.items()}
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    value = Fraction(raw_products[a, b]) - fs[a] * fs[b] / n
                    matrix[i][j] = float(value)
            mean = tuple(float(fs[name] / n) + offsets[name] for name in names)
            tolerance = CENTRED_NOISE
        else:
            fl = {name: float(value) for name, value in raw_sums.items()}
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    raw_ab = float(raw_products[a, b])
                    value = raw_ab - fl[a] * fl[b] / n
                    scale = math.sqrt(
                        abs(float(raw_products[a, a])) * abs(float(raw_products[b, b]))
                    )
                    matrix[i][j] = 0.0 if abs(value) <= RAW_SUM_NOISE * scale else value
            mean = tuple(fl[name] / n + offsets[name] for name in names)
            tolerance = RAW_SUM_NOISE
        _clip_to_cauchy_schwarz(matrix)
        noise = tuple(math.sqrt(tolerance * abs(float(raw_products[name, name]))) for name in names)
        return cls(n, names, mean, tuple(map(tuple, matrix)), tolerance, noise)

    @classmethod
    def from_centred(
        cls,
        n: int,
        mean: Mapping[str, Any],
        centred: Mapping[tuple[str, str], Any],
    ) -> Moments:
        """Moments from means and centred sums ``Σ(a - ā)(b - b̄)`` (a two-pass SQL aggregate).

        Either key order of a pair is accepted; a slightly negative diagonal
        (rounding in the database) is clipped to 0.

        Raises
        ------
        ValueError
            If a pair is missing or a value is not finite.

        Examples
        --------
        >>> m = Moments.from_centred(3, {"start": 2.0}, {("start", "start"): 2.0})
        >>> m.cov("start", "start")
        1.0
        """
        n = check_count("n", n)
        names = tuple(mean)
        if not names:
            raise ValueError("mean must name at least one column")
        if n == 0:
            return cls.empty(names)
        matrix = []
        for a in names:
            row = []
            for b in names:
                key = (a, b) if (a, b) in centred else (b, a)
                if key not in centred:
                    raise ValueError(f"centred is missing Σ({a} - mean)·({b} - mean)")
                row.append(check_finite(f"centred {a}×{b}", centred[key]))
            matrix.append(row)
        for i in range(len(names)):
            matrix[i][i] = max(matrix[i][i], 0.0)
        _clip_to_cauchy_schwarz(matrix)
        means = tuple(check_finite(f"mean of {name}", mean[name]) for name in names)
        return cls(n, names, means, tuple(map(tuple, matrix)))

    # ------------------------------------------------------------------ pool
    def __add__(self, other: object) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        if set(self.names) != set(other.names):
            raise ValueError(
                f"cannot pool moments of different columns: {self.names} and {other.names}"
            )
        order = [other.names.index(name) for name in self.names]
        mean_b = np.array([other.mean[i] for i in order])
        comoment_b = np.array(other.comoment)[np.ix_(order, order)]
        n, mean, matrix = pool_centred(
            self.n, np.array(self.mean), np.array(self.comoment), other.n, mean_b, comoment_b
        )
        return Moments(
            n,
            self.names,
            tuple(mean.tolist()),
            tuple(map(tuple, matrix.tolist())),
            max(self.tolerance, other.tolerance),
            tuple(
                math.hypot(self.noise[i], other.noise[j])  # type: ignore[index]
                for i, j in enumerate(order)
            ),
        )

    def scaled(self, factor: float) -> Moments:
        """The moments of every column multiplied by ``factor`` (e.g. 0.01: cents to units).

        Examples
        --------
        >>> Moments.from_arrays({"start": [100.0, 300.0]}).scaled(0.01).cov("start", "start")
        2.0
        """
        f = check_finite("factor", factor)
        return Moments(
            self.n,
            self.names,
            tuple(m * f for m in self.mean),
            tuple(tuple(v * f * f for v in row) for row in self.comoment),
            self.tolerance,
            tuple(v * abs(f) for v in self.noise),  # type: ignore[union-attr]
        )

    def __radd__(self, other: object) -> Moments:
        # Lets the builtin sum(chunks) work: it starts from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    # ------------------------------------------------------------------ read
    def has(self, *names: str) -> bool:
        """Whether every one of ``names`` is a column of these moments."""
        return all(name in self.names for name in names)

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown column {name!r}; have {self.names}") from None

    def total(self, name: str) -> float:
        """Column total ``Σ name`` (``n`` × mean)."""
        return self.n * self.mean[self._index(name)]

    def mean_of(self, name: str) -> float | None:
        """Column mean, ``None`` for no accounts."""
        return self.mean[self._index(name)] if self.n else None

    def cov(self, a: str, b: str) -> float | None:
        """Sample covariance (ddof 1) of two columns, ``None`` when ``n < 2``."""
        i, j = self._index(a), self._index(b)
        if self.n < 2:
            return None
        return self.comoment[i][j] / (self.n - 1)

    def _vector(self, coef: Mapping[str, float]) -> np.ndarray:
        vector = np.zeros(len(self.names))
        for name, value in coef.items():
            vector[self._index(name)] += check_finite(f"coefficient of {name}", value)
        return vector

    def linear_comoment(self, coef_a: Mapping[str, float], coef_b: Mapping[str, float]) -> float:
        """Centred co-moment ``Σ(u - ū)(v - v̄)`` of two linear combinations.

        ``u = Σ coef_a[c]·c`` and ``v = Σ coef_b[c]·c``; 0 for no accounts.
        Not snapped (it may be any sign); see :meth:`linear_var` for variances.
        """
        u, v = self._vector(coef_a), self._vector(coef_b)
        return float(u @ np.array(self.comoment) @ v)

    def linear_var(self, coef: Mapping[str, float]) -> float | None:
        """Sample variance (ddof 1) of ``u = Σ coef[c]·c``, ``None`` when ``n < 2``.

        Returns
        -------
        float or None
            :math:`k^\\top C k / (n - 1)`, snapped to ``0.0`` when it is rounding
            noise (e.g. every account has the same end/start ratio and
            ``u = end - R·start`` is zero everywhere).

        Examples
        --------
        >>> m = Moments.from_arrays({"start": [100.0, 200.0], "expansion": [10.0, 20.0]})
        >>> m.linear_var({"expansion": 1.0, "start": -0.1})
        0.0
        """
        if self.n < 2:
            return None
        k = self._vector(coef)
        matrix = np.array(self.comoment)
        value = float(k @ matrix @ k)
        absolute = np.abs(k)
        scale = float(absolute @ np.abs(matrix) @ absolute)
        floor = float(absolute @ np.array(self.noise)) ** 2
        if value <= CANCELLATION_NOISE * scale or value <= floor:
            return 0.0
        return value / (self.n - 1)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form, inverse of :meth:`from_dict`."""
        return {
            "n": self.n,
            "names": list(self.names),
            "mean": list(self.mean),
            "comoment": [list(row) for row in self.comoment],
            "tolerance": self.tolerance,
            "noise": list(self.noise),  # type: ignore[arg-type]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        """Rebuild from :meth:`to_dict`; ``ValueError`` on a malformed document."""
        try:
            return cls(
                data["n"],
                tuple(data["names"]),
                tuple(data["mean"]),
                tuple(tuple(row) for row in data["comoment"]),
                data.get("tolerance", CENTRED_NOISE),
                None if data.get("noise") is None else tuple(data["noise"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a Moments document: {error!r}") from None


def _clip_to_cauchy_schwarz(matrix: list[list[float]]) -> None:
    # Rounding can never be allowed to produce an impossible correlation.
    k = len(matrix)
    for i in range(k):
        for j in range(k):
            if i != j:
                bound = math.sqrt(max(matrix[i][i], 0.0) * max(matrix[j][j], 0.0))
                matrix[i][j] = min(max(matrix[i][j], -bound), bound)


def _as_vector(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name} must hold finite numbers; got {float(array[index])!r} at index {index}"
        )
    return array
