"""Plain-text renderings of an analysis (DESIGN §4 dict): a flat CSV and a Markdown report."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from experiments.formatting import (
    as_number,
    as_pair,
    csv_text,
    interval,
    md,
    money,
    pct,
    pts,
    pvalue,
)
from stats import Comparison, summary_sentence

COMPARISON_COLUMNS = (
    "variant",
    "control",
    "accounts",
    "control_accounts",
    "nrr",
    "control_nrr",
    "uplift_abs",
    "ci_abs_low",
    "ci_abs_high",
    "uplift_rel",
    "ci_rel_low",
    "ci_rel_high",
    "p_value",
    "p_value_adjusted",
    "p_value_mwu",
    "sigma_lin",
    "required_n_per_arm",
    "power_achieved",
    "srm_p_value",
    "srm_flag",
    "verdict",
    "ci_abs_adjusted_low",
    "ci_abs_adjusted_high",
    "ci_method",
    "inference_method",
    "mwu_prob_superiority",
    "sequential_p_value",
    "sequential_ci_low",
    "sequential_ci_high",
    "required_n",
    "required_n_control",
)


def p_equals(value: Any) -> str:
    """``p = 0.0123`` or ``p < 0.0001``: never "p = < 0.0001"."""
    text = pvalue(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def exact_money(value: Any) -> Decimal | None:
    """A money sum as an exact decimal of cents: 3684065.2200000025 → Decimal('3684065.22').

    Money is integer cents in the database; the float sums of a stored analysis carry
    binary noise that must not reach a file.
    """
    number = as_number(value)
    return None if number is None else Decimal(f"{number:.2f}")


def comparison_figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per treatment-vs-control comparison of a DESIGN §4 report.

    The CLI's CSV is exactly these rows; the exports add the experiment's fields.
    """
    arms = {a.get("variant"): a for a in report.get("arms") or [] if isinstance(a, Mapping)}
    control_key = report.get("control")
    control = arms.get(control_key, {})
    srm = report.get("srm") or {}
    rows = []
    for comparison in report.get("comparisons") or []:
        if not isinstance(comparison, Mapping):
            continue
        arm = arms.get(comparison.get("variant"), {})
        ci_abs, ci_rel = as_pair(comparison.get("ci_abs")), as_pair(comparison.get("ci_rel"))
        rows.append(
            {
                "variant": comparison.get("variant"),
                "control": control_key,
                "accounts": arm.get("accounts"),
                "start_mrr": exact_money(arm.get("start_mrr")),
                "end_mrr": exact_money(arm.get("end_mrr")),
                "nrr": arm.get("nrr"),
                "grr": arm.get("grr"),
                "control_accounts": control.get("accounts"),
                "control_start_mrr": exact_money(control.get("start_mrr")),
                "control_end_mrr": exact_money(control.get("end_mrr")),
                "control_nrr": control.get("nrr"),
                "control_grr": control.get("grr"),
                "uplift_abs": comparison.get("uplift_abs"),
                "ci_abs_low": ci_abs[0],
                "ci_abs_high": ci_abs[1],
                "uplift_rel": comparison.get("uplift_rel"),
                "ci_rel_low": ci_rel[0],
                "ci_rel_high": ci_rel[1],
                "p_value": comparison.get("p_value"),
                "p_value_adjusted": comparison.get("p_value_adjusted"),
                "p_value_mwu": comparison.get("p_value_mwu"),
                "sigma_lin": comparison.get("sigma_lin"),
                "required_n_per_arm": comparison.get("required_n_per_arm"),
                "power_achieved": comparison.get("power_achieved"),
                "srm_p_value": srm.get("p_value"),
                "srm_flag": srm.get("flag") if srm else None,
                "verdict": comparison.get("verdict"),
                **_issue13_figures(report, comparison),
            }
        )
    return rows


def _issue13_figures(report: Mapping[str, Any], comparison: Mapping[str, Any]) -> dict[str, Any]:
    """Sizing, adjusted interval, inference method, Mann–Whitney size, sequential (DESIGN §4c)."""
    adjusted = as_pair(comparison.get("ci_abs_adjusted"))
    sequential = comparison.get("sequential") or {}
    seq_ci = as_pair(sequential.get("ci_abs"))
    required = report.get("required_n") or {}
    return {
        "ci_abs_adjusted_low": adjusted[0],
        "ci_abs_adjusted_high": adjusted[1],
        "ci_method": comparison.get("ci_method"),
        "inference_method": (comparison.get("inference") or {}).get("method"),
        "mwu_prob_superiority": (comparison.get("mann_whitney") or {}).get("prob_superiority"),
        "sequential_p_value": sequential.get("p_value"),
        "sequential_ci_low": seq_ci[0],
        "sequential_ci_high": seq_ci[1],
        "required_n": required.get(comparison.get("variant")),
        "required_n_control": required.get(report.get("control")),
    }


def result_csv(report: Mapping[str, Any]) -> str:
    """The CLI's flat table: one row per comparison, with the NRR-native figures (§4b)."""
    from experiments.nrr_figures_view import NRR_CSV_COLUMNS, nrr_csv_figures

    comparisons = {
        str(c.get("variant")): c
        for c in report.get("comparisons") or []
        if isinstance(c, Mapping)
    }
    rows = [
        {**figures, **nrr_csv_figures(report, comparisons.get(str(figures["variant"]), {}))}
        for figures in comparison_figures(report)
    ]
    return csv_text((*COMPARISON_COLUMNS, *NRR_CSV_COLUMNS), rows)


