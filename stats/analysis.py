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

import numpy as np
from scipy import special

from stats._checks import check_alpha, check_positive, check_power, finite_or_none
from stats.cuped import CupedResult, cuped
from stats.levers import (
    GuardrailResult,
    GuardrailSpec,
    LeverFigure,
    Proportions,
    guardrail,
    lever_figures,
    two_proportions,
)
from stats.power import MAX_SAMPLE_SIZE, achieved_power
from stats.ratio import (
    delta_method_variance,
    ratio_estimate,
    relative_uplift_variance,
    sigma_lin,
    welch_satterthwaite_df,
)
from stats.robust import (
    MAX_PERMUTATION_ACCOUNTS,
    linearised_skewness,
    needs_permutation,
    permutation_test,
)
from stats.sequential import SequentialResult, sequential_test
from stats.significance import SRMResult, holm_adjust, mann_whitney, srm_test
from stats.sizing import plan_sample_sizes
from stats.sums import ArmData, ArmTotals, SufficientStats

Verdict = Literal["srm", "win", "loss", "underpowered", "inconclusive"]
VERDICTS: tuple[str, ...] = get_args(Verdict)

Interval = tuple[float | None, float | None]
_NO_INTERVAL: Interval = (None, None)

#: How a comparison's p-value and intervals were computed (DESIGN §4c).
InferenceMethod = Literal["welch", "permutation"]
#: How ``ci_abs_adjusted`` is adjusted for k treatment arms.
CIMethod = Literal["bonferroni", "unadjusted"]

#: Below this many accounts in the smaller arm of a comparison, the seeded
#: studentised permutation test (:func:`stats.robust.permutation_test`) is also
#: run and reported under ``"permutation"``: the t approximation behind the
#: Welch p-value rests on the central limit theorem, which skewed MRR reaches
#: only slowly (DESIGN §4b, issue 15).
SMALL_SAMPLE_ACCOUNTS = 300

#: The time-to-value target of journey velocity when the plan sets none (days).
DEFAULT_TTV_TARGET_DAYS = 14


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
    ci_abs_adjusted : tuple of (float or None, float or None)
        ``ci_abs`` at the Bonferroni level ``1 - alpha/k`` for k treatment
        arms (the level the multiplicity-adjusted verdict is judged at); equal
        to ``ci_abs`` when k = 1.
    ci_method : {"bonferroni", "unadjusted"}
        How ``ci_abs_adjusted`` was adjusted.
    inference : dict
        ``method`` ("welch" or "permutation"), ``reason`` (why the permutation
        test was used, else None), ``permutations``, ``seed``, and the Welch
        figures ``welch_p_value`` / ``welch_ci_abs`` kept for reference.
    mann_whitney : dict
        ``p_value``, ``prob_superiority`` (P(treatment account > control
        account)), ``direction`` and ``note`` (one line when it disagrees with
        the NRR test, else None).
    sequential : SequentialResult or None
        Always-valid figures when the analysis is sequential.
    levers : dict of str to LeverFigure, or None
        Expansion, contraction, churn and GRR (DESIGN §4c "Levers"); ``None``
        when the arms carry no account moments (sums only).
    logo_churn, expansion_incidence : Proportions or None
        Share of accounts fully churned / with any expansion, with the
        two-proportion test; ``None`` when the counts are unknown.
    guardrails : tuple of GuardrailResult
        One per planned guardrail, in plan order (empty without guardrails).
    cuped : CupedResult or None
        CUPED-adjusted uplift; ``None`` without the pre-period columns.
    velocity : dict or None
        ``target_days``, ``logrank_p`` and per arm ``reached``, ``censored``,
        ``median_days``, ``share_by_target``; ``None`` without days_observed.
    permutation : dict or None
        ``p_value``, ``permutations``, ``seed`` of the permutation test when the
        smaller arm has fewer than ``SMALL_SAMPLE_ACCOUNTS`` accounts.
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
    ci_abs_adjusted: Interval = _NO_INTERVAL
    ci_method: CIMethod = "unadjusted"
    inference: Mapping[str, Any] = field(default_factory=dict)
    mann_whitney: Mapping[str, Any] = field(default_factory=dict)
    sequential: SequentialResult | None = None
    levers: Mapping[str, LeverFigure] | None = None
    logo_churn: Proportions | None = None
    expansion_incidence: Proportions | None = None
    guardrails: tuple[GuardrailResult, ...] = ()
    cuped: CupedResult | None = None
    velocity: Mapping[str, Any] | None = None
    permutation: Mapping[str, Any] | None = None

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
            "ci_abs_adjusted": list(self.ci_abs_adjusted),
            "ci_method": self.ci_method,
            "inference": _plain(self.inference),
            "mann_whitney": dict(self.mann_whitney),
            "sequential": None if self.sequential is None else self.sequential.to_dict(),
            "levers": (
                None
                if self.levers is None
                else {name: lever.to_dict() for name, lever in self.levers.items()}
            ),
            "logo_churn": None if self.logo_churn is None else self.logo_churn.to_dict(),
            "expansion_incidence": (
                None if self.expansion_incidence is None else self.expansion_incidence.to_dict()
            ),
            "guardrails": [g.to_dict() for g in self.guardrails],
            "cuped": None if self.cuped is None else self.cuped.to_dict(),
            "velocity": None if self.velocity is None else _plain_nested(self.velocity),
            "permutation": None if self.permutation is None else dict(self.permutation),
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
            ci_abs_adjusted=_interval(data.get("ci_abs_adjusted")),
            ci_method="bonferroni" if data.get("ci_method") == "bonferroni" else "unadjusted",
            inference=dict(data.get("inference") or {}),
            mann_whitney=dict(data.get("mann_whitney") or {}),
            sequential=_sequential(data.get("sequential")),
            # Snapshots stored before issue 15 lack these keys: null / [].
            levers=_levers(data.get("levers")),
            logo_churn=_proportions(data.get("logo_churn")),
            expansion_incidence=_proportions(data.get("expansion_incidence")),
            guardrails=tuple(_guardrail_result(g) for g in data.get("guardrails") or ()),
            cuped=_cuped(data.get("cuped")),
            velocity=_plain_nested(data["velocity"]) if data.get("velocity") else None,
            permutation=dict(data["permutation"]) if data.get("permutation") else None,
        )


