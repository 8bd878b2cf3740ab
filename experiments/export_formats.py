"""The text formats of the exports: JSON, CSV and Markdown of one experiment's document
or of a review.

Pure functions: they turn an :class:`~experiments.documents.ExperimentDocument` (or a
review's JSON, whose experiments are documents) into text and touch nothing else.

CSV cells of text that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or CR) get a leading apostrophe (OWASP "CSV injection");
numbers are written as plain numbers, so a negative uplift stays a number, and money
as exact decimals. Markdown escapes Markdown syntax in user text with backslashes
(never HTML entities), so no link or image can come from it.

A past week whose driver-tree actuals were reconstructed after it ended says so in its
Markdown and HTML exports, as its review page and JSON do (:func:`tree_reconstructed`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from experiments.documents import ExperimentDocument, finite
from experiments.formatting import (
    count,
    csv_text,
    interval,
    md,
    money,
    pct,
    points,
    pts,
    pvalue,
)
from experiments.nrr_figures_view import (
    EXPORT_STYLE,
    NRR_CSV_COLUMNS,
    NrrFigures,
    nrr_csv_figures,
    nrr_figures,
)
from experiments.report_text import comparison_figures
from experiments.review_weeks import parse_moment
from experiments.verdict_status import verdict_status


def safe_name(text: str) -> str:
    """``text`` reduced to characters every file system and HTTP header accepts."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:80] or "report"


def when(value: Any) -> str:
    """An ISO moment as ``YYYY-MM-DD HH:MM UTC``; a day as it is; nothing as ``—``."""
    moment = parse_moment(value) if isinstance(value, str) and "T" in value else None
    if moment is not None:
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return "—" if value in (None, "") else str(value)


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ------------------------------------------------------------ one experiment


def experiment_json(document: ExperimentDocument, *, exported_at: datetime) -> str:
    """The document's :meth:`~ExperimentDocument.to_json` with the export moment: the
    stored analysis as stored, DESIGN §4b keys included."""
    return _dumps({**document.to_json(), "exported_at": exported_at.isoformat()})


EXPERIMENT_COLUMNS: tuple[str, ...] = (
    "experiment_key", "experiment_name", "branch", "driver", "journey_stage", "team", "owner",
    "hypothesis", "status", "decision", "decision_rationale", "verdict",
    "variant", "control", "accounts", "control_accounts", "start_mrr", "control_start_mrr",
    "end_mrr", "control_end_mrr", "nrr", "control_nrr", "grr", "control_grr",
    "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "ci_rel_low", "ci_rel_high",
    "p_value", "p_value_adjusted", "p_value_mwu", "sigma_lin", "required_n_per_arm",
    "power_achieved", "comparison_verdict", "srm_p_value", "srm_flag", "alpha", "power", "mde",
    "planned_start", "planned_end", "amendments", "dataset_version", "dataset_sha256",
    "dataset_rows", "computed_at",
    # Issue 13 (DESIGN §4c), the same figures as the CLI's CSV and the results page.
    "ci_abs_adjusted_low", "ci_abs_adjusted_high", "ci_method", "inference_method",
    "mwu_prob_superiority", "sequential_p_value", "sequential_ci_low", "sequential_ci_high",
    "required_n", "required_n_control",
    # Issue 15 (DESIGN §4b): levers, logo churn, guardrails, CUPED, velocity, permutation.
    *NRR_CSV_COLUMNS,
    # The Kaplan–Meier curves of the control and of the row's treatment (stored
    # ``velocity_curves``), one cell each: see :func:`velocity_curve_cell`.
    "velocity_curve_control", "velocity_curve_treatment",
)


def _amendments_text(document: ExperimentDocument) -> str:
    return "; ".join(f"{a.field}: {a.old_value} → {a.new_value} ({a.reason})"
                     for a in document.amendments)


