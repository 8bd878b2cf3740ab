"""Plain-text renderings of an analysis (DESIGN §4 dict): a flat CSV and a Markdown report."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from experiments.formatting import interval, md, money, neutralise, pct, pts, pvalue

COMPARISON_COLUMNS = (
    "variant", "control", "accounts", "control_accounts", "nrr", "control_nrr",
    "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "ci_rel_low", "ci_rel_high",
    "p_value", "p_value_adjusted", "p_value_mwu", "sigma_lin", "required_n_per_arm",
    "power_achieved", "srm_p_value", "srm_flag", "verdict",
)

def _blank(value: Any) -> Any:
    return "" if value is None else value


def comparison_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per treatment-vs-control comparison."""
    arms = {arm["variant"]: arm for arm in report["arms"]}
    control = arms.get(report["control"], {})
    rows = []
    for comparison in report["comparisons"]:
        arm = arms.get(comparison["variant"], {})
        ci_abs = comparison.get("ci_abs") or [None, None]
        ci_rel = comparison.get("ci_rel") or [None, None]
        rows.append({
            "variant": comparison["variant"], "control": report["control"],
            "accounts": arm.get("accounts"), "control_accounts": control.get("accounts"),
            "nrr": arm.get("nrr"), "control_nrr": control.get("nrr"),
            "uplift_abs": comparison["uplift_abs"], "ci_abs_low": ci_abs[0], "ci_abs_high": ci_abs[1],
            "uplift_rel": comparison["uplift_rel"], "ci_rel_low": ci_rel[0], "ci_rel_high": ci_rel[1],
            "p_value": comparison["p_value"], "p_value_adjusted": comparison["p_value_adjusted"],
            "p_value_mwu": comparison["p_value_mwu"], "sigma_lin": comparison["sigma_lin"],
            "required_n_per_arm": comparison["required_n_per_arm"],
            "power_achieved": comparison["power_achieved"],
            "srm_p_value": report["srm"]["p_value"], "srm_flag": report["srm"]["flag"],
            "verdict": comparison["verdict"],
        })
    return rows


def result_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COMPARISON_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in comparison_rows(report):
        writer.writerow({k: neutralise(_blank(v)) for k, v in row.items()})
    return out.getvalue()


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