def _plain_nested(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: _plain_nested(v) if isinstance(v, Mapping) else v for key, v in mapping.items()
    }


def _levers(value: Any) -> dict[str, LeverFigure] | None:
    if not value:
        return None
    return {
        str(name): LeverFigure(
            _optional_float(lever.get("control")),
            _optional_float(lever.get("treatment")),
            _optional_float(lever.get("uplift_abs")),
            _interval(lever.get("ci_abs")),
            _optional_float(lever.get("p_value")),
            None,
            None,
        )
        for name, lever in value.items()
    }


def _proportions(value: Any) -> Proportions | None:
    if not value:
        return None
    return Proportions(
        _optional_float(value.get("control")),
        _optional_float(value.get("treatment")),
        _optional_float(value.get("diff")),
        _optional_float(value.get("p_value")),
        None,
    )


def _guardrail_result(value: Mapping[str, Any]) -> GuardrailResult:
    return GuardrailResult(
        metric=value["metric"],
        margin=float(value["margin"]),
        diff=_optional_float(value.get("diff")),
        p_value=_optional_float(value.get("p_value")),
        status=value.get("status"),
    )


def _cuped(value: Any) -> CupedResult | None:
    if not value:
        return None
    return CupedResult(
        uplift_abs=float(value["uplift_abs"]),
        ci_abs=_interval(value.get("ci_abs")),
        p_value=_optional_float(value.get("p_value")),
        variance_reduction=_optional_float(value.get("variance_reduction")),
        theta=float("nan"),  # not part of the report
        sigma_adjusted=None,
    )


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: list(v) if isinstance(v, tuple) else v for key, v in mapping.items()}