def comparison_lines(document: ExperimentDocument) -> list[dict[str, Any]]:
    """One flat dict per comparison (one empty-figured line when there is none)."""
    info, plan, dataset = document.experiment, document.plan, document.dataset
    result = document.result or {}
    srm = result.get("srm") or {}
    base = {
        "experiment_key": info.key, "experiment_name": info.name,
        "branch": info.branch.name if info.branch else None,
        "driver": info.driver.name if info.driver else None,
        "journey_stage": info.journey_stage, "team": info.team.name if info.team else None,
        "owner": info.owner, "hypothesis": info.hypothesis, "status": info.status,
        "decision": info.decision, "decision_rationale": info.decision_rationale,
        "verdict": document.verdict, "control": result.get("control") or plan.control,
        "srm_p_value": srm.get("p_value"), "srm_flag": srm.get("flag") if srm else None,
        "alpha": result.get("alpha", plan.alpha), "power": result.get("power", plan.power),
        "mde": result.get("mde", plan.mde), "planned_start": plan.planned_start,
        "planned_end": plan.planned_end, "amendments": _amendments_text(document),
        "dataset_version": dataset.version if dataset else None,
        "dataset_sha256": dataset.sha256 if dataset else None,
        "dataset_rows": dataset.rows if dataset else None, "computed_at": document.computed_at,
    }
    # The per-comparison figures are the CLI's; a comparison's own verdict is renamed
    # so that "verdict" stays the experiment's headline.
    comparisons = {str(c.get("variant")): c for c in document.comparisons}
    lines = [{**base, **figures,
              **nrr_csv_figures(result, comparisons.get(str(figures["variant"]), {})),
              "verdict": base["verdict"], "comparison_verdict": figures["verdict"]}
             for figures in comparison_figures(result)]
    return lines or [base]


def velocity_curve_cell(curve: Any) -> str | None:
    """A stored Kaplan–Meier curve (``[[day, share reached], ...]``) as one CSV cell:
    ``day:share`` steps in day order joined by ``"; "``, numbers as stored. The curve is
    right-continuous: each share holds from its day to the next step, and the last step
    is the arm's last follow-up. ``None`` (a blank cell) without a usable curve."""
    steps = []
    for point in curve if isinstance(curve, list | tuple) else ():
        if not isinstance(point, list | tuple) or len(point) != 2:
            continue
        day, share = point
        if all(type(v) in (int, float) and math.isfinite(v) for v in (day, share)):
            steps.append((day, share))
    return "; ".join(f"{day!r}:{share!r}" for day, share in sorted(steps)) or None


def experiment_csv(document: ExperimentDocument) -> str:
    """One row per comparison; money as exact decimals, rates as plain numbers; the
    velocity curves of the row's control and treatment as :func:`velocity_curve_cell`."""
    result = document.result or {}
    curves = result.get("velocity_curves")
    curves = curves if isinstance(curves, Mapping) else {}
    control = str(result.get("control"))
    lines = [{**line,
              "velocity_curve_control": velocity_curve_cell(curves.get(control)),
              "velocity_curve_treatment": velocity_curve_cell(curves.get(str(line.get("variant"))))
              if "variant" in line else None}
             for line in comparison_lines(document)]
    return csv_text(EXPERIMENT_COLUMNS, lines)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines


