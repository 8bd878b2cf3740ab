"""Analyse an NRR experiment: every treatment arm against the control.

:func:`analyze` turns per-arm :class:`~stats.sums.ArmData` into a frozen
:class:`ExperimentResult` whose :meth:`~ExperimentResult.to_dict` is the JSON
report of DESIGN §4. Degenerate data never raises: a figure that cannot be
computed is ``None`` and a warning says which and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from scipy import special

from stats._checks import check_alpha, check_positive, check_power, finite_or_none
from stats.power import MAX_SAMPLE_SIZE, achieved_power, required_sample_size
from stats.ratio import (
    delta_method_variance,
    ratio_estimate,
    relative_uplift_variance,
    sigma_lin,
    welch_satterthwaite_df,
)
from stats.significance import SRMResult, holm_adjust, mann_whitney_p, srm_test
from stats.sums import ArmData, ArmTotals, SufficientStats

Verdict = Literal["srm", "win", "loss", "underpowered", "inconclusive"]
VERDICTS: tuple[str, ...] = get_args(Verdict)

Interval = tuple[float | None, float | None]
_NO_INTERVAL: Interval = (None, None)


@dataclass(frozen=True)
class ArmResult:
    """One row of the arms table: money totals and retention of one variant.

    Attributes
    ----------
    variant : str
    accounts : int
    start_mrr, expansion_mrr, contraction_mrr, churned_mrr, end_mrr : float
        Currency units.
    nrr, grr : float or None
        Fractions (1.02 = 102 %); ``None`` for an arm without accounts.
    """

    variant: str
    accounts: int
    start_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float
    end_mrr: float
    nrr: float | None
    grr: float | None

    @classmethod
    def from_totals(cls, variant: str, totals: ArmTotals) -> ArmResult:
        """Row for ``variant`` from its money totals."""
        return cls(
            variant=variant,
            accounts=totals.accounts,
            start_mrr=totals.start_mrr,
            expansion_mrr=totals.expansion_mrr,
            contraction_mrr=totals.contraction_mrr,
            churned_mrr=totals.churned_mrr,
            end_mrr=totals.end_mrr,
            nrr=finite_or_none(totals.nrr),
            grr=finite_or_none(totals.grr),
        )

    def to_dict(self) -> dict[str, Any]:
        """The arm's object in the JSON report."""
        return {
            "variant": self.variant,
            "accounts": self.accounts,
            "start_mrr": self.start_mrr,
            "expansion_mrr": self.expansion_mrr,
            "contraction_mrr": self.contraction_mrr,
            "churned_mrr": self.churned_mrr,
            "end_mrr": self.end_mrr,
            "nrr": self.nrr,
            "grr": self.grr,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArmResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            variant=str(_get(data, "variant", "arm")),
            accounts=int(_get(data, "accounts", "arm")),
            start_mrr=float(_get(data, "start_mrr", "arm")),
            expansion_mrr=float(_get(data, "expansion_mrr", "arm")),
            contraction_mrr=float(_get(data, "contraction_mrr", "arm")),
            churned_mrr=float(_get(data, "churned_mrr", "arm")),
            end_mrr=float(_get(data, "end_mrr", "arm")),
            nrr=_optional_float(_get(data, "nrr", "arm")),
            grr=_optional_float(_get(data, "grr", "arm")),
        )