def _sequential(value: Any) -> SequentialResult | None:
    if not value:
        return None
    return SequentialResult(
        float(value["tuning"]), _interval(value.get("ci_abs")), _optional_float(value["p_value"])
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
    required_n : dict of str to int or None
        Accounts each arm needs for its allocation and for ``alpha_sizing``.
    alpha_sizing : float or None
        ``alpha / k`` for k treatment arms.
    sigma_planning : float or None
        The sigma the sizes use; ``sigma_source`` says where it came from
        ("given" or "control").
    guardrails_plan : tuple of GuardrailSpec
        The plan's non-inferiority guardrails (empty when none are set).
    ttv_target_days : float
        The time-to-value target of journey velocity.
    velocity_curves : dict of str to list of [t, share reached], or None
        Each arm's Kaplan-Meier curve of reaching value, for drawing; ``None``
        without days_observed.
    velocity_cohorts : list of dict or None
        NRR of the fast / average / slow terciles of time to value and of the
        accounts that did not reach it, over all arms; ``None`` without
        days_to_value per account.
    """

    alpha: float
    power: float
    mde: float
    control: str
    srm: SRMResult
    arms: tuple[ArmResult, ...]
    comparisons: tuple[Comparison, ...]
    warnings: tuple[str, ...] = field(default=())
    required_n: Mapping[str, int | None] = field(default_factory=dict)
    alpha_sizing: float | None = None
    sigma_planning: float | None = None
    sigma_source: str | None = None
    guardrails_plan: tuple[GuardrailSpec, ...] = ()
    ttv_target_days: float = DEFAULT_TTV_TARGET_DAYS
    velocity_curves: Mapping[str, Sequence[Sequence[float]]] | None = None
    velocity_cohorts: Sequence[Mapping[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe report: plain floats, ``None`` for missing figures, never NaN or inf.

        Examples
        --------
        >>> from stats import arm_from_arrays
        >>> control = arm_from_arrays([100.0, 200.0, 150.0], [0.0, 20.0, 0.0], [0.0, 0.0, 10.0],
        ...                           [0.0, 0.0, 0.0])
        >>> report = analyze({"control": control}, control="control").to_dict()
        >>> sorted(report)  # doctest: +NORMALIZE_WHITESPACE
        ['alpha', 'alpha_sizing', 'arms', 'comparisons', 'control', 'guardrails_plan', 'mde',
         'power', 'required_n', 'sigma_planning', 'sigma_source', 'srm', 'ttv_target_days',
         'velocity_cohorts', 'velocity_curves', 'warnings']
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
            "required_n": dict(self.required_n),
            "alpha_sizing": self.alpha_sizing,
            "sigma_planning": self.sigma_planning,
            "sigma_source": self.sigma_source,
            "guardrails_plan": [spec.to_dict() for spec in self.guardrails_plan],
            "ttv_target_days": self.ttv_target_days,
            "velocity_curves": (
                None
                if self.velocity_curves is None
                else {k: [list(p) for p in v] for k, v in self.velocity_curves.items()}
            ),
            "velocity_cohorts": (
                None if self.velocity_cohorts is None else [dict(r) for r in self.velocity_cohorts]
            ),
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
            required_n={
                str(k): None if v is None else int(v)
                for k, v in (data.get("required_n") or {}).items()
            },
            alpha_sizing=_optional_float(data.get("alpha_sizing")),
            sigma_planning=_optional_float(data.get("sigma_planning")),
            sigma_source=data.get("sigma_source"),
            guardrails_plan=tuple(
                GuardrailSpec(g["metric"], float(g["margin"]))
                for g in data.get("guardrails_plan") or ()
            ),
            ttv_target_days=float(data.get("ttv_target_days") or DEFAULT_TTV_TARGET_DAYS),
            velocity_curves=(
                {str(k): [list(p) for p in v] for k, v in data["velocity_curves"].items()}
                if data.get("velocity_curves")
                else None
            ),
            velocity_cohorts=(
                [dict(r) for r in data["velocity_cohorts"]]
                if data.get("velocity_cohorts") is not None
                else None
            ),
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
    rows: Any
    arm: ArmData | None = None


def _arm_figures(variant: str, arm: ArmData) -> _ArmFigures:
    return _ArmFigures(
        variant=variant,
        sums=arm.sums,
        ratio=ratio_estimate(arm.sums),
        variance=delta_method_variance(arm.sums),
        account_nrr=arm.account_nrr,
        rows=arm.rows,
        arm=arm,
    )


def _verdict(
    srm_flag: bool,
    uplift: float | None,
    significant: bool,
    below_required: bool,
) -> Verdict:
    if srm_flag:
        return "srm"
    if significant and uplift is not None and uplift != 0:
        return "win" if uplift > 0 else "loss"
    if below_required:
        return "underpowered"
    return "inconclusive"


@dataclass(frozen=True)
class _Settings:
    """What every comparison of one analysis shares."""

    alpha: float
    comparisons: int
    mde: float
    sigma: float | None
    alpha_sizing: float
    robust: bool
    sequential: bool
    tuning: float | None
    guardrails: tuple[GuardrailSpec, ...] = ()
    ttv_target: float = DEFAULT_TTV_TARGET_DAYS


_NO_LEVER = LeverFigure(None, None, None, _NO_INTERVAL, None, None, None)
_NO_PROPORTIONS = Proportions(None, None, None, None, None)


def _nrr_native(
    treatment: _ArmFigures, control: _ArmFigures, settings: _Settings, notes: list[str]
) -> dict[str, Any]:
    """Levers, incidences, guardrails, CUPED, velocity and the small-sample permutation test
    of one comparison (DESIGN §4b/§4c); a figure whose inputs are missing is ``None``."""
    alpha = settings.alpha
    arm_t, arm_c = treatment.arm, control.arm
    n_t, n_c = treatment.sums.n, control.sums.n
    moments_t = arm_t.moments if arm_t is not None else None
    moments_c = arm_c.moments if arm_c is not None else None
    levers = cuped_result = None
    if moments_t is not None and moments_c is not None and n_t and n_c:
        levers = lever_figures(moments_c, moments_t, alpha=alpha)
        if moments_t.has("pre_start", "pre_end") and moments_c.has("pre_start", "pre_end"):
            cuped_result = cuped(moments_c, moments_t, alpha=alpha)
            if cuped_result is None:
                notes.append(
                    "cuped not computed: an arm has no pre-period MRR (pre_start_mrr sums to 0)"
                )

    def proportions(name: str) -> Proportions | None:
        count_t = getattr(arm_t, name, None) if arm_t is not None else None
        count_c = getattr(arm_c, name, None) if arm_c is not None else None
        if count_t is None or count_c is None or not n_t or not n_c:
            return None
        return two_proportions(count_c, n_c, count_t, n_t)

    logo_churn = proportions("logo_churned")
    expansion_incidence = proportions("expanded")
    guardrails = tuple(
        guardrail(
            spec,
            grr=(levers or {}).get("grr", _NO_LEVER),
            logo_churn=logo_churn or _NO_PROPORTIONS,
            alpha=alpha,
        )
        for spec in settings.guardrails
    )

    velocity = None
    times_t = arm_t.times if arm_t is not None else None
    times_c = arm_c.times if arm_c is not None else None
    if times_t is not None and times_c is not None:
        from stats.velocity import logrank_p, velocity_arm

        velocity = {
            "target_days": settings.ttv_target,
            "logrank_p": finite_or_none(logrank_p(times_c, times_t)),
            control.variant: velocity_arm(times_c, settings.ttv_target),
            treatment.variant: velocity_arm(times_t, settings.ttv_target),
        }

    permutation = None
    if (
        0 < min(n_t, n_c) < SMALL_SAMPLE_ACCOUNTS
        and treatment.rows is not None
        and control.rows is not None
    ):
        test = permutation_test(*treatment.rows, *control.rows, levels=(alpha,))
        if test is not None:
            permutation = {
                "p_value": test.p_value,
                "permutations": test.permutations,
                "seed": test.seed,
            }
    return {
        "levers": levers,
        "logo_churn": logo_churn,
        "expansion_incidence": expansion_incidence,
        "guardrails": guardrails,
        "cuped": cuped_result,
        "velocity": velocity,
        "permutation": permutation,
    }


def _interval_at(uplift: float, se: float, critical: float | None) -> Interval:
    if critical is None:
        return _NO_INTERVAL
    return (finite_or_none(uplift - critical * se), finite_or_none(uplift + critical * se))


def _mann_whitney_figures(
    treatment: _ArmFigures, control: _ArmFigures, uplift: float | None, p_value: float | None,
    alpha: float,
) -> dict[str, Any]:
    if treatment.account_nrr is None or control.account_nrr is None:
        return {"p_value": None, "prob_superiority": None, "direction": None, "note": None}
    test = mann_whitney(treatment.account_nrr, control.account_nrr)
    note = None
    ps = test.prob_superiority
    if test.p_value is not None and ps is not None and uplift is not None:
        mwu_significant = test.p_value < alpha
        t_significant = p_value is not None and p_value < alpha
        share = f"{ps * 100:.0f}%"
        if mwu_significant and t_significant and (ps > 0.5) != (uplift > 0):
            note = (
                f"NRR {'rose' if uplift > 0 else 'fell'} while a typical account did "
                f"{'worse' if ps < 0.5 else 'better'} (P(treatment account > control "
                f"account) = {share}): the largest accounts moved against the crowd, "
                "and NRR weights accounts by MRR"
            )
        elif mwu_significant and not t_significant:
            note = (
                f"a typical account did {'better' if ps > 0.5 else 'worse'} "
                f"(P(treatment account > control account) = {share}) but NRR did not move "
                "detectably: the shift is in small accounts that carry little MRR"
            )
        elif t_significant and not mwu_significant:
            note = (
                "NRR moved but a typical account did not detectably: the change rests on "
                "a few large accounts"
            )
    return {
        "p_value": test.p_value,
        "prob_superiority": ps,
        "direction": None if test.direction is None else {
            "higher": "treatment", "lower": "control", "same": "none"
        }[test.direction],
        "note": note,
    }


def _compare(
    treatment: _ArmFigures,
    control: _ArmFigures,
    settings: _Settings,
    *,
    required_control: int | None,
    sizing_note: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """Figures of one comparison before multiplicity adjustment and verdict."""
    notes: list[str] = []
    alpha = settings.alpha
    alpha_family = alpha / settings.comparisons
    t_name, c_name = repr(treatment.variant), repr(control.variant)
    n_t, n_c = treatment.sums.n, control.sums.n

    uplift_abs = uplift_rel = p_value = welch_p = var_abs = None
    ci_abs = ci_rel = ci_adjusted = welch_ci = _NO_INTERVAL
    inference: dict[str, Any] = {
        "method": "welch", "reason": None, "permutations": None, "seed": None,
    }
    critical = critical_family = None
    empty = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n == 0]
    if empty:
        notes.append(f"uplift not computed: {' and '.join(empty)} has no accounts")
    elif treatment.ratio is None or control.ratio is None:
        notes.append("uplift not computed: an arm has no start MRR")
    else:
        uplift_abs = treatment.ratio - control.ratio
        if treatment.variance is None or control.variance is None:
            single = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n < 2]
            notes.append(
                "confidence intervals and p-value not computed: "
                f"{' and '.join(single)} has a single account, "
                "so its variance cannot be estimated"
            )
        else:
            var_abs = treatment.variance + control.variance
            df = welch_satterthwaite_df(treatment.variance, n_t, control.variance, n_c)
            if var_abs == 0 or df is None:
                if uplift_abs != 0:
                    # Zero spread and a real gap: the limit of Welch's t is p = 0 and
                    # the interval is the point itself, not "inconclusive".
                    p_value = welch_p = 0.0
                    ci_abs = ci_adjusted = welch_ci = (uplift_abs, uplift_abs)
                    notes.append(
                        "every account in both arms has the same end/start ratio, so the "
                        f"difference of {uplift_abs * 100:+.2f} pts is exact: there is no "
                        "sampling noise to test against (check the data is not synthetic "
                        "or truncated)"
                    )
                else:
                    notes.append(
                        "confidence intervals and p-value not computed: every account in "
                        "both arms has the same end/start ratio, so the uplift has zero "
                        "estimated variance"
                    )
                    var_abs = None
            else:
                se = math.sqrt(var_abs)
                critical = float(special.stdtrit(df, 1.0 - alpha / 2.0))
                critical_family = float(special.stdtrit(df, 1.0 - alpha_family / 2.0))
                welch_p = finite_or_none(2.0 * special.stdtr(df, -abs(uplift_abs) / se))
                welch_ci = _interval_at(uplift_abs, se, critical)
                p_value, ci_abs = welch_p, welch_ci
                reason = None
                if (
                    settings.robust
                    and treatment.rows is not None
                    and control.rows is not None
                    and n_t + n_c <= MAX_PERMUTATION_ACCOUNTS
                ):
                    reason = needs_permutation(
                        n_t,
                        n_c,
                        linearised_skewness(*treatment.rows),
                        linearised_skewness(*control.rows),
                    )
                if reason is not None:
                    test = permutation_test(
                        *treatment.rows, *control.rows, levels=(alpha, alpha_family)
                    )
                    if test is not None:
                        critical, critical_family = test.critical
                        p_value = test.p_value
                        ci_abs = _interval_at(uplift_abs, se, critical)
                        inference.update(
                            method="permutation",
                            reason=reason,
                            permutations=test.permutations,
                            seed=test.seed,
                        )
                ci_adjusted = _interval_at(uplift_abs, se, critical_family)
        if control.ratio == 0:
            notes.append(
                f"relative uplift not computed: the control NRR is 0 ({c_name} kept no "
                "revenue: every account churned or contracted to zero)"
            )
        else:
            uplift_rel = treatment.ratio / control.ratio - 1.0
            if (
                critical is not None
                and treatment.variance is not None
                and control.variance is not None
            ):
                var_rel = relative_uplift_variance(
                    treatment.ratio, treatment.variance, control.ratio, control.variance
                )
                if var_rel is not None:
                    ci_rel = _interval_at(uplift_rel, math.sqrt(var_rel), critical)
    inference.update(welch_p_value=welch_p, welch_ci_abs=list(welch_ci))

    mwu = _mann_whitney_figures(treatment, control, uplift_abs, p_value, alpha)
    if mwu["p_value"] is None and (treatment.account_nrr is None or control.account_nrr is None):
        notes.append(
            "p_value_mwu not computed: per-account NRR values were not supplied "
            "(sufficient statistics only)"
        )
    elif mwu["note"]:
        notes.append(f"Mann-Whitney: {mwu['note']}")

    if sizing_note:
        notes.append(sizing_note)
    power_achieved = None
    if settings.sigma is not None and settings.sigma > 0:
        power_achieved = achieved_power(
            settings.mde, settings.sigma, n_c, n_t, alpha=settings.alpha_sizing
        )
        if power_achieved is None:
            small = [name for name, n in ((t_name, n_t), (c_name, n_c)) if n < 2]
            notes.append(
                f"achieved power not computed: {' and '.join(small)} has fewer than 2 accounts"
            )

    sequential = None
    if settings.sequential and uplift_abs is not None:
        if settings.tuning is None:
            notes.append(
                "sequential figures not computed: no tuning (give --tuning, or a sigma so "
                "the planned sizes exist)"
            )
        elif var_abs is None or var_abs <= 0:
            sequential = SequentialResult(settings.tuning, _NO_INTERVAL, None)
        else:
            sequential = sequential_test(
                uplift_abs, var_abs, n_t + n_c, tuning=settings.tuning,
                alpha=settings.alpha_sizing,
            )

    figures = {
        "variant": treatment.variant,
        "uplift_abs": finite_or_none(uplift_abs),
        "ci_abs": ci_abs,
        "uplift_rel": finite_or_none(uplift_rel),
        "ci_rel": ci_rel,
        "p_value": p_value,
        "p_value_mwu": mwu["p_value"],
        "sigma_lin": None,  # filled by analyze (the control's measured sigma)
        "required_n_per_arm": required_control,
        "power_achieved": finite_or_none(power_achieved),
        "ci_abs_adjusted": ci_adjusted if settings.comparisons > 1 else ci_abs,
        "ci_method": "bonferroni" if settings.comparisons > 1 else "unadjusted",
        "inference": inference,
        "mann_whitney": mwu,
        "sequential": sequential,
        **_nrr_native(treatment, control, settings, notes),
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
    sigma: float | None = None,
    sequential: bool = False,
    tuning: float | None = None,
    robust: bool = True,
    guardrails: Sequence[GuardrailSpec] = (),
    ttv_target: float = DEFAULT_TTV_TARGET_DAYS,
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
    guardrails : sequence of GuardrailSpec, optional
        Non-inferiority guardrails of the plan, tested for every comparison
        one-sided at ``alpha`` (DESIGN §4c "Guardrails").
    ttv_target : float, default 14
        Time-to-value target (days) of journey velocity's ``share_by_target``.

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
    Treatment raised NRR by 6.2 pts (95% CI 4.1 to 8.2), p < 0.001.
    """
    alpha = check_alpha(alpha)
    power = check_power(power)
    mde = check_positive("mde", mde)
    if mde >= 1:
        raise ValueError(
            f"mde must be a fraction between 0 and 1 (0.02 = 2 NRR points); got {mde!r}"
        )
    if sigma is not None:
        sigma = check_positive("sigma", sigma)
    if tuning is not None:
        tuning = check_positive("tuning", tuning)
    ttv_target = check_positive("ttv_target", ttv_target)
    guardrails = tuple(guardrails)
    for spec in guardrails:
        if not isinstance(spec, GuardrailSpec):
            raise TypeError(f"guardrails must be GuardrailSpec; got {type(spec).__name__}")
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
                f"variant {variant!r} has no accounts; its figures are empty and it cannot "
                "be compared"
            )
        elif n == 1:
            warnings.append(
                f"variant {variant!r} has a single account; its variance cannot be estimated"
            )
        elif figures[variant].variance == 0:
            warnings.append(
                f"variant {variant!r}: every account has the same end/start ratio, so its "
                "NRR has zero variance"
            )
        if n and arm.sums.sum_x == 0:
            warnings.append(
                f"variant {variant!r} ended with no revenue: every account churned or "
                "contracted to zero"
            )
    if len(order) == 1:
        warnings.append(f"only one variant ({control!r}); there is nothing to compare it with")

    control_figures = figures[control]
    control_sigma = finite_or_none(sigma_lin(control_figures.sums))
    planning_sigma = sigma if sigma is not None else control_sigma
    sizing_note = None
    if sigma is None and control_sigma is None:
        sizing_note = (
            "sigma_lin, required sample size and power not computed: control "
            f"{control!r} has fewer than 2 accounts"
        )
    elif sigma is None and control_sigma == 0:
        sizing_note = (
            "required sample size and power not computed: every control account has the "
            "same end/start ratio (sigma_lin = 0)"
        )
    plan = plan_sample_sizes(
        mde, planning_sigma, control=control, weights=plan_weights, alpha=alpha, power=power
    )
    if sizing_note is None and planning_sigma and any(
        n is None for n in plan.control_n_for.values()
    ):
        sizing_note = (
            f"required sample size not computed: it exceeds {MAX_SAMPLE_SIZE:,} accounts per arm"
        )
    treatments = [variant for variant in order if variant != control]
    settings = _Settings(
        alpha=alpha,
        comparisons=max(1, len(treatments)),
        mde=mde,
        sigma=planning_sigma,
        alpha_sizing=plan.alpha_sizing,
        robust=robust,
        sequential=sequential,
        tuning=tuning,
        guardrails=guardrails,
        ttv_target=ttv_target,
    )

    partial = []
    for variant in treatments:
        own_tuning = tuning
        if own_tuning is None:
            sizes = (plan.required_n.get(control), plan.required_n.get(variant))
            if all(size is not None for size in sizes):
                own_tuning = float(sum(size for size in sizes if size is not None))
        fig, notes = _compare(
            figures[variant],
            control_figures,
            replace(settings, tuning=own_tuning),
            required_control=plan.control_n_for.get(variant),
            sizing_note=sizing_note,
        )
        fig["sigma_lin"] = control_sigma
        partial.append((fig, notes))
    adjusted = holm_adjust([fig["p_value"] for fig, _ in partial])
    comparisons = []
    for (fig, notes), p_adj in zip(partial, adjusted, strict=True):
        variant = fig["variant"]
        n_t, n_c = data[variant].sums.n, data[control].sums.n
        if sequential:
            seq = fig["sequential"]
            significant = (
                seq is not None and seq.p_value is not None and seq.p_value < plan.alpha_sizing
            )
        else:
            significant = p_adj is not None and p_adj < alpha
        needed = (plan.required_n.get(control), plan.required_n.get(variant))
        below = min(n_t, n_c) < 2 or any(
            size is not None and have < size for have, size in zip((n_c, n_t), needed, strict=True)
        )
        comparisons.append(
            Comparison(
                **fig,
                p_value_adjusted=p_adj,
                verdict=_verdict(srm.flag, fig["uplift_abs"], significant, below),
                warnings=tuple(notes),
            )
        )
    return ExperimentResult(
        alpha=alpha,
        power=power,
        mde=mde,
        control=control,
        # The SRM warnings live at top level only, so a JSON round trip is lossless.
        srm=replace(srm, warnings=()),
        arms=tuple(ArmResult.from_totals(variant, data[variant].totals) for variant in order),
        comparisons=tuple(comparisons),
        warnings=tuple(warnings),
        required_n=plan.required_n,
        alpha_sizing=plan.alpha_sizing,
        sigma_planning=planning_sigma,
        sigma_source=None if planning_sigma is None else ("given" if sigma else "control"),
        guardrails_plan=guardrails,
        ttv_target_days=ttv_target,
        velocity_curves=_velocity_curves(data),
        velocity_cohorts=_velocity_cohorts(data),
    )