def experiment_md_lines(document: ExperimentDocument, level: int = 2) -> list[str]:
    """One experiment's Markdown section (heading level ``level``)."""
    info, plan, dataset = document.experiment, document.plan, document.dataset
    result = document.result or {}
    h = "#" * level
    decision = f"{info.decision}: {info.decision_rationale}" if info.decision else None
    version = (f"v{dataset.version}, {dataset.rows:,} rows, sha256 {dataset.sha256}"
               if dataset else "no data")
    lines = [f"{h} {md(info.name)} ({md(info.key)})", ""]
    lines += _md_table(["field", "value"], [
        ("branch", info.branch.name if info.branch else None),
        ("driver", info.driver.name if info.driver else None),
        ("journey stage", info.journey_stage), ("team", info.team.name if info.team else None),
        ("owner", info.owner), ("hypothesis", info.hypothesis), ("status", info.status),
        ("decision", decision), ("verdict", verdict_text(document)), ("data version", version),
        ("computed at", when(document.computed_at)),
    ])
    lines += ["", f"{h}# Plan", ""]
    lines += _md_table(["primary metric", "MDE", "alpha", "power", "control",
                        "variants (weight)", "planned"], [(
        plan.primary_metric, points(plan.mde), plan.alpha, plan.power, plan.control,
        ", ".join(f"{v.key} ({v.weight:g})" for v in plan.variants),
        f"{plan.planned_start or '—'} to {plan.planned_end or '—'}",
    )])
    lines += ["", f"{h}# Amendments", ""]
    if document.amendments:
        lines += _md_table(["when", "who", "field", "old", "new", "reason"], [
            (when(a.at), a.by, a.field, a.old_value, a.new_value, a.reason)
            for a in document.amendments])
    else:
        lines.append("None: the analysis plan is as registered.")
    if not result:
        return [*lines, "", "No results yet: no data has been uploaded."]
    figures = nrr_figures(result, style=EXPORT_STYLE)
    lines += ["", f"{h}# Arms", ""]
    lines += _md_table(["variant", "accounts", "start MRR", "expansion", "contraction",
                        "churned", "end MRR", "NRR", "GRR"], [
        (a.get("variant"), count(a.get("accounts")), money(a.get("start_mrr")),
         money(a.get("expansion_mrr")), money(a.get("contraction_mrr")),
         money(a.get("churned_mrr")), money(a.get("end_mrr")), pct(a.get("nrr")),
         pct(a.get("grr"))) for a in result.get("arms") or []])
    lines += ["", f"{h}# Uplift against {md(result.get('control'))}", ""]
    alpha = result.get("alpha") or 0.05
    k = max(len(document.comparisons), 1)
    level_text = f"{(1 - alpha) * 100:g}% CI" + (", raw" if k > 1 else "")
    adjusted_text = f"{(1 - alpha / k) * 100:.4g}% CI, Bonferroni ({k} treatments)"
    lines += _md_table(["variant", "uplift", *([adjusted_text] if k > 1 else []), level_text,
                        "relative", "p-value", "p (Holm)",
                        "p (Mann-Whitney)", "power", "required n per arm", "verdict"], [
        (c.get("variant"), pts(c.get("uplift_abs")),
         *([interval(c.get("ci_abs_adjusted"))] if k > 1 else []), interval(c.get("ci_abs")),
         pct(c.get("uplift_rel")), pvalue(c.get("p_value")), pvalue(c.get("p_value_adjusted")),
         pvalue(c.get("p_value_mwu")), pct(c.get("power_achieved"), 1),
         count(c.get("required_n_per_arm")), c.get("verdict"))
        for c in document.comparisons])
    srm = result.get("srm") or {}
    if srm.get("flag"):
        lines += ["", f"**Sample ratio mismatch** (p = {pvalue(srm.get('p_value'))}): these "
                      "results cannot be trusted until the assignment is fixed."]
    if figures is not None:
        lines += nrr_md_lines(figures, h)
    warnings = list(result.get("warnings") or [])
    warnings += [f"{c.get('variant')}: {w}" for c in document.comparisons
                 for w in c.get("warnings") or []]
    if warnings:
        lines += ["", f"{h}# Warnings", ""] + [f"- {md(w)}" for w in dict.fromkeys(warnings)]
    return lines


def verdict_text(document: ExperimentDocument) -> str | None:
    """The headline verdict with the guardrail status beside it (``win — guardrail failed:
    GRR``), as the results page shows it (:mod:`experiments.verdict_status`)."""
    return verdict_status(document.verdict, document.result).text


def _comparison_verdict_text(line: Mapping[str, Any]) -> str | None:
    """A portfolio line's verdict with its own guardrail status (issue 15)."""
    text = line.get("guardrail_text")
    return f"{line.get('verdict')} — {text}" if line.get("verdict") and text else \
        line.get("verdict")


def _days(value: Any) -> str:
    return "—" if value is None else f"{value:g}"


