"""Plain-text renderings of an analysis (DESIGN §4 dict): a flat CSV and a Markdown report."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

COMPARISON_COLUMNS = (
    "variant", "control", "accounts", "control_accounts", "nrr", "control_nrr",
    "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "ci_rel_low", "ci_rel_high",
    "p_value", "p_value_adjusted", "p_value_mwu", "sigma_lin", "required_n_per_arm",
    "power_achieved", "srm_p_value", "srm_flag", "verdict",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


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


def _pts(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.2f} pts"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _cell(text: Any) -> str:
    # A pipe or newline inside a cell would break the Markdown table.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(interval: list | None, fmt) -> str:
    if not interval or interval[0] is None or interval[1] is None:
        return "—"
    return f"{fmt(interval[0])} to {fmt(interval[1])}"


def result_markdown(report: Mapping[str, Any], *, title: str = "NRR experiment analysis") -> str:
    """A readable Markdown report: arms, uplift with CI, p-values, sample size, SRM, verdict."""
    from stats import Comparison, summary_sentence

    alpha = report["alpha"]
    level = round((1 - alpha) * 100, 1)
    lines = [f"# {_cell(title)}", "",
             f"Plan: control **{_cell(report['control'])}**, α = {alpha}, power = {report['power']}, "
             f"MDE = {report['mde'] * 100:.2f} NRR points.", ""]
    srm = report["srm"]
    if srm["flag"]:
        lines += [f"> **Sample-ratio mismatch** (χ² p = {_p(srm['p_value'])}): the arms' sizes do not match the "
                  "planned allocation, so the results below are not trustworthy. Check assignment, logging and filters.", ""]
    else:
        lines += [f"SRM check: no mismatch (χ² p = {_p(srm['p_value'])}).", ""]
    lines += ["## Arms", "",
              "| variant | accounts | start MRR | expansion | contraction | churned | end MRR | NRR | GRR |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in report["arms"]:
        lines.append(f"| {_cell(arm['variant'])} | {arm['accounts']} | {_money(arm['start_mrr'])} | "
                     f"{_money(arm['expansion_mrr'])} | {_money(arm['contraction_mrr'])} | "
                     f"{_money(arm['churned_mrr'])} | {_money(arm['end_mrr'])} | {_pct(arm['nrr'])} | {_pct(arm['grr'])} |")
    lines += ["", "## Uplift vs control", "",
              f"| variant | uplift | {level}% CI | relative | {level}% CI | p | p (Holm) | p (Mann–Whitney) | required n/arm | power | verdict |",
              "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
    sentences = []
    for c in report["comparisons"]:
        lines.append(
            f"| {_cell(c['variant'])} | {_pts(c['uplift_abs'])} | {_ci(c['ci_abs'], _pts)} | {_pct(c['uplift_rel'])} | "
            f"{_ci(c['ci_rel'], _pct)} | {_p(c['p_value'])} | {_p(c['p_value_adjusted'])} | {_p(c['p_value_mwu'])} | "
            f"{c['required_n_per_arm'] if c['required_n_per_arm'] is not None else '—'} | {_pct(c['power_achieved'])} | "
            f"**{c['verdict']}** |")
        sentences.append(summary_sentence(Comparison.from_dict(c), alpha))
    lines += ["", "## Verdict", ""] + [f"- {_cell(s)}" for s in sentences]
    warnings = list(report.get("warnings", [])) + [w for c in report["comparisons"] for w in c.get("warnings", [])]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {_cell(w)}" for w in warnings]
    return "\n".join(lines) + "\n"