def _method_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for c in report["comparisons"]:
        name = c["variant"]
        adjusted = c.get("ci_abs_adjusted")
        if c.get("ci_method") == "bonferroni" and adjusted:
            level = (1 - report["alpha"] / len(report["comparisons"])) * 100
            lines.append(
                f"{name}: Bonferroni-adjusted {level:.1f}% CI {interval(adjusted, pts)} "
                "(the level the Holm verdict is judged at; raw CI in the table)"
            )
        inference = c.get("inference") or {}
        if inference.get("method") == "permutation":
            lines.append(
                f"{name}: p-value and intervals from a studentised permutation test "
                f"({inference.get('permutations')} relabellings) because of "
                f"{inference.get('reason')}; "
                f"Welch {p_equals(inference.get('welch_p_value'))}"
            )
        mwu = c.get("mann_whitney") or {}
        if mwu.get("prob_superiority") is not None:
            line = (
                f"{name}: Mann–Whitney P(treatment account > control account) = "
                f"{mwu['prob_superiority'] * 100:.1f}%, {p_equals(mwu.get('p_value'))}"
            )
            lines.append(line)
        sequential = c.get("sequential")
        if sequential:
            lines.append(
                f"{name}: sequential (always valid, tuning {sequential['tuning']:,.0f}) "
                f"CI {interval(sequential.get('ci_abs'), pts)}, "
                f"{p_equals(sequential.get('p_value'))} against α = "
                f"{report.get('alpha_sizing'):.4g}"
            )
    return lines


def _nrr_lines(report: Mapping[str, Any]) -> list[str]:
    """Levers, incidences, guardrails, CUPED, velocity and the small-sample check: the same
    sections as the exports (one renderer), each only when its inputs exist."""
    from experiments.export_formats import nrr_md_lines
    from experiments.nrr_figures_view import EXPORT_STYLE, nrr_figures

    figures = nrr_figures(report, style=EXPORT_STYLE)
    return nrr_md_lines(figures, "#") if figures is not None else []


def result_markdown(report: Mapping[str, Any], *, title: str = "NRR experiment analysis") -> str:
    """A readable Markdown report: arms, uplift with CI, p-values, sample size, SRM, verdict."""
    alpha = report["alpha"]
    level = round((1 - alpha) * 100, 1)
    lines = [
        f"# {md(title)}",
        "",
        f"Plan: control **{md(report['control'])}**, α = {alpha}, power = {report['power']}, "
        f"MDE = {report['mde'] * 100:.2f} NRR points.",
        "",
    ]
    srm = report["srm"]
    if srm["flag"]:
        lines += [
            f"> **Sample-ratio mismatch** (χ² {p_equals(srm['p_value'])}): "
            "the arms' sizes do not match the "
            "planned allocation, so the results below are not trustworthy. Check assignment, "
            "logging and filters.",
            "",
        ]
    elif srm.get("p_value") is None:
        lines += ["SRM check: not run (see the warnings).", ""]
    else:
        lines += [
            f"SRM check: **passed** — arm sizes match the planned allocation "
            f"(χ² {p_equals(srm['p_value'])}; flagged below 0.001).",
            "",
        ]
    required = report.get("required_n") or {}
    if required:
        sizes = ", ".join(
            f"{md(k)} {v:,}" if v is not None else f"{md(k)} —" for k, v in required.items()
        )
        lines += [
            f"Required accounts (allocation- and multiplicity-aware, α per comparison = "
            f"{report.get('alpha_sizing'):.4g}, σ = {report.get('sigma_planning') or 0:.4f} "
            f"from {report.get('sigma_source') or '—'}): {sizes}.",
            "",
        ]
    lines += [
        "## Arms",
        "",
        "| variant | accounts | start MRR | expansion | contraction | churned | end MRR | NRR "
        "| GRR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in report["arms"]:
        lines.append(
            f"| {md(arm['variant'])} | {arm['accounts']} | {money(arm['start_mrr'])} | "
            f"{money(arm['expansion_mrr'])} | {money(arm['contraction_mrr'])} | "
            f"{money(arm['churned_mrr'])} | {money(arm['end_mrr'])} | {pct(arm['nrr'])} | "
            f"{pct(arm['grr'])} |"
        )
    lines += [
        "",
        "## Uplift vs control",
        "",
        f"| variant | uplift | {level}% CI | relative | {level}% CI | p | p (Holm) | p "
        "(Mann–Whitney) | required n/arm | power | verdict |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    sentences = []
    for c in report["comparisons"]:
        lines.append(
            f"| {md(c['variant'])} | {pts(c['uplift_abs'])} | {interval(c['ci_abs'], pts)} | "
            f"{pct(c['uplift_rel'])} | "
            f"{interval(c['ci_rel'], pct)} | {pvalue(c['p_value'])} | "
            f"{pvalue(c['p_value_adjusted'])} | {pvalue(c['p_value_mwu'])} | "
            f"{c['required_n_per_arm'] if c['required_n_per_arm'] is not None else '—'} | "
            f"{pct(c['power_achieved'])} | "
            f"**{c['verdict']}** |"
        )
        sentences.append(summary_sentence(Comparison.from_dict(c), alpha))
    lines += _nrr_lines(report)
    extra = _method_lines(report)
    if extra:
        lines += ["", "## How the figures were computed", ""] + [f"- {md(line)}" for line in extra]
    lines += ["", "## Verdict", ""] + [f"- {md(s)}" for s in sentences]
    warnings = list(report.get("warnings", [])) + [
        w for c in report["comparisons"] for w in c.get("warnings", [])
    ]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"