def nrr_md_lines(figures: NrrFigures, h: str) -> list[str]:
    """The NRR-native sections (issue 15), each only when its inputs exist."""
    lines: list[str] = []
    if figures.waterfalls:
        lines += ["", f"{h}# Where NRR came from", "",
                  "Start MRR plus expansion, minus contraction and churn, is end MRR; "
                  "end / start is the NRR.", ""]
        lines += _md_table(["variant", "start MRR", "+ expansion", "− contraction", "− churn",
                            "end MRR", "NRR"], [
            (w.variant, money(w.start_mrr), money(w.expansion_mrr), money(w.contraction_mrr),
             money(w.churned_mrr), money(w.end_mrr), pct(w.nrr)) for w in figures.waterfalls])
    if figures.levers:
        lines += ["", f"{h}# Levers", ""]
        lines += [md(s) for s in figures.lever_sentences.values()] + [""]
        lines += ["Each interval and p is raw (Welch, no multiplicity adjustment), unlike "
                  "the verdict's.", ""]
        lines += _md_table(["treatment", "lever", figures.control, "treatment rate",
                            "difference", f"{figures.level} CI", "p"], [
            (r.variant, r.label, pct(r.control), pct(r.treatment), pts(r.uplift_abs),
             interval(r.ci_abs), pvalue(r.p_value)) for r in figures.levers])
    if figures.proportions:
        lines += ["", f"{h}# Accounts lost and accounts expanded", "",
                  "Shares of accounts (two-proportion z-test).", ""]
        lines += _md_table(["treatment", "measure", figures.control, "treatment share",
                            "difference", "p"], [
            (r.variant, r.label, pct(r.control), pct(r.treatment), pts(r.diff),
             pvalue(r.p_value)) for r in figures.proportions])
    if figures.guardrails:
        lines += ["", f"{h}# Guardrails", "",
                  f"Non-inferiority, one-sided at α = {figures.alpha:g}: pass when the "
                  "treatment is shown to be no worse than the margin, fail when shown worse.",
                  ""]
        lines += _md_table(["treatment", "guardrail", "margin", "difference", "one-sided p",
                            "status"], [
            (g.variant, g.label, points(g.margin), pts(g.diff), pvalue(g.p_value),
             g.status or "not computed") for g in figures.guardrails])
    if figures.cuped:
        lines += ["", f"{h}# CUPED (adjusted for the pre-period)", ""]
        lines += [md(c.sentence) for c in figures.cuped] + [""]
        lines += _md_table(["treatment", "CUPED uplift", f"{figures.level} CI", "p",
                            "variance reduction", "interval narrower by"], [
            (c.variant, pts(c.uplift_abs), interval(c.ci_abs), pvalue(c.p_value),
             pct(c.variance_reduction, 0), pct(c.narrower, 0)) for c in figures.cuped])
    velocity = figures.velocity
    if velocity is not None:
        lines += ["", f"{h}# Journey velocity (time to value)", "", md(velocity.sentence), ""]
        lines += _md_table(["arm", "reached value", "censored", "median days to value",
                            f"share by day {_days(velocity.target_days)}", "log-rank p"], [
            (f"{a.variant} (control)" if a.is_control else a.variant, count(a.reached),
             count(a.censored), _days(a.median_days) if a.median_days is not None
             else "not reached", pct(a.share_by_target),
             "—" if a.is_control else pvalue(a.logrank_p)) for a in velocity.arms])
        if velocity.chart is not None:
            lines += ["", "Share of accounts that reached value by day (Kaplan–Meier):", ""]
            lines += _md_table(["by", *(c.variant for c in velocity.chart.curves)], [
                (row.label, *(pct(s, 1) for s in row.shares)) for row in velocity.chart.table])
    if figures.cohorts:
        lines += ["", f"{h}# NRR by velocity cohort", "",
                  "Thirds by days to value, and the accounts that have not reached value "
                  "(descriptive).", ""]
        by_variant = figures.cohorts_by_variant
        lines += _md_table([*(["arm"] if by_variant else []), "cohort", "up to day",
                            "accounts", "start MRR", "end MRR", "NRR"], [
            (*([c.variant] if by_variant else []), c.label, _days(c.max_days),
             count(c.accounts), money(c.start_mrr), money(c.end_mrr), pct(c.nrr))
            for c in figures.cohorts])
    if figures.permutation:
        lines += ["", f"{h}# Small-sample check", ""]
        lines += [f"- {md(p.sentence)}" for p in figures.permutation]
    return lines


