"""The NRR-native figures of a stored analysis as rows, sentences and SVG geometry.

One view model for the results page (``webapp/templates/results/_nrr_figures.html``) and
every export (CSV, JSON, Markdown, printable HTML): it reads a DESIGN §4b report — the
stored snapshot's dict, or an object with ``to_dict()`` such as
:class:`stats.ExperimentResult` — and decides what is shown, in which words, and where
each bar and step goes on the canvas, so the templates hold no arithmetic.

Every figure appears only when its inputs exist (DESIGN §4b: a key is ``null`` when its
inputs are missing): no velocity section without ``days_observed``, no CUPED line without
the pre-period columns, no guardrail status without guardrails. Nothing here computes a
statistic; each number comes from the report as stored. Pure: no Flask, no database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.formatting import as_number, as_pair, pct, pts, pvalue
from stats.analysis import SMALL_SAMPLE_ACCOUNTS

#: The §4b comparison keys, with their value when the inputs are missing.
NRR_COMPARISON_KEYS: Mapping[str, Any] = {
    "levers": None, "logo_churn": None, "expansion_incidence": None, "guardrails": [],
    "sequential": None, "cuped": None, "velocity": None, "permutation": None,
}
#: The levers of DESIGN §4c in display order, with their names on the page.
LEVERS: Mapping[str, str] = {"expansion": "Expansion", "contraction": "Contraction",
                             "churn": "Churn", "grr": "GRR"}
#: How a one-point change of a lever moves NRR (NRR = 1 + expansion − contraction − churn).
NRR_SIGN: Mapping[str, int] = {"expansion": 1, "contraction": -1, "churn": -1}
GUARDRAIL_LABELS: Mapping[str, str] = {"grr": "GRR", "logo_churn": "logo churn"}
STATUS_LABELS: Mapping[str | None, str] = {"pass": "Pass", "fail": "Fail",
                                           "inconclusive": "Inconclusive", None: "Not computed"}
#: Worst first: the headline guardrail status is the worst over every comparison.
STATUS_ORDER: tuple[str, ...] = ("fail", "inconclusive", "pass")
COHORT_LABELS: Mapping[str, str] = {"fast": "Fast", "average": "Average", "slow": "Slow",
                                    "not_reached": "Not reached"}


@dataclass(frozen=True)
class NumberStyle:
    """Digits of the numbers inside sentences: the page shows one decimal fewer."""

    points_digits: int
    p_digits: int

    def pts(self, value: Any) -> str:
        return pts(value, self.points_digits)

    def p(self, value: Any) -> str:
        """``p = 0.012`` or ``p < 0.001``."""
        text = pvalue(value, self.p_digits)
        return f"p {text}" if text.startswith("<") else f"p = {text}"

    def interval(self, pair: Any) -> str:
        low, high = as_pair(pair)
        if as_number(low) is None or as_number(high) is None:
            return "no interval"
        d = self.points_digits
        return f"{low * 100:+.{d}f} to {high * 100:+.{d}f}"


PAGE_STYLE = NumberStyle(points_digits=1, p_digits=3)
EXPORT_STYLE = NumberStyle(points_digits=2, p_digits=4)


# ------------------------------------------------------------------ reading the report


def report_dict(source: Any) -> dict[str, Any] | None:
    """The report as a dict: a Mapping as is, else ``source.to_dict()``; ``None`` for none."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        return dict(source)
    to_dict = getattr(source, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _comparisons(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in report.get("comparisons") or [] if isinstance(c, Mapping)]


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class LeverRow:
    """One lever of one treatment (DESIGN §4c "Levers"): rates are shares of start MRR."""

    variant: str
    lever: str
    label: str
    control: float | None
    treatment: float | None
    uplift_abs: float | None
    ci_abs: tuple[float | None, float | None]
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class ProportionRow:
    """Logo churn or expansion incidence of one treatment (share of accounts)."""

    variant: str
    metric: str  # "logo_churn" or "expansion_incidence"
    label: str
    control: float | None
    treatment: float | None
    diff: float | None
    p_value: float | None


@dataclass(frozen=True)
class GuardrailRow:
    variant: str
    metric: str
    label: str
    margin: float | None
    diff: float | None
    p_value: float | None
    status: str | None
    status_label: str


@dataclass(frozen=True)
class GuardrailStatus:
    """The worst guardrail status over the comparisons, in words for beside a verdict."""

    status: str  # fail | inconclusive | pass
    text: str  # e.g. "guardrail failed: GRR"


@dataclass(frozen=True)
class CupedRow:
    variant: str
    uplift_abs: float | None
    ci_abs: tuple[float | None, float | None]
    p_value: float | None
    variance_reduction: float | None
    #: 1 − √(1 − variance_reduction): how much narrower the interval is (same level).
    narrower: float | None
    unadjusted_uplift: float | None
    unadjusted_ci: tuple[float | None, float | None]
    sentence: str


@dataclass(frozen=True)
class PermutationRow:
    variant: str
    p_value: float | None
    permutations: int | None
    seed: int | None
    welch_p_value: float | None
    sentence: str


@dataclass(frozen=True)
class VelocityArm:
    """Journey velocity of one arm (DESIGN §4c "Velocity")."""

    variant: str
    is_control: bool
    reached: int | None
    censored: int | None
    median_days: float | None
    share_by_target: float | None
    logrank_p: float | None  # against the control; None for the control itself


@dataclass(frozen=True)
class CohortRow:
    variant: str | None
    cohort: str
    label: str
    accounts: int | None
    start_mrr: float | None
    end_mrr: float | None
    nrr: float | None
    max_days: float | None


# ------------------------------------------------------------------ SVG geometry


@dataclass(frozen=True)
class Tick:
    position: float  # x for a horizontal axis, y for a vertical one
    label: str


@dataclass(frozen=True)
class WaterfallBar:
    kind: str  # start | expansion | contraction | churn | end
    label: str  # under the bar
    value_label: str  # above the bar
    x: float
    y: float
    width: float
    height: float
    label_x: float
    value_y: float
    share: float  # the step as a share of start MRR (start and end: the level)


@dataclass(frozen=True)
class Connector:
    x1: float
    x2: float
    y: float


@dataclass(frozen=True)
class Waterfall:
    """Start → + expansion − contraction − churn → end of one arm, as shares of start MRR."""

    variant: str
    is_control: bool
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    bars: tuple[WaterfallBar, ...]
    connectors: tuple[Connector, ...]
    ticks: tuple[Tick, ...]
    title: str
    description: str
    start_mrr: float | None
    expansion_mrr: float | None
    contraction_mrr: float | None
    churned_mrr: float | None
    end_mrr: float | None
    nrr: float | None


@dataclass(frozen=True)
class Curve:
    variant: str
    index: int  # the line style: 0 = control (solid), then dashed, dotted, …
    path: str  # SVG path data, a right-continuous step function


@dataclass(frozen=True)
class CurveRow:
    day: float
    label: str
    shares: tuple[float | None, ...]  # per curve, in the order of ``curves``


@dataclass(frozen=True)
class VelocityChart:
    """The Kaplan–Meier share of accounts reaching value by day, one step line per arm."""

    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    curves: tuple[Curve, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    target_x: float | None
    target_days: float | None
    description: str
    table: tuple[CurveRow, ...]


@dataclass(frozen=True)
class Velocity:
    target_days: float | None
    arms: tuple[VelocityArm, ...]
    chart: VelocityChart | None
    sentence: str


# ------------------------------------------------------------------ the whole


@dataclass(frozen=True)
class NrrFigures:
    """Everything the NRR-native part of the results page and the exports show."""

    control: str
    alpha: float
    waterfalls: tuple[Waterfall, ...]
    levers: tuple[LeverRow, ...]
    lever_sentences: Mapping[str, str]
    proportions: tuple[ProportionRow, ...]
    guardrails: tuple[GuardrailRow, ...]
    guardrail_status: GuardrailStatus | None
    guardrail_status_by_variant: Mapping[str, GuardrailStatus]
    cuped: tuple[CupedRow, ...]
    velocity: Velocity | None
    cohorts: tuple[CohortRow, ...]
    permutation: tuple[PermutationRow, ...]

    @property
    def level(self) -> str:
        """The confidence level of the lever and CUPED intervals, e.g. ``95%``."""
        return f"{(1 - self.alpha) * 100:g}%"

    @property
    def cohorts_by_variant(self) -> bool:
        return any(row.variant for row in self.cohorts)


def nrr_figures(source: Any, *, style: NumberStyle = PAGE_STYLE) -> NrrFigures | None:
    """The view model of a stored analysis, or ``None`` without one (or without arms).

    ``source`` is the DESIGN §4b report dict (a snapshot's ``result``) or an object whose
    ``to_dict()`` gives it. ``style`` sets the digits of numbers inside sentences.
    """
    report = report_dict(source)
    if not report or not isinstance(report.get("arms"), list):
        return None
    control = str(report.get("control") or "")
    alpha = as_number(report.get("alpha")) or 0.05
    comparisons = _comparisons(report)
    levers = tuple(row for c in comparisons for row in _lever_rows(c, alpha))
    sentences = {}
    for c in comparisons:
        sentence = lever_sentence(c, control, alpha, style)
        if sentence:
            sentences[str(c.get("variant"))] = sentence
    guardrails = tuple(row for c in comparisons for row in _guardrail_rows(c))
    by_variant = {}
    for c in comparisons:
        status = guardrail_status([r for r in guardrails if r.variant == str(c.get("variant"))])
        if status is not None:
            by_variant[str(c.get("variant"))] = status
    return NrrFigures(
        control=control,
        alpha=alpha,
        waterfalls=waterfalls(report),
        levers=levers,
        lever_sentences=sentences,
        proportions=tuple(row for c in comparisons for row in _proportion_rows(c)),
        guardrails=guardrails,
        guardrail_status=guardrail_status(guardrails, several=len(comparisons) > 1),
        guardrail_status_by_variant=by_variant,
        cuped=tuple(row for c in comparisons if (row := _cuped_row(c, alpha, style))),
        velocity=velocity(report, style),
        cohorts=_cohort_rows(report.get("velocity_cohorts")),
        permutation=tuple(row for c in comparisons if (row := _permutation_row(c, style))),
    )


def _lever_rows(comparison: Mapping[str, Any], alpha: float) -> list[LeverRow]:
    levers = _map(comparison.get("levers"))
    rows = []
    for key, label in LEVERS.items():
        figure = levers.get(key)
        if not isinstance(figure, Mapping):
            continue
        p = as_number(figure.get("p_value"))
        low, high = as_pair(figure.get("ci_abs"))
        rows.append(LeverRow(
            variant=str(comparison.get("variant")), lever=key, label=label,
            control=as_number(figure.get("control")), treatment=as_number(figure.get("treatment")),
            uplift_abs=as_number(figure.get("uplift_abs")),
            ci_abs=(as_number(low), as_number(high)), p_value=p,
            significant=p is not None and p < alpha,
        ))
    return rows


def lever_sentence(comparison: Mapping[str, Any], control: str, alpha: float,
                   style: NumberStyle = PAGE_STYLE) -> str | None:
    """One line naming the lever that moved NRR for this treatment, or ``None``.

    The lever named is, among expansion, contraction and churn, the one whose raw p is
    below α with the largest effect on NRR (Δexpansion, −Δcontraction, −Δchurn: the
    §4c identity NRR uplift = Δexpansion − Δcontraction − Δchurn); when none is below
    α, the sentence says so and names the largest change.
    """
    rows = [r for r in _lever_rows(comparison, alpha)
            if r.lever in NRR_SIGN and r.uplift_abs is not None]
    if not rows:
        return None
    variant = str(comparison.get("variant"))

    def effect(row: LeverRow) -> float:
        return abs(row.uplift_abs)

    significant = [r for r in rows if r.significant]
    chosen = max(significant or rows, key=effect)
    lever = chosen.label.lower()
    direction = "higher" if chosen.uplift_abs > 0 else "lower"
    on_nrr = NRR_SIGN[chosen.lever] * chosen.uplift_abs
    level = f"{(1 - alpha) * 100:g}% CI"
    change = (f"{variant}'s {lever} was {abs(chosen.uplift_abs) * 100:.{style.points_digits}f} "
              f"pts of start MRR {direction} than {control}'s ({level} "
              f"{style.interval(chosen.ci_abs)}, {style.p(chosen.p_value)}), "
              f"{style.pts(on_nrr)} on NRR")
    parts = ", ".join(f"{r.label.lower()} {style.pts(NRR_SIGN[r.lever] * r.uplift_abs)}"
                      for r in rows)
    if significant:
        return f"The lever that moved is {lever}: {change}. Contributions to NRR: {parts}."
    return (f"No lever moved detectably (every p ≥ {alpha:g}); the largest change was in "
            f"{lever}: {change}. Contributions to NRR: {parts}.")


def _proportion_rows(comparison: Mapping[str, Any]) -> list[ProportionRow]:
    rows = []
    for key, label in (("logo_churn", "Logo churn (accounts lost entirely)"),
                       ("expansion_incidence", "Expansion incidence (accounts that expanded)")):
        figure = comparison.get(key)
        if isinstance(figure, Mapping):
            rows.append(ProportionRow(
                variant=str(comparison.get("variant")), metric=key, label=label,
                control=as_number(figure.get("control")),
                treatment=as_number(figure.get("treatment")),
                diff=as_number(figure.get("diff")), p_value=as_number(figure.get("p_value"))))
    return rows


def _guardrail_rows(comparison: Mapping[str, Any]) -> list[GuardrailRow]:
    rows = []
    for g in comparison.get("guardrails") or []:
        if not isinstance(g, Mapping):
            continue
        metric = str(g.get("metric"))
        status = g.get("status") if g.get("status") in STATUS_ORDER else None
        rows.append(GuardrailRow(
            variant=str(comparison.get("variant")), metric=metric,
            label=GUARDRAIL_LABELS.get(metric, metric), margin=as_number(g.get("margin")),
            diff=as_number(g.get("diff")), p_value=as_number(g.get("p_value")), status=status,
            status_label=STATUS_LABELS[status]))
    return rows


#: The guardrail rows of one stored comparison (also :mod:`experiments.verdict_status`'s).
guardrail_rows = _guardrail_rows


def guardrail_status(rows: Sequence[GuardrailRow], *,
                     several: bool = False) -> GuardrailStatus | None:
    """The worst status of ``rows`` (fail › inconclusive › pass), or ``None`` without rows.

    With ``several`` treatments a failed or inconclusive guardrail names its treatment.
    A guardrail that could not be computed counts as inconclusive.
    """
    if not rows:
        return None
    status_of = {id(r): r.status or "inconclusive" for r in rows}
    worst = min(status_of.values(), key=STATUS_ORDER.index)
    if worst == "pass":
        return GuardrailStatus("pass", "guardrails passed" if len(rows) > 1
                               else "guardrail passed")
    named = []
    for r in rows:
        if status_of[id(r)] == worst:
            name = f"{r.label} ({r.variant})" if several else r.label
            if name not in named:
                named.append(name)
    word = "failed" if worst == "fail" else "inconclusive"
    plural = "s" if len(named) > 1 else ""
    return GuardrailStatus(worst, f"guardrail{plural} {word}: {', '.join(named)}")


def _cuped_row(comparison: Mapping[str, Any], alpha: float,
               style: NumberStyle) -> CupedRow | None:
    figure = comparison.get("cuped")
    if not isinstance(figure, Mapping):
        return None
    variant = str(comparison.get("variant"))
    uplift = as_number(figure.get("uplift_abs"))
    low, high = as_pair(figure.get("ci_abs"))
    reduction = as_number(figure.get("variance_reduction"))
    narrower = None
    if reduction is not None and reduction < 1:
        narrower = 1 - math.sqrt(1 - reduction)
    level = f"{(1 - alpha) * 100:g}%"
    sentence = (f"Adjusted for each account's pre-period MRR (CUPED), {variant}'s uplift is "
                f"{style.pts(uplift)} ({level} CI {style.interval((low, high))}), "
                f"{style.p(figure.get('p_value'))}")
    if narrower is not None and round(abs(narrower) * 100) == 0:
        sentence += ("; the interval is as wide as the unadjusted one (the pre-period "
                     "explains little of this period)")
    elif narrower is not None:
        word = "narrower" if narrower >= 0 else "wider"
        sentence += (f"; the interval is {abs(narrower) * 100:.0f}% {word} than the "
                     f"unadjusted one")
    sentence += "."
    return CupedRow(
        variant=variant, uplift_abs=uplift, ci_abs=(as_number(low), as_number(high)),
        p_value=as_number(figure.get("p_value")), variance_reduction=reduction,
        narrower=narrower, unadjusted_uplift=as_number(comparison.get("uplift_abs")),
        unadjusted_ci=tuple(as_number(v) for v in as_pair(comparison.get("ci_abs"))),
        sentence=sentence)


def _permutation_row(comparison: Mapping[str, Any], style: NumberStyle) -> PermutationRow | None:
    figure = comparison.get("permutation")
    if not isinstance(figure, Mapping):
        return None
    variant = str(comparison.get("variant"))
    count = as_number(figure.get("permutations"))
    seed = figure.get("seed")
    welch = as_number(comparison.get("p_value"))
    sentence = (f"An arm of {variant}'s comparison has fewer than {SMALL_SAMPLE_ACCOUNTS} "
                "accounts, so a permutation test checks the t-test: "
                f"{style.p(figure.get('p_value'))}"
                + (f" from {int(count):,} relabellings" if count is not None else "")
                + (f" (seed {seed})" if seed is not None else "")
                + f", against Welch's {style.p(welch)}.")
    return PermutationRow(variant, as_number(figure.get("p_value")),
                          None if count is None else int(count),
                          seed if isinstance(seed, int) else None, welch, sentence)


def _cohort_rows(value: Any) -> tuple[CohortRow, ...]:
    if not isinstance(value, list):
        return ()
    rows = []
    for c in value:
        if not isinstance(c, Mapping):
            continue
        cohort = str(c.get("cohort"))
        accounts = as_number(c.get("accounts"))
        rows.append(CohortRow(
            variant=str(c["variant"]) if c.get("variant") is not None else None,
            cohort=cohort, label=COHORT_LABELS.get(cohort, cohort),
            accounts=None if accounts is None else int(accounts),
            start_mrr=as_number(c.get("start_mrr")), end_mrr=as_number(c.get("end_mrr")),
            nrr=as_number(c.get("nrr")), max_days=as_number(c.get("max_days"))))
    return tuple(rows)


# ------------------------------------------------------------------ axes


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / count if span > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)


def _days(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------ waterfall

WATERFALL_WIDTH, WATERFALL_HEIGHT = 400, 200
WF_LEFT, WF_RIGHT, WF_TOP, WF_BOTTOM = 44.0, 396.0, 24.0, 172.0
WF_BAR_SHARE = 0.62  # of a slot


def waterfalls(report: Mapping[str, Any]) -> tuple[Waterfall, ...]:
    """One waterfall per arm with start MRR > 0, all on one vertical scale.

    Steps are shares of the arm's start MRR (start = 100 %, end = the arm's NRR), so arms
    of different sizes compare by eye. The axis is cut below the lowest level (its first
    tick says where it starts, the description says so too): the levers are a few points
    of a 100 % bar and would not be visible from zero.
    """
    control = report.get("control")
    arms = []
    for arm in report.get("arms") or []:
        if not isinstance(arm, Mapping):
            continue
        start = as_number(arm.get("start_mrr"))
        if not start or start <= 0:
            continue
        parts = [as_number(arm.get(k)) or 0.0
                 for k in ("expansion_mrr", "contraction_mrr", "churned_mrr")]
        arms.append((arm, start, [p / start for p in parts]))
    if not arms:
        return ()
    levels = []
    for _arm, _start, (e, c, ch) in arms:
        levels += [1.0, 1.0 + e, 1.0 + e - c, 1.0 + e - c - ch]
    low, high = min(levels), max(levels)
    step = _nice_step(max(high - low, 0.02), 4)
    floor = math.floor((low - (high - low) * 0.15 - 1e-9) / step) * step
    ceiling = math.ceil((high + 1e-9) / step) * step
    if ceiling <= high:
        ceiling += step

    def y_of(share: float) -> float:
        return round(WF_BOTTOM - (share - floor) / (ceiling - floor) * (WF_BOTTOM - WF_TOP), 2)

    ticks = tuple(Tick(y_of(floor + k * step), f"{(floor + k * step) * 100:.0f}%")
                  for k in range(round((ceiling - floor) / step) + 1))
    slot = (WF_RIGHT - WF_LEFT) / 5
    width = slot * WF_BAR_SHARE
    out = []
    for arm, _start, (e, c, ch) in arms:
        end = 1.0 + e - c - ch
        spans = [("start", "Start", floor, 1.0, f"{100:.0f}%", 1.0),
                 ("expansion", "+Expansion", 1.0, 1.0 + e, f"{e * 100:+.1f}", e),
                 ("contraction", "−Contraction", 1.0 + e - c, 1.0 + e, _minus(c), -c),
                 ("churn", "−Churn", end, 1.0 + e - c, _minus(ch), -ch),
                 ("end", "End", floor, end, f"{end * 100:.1f}%", end)]
        bars = []
        for i, (kind, label, bottom, top, value_label, share) in enumerate(spans):
            x = WF_LEFT + slot * i + (slot - width) / 2
            y_top, y_bottom = y_of(max(bottom, top)), y_of(min(bottom, top))
            bars.append(WaterfallBar(
                kind=kind, label=label, value_label=value_label, x=round(x, 2), y=y_top,
                width=round(width, 2), height=round(max(y_bottom - y_top, 1.0), 2),
                label_x=round(x + width / 2, 2), value_y=round(y_top - 5, 2), share=share))
        connectors = tuple(
            Connector(round(bars[i].x + width, 2), bars[i + 1].x, y_of(level))
            for i, level in enumerate((1.0, 1.0 + e, 1.0 + e - c, end)))
        variant = str(arm.get("variant"))
        role = " (control)" if variant == control else ""
        description = (
            f"{variant}{role}: start MRR {money_text(arm.get('start_mrr'))} = 100%; "
            f"expansion {e * 100:+.1f} pts, contraction {-c * 100:+.1f} pts, "
            f"churn {-ch * 100:+.1f} pts; end MRR {money_text(arm.get('end_mrr'))} = "
            f"{end * 100:.1f}% of start (NRR). The vertical axis starts at {floor * 100:.0f}%.")
        out.append(Waterfall(
            variant=variant, is_control=variant == control, width=WATERFALL_WIDTH,
            height=WATERFALL_HEIGHT, plot_left=WF_LEFT, plot_right=WF_RIGHT, plot_top=WF_TOP,
            plot_bottom=WF_BOTTOM, bars=tuple(bars), connectors=connectors, ticks=ticks,
            title=f"NRR waterfall of {variant}{role}", description=description,
            start_mrr=as_number(arm.get("start_mrr")),
            expansion_mrr=as_number(arm.get("expansion_mrr")),
            contraction_mrr=as_number(arm.get("contraction_mrr")),
            churned_mrr=as_number(arm.get("churned_mrr")), end_mrr=as_number(arm.get("end_mrr")),
            nrr=as_number(arm.get("nrr"))))
    return tuple(out)


def _minus(share: float) -> str:
    return f"−{share * 100:.1f}" if share > 0 else "0.0"


def money_text(value: Any) -> str:
    number = as_number(value)
    return "—" if number is None else f"{number:,.2f}"


# ------------------------------------------------------------------ velocity

KM_WIDTH, KM_HEIGHT = 640, 250
KM_LEFT, KM_RIGHT, KM_TOP, KM_BOTTOM = 52.0, 620.0, 14.0, 206.0


def velocity(report: Mapping[str, Any], style: NumberStyle = PAGE_STYLE) -> Velocity | None:
    """Journey velocity per arm and the Kaplan–Meier chart, or ``None`` without the inputs.

    The arms' figures come from the comparisons' ``velocity`` (DESIGN §4b; ``null`` without
    the days_observed column); the chart from the top-level ``velocity_curves`` when the
    report has them.
    """
    control = str(report.get("control"))
    found = [(c, _map(c.get("velocity"))) for c in _comparisons(report)
             if isinstance(c.get("velocity"), Mapping)]
    if not found:
        return None
    target = as_number(found[0][1].get("target_days"))
    arms = [_velocity_arm(control, _map(found[0][1].get(control)), True, None)]
    for comparison, figure in found:
        variant = str(comparison.get("variant"))
        arms.append(_velocity_arm(variant, _map(figure.get(variant)), False,
                                  as_number(figure.get("logrank_p"))))
    curves = report.get("velocity_curves")
    order = [a.variant for a in arms]
    chart = km_chart(curves, order, target) if isinstance(curves, Mapping) else None
    parts = []
    for arm in arms:
        median = (f"median {_days(arm.median_days)} days" if arm.median_days is not None
                  else "median not reached")
        share = pct(arm.share_by_target, 1)
        parts.append(f"{arm.variant}: {median}, {share} by day {_days(target or 0)}"
                     + (f" ({style.p(arm.logrank_p)}, log-rank)"
                        if not arm.is_control else ""))
    sentence = "Time to value: " + "; ".join(parts) + "."
    return Velocity(target, tuple(arms), chart, sentence)


def _velocity_arm(variant: str, figure: Mapping[str, Any], is_control: bool,
                  logrank_p: float | None) -> VelocityArm:
    def whole(key: str) -> int | None:
        number = as_number(figure.get(key))
        return None if number is None else int(number)

    return VelocityArm(variant, is_control, whole("reached"), whole("censored"),
                       as_number(figure.get("median_days")),
                       as_number(figure.get("share_by_target")), logrank_p)


def _points_of(curve: Any) -> list[tuple[float, float]]:
    points = []
    for item in curve or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            t, s = as_number(item[0]), as_number(item[1])
            if t is not None and s is not None:
                points.append((float(t), float(s)))
    return sorted(points)


def share_at(points: Sequence[tuple[float, float]], day: float) -> float | None:
    """The step function's value on ``day`` (right-continuous); 0 before its first step.

    ``None`` beyond the curve's last point, where the arm was no longer followed.
    """
    if not points:
        return None
    if day > points[-1][0]:
        # Past the last follow-up the share is unknown, unless every account had reached.
        return 1.0 if points[-1][1] >= 1.0 - 1e-12 else None
    value = 0.0
    for t, s in points:
        if t <= day:
            value = s
        else:
            break
    return value


def km_chart(curves: Mapping[str, Any], order: Sequence[str],
             target: float | None) -> VelocityChart | None:
    """Step lines of the share of accounts that reached value by day, per arm.

    ``curves`` is ``{variant: [[t, share reached], ...]}``: from ``t`` on (an event on a
    day counts that day) the share is ``share``; before the first point it is 0.
    """
    named = [v for v in order if v in curves] + [v for v in curves if v not in order]
    series = [(v, _points_of(curves[v])) for v in named]
    series = [(v, p) for v, p in series if p]
    if not series:
        return None
    last = max(p[-1][0] for _v, p in series)
    x_max_data = max(last, target or 0.0, 1.0)
    step = _nice_step(x_max_data, 6)
    x_max = math.ceil(x_max_data / step) * step

    def x_of(day: float) -> float:
        return round(KM_LEFT + day / x_max * (KM_RIGHT - KM_LEFT), 2)

    def y_of(share: float) -> float:
        return round(KM_BOTTOM - share * (KM_BOTTOM - KM_TOP), 2)

    curve_list = []
    for index, (variant, points) in enumerate(series):
        commands = [f"M{x_of(0)},{y_of(0)}"]
        level = 0.0
        for t, s in points:
            commands.append(f"H{x_of(t)}")
            if s != level:
                commands.append(f"V{y_of(s)}")
                level = s
        curve_list.append(Curve(variant, index, " ".join(commands)))
    x_ticks = tuple(Tick(x_of(k * step), _days(k * step))
                    for k in range(round(x_max / step) + 1))
    y_ticks = tuple(Tick(y_of(s / 100), f"{s}%") for s in (0, 25, 50, 75, 100))
    days = sorted({k * step for k in range(1, round(x_max / step) + 1)}
                  | ({float(target)} if target else set()))
    table = tuple(
        CurveRow(day, f"day {_days(day)}" + (" (target)" if target and day == target else ""),
                 tuple(share_at(points, day) for _v, points in series))
        for day in days if day <= last)
    described = []
    for variant, points in series:
        at_target = share_at(points, target) if target else None
        described.append(
            f"{variant} reaches {points[-1][1] * 100:.0f}% by day {_days(points[-1][0])}"
            + (f" ({at_target * 100:.0f}% by day {_days(target)})"
               if at_target is not None else ""))
    description = ("Share of accounts that reached value, by days since enrolment "
                   "(Kaplan–Meier, censored accounts counted while followed): "
                   + "; ".join(described) + ".")
    return VelocityChart(
        width=KM_WIDTH, height=KM_HEIGHT, plot_left=KM_LEFT, plot_right=KM_RIGHT,
        plot_top=KM_TOP, plot_bottom=KM_BOTTOM, curves=tuple(curve_list), x_ticks=x_ticks,
        y_ticks=y_ticks, target_x=x_of(target) if target else None, target_days=target,
        description=description, table=table)


# ------------------------------------------------------------------ flat, for CSV

#: The CSV columns of the NRR-native figures, one row per comparison.
NRR_CSV_COLUMNS: tuple[str, ...] = (
    *(f"lever_{lever}_{part}" for lever in LEVERS
      for part in ("control", "treatment", "uplift", "ci_low", "ci_high", "p_value")),
    *(f"{metric}_{part}" for metric in ("logo_churn", "expansion_incidence")
      for part in ("control", "treatment", "diff", "p_value")),
    "guardrail_status", "guardrails",
    "cuped_uplift", "cuped_ci_low", "cuped_ci_high", "cuped_p_value", "cuped_variance_reduction",
    "velocity_target_days", "velocity_logrank_p",
    *(f"velocity_{who}_{part}" for who in ("control", "treatment")
      for part in ("reached", "censored", "median_days", "share_by_target")),
    *(f"velocity_cohort_{cohort}_{part}" for cohort in COHORT_LABELS
      for part in ("accounts", "nrr")),
    "permutation_p_value", "permutation_count", "permutation_seed",
)


def nrr_csv_figures(report: Mapping[str, Any],
                    comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The NRR-native figures of one comparison as flat cells (:data:`NRR_CSV_COLUMNS`).

    Blank (``None``) where the figure is null. Velocity cohorts are per experiment: every
    comparison's row repeats them (pooled over the arms when the report pools them).
    """
    row: dict[str, Any] = {}
    levers = _map(comparison.get("levers"))
    for lever in LEVERS:
        figure = _map(levers.get(lever))
        low, high = as_pair(figure.get("ci_abs"))
        row.update({f"lever_{lever}_control": figure.get("control"),
                    f"lever_{lever}_treatment": figure.get("treatment"),
                    f"lever_{lever}_uplift": figure.get("uplift_abs"),
                    f"lever_{lever}_ci_low": low, f"lever_{lever}_ci_high": high,
                    f"lever_{lever}_p_value": figure.get("p_value")})
    for metric in ("logo_churn", "expansion_incidence"):
        figure = _map(comparison.get(metric))
        for part in ("control", "treatment", "diff", "p_value"):
            row[f"{metric}_{part}"] = figure.get(part)
    rows = _guardrail_rows(comparison)
    status = guardrail_status(rows)
    row["guardrail_status"] = status.status if status else None
    row["guardrails"] = "; ".join(
        f"{r.metric} margin {r.margin:g}: {r.status or 'not computed'}"
        + (f" (diff {r.diff:.6g}, p {r.p_value:.6g})"
           if r.diff is not None and r.p_value is not None else "")
        for r in rows if r.margin is not None) or None
    cuped = _map(comparison.get("cuped"))
    low, high = as_pair(cuped.get("ci_abs"))
    row.update({"cuped_uplift": cuped.get("uplift_abs"), "cuped_ci_low": low,
                "cuped_ci_high": high, "cuped_p_value": cuped.get("p_value"),
                "cuped_variance_reduction": cuped.get("variance_reduction")})
    figure = _map(comparison.get("velocity"))
    row["velocity_target_days"] = figure.get("target_days")
    row["velocity_logrank_p"] = figure.get("logrank_p")
    for who, key in (("control", report.get("control")), ("treatment", comparison.get("variant"))):
        arm = _map(figure.get(str(key)))
        for part in ("reached", "censored", "median_days", "share_by_target"):
            row[f"velocity_{who}_{part}"] = arm.get(part)
    for cohort in _cohort_rows(report.get("velocity_cohorts")):
        if cohort.variant in (None, comparison.get("variant")) and cohort.cohort in COHORT_LABELS:
            row[f"velocity_cohort_{cohort.cohort}_accounts"] = cohort.accounts
            row[f"velocity_cohort_{cohort.cohort}_nrr"] = cohort.nrr
    permutation = _map(comparison.get("permutation"))
    row.update({"permutation_p_value": permutation.get("p_value"),
                "permutation_count": permutation.get("permutations"),
                "permutation_seed": permutation.get("seed")})
    return row
