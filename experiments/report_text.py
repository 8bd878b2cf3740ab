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

COMPARISON_COLUMNS = (
    "variant", "control", "accounts", "control_accounts", "nrr", "control_nrr",
    "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "ci_rel_low", "ci_rel_high",
    "p_value", "p_value_adjusted", "p_value_mwu", "sigma_lin", "required_n_per_arm",
    "power_achieved", "srm_p_value", "srm_flag", "verdict",
)

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
        rows.append({
            "variant": comparison.get("variant"), "control": control_key,
            "accounts": arm.get("accounts"), "start_mrr": exact_money(arm.get("start_mrr")),
            "end_mrr": exact_money(arm.get("end_mrr")), "nrr": arm.get("nrr"), "grr": arm.get("grr"),
            "control_accounts": control.get("accounts"),
            "control_start_mrr": exact_money(control.get("start_mrr")),
            "control_end_mrr": exact_money(control.get("end_mrr")), "control_nrr": control.get("nrr"),
            "control_grr": control.get("grr"),
            "uplift_abs": comparison.get("uplift_abs"), "ci_abs_low": ci_abs[0], "ci_abs_high": ci_abs[1],
            "uplift_rel": comparison.get("uplift_rel"), "ci_rel_low": ci_rel[0], "ci_rel_high": ci_rel[1],
            "p_value": comparison.get("p_value"), "p_value_adjusted": comparison.get("p_value_adjusted"),
            "p_value_mwu": comparison.get("p_value_mwu"), "sigma_lin": comparison.get("sigma_lin"),
            "required_n_per_arm": comparison.get("required_n_per_arm"),
            "power_achieved": comparison.get("power_achieved"),
            "srm_p_value": srm.get("p_value"), "srm_flag": srm.get("flag") if srm else None,
            "verdict": comparison.get("verdict"),
        })
    return rows


def result_csv(report: Mapping[str, Any]) -> str:
    """The CLI's flat table: one row per comparison."""
    return csv_text(COMPARISON_COLUMNS, comparison_figures(report))


def result_markdown(report: Mapping[str, Any], *, title: str = "NRR experiment analysis") -> str:
    """A readable Markdown report: arms, uplift with CI, p-values, sample size, SRM, verdict."""
    from stats import Comparison, summary_sentence

    alpha = report["alpha"]
    level = round((1 - alpha) * 100, 1)
    lines = [f"# {md(title)}", "",
             f"Plan: control **{md(report['control'])}**, α = {alpha}, power = {report['power']}, "
             f"MDE = {report['mde'] * 100:.2f} NRR points.", ""]
    srm = report["srm"]
    if srm["flag"]:
        lines += [f"> **Sample-ratio mismatch** (χ² p = {pvalue(srm['p_value'])}): the arms' sizes do not match the "
                  "planned allocation, so the results below are not trustworthy. Check assignment, logging and filters.", ""]
    else:
        lines += [f"SRM check: no mismatch (χ² p = {pvalue(srm['p_value'])}).", ""]
    lines += ["## Arms", "",
              "| variant | accounts | start MRR | expansion | contraction | churned | end MRR | NRR | GRR |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in report["arms"]:
        lines.append(f"| {md(arm['variant'])} | {arm['accounts']} | {money(arm['start_mrr'])} | "
                     f"{money(arm['expansion_mrr'])} | {money(arm['contraction_mrr'])} | "
                     f"{money(arm['churned_mrr'])} | {money(arm['end_mrr'])} | {pct(arm['nrr'])} | {pct(arm['grr'])} |")
    lines += ["", "## Uplift vs control", "",
              f"| variant | uplift | {level}% CI | relative | {level}% CI | p | p (Holm) | p (Mann–Whitney) | required n/arm | power | verdict |",
              "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
    sentences = []
    for c in report["comparisons"]:
        lines.append(
            f"| {md(c['variant'])} | {pts(c['uplift_abs'])} | {interval(c['ci_abs'], pts)} | {pct(c['uplift_rel'])} | "
            f"{interval(c['ci_rel'], pct)} | {pvalue(c['p_value'])} | {pvalue(c['p_value_adjusted'])} | {pvalue(c['p_value_mwu'])} | "
            f"{c['required_n_per_arm'] if c['required_n_per_arm'] is not None else '—'} | {pct(c['power_achieved'])} | "
            f"**{c['verdict']}** |")
        sentences.append(summary_sentence(Comparison.from_dict(c), alpha))
    lines += ["", "## Verdict", ""] + [f"- {md(s)}" for s in sentences]
    warnings = list(report.get("warnings", [])) + [w for c in report["comparisons"] for w in c.get("warnings", [])]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"