def experiment_markdown(document: ExperimentDocument, *, exported_at: datetime) -> str:
    lines = [f"# NRR uplift report: {md(document.experiment.name)}", "",
             f"Exported {exported_at.strftime('%Y-%m-%d %H:%M UTC')} from NRR Lab.", ""]
    lines += experiment_md_lines(document)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ a review


def _total_cell(total: Mapping[str, Any] | None) -> str:
    """A quarter total of revenue impact: annual money, or a dash without ships."""
    if not total or not total.get("ships"):
        return "—"
    return money(total.get("annual"))


def _impact_md_lines(impact: Mapping[str, Any] | None) -> list[str]:
    """The quarter's ships with raw and shrunk revenue impact (experiments.impact)."""
    lines = ["", "## Revenue impact of this quarter's ships", ""]
    if not impact or not impact.get("ships"):
        return [*lines, "No experiment was decided ship this quarter."]
    rows = []
    for ship in impact["ships"]:
        if ship.get("missing"):
            rows.append((ship["key"], ship.get("shipped_variant"), "—", "—", "—", "—", "—",
                         f"no figure: {ship['missing']}"))
            continue
        raw, shrunk = ship.get("raw") or {}, ship.get("shrunk") or {}
        rows.append((ship["key"], ship["shipped_variant"],
                     f"{pct(ship['rollout_share'])} × {money(ship['eligible_base_mrr'])}",
                     pts(ship["uplift_abs"]), pts(ship.get("uplift_shrunk")),
                     f"{money(raw.get('annual'))} ({interval(raw.get('annual_ci'), money)})",
                     f"{money(shrunk.get('annual'))} "
                     f"({interval(shrunk.get('annual_ci'), money)})",
                     pts(shrunk.get("company_points"))))
    lines += _md_table(["experiment", "shipped", "rollout × eligible base (MRR)", "uplift raw",
                        "uplift shrunk", "annual impact raw (CI)", "annual impact shrunk (CI)",
                        "company NRR, shrunk"], rows)
    raw, shrunk = impact["total_raw"], impact["total_shrunk"]
    method = impact.get("method") or {}
    lines += ["", f"Quarter total: raw {_total_cell(raw)} "
                  f"({interval(raw.get('annual_ci'), money)}), shrunk {_total_cell(shrunk)} "
                  f"({interval(shrunk.get('annual_ci'), money)}) a year; company NRR "
                  f"{pts(shrunk.get('company_points'))} shrunk, {pts(raw.get('company_points'))} "
                  "raw.",
              "", "Annual impact = uplift × eligible base × rollout share × 12. Shrunk: "
                  f"empirical Bayes ({method.get('shrinkage') or 'none'}) over the "
                  f"{method.get('estimates', 0)} comparisons shown, for the winner's curse; "
                  "intervals 95%."]
    return lines


def tree_reconstructed(review: Mapping[str, Any]) -> str | None:
    """The mark of a past week whose driver-tree actuals were reconstructed after it ended
    (:mod:`experiments.review_tree`: frozen before the summary was kept, or never opened
    while it ran), in the review page's words; ``None`` for any other review.

    The company start MRR behind the revenue impact's company NRR points comes from the
    same reconstruction, so the mark says so too. The review CSV carries neither the tree
    actuals nor the impact (one row per comparison), so it has no mark."""
    kept = review.get("driver_tree_actuals_kept") or {}
    if not (review["review"].get("frozen") and kept.get("reconstructed")):
        return None
    return ("This week kept no copy of its tree actuals while it ran, so these were "
            "reconstructed from the actuals and revenue ledger as they stood on "
            f"{when(kept.get('kept_at'))}, and kept from then on. The company NRR points "
            "of the revenue impact use the company start MRR of the same reconstruction.")