def _velocity_curves(data: Mapping[str, ArmData]) -> dict[str, list[list[float]]] | None:
    """Each arm's curve of the share that reached value; ``None`` unless every arm has one."""
    if not data or any(arm.times is None for arm in data.values()):
        return None
    from stats.velocity import km_curve

    return {variant: km_curve(arm.times) for variant, arm in data.items()}


def _velocity_cohorts(data: Mapping[str, ArmData]) -> list[dict[str, Any]] | None:
    """Velocity terciles over every arm's accounts; ``None`` without per-account days."""
    present = [arm for arm in data.values() if arm.sums.n]
    if not present or any(arm.days_to_value is None or arm.rows is None for arm in present):
        return None
    from stats.velocity import velocity_cohorts

    return velocity_cohorts(
        np.concatenate([arm.days_to_value for arm in present]),
        np.concatenate([arm.rows[1] for arm in present]),
        np.concatenate([arm.rows[0] for arm in present]),
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
    # The warning starts "… not computed: <reason>"; the sentence says "could not be
    # computed" itself, so only the reason is quoted.
    reason = f": {why.split(' not computed: ', 1)[-1]}" if why else ""
    uplift = comparison.uplift_abs
    if uplift is None:
        return f"{prefix}The NRR uplift of {name} could not be computed{reason}."
    p_adjusted = comparison.p_value_adjusted
    low, high = comparison.ci_abs
    label = f"{(1 - alpha) * 100:g}% CI"
    if comparison.ci_method == "bonferroni" and None not in comparison.ci_abs_adjusted:
        low, high = comparison.ci_abs_adjusted
        label = "Bonferroni-adjusted CI"
    p_shown = p_adjusted
    sequential = comparison.sequential
    if sequential is not None and sequential.p_value is not None:
        low, high = sequential.ci_abs
        label = "always-valid CI"
        p_shown = sequential.p_value
    if p_shown is None or low is None or high is None:
        return (
            f"{prefix}{name} changed NRR by {_points(uplift, signed=True)} pts, but its "
            f"confidence interval and p-value could not be computed{reason}."
        )
    p_text = _format_p(p_shown)
    if sequential is not None and sequential.p_value is not None:
        p_text = "sequential " + p_text
    elif comparison.p_value is not None and not math.isclose(
        p_shown, comparison.p_value, rel_tol=1e-12
    ):
        p_text = "adjusted " + p_text
    interval = f"({label} {_points(low)} to {_points(high)})"
    exact = next((w for w in comparison.warnings if w.startswith("every account in both")), None)
    tail = (
        " Every account in both arms has the same end/start ratio: the gap is exact."
        if exact
        else ""
    )
    significant = comparison.verdict in ("win", "loss") or (
        comparison.verdict == "srm" and p_shown < alpha
    )
    if significant:
        direction = "raised" if uplift > 0 else "lowered"
        return (
            f"{prefix}{name} {direction} NRR by {_points(abs(uplift))} pts {interval}, "
            f"{p_text}.{tail}"
        )
    return (
        f"{prefix}{name} showed no detectable change in NRR: {_points(uplift, signed=True)} pts "
        f"{interval}, {p_text}.{tail}"
    )