@dataclass(frozen=True)
class Comparison:
    """One treatment arm against the control.

    Attributes
    ----------
    variant : str
        The treatment variant.
    uplift_abs : float or None
        ``NRR_T - NRR_C`` (0.021 = 2.1 NRR points).
    ci_abs : tuple of (float or None, float or None)
        Two-sided ``1 - alpha`` confidence interval of ``uplift_abs``;
        ``(None, None)`` when it cannot be computed.
    uplift_rel : float or None
        ``NRR_T / NRR_C - 1``.
    ci_rel : tuple of (float or None, float or None)
        Confidence interval of ``uplift_rel``.
    p_value, p_value_adjusted, p_value_mwu : float or None
        Welch t p-value, its Holm adjustment across the experiment's
        treatment arms, and the Mann-Whitney robustness p-value.
    sigma_lin : float or None
        Noise level of the linearised metric on the control arm.
    required_n_per_arm : int or None
        Accounts per arm needed to detect the MDE with the planned power.
    power_achieved : float or None
        Power to detect the MDE with the observed arm sizes.
    verdict : {"srm", "win", "loss", "underpowered", "inconclusive"}
    warnings : tuple of str
        One sentence per figure that could not be computed, saying why.
    """

    variant: str
    uplift_abs: float | None
    ci_abs: Interval
    uplift_rel: float | None
    ci_rel: Interval
    p_value: float | None
    p_value_adjusted: float | None
    p_value_mwu: float | None
    sigma_lin: float | None
    required_n_per_arm: int | None
    power_achieved: float | None
    verdict: Verdict
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The comparison's object in the JSON report."""
        return {
            "variant": self.variant,
            "uplift_abs": self.uplift_abs,
            "ci_abs": list(self.ci_abs),
            "uplift_rel": self.uplift_rel,
            "ci_rel": list(self.ci_rel),
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "p_value_mwu": self.p_value_mwu,
            "sigma_lin": self.sigma_lin,
            "required_n_per_arm": self.required_n_per_arm,
            "power_achieved": self.power_achieved,
            "verdict": self.verdict,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """Inverse of :meth:`to_dict`."""
        verdict = _get(data, "verdict", "comparison")
        if verdict not in VERDICTS:
            raise ValueError(f"comparison verdict must be one of {VERDICTS}; got {verdict!r}")
        required = _get(data, "required_n_per_arm", "comparison")
        return cls(
            variant=str(_get(data, "variant", "comparison")),
            uplift_abs=_optional_float(_get(data, "uplift_abs", "comparison")),
            ci_abs=_interval(_get(data, "ci_abs", "comparison")),
            uplift_rel=_optional_float(_get(data, "uplift_rel", "comparison")),
            ci_rel=_interval(_get(data, "ci_rel", "comparison")),
            p_value=_optional_float(_get(data, "p_value", "comparison")),
            p_value_adjusted=_optional_float(_get(data, "p_value_adjusted", "comparison")),
            p_value_mwu=_optional_float(_get(data, "p_value_mwu", "comparison")),
            sigma_lin=_optional_float(_get(data, "sigma_lin", "comparison")),
            required_n_per_arm=None if required is None else int(required),
            power_achieved=_optional_float(_get(data, "power_achieved", "comparison")),
            verdict=verdict,
            warnings=tuple(str(w) for w in data.get("warnings", ())),
        )


@dataclass(frozen=True)
class ExperimentResult:
    """The full analysis of one experiment, serialisable to DESIGN §4's JSON report.

    Attributes
    ----------
    alpha, power, mde : float
        The analysis plan.
    control : str
        The control variant.
    srm : SRMResult
        Sample-ratio-mismatch check (its warnings are in ``warnings``).
    arms : tuple of ArmResult
        Planned variants in plan order, then unplanned ones.
    comparisons : tuple of Comparison
        Every non-control arm against the control, in arm order.
    warnings : tuple of str
        Experiment-level warnings (SRM, empty or single-account arms, ...).
    """

    alpha: float
    power: float
    mde: float
    control: str
    srm: SRMResult
    arms: tuple[ArmResult, ...]
    comparisons: tuple[Comparison, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe report: plain floats, ``None`` for missing figures, never NaN or inf.

        Examples
        --------
        >>> from stats import arm_from_arrays
        >>> control = arm_from_arrays([100.0, 200.0, 150.0], [0.0, 20.0, 0.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0])
        >>> report = analyze({"control": control}, control="control").to_dict()
        >>> sorted(report)
        ['alpha', 'arms', 'comparisons', 'control', 'mde', 'power', 'srm', 'warnings']
        >>> report["arms"][0]["nrr"], report["comparisons"]
        (1.0222222222222221, [])
        """
        return {
            "alpha": self.alpha,
            "power": self.power,
            "mde": self.mde,
            "control": self.control,
            "srm": self.srm.to_dict(),
            "arms": [arm.to_dict() for arm in self.arms],
            "comparisons": [comparison.to_dict() for comparison in self.comparisons],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a stored JSON snapshot).

        Raises
        ------
        ValueError
            If a key is missing or a verdict is unknown.
        """
        srm = _get(data, "srm", "report")
        return cls(
            alpha=float(_get(data, "alpha", "report")),
            power=float(_get(data, "power", "report")),
            mde=float(_get(data, "mde", "report")),
            control=str(_get(data, "control", "report")),
            srm=SRMResult(
                p_value=_optional_float(_get(srm, "p_value", "srm")),
                observed={str(k): int(v) for k, v in _get(srm, "observed", "srm").items()},
                expected_weights={
                    str(k): float(v) for k, v in _get(srm, "expected_weights", "srm").items()
                },
                flag=bool(_get(srm, "flag", "srm")),
            ),
            arms=tuple(ArmResult.from_dict(arm) for arm in _get(data, "arms", "report")),
            comparisons=tuple(Comparison.from_dict(c) for c in _get(data, "comparisons", "report")),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
        )


def _get(data: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise ValueError(f"{where} is missing the key {key!r}") from None


def _optional_float(value: Any) -> float | None:
    return None if value is None else finite_or_none(float(value))


def _interval(value: Any) -> Interval:
    if value is None:
        return _NO_INTERVAL
    low, high = value
    return (_optional_float(low), _optional_float(high))


@dataclass(frozen=True)
class _ArmFigures:
    """Per-arm inputs to a comparison, computed once per arm."""

    variant: str
    sums: SufficientStats
    ratio: float | None
    variance: float | None
    account_nrr: Any


def _arm_figures(variant: str, arm: ArmData) -> _ArmFigures:
    return _ArmFigures(
        variant=variant,
        sums=arm.sums,
        ratio=ratio_estimate(arm.sums),
        variance=delta_method_variance(arm.sums),
        account_nrr=arm.account_nrr,
    )


def _verdict(
    srm_flag: bool,
    uplift: float | None,
    p_adjusted: float | None,
    power: float | None,
    alpha: float,
    planned_power: float,
) -> Verdict:
    if srm_flag:
        return "srm"
    if p_adjusted is not None and uplift is not None and p_adjusted < alpha:
        return "win" if uplift > 0 else "loss"
    if power is not None and power < planned_power:
        return "underpowered"
    return "inconclusive"


def _compare(
    treatment: _ArmFigures,
    control: _ArmFigures,
    *,
    alpha: float,
    mde: float,
    control_sigma: float | None,
    required_n: int | None,
    sizing_note: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """Figures of one comparison before multiplicity adjustment and verdict."""
    notes: list[str] = []
    t_name, c_name = repr(treatment.variant), repr(control.variant)
    n_t, n_c = treatment.sums.n, control.sums.n

    uplift_abs = uplift_rel = p_value = None
    ci_abs = ci_rel = _NO_INTERVAL
    empty = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n == 0]
    if empty:
        notes.append(f"uplift not computed: {' and '.join(empty)} has no accounts")
    elif treatment.ratio is None or control.ratio is None:
        notes.append("uplift not computed: an arm has no start MRR")
    else:
        uplift_abs = treatment.ratio - control.ratio
        t_crit = df = None
        if treatment.variance is None or control.variance is None:
            single = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n < 2]
            notes.append(
                f"confidence intervals and p-value not computed: {' and '.join(single)} has a single account, "
                "so its variance cannot be estimated"
            )
        else:
            var_abs = treatment.variance + control.variance
            df = welch_satterthwaite_df(treatment.variance, n_t, control.variance, n_c)
            if var_abs == 0 or df is None:
                notes.append(
                    "confidence intervals and p-value not computed: every account in both arms has the same "
                    "end/start ratio, so the uplift has zero estimated variance"
                )
            else:
                se = math.sqrt(var_abs)
                t_crit = float(special.stdtrit(df, 1.0 - alpha / 2.0))
                ci_abs = (
                    finite_or_none(uplift_abs - t_crit * se),
                    finite_or_none(uplift_abs + t_crit * se),
                )
                p_value = finite_or_none(2.0 * special.stdtr(df, -abs(uplift_abs) / se))
        if control.ratio == 0:
            notes.append(
                f"relative uplift not computed: the control NRR is 0 ({c_name} kept no revenue: "
                "every account churned or contracted to zero)"
            )
        else:
            uplift_rel = treatment.ratio / control.ratio - 1.0
            if (
                t_crit is not None
                and treatment.variance is not None
                and control.variance is not None
            ):
                var_rel = relative_uplift_variance(
                    treatment.ratio, treatment.variance, control.ratio, control.variance
                )
                if var_rel is not None:
                    half = t_crit * math.sqrt(var_rel)
                    ci_rel = (finite_or_none(uplift_rel - half), finite_or_none(uplift_rel + half))

    if treatment.account_nrr is None or control.account_nrr is None:
        p_value_mwu = None
        notes.append(
            "p_value_mwu not computed: per-account NRR values were not supplied (sufficient statistics only)"
        )
    else:
        p_value_mwu = mann_whitney_p(treatment.account_nrr, control.account_nrr)

    if sizing_note:
        notes.append(sizing_note)
    power_achieved = None
    if control_sigma is not None and control_sigma > 0:
        power_achieved = achieved_power(mde, control_sigma, n_c, n_t, alpha=alpha)
        if power_achieved is None:
            small = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n < 2]
            notes.append(
                f"achieved power not computed: {' and '.join(small)} has fewer than 2 accounts"
            )

    figures = {
        "variant": treatment.variant,
        "uplift_abs": finite_or_none(uplift_abs),
        "ci_abs": ci_abs,
        "uplift_rel": finite_or_none(uplift_rel),
        "ci_rel": ci_rel,
        "p_value": p_value,
        "p_value_mwu": p_value_mwu,
        "sigma_lin": control_sigma,
        "required_n_per_arm": required_n,
        "power_achieved": finite_or_none(power_achieved),
    }
    return figures, notes


def _resolve_plan(
    arms: Mapping[str, ArmData],
    control: str,
    weights: Mapping[str, float] | None,
    variants: Sequence[str] | None,
) -> tuple[list[str], dict[str, float]]:
    """Planned variants in order and their weights, or ``ValueError`` for a caller error."""
    for key, arm in arms.items():
        if not isinstance(key, str):
            raise ValueError(f"arm keys must be variant names (str); got {key!r}")
        if not isinstance(arm, ArmData):
            raise TypeError(f"arms[{key!r}] must be an ArmData; got {type(arm).__name__}")
    if variants is None:
        planned = list(arms)
    else:
        if isinstance(variants, str):
            raise ValueError(
                f"variants must be a sequence of variant names, not the string {variants!r}"
            )
        planned = list(variants)
        for variant in planned:
            if not isinstance(variant, str):
                raise ValueError(f"variants must be strings; got {variant!r}")
        duplicates = sorted({v for v in planned if planned.count(v) > 1})
        if duplicates:
            raise ValueError(f"variants must be unique; {duplicates} repeated")
    if control not in planned:
        raise ValueError(f"control {control!r} is not one of the variants {planned}")
    if weights is None:
        return planned, dict.fromkeys(planned, 1.0)
    unknown = [v for v in weights if v not in planned]
    if unknown:
        raise ValueError(f"weights name unknown variant(s) {unknown}; the variants are {planned}")
    missing = [v for v in planned if v not in weights]
    if missing:
        raise ValueError(f"weights give no weight for variant(s) {missing}")
    return planned, {
        variant: check_positive(f"weights[{variant!r}]", weights[variant]) for variant in planned
    }


def analyze(
    arms: Mapping[str, ArmData],
    *,
    control: str,
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float = 0.02,
    weights: Mapping[str, float] | None = None,
    variants: Sequence[str] | None = None,
) -> ExperimentResult:
    """Compare every treatment arm's NRR with the control's.

    Parameters
    ----------
    arms : mapping of str to ArmData
        Observed data per variant (from :func:`stats.arm_from_arrays` or from
        sums aggregated in SQL).
    control : str
        The control variant; must be planned.
    alpha : float, default 0.05
        Two-sided significance level, in (0, 0.5].
    power : float, default 0.8
        Planned power, in [0.5, 0.99].
    mde : float, default 0.02
        Minimum detectable effect in absolute NRR (0.02 = 2 points), > 0.
    weights : mapping of str to float, optional
        Planned allocation weights (> 0), one per planned variant. Defaults
        to equal weights.
    variants : sequence of str, optional
        Planned variants, in display order. Defaults to the keys of ``arms``.
        A planned variant without rows is reported as an empty arm with a
        warning (and usually trips the SRM check). An observed variant that
        is not planned is reported and compared, but flags SRM: its
        accounts were not supposed to exist, so no comparison is trusted.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    ValueError
        If ``alpha``, ``power`` or ``mde`` is out of range, ``control`` is not
        a planned variant, ``variants`` repeats a name, or ``weights`` name an
        unknown variant, miss a planned one or are not > 0.
    TypeError
        If an arm is not an :class:`~stats.sums.ArmData`.

    Notes
    -----
    Per arm, with :math:`x` = end MRR and :math:`y` = start MRR,
    :math:`R = \\sum x / \\sum y` and :math:`V = \\operatorname{var}(R)` by the
    delta method (:func:`stats.ratio.delta_method_variance`). For each
    treatment :math:`T` against control :math:`C`:

    .. math::
        \\Delta = R_T - R_C, \\quad V_\\Delta = V_T + V_C, \\quad
        \\nu = \\frac{V_\\Delta^2}{V_T^2/(n_T-1) + V_C^2/(n_C-1)}

    .. math::
        \\mathrm{CI} = \\Delta \\mp t_{1-\\alpha/2,\\nu}\\sqrt{V_\\Delta}, \\quad
        p = 2\\,F_{t,\\nu}\\!\\left(-|\\Delta|/\\sqrt{V_\\Delta}\\right)

    .. math::
        \\Delta_{rel} = R_T/R_C - 1, \\quad
        V_{rel} = V_T/R_C^2 + R_T^2 V_C/R_C^4

    and the relative interval uses the same :math:`t_{1-\\alpha/2,\\nu}`.
    ``sigma_lin``, ``required_n_per_arm`` (equal arms) and ``power_achieved``
    come from :mod:`stats.power` with :math:`d = \\mathrm{mde}/\\sigma_{lin}`.
    p-values are Holm-adjusted across the treatment arms. The verdict is the
    first that applies of: ``srm`` (SRM flagged), ``win``/``loss`` (adjusted
    p < alpha, by the sign of the uplift), ``underpowered`` (achieved power
    below the planned power), ``inconclusive``.

    References
    ----------
    .. [1] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18.
    .. [2] Welch, B. L. (1947). The generalization of "Student's" problem when
       several different population variances are involved. Biometrika, 34.
    .. [3] Holm, S. (1979). A simple sequentially rejective multiple test
       procedure. Scandinavian Journal of Statistics, 6(2), 65-70.
    .. [4] Fabijan, A. et al. (2019). Diagnosing Sample Ratio Mismatch in
       Online Controlled Experiments. KDD '19.

    Examples
    --------
    >>> import numpy as np
    >>> from stats import arm_from_arrays
    >>> rng = np.random.default_rng(7)
    >>> start = rng.lognormal(6, 1, size=(2, 4000))
    >>> nothing = np.zeros(4000)
    >>> churn = np.where(rng.random((2, 4000)) < 0.08, start, 0.0)
    >>> arms = {
    ...     "control": arm_from_arrays(start[0], 0.03 * start[0], nothing, churn[0]),
    ...     "treatment": arm_from_arrays(start[1], 0.10 * start[1], nothing, churn[1]),
    ... }
    >>> result = analyze(arms, control="control", mde=0.03)
    >>> c = result.comparisons[0]
    >>> round(c.uplift_abs, 3), c.verdict
    (0.062, 'win')
    >>> print(summary_sentence(c, result.alpha))
    Treatment raised NRR by 6.2 pts (95% CI 4.0 to 8.3), p < 0.001.
    """
    alpha = check_alpha(alpha)
    power = check_power(power)
    mde = check_positive("mde", mde)
    planned, plan_weights = _resolve_plan(arms, control, weights, variants)
    order = planned + [variant for variant in arms if variant not in plan_weights]
    empty_arm = ArmData(ArmTotals.empty(), SufficientStats.empty())
    data = {variant: arms.get(variant, empty_arm) for variant in order}

    srm = srm_test({variant: data[variant].totals.accounts for variant in order}, plan_weights)
    warnings: list[str] = list(srm.warnings)
    figures = {variant: _arm_figures(variant, arm) for variant, arm in data.items()}
    for variant, arm in data.items():
        n = arm.sums.n
        if n == 0:
            warnings.append(
                f"variant {variant!r} has no accounts; its figures are empty and it cannot be compared"
            )
        elif n == 1:
            warnings.append(
                f"variant {variant!r} has a single account; its variance cannot be estimated"
            )
        elif figures[variant].variance == 0:
            warnings.append(
                f"variant {variant!r}: every account has the same end/start ratio, so its NRR has zero variance"
            )
        if n and arm.sums.sum_x == 0:
            warnings.append(
                f"variant {variant!r} ended with no revenue: every account churned or contracted to zero"
            )
    if len(order) == 1:
        warnings.append(f"only one variant ({control!r}); there is nothing to compare it with")

    control_figures = figures[control]
    control_sigma = finite_or_none(sigma_lin(control_figures.sums))
    required_n = None
    sizing_note = None
    if control_sigma is None:
        sizing_note = f"sigma_lin, required sample size and power not computed: control {control!r} has fewer than 2 accounts"
    elif control_sigma == 0:
        sizing_note = (
            "required sample size and power not computed: every control account has the same end/start ratio "
            "(sigma_lin = 0)"
        )
    else:
        required_n = required_sample_size(mde, control_sigma, alpha=alpha, power=power)
        if required_n is None:
            sizing_note = f"required sample size not computed: it exceeds {MAX_SAMPLE_SIZE:,} accounts per arm"

    partial = []
    for variant in order:
        if variant == control:
            continue
        partial.append(
            _compare(
                figures[variant],
                control_figures,
                alpha=alpha,
                mde=mde,
                control_sigma=control_sigma,
                required_n=required_n,
                sizing_note=sizing_note,
            )
        )
    adjusted = holm_adjust([fig["p_value"] for fig, _ in partial])
    comparisons = tuple(
        Comparison(
            **fig,
            p_value_adjusted=p_adj,
            verdict=_verdict(
                srm.flag, fig["uplift_abs"], p_adj, fig["power_achieved"], alpha, power
            ),
            warnings=tuple(notes),
        )
        for (fig, notes), p_adj in zip(partial, adjusted, strict=True)
    )
    return ExperimentResult(
        alpha=alpha,
        power=power,
        mde=mde,
        control=control,
        # The SRM warnings live at top level only, so a JSON round trip is lossless.
        srm=replace(srm, warnings=()),
        arms=tuple(ArmResult.from_totals(variant, data[variant].totals) for variant in order),
        comparisons=comparisons,
        warnings=tuple(warnings),
    )


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _points(value: float, *, signed: bool = False) -> str:
    text = f"{value * 100:{'+' if signed else ''}.1f}"
    # A change that rounds to zero should not read as "-0.0 pts".
    return text.replace("-0.0", "+0.0" if signed else "0.0") if text.lstrip("+-") == "0.0" else text


def summary_sentence(comparison: Comparison, alpha: float) -> str:
    """One plain-language sentence for a comparison, for pages and exports.

    Parameters
    ----------
    comparison : Comparison
    alpha : float
        The experiment's significance level (sets the CI level and what
        counts as significant).

    Returns
    -------
    str

    Notes
    -----
    Uplift is in NRR points, ``uplift_abs * 100``. Significance is judged on
    the Holm-adjusted p-value, which is the one quoted; it is labelled
    "adjusted" when it differs from the raw p-value.

    References
    ----------
    .. [1] NRR Lab design, section 4 "Statistics".

    Examples
    --------
    >>> c = Comparison("treatment", 0.021, (0.004, 0.038), 0.02, (0.004, 0.036), 0.014, 0.014, 0.02,
    ...                0.3, 3500, 0.6, "win")
    >>> summary_sentence(c, 0.05)
    'Treatment raised NRR by 2.1 pts (95% CI 0.4 to 3.8), p = 0.014.'
    >>> summary_sentence(replace(c, uplift_abs=0.003, ci_abs=(-0.012, 0.018), p_value=0.41,
    ...                          p_value_adjusted=0.41, verdict="underpowered"), 0.05)
    'Treatment showed no detectable change in NRR: +0.3 pts (95% CI -1.2 to 1.8), p = 0.41.'
    """
    alpha = check_alpha(alpha)
    name = comparison.variant[:1].upper() + comparison.variant[1:]
    prefix = (
        "Sample ratio mismatch, so this result cannot be trusted: "
        if comparison.verdict == "srm"
        else ""
    )
    why = next((w for w in comparison.warnings if w.startswith(("uplift", "confidence"))), None)
    reason = f": {why}" if why else ""
    uplift = comparison.uplift_abs
    if uplift is None:
        return f"{prefix}The NRR uplift of {name} could not be computed{reason}."
    p_adjusted = comparison.p_value_adjusted
    low, high = comparison.ci_abs
    if p_adjusted is None or low is None or high is None:
        return (
            f"{prefix}{name} changed NRR by {_points(uplift, signed=True)} pts, but its confidence interval "
            f"and p-value could not be computed{reason}."
        )
    level = f"{(1 - alpha) * 100:g}%"
    p_text = _format_p(p_adjusted)
    if comparison.p_value is not None and not math.isclose(
        p_adjusted, comparison.p_value, rel_tol=1e-12
    ):
        p_text = "adjusted " + p_text
    interval = f"({level} CI {_points(low)} to {_points(high)})"
    if p_adjusted < alpha:
        direction = "raised" if uplift > 0 else "lowered"
        return f"{prefix}{name} {direction} NRR by {_points(abs(uplift))} pts {interval}, {p_text}."
    return f"{prefix}{name} showed no detectable change in NRR: {_points(uplift, signed=True)} pts {interval}, {p_text}."