def review_json(review: Mapping[str, Any]) -> str:
    return _dumps(finite(review))


def review_documents(review: Mapping[str, Any]) -> dict[str, ExperimentDocument]:
    """The review's experiments as documents, by key."""
    return {d.key: d for d in (ExperimentDocument.from_json(row)
                               for row in review["experiments"])}


def detail_documents(review: Mapping[str, Any]) -> list[ExperimentDocument]:
    """Experiments that get a section of their own: those with results or on the agenda."""
    wanted = {p["key"] for p in review["portfolio"]} | set(review["items"])
    return [d for d in review_documents(review).values() if d.key in wanted]


REVIEW_COLUMNS: tuple[str, ...] = (
    "week", "experiment_key", "experiment_name", "branch", "driver", "team", "owner", "status",
    "decision", "verdict", "verdict_before", "needs_decision", "changes", "alerts",
    "variant", "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "p_value",
    "p_value_adjusted", "p_value_bh_portfolio", "p_value_mwu", "required_n_per_arm",
    "power_achieved", "comparison_verdict", "guardrail_status", "guardrails", "accounts",
    "control_accounts", "nrr", "control_nrr", "item_note", "item_actions", "item_decision",
    "item_decision_rationale", "dataset_version", "dataset_sha256", "dataset_rows", "computed_at",
)


def review_csv(review: Mapping[str, Any]) -> str:
    """One row per comparison of every experiment shown (one for those without results)."""
    bh = {(p["key"], p["variant"]): p["p_value_bh_portfolio"] for p in review["portfolio"]}
    lines = []
    for row in review["experiments"]:
        document = ExperimentDocument.from_json(row)
        flags = row.get("review") or {}
        item = review["items"].get(document.key) or {}
        extra = {
            "week": review["review"]["week"],
            "verdict_before": flags.get("verdict_before"),
            "needs_decision": "; ".join(flags.get("needs_decision") or []),
            "changes": "; ".join(c.get("text", "") for c in flags.get("changes") or []),
            "alerts": "; ".join(a.get("text", "") for a in flags.get("alerts") or []),
            "item_note": item.get("note"),
            "item_actions": "; ".join(
                f"{a['title']} ({a['state']}, {a['owner'] or 'no owner'}"
                + (f", due {a['due']}" if a.get("due") else "") + ")"
                for a in review.get("actions", []) if a.get("experiment") == document.key),
            "item_decision": item.get("decision"),
            "item_decision_rationale": item.get("decision_rationale"),
        }
        for line in comparison_lines(document):
            lines.append({**line, **extra,
                          "p_value_bh_portfolio": bh.get((document.key, line.get("variant")))})
    return csv_text(REVIEW_COLUMNS, lines)


def _actuals_md_lines(actuals: list[dict[str, Any]]) -> list[str]:
    """The review's tree actuals against target (issue 16): ledger figures as percent."""
    if not actuals:
        return []

    def shown(a: dict[str, Any], value: Any) -> str:
        if value is None:
            return "—"
        return pct(value) if a.get("metric") else f"{value:g}"

    def gap(a: dict[str, Any]) -> str:
        if a.get("gap") is None:
            return "—"
        return pts(a["gap"]) if a.get("metric") else f"{a['gap']:+g}"

    lines = ["", "### Actuals against target", ""]
    lines += _md_table(["node", "measure", "as of", "baseline", "target", "actual",
                        "actual − target"], [
        (a["node"], a["measure"] + (" (ledger)" if a.get("source") == "ledger" else ""),
         a["period"], shown(a, a.get("baseline")), shown(a, a.get("target")),
         shown(a, a.get("actual")), gap(a))
        for a in actuals])
    return lines


def review_markdown(review: Mapping[str, Any]) -> str:
    info = review["review"]
    docs = review_documents(review)

    def name(key: str) -> str:
        return f"{docs[key].experiment.name} ({key})"

    reconstructed = tree_reconstructed(review)
    title = info["title"] + (f" · {info['branch']['name']}" if info.get("branch") else "")
    window = info["changes_window"]
    lines = [f"# {md(title)}", "",
             f"Changes from {when(window['from'])} to {when(window['to'])}; "
             f"as of {when(info['as_of'])}"
             + (" (as the meeting saw it)" if info["frozen"] else "")
             + ("; driver-tree actuals reconstructed later, see the driver tree summary"
                if reconstructed else "")
             + f"; exported {when(review['exported_at'])}.", ""]
    lines += ["## Needs a decision", ""]
    lines += _md_table(["experiment", "branch", "status", "why", "verdict"], [
        (name(n["key"]),
         docs[n["key"]].experiment.branch.name if docs[n["key"]].experiment.branch else None,
         docs[n["key"]].experiment.status, "; ".join(n["reasons"]), verdict_text(docs[n["key"]]))
        for n in review["needs_decision"]])
    lines += ["", "## Changed since last review", ""]
    lines += _md_table(["experiment", "what changed", "verdict"], [
        (name(c["key"]), "; ".join(ch["text"] for ch in c["changes"]),
         f"{c['verdict_before'] or 'no results'} → "
         f"{verdict_text(docs[c['key']]) if c['verdict_now'] else 'no results'}"
         if c["verdict_before"] != c["verdict_now"] else verdict_text(docs[c["key"]]))
        for c in review["changed"]])
    lines += ["", "## Alerts", ""]
    lines += _md_table(["experiment", "alert"], [
        (name(a["key"]), "; ".join(al["text"] for al in a["alerts"])) for a in review["alerts"]])
    lines += ["", "## Driver tree summary", ""]
    lines += _md_table(["branch", "draft", "running", "stopped", "decided",
                        f"annual impact of ships since {info['quarter_start']}, raw",
                        "shrunk"], [
        (s["branch"], s["counts"]["draft"], s["counts"]["running"], s["counts"]["stopped"],
         s["counts"]["decided"], _total_cell(s.get("impact_raw")),
         _total_cell(s.get("impact_shrunk")))
        for s in review["driver_tree_summary"]])
    lines += _actuals_md_lines(review.get("driver_tree_actuals") or [])
    if reconstructed:
        lines += ["", f"**Reconstructed:** {reconstructed}"]
    lines += _impact_md_lines(review.get("impact"))
    lines += ["", "## Portfolio", "",
              f"p (BH) is Benjamini-Hochberg adjusted across the {len(review['portfolio'])} "
              "comparisons below; p (Holm) is adjusted within each experiment.", ""]
    lines += _md_table(["branch", "experiment", "variant", "uplift", "CI", "p", "p (Holm)",
                        "p (BH, portfolio)", "verdict"], [
        (p["branch"], p["key"], p["variant"], pts(p["uplift_abs"]), interval(p["ci_abs"]),
         pvalue(p["p_value"]), pvalue(p["p_value_adjusted"]),
         pvalue(p["p_value_bh_portfolio"]), _comparison_verdict_text(p))
        for p in review["portfolio"]])
    lines += ["", "## Actions", ""]
    lines += _md_table(["action", "experiment", "owner", "due", "raised", "state"], [
        (a["title"], a["experiment"], a["owner"], a["due"], a["raised_week"],
         a["state"] + (" (overdue)" if a["overdue"] else ""))
        for a in review.get("actions", [])])
    lines += ["", "## Notes and decisions", ""]
    lines += _md_table(["experiment", "note", "decision", "saved by"], [
        (key, it["note"],
         f"{it['decision']}: {it['decision_rationale']}" if it["decision"] else None,
         it["updated_by"])
        for key, it in sorted(review["items"].items())])
    for document in detail_documents(review):
        lines += ["", *experiment_md_lines(document, level=2)]
    return "\n".join(lines) + "\n"
