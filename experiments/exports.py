"""Uplift reports to take away: one experiment or one review week as JSON, CSV,
Markdown, a self-contained printable HTML page, or a "reproduce" ZIP bundle.

The formatters (``*_json``, ``*_csv``, ``*_markdown``, ``*_html``) are pure: they
turn the report dict of :mod:`experiments.review` into text and touch nothing else.
:func:`export_experiment` and :func:`export_review` are the services the web page
and the CLI call: they check access, build the report, format it, name the file
and write the ``export.<format>`` audit event.

CSV cells of text that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or CR) get a leading apostrophe (OWASP "CSV injection");
numbers are written as plain numbers, so a negative uplift stays a number.

PDF is not produced: no PDF library is a dependency. The HTML report prints to PDF
from any browser (one page per experiment).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from sqlmodel import Session, select

from experiments.audit import record_event
from experiments.errors import NotFound
from experiments.formatting import (
    EXPORT_FORMATS,
    FORMULA_START,
    as_number,
    as_pair,
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
from experiments.models import AccountRow, Dataset, Experiment, User, utcnow
from experiments.registry import experiment_as_dict
from experiments.report_text import comparison_figures
from experiments.review import (
    Review,
    build_review,
    parse_moment,
    single_report,
)

FORMATS: tuple[str, ...] = EXPORT_FORMATS
CONTENT_TYPES: Mapping[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "zip": "application/zip",
}


@dataclass(frozen=True)
class ExportFile:
    """A finished download: its file name, MIME type and bytes."""

    filename: str
    content_type: str
    body: bytes


# ------------------------------------------------------------------ plain values


def _finite(value: Any) -> Any:
    """The value with every NaN/inf replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value



def _amendments_text(amendments: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{a.get('field')}: {a.get('old_value')} → {a.get('new_value')} ({a.get('reason')})"
                     for a in amendments)


def safe_name(text: str) -> str:
    """``text`` reduced to characters every file system and HTTP header accepts."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:80] or "report"


# ------------------------------------------------------------ experiment report


def _empty_results(report: Mapping[str, Any]) -> dict[str, Any]:
    plan = report["plan"]
    return {"alpha": plan["alpha"], "power": plan["power"], "mde": plan["mde"], "control": plan["control"],
            "srm": None, "arms": [], "comparisons": [],
            "warnings": ["no analysis yet: no data has been uploaded for this experiment"]}


def _experiment_object(report: Mapping[str, Any]) -> dict[str, Any]:
    info = report["experiment"]
    return {
        "key": info["key"],
        "name": info["name"],
        "branch": (info.get("branch") or {}).get("name"),
        "driver": (info.get("driver") or {}).get("name"),
        "journey_stage": info.get("journey_stage"),
        "team": info.get("team"),
        "owner": info.get("owner"),
        "hypothesis": info.get("hypothesis"),
        "status": info.get("status"),
        "decision": info.get("decision"),
        "decision_rationale": info.get("decision_rationale"),
        "decided_by": info.get("decided_by"),
        "started_at": info.get("started_at"),
        "stopped_at": info.get("stopped_at"),
        "decided_at": info.get("decided_at"),
        "amendments": info.get("amendments") or [],
    }


def experiment_document(report: Mapping[str, Any], *, exported_at: datetime,
                        experiment_object: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON export: DESIGN §4 plus the experiment object, plan, amendments, data version and times.

    ``experiment_object`` is the registry's ``experiment_as_dict`` when the caller has
    it (the same object the experiment page's JSON shows), else one built from ``report``.
    """
    results = report.get("result") or _empty_results(report)
    return _finite({
        **results,
        "verdict": report.get("verdict"),
        "experiment": dict(experiment_object) if experiment_object is not None else _experiment_object(report),
        "plan": report["plan"],
        "analysis_plan": report.get("analysis_plan"),
        "amendments": report.get("amendments") or [],
        "dataset": _public_dataset(report.get("dataset")),
        "computed_at": report.get("computed_at"),
        "exported_at": exported_at.isoformat(),
    })


def _public_dataset(dataset: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not dataset:
        return None
    return {k: dataset.get(k) for k in ("version", "sha256", "rows", "filename", "source", "uploaded_at")}


def experiment_json(report: Mapping[str, Any], *, exported_at: datetime,
                    experiment_object: Mapping[str, Any] | None = None) -> str:
    document = experiment_document(report, exported_at=exported_at, experiment_object=experiment_object)
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


EXPERIMENT_COLUMNS: tuple[str, ...] = (
    "experiment_key", "experiment_name", "branch", "driver", "journey_stage", "team", "owner", "hypothesis",
    "status", "decision", "decision_rationale", "verdict",
    "variant", "control", "accounts", "control_accounts", "start_mrr", "control_start_mrr",
    "end_mrr", "control_end_mrr", "nrr", "control_nrr", "grr", "control_grr",
    "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "ci_rel_low", "ci_rel_high",
    "p_value", "p_value_adjusted", "p_value_mwu", "sigma_lin", "required_n_per_arm", "power_achieved",
    "comparison_verdict", "srm_p_value", "srm_flag", "alpha", "power", "mde", "planned_start", "planned_end",
    "amendments", "dataset_version", "dataset_sha256", "dataset_rows", "computed_at",
)


def comparison_lines(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per comparison (one empty-figured line when there is none)."""
    info = _experiment_object(report)
    plan = report["plan"]
    dataset = report.get("dataset") or {}
    result = report.get("result") or {}
    srm = result.get("srm") or {}
    arms = {a.get("variant"): a for a in result.get("arms") or [] if isinstance(a, Mapping)}
    control_key = result.get("control") or plan.get("control")
    control = arms.get(control_key, {})
    base = {
        "experiment_key": info["key"], "experiment_name": info["name"], "branch": info["branch"],
        "driver": info["driver"], "journey_stage": info["journey_stage"], "team": info["team"],
        "owner": info["owner"], "hypothesis": info["hypothesis"], "status": info["status"],
        "decision": info["decision"], "decision_rationale": info["decision_rationale"],
        "verdict": report.get("verdict"), "control": control_key,
        "control_accounts": control.get("accounts"), "control_start_mrr": control.get("start_mrr"),
        "control_end_mrr": control.get("end_mrr"), "control_nrr": control.get("nrr"),
        "control_grr": control.get("grr"), "srm_p_value": srm.get("p_value"),
        "srm_flag": srm.get("flag") if srm else None,
        "alpha": result.get("alpha", plan.get("alpha")), "power": result.get("power", plan.get("power")),
        "mde": result.get("mde", plan.get("mde")), "planned_start": plan.get("planned_start"),
        "planned_end": plan.get("planned_end"), "amendments": _amendments_text(report.get("amendments") or []),
        "dataset_version": dataset.get("version"), "dataset_sha256": dataset.get("sha256"),
        "dataset_rows": dataset.get("rows"), "computed_at": report.get("computed_at"),
    }
    # The per-comparison figures are the CLI's; a comparison's own verdict is renamed
    # so that "verdict" stays the experiment's headline.
    lines = [{**base, **figures, "verdict": base["verdict"], "comparison_verdict": figures["verdict"]}
             for figures in comparison_figures(result)]
    return lines or [base]


def experiment_csv(report: Mapping[str, Any]) -> str:
    """One row per comparison; money and rates as plain numbers; formula-like text neutralised."""
    return csv_text(EXPERIMENT_COLUMNS, comparison_lines(report))


# ------------------------------------------------------------------- markdown



def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines










def when(value: Any) -> str:
    moment = parse_moment(value) if isinstance(value, str) and "T" in value else None
    if moment is not None:
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return "—" if value in (None, "") else str(value)


def _experiment_md_lines(report: Mapping[str, Any], level: int = 2) -> list[str]:
    info = _experiment_object(report)
    plan = report["plan"]
    dataset = report.get("dataset")
    result = report.get("result") or {}
    h = "#" * level
    lines = [f"{h} {md(info['name'])} ({md(info['key'])})", ""]
    lines += _md_table(["field", "value"], [
        ("branch", info["branch"]), ("driver", info["driver"]), ("journey stage", info["journey_stage"]),
        ("owner", info["owner"]), ("hypothesis", info["hypothesis"]), ("status", info["status"]),
        ("decision", f"{info['decision']}: {info['decision_rationale']}" if info["decision"] else None),
        ("verdict", report.get("verdict")),
        ("data version", f"v{dataset['version']}, {dataset['rows']:,} rows, sha256 {dataset['sha256']}"
         if dataset else "no data"),
        ("computed at", when(report.get("computed_at"))),
    ])
    lines += ["", f"{h}# Plan", ""]
    lines += _md_table(["primary metric", "MDE", "alpha", "power", "control", "variants (weight)", "planned"], [(
        plan.get("primary_metric"), points(plan.get("mde")), plan.get("alpha"), plan.get("power"), plan.get("control"),
        ", ".join(f"{v['key']} ({v['weight']:g})" for v in plan.get("variants") or []),
        f"{plan.get('planned_start') or '—'} to {plan.get('planned_end') or '—'}",
    )])
    amendments = report.get("amendments") or []
    lines += ["", f"{h}# Amendments", ""]
    if amendments:
        lines += _md_table(["when", "who", "field", "old", "new", "reason"], [
            (when(a.get("at")), a.get("by"), a.get("field"), a.get("old_value"), a.get("new_value"), a.get("reason"))
            for a in amendments])
    else:
        lines.append("None: the analysis plan is as registered.")
    if result:
        lines += ["", f"{h}# Arms", ""]
        lines += _md_table(["variant", "accounts", "start MRR", "expansion", "contraction", "churned",
                            "end MRR", "NRR", "GRR"], [
            (a.get("variant"), count(a.get("accounts")), money(a.get("start_mrr")), money(a.get("expansion_mrr")),
             money(a.get("contraction_mrr")), money(a.get("churned_mrr")), money(a.get("end_mrr")),
             pct(a.get("nrr")), pct(a.get("grr"))) for a in result.get("arms") or []])
        lines += ["", f"{h}# Uplift against {md(result.get('control'))}", ""]
        lines += _md_table(["variant", "uplift", f"{(1 - (result.get('alpha') or 0.05)) * 100:g}% CI",
                            "relative", "p-value", "p (Holm)", "p (Mann-Whitney)", "power",
                            "required n per arm", "verdict"], [
            (c.get("variant"), pts(c.get("uplift_abs")), interval(c.get("ci_abs")), pct(c.get("uplift_rel")),
             pvalue(c.get("p_value")), pvalue(c.get("p_value_adjusted")), pvalue(c.get("p_value_mwu")),
             pct(c.get("power_achieved"), 1), count(c.get("required_n_per_arm")), c.get("verdict"))
            for c in result.get("comparisons") or []])
        srm = result.get("srm") or {}
        if srm.get("flag"):
            lines += ["", f"**Sample ratio mismatch** (p = {pvalue(srm.get('p_value'))}): these results cannot "
                          "be trusted until the assignment is fixed."]
        warnings = result.get("warnings") or []
        warnings += [f"{c.get('variant')}: {w}" for c in result.get("comparisons") or [] for w in c.get("warnings") or []]
        if warnings:
            lines += ["", f"{h}# Warnings", ""] + [f"- {md(w)}" for w in dict.fromkeys(warnings)]
    else:
        lines += ["", "No results yet: no data has been uploaded."]
    return lines


def experiment_markdown(report: Mapping[str, Any], *, exported_at: datetime) -> str:
    lines = [f"# NRR uplift report: {md(report['experiment']['name'])}", "",
             f"Exported {exported_at.strftime('%Y-%m-%d %H:%M UTC')} from NRR Lab.", ""]
    lines += _experiment_md_lines(report)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- forest plot


def forest_plot(comparisons: Sequence[Mapping[str, Any]], *, mde: float | None, alpha: float | None) -> Markup:
    """An inline SVG forest plot: each treatment's uplift and CI against zero and ±MDE.

    Pure markup (no scripts, no external references); every label is escaped.
    """
    width, label_w, right_pad, row_h, top, bottom = 720, 130, 250, 34, 30, 34
    rows = [c for c in comparisons if isinstance(c, Mapping)]
    values = [0.0]
    if as_number(mde) is not None:
        values += [mde, -mde]
    for c in rows:
        values += [v for v in (c.get("uplift_abs"), *as_pair(c.get("ci_abs"))) if as_number(v) is not None]
    low, high = min(values), max(values)
    span = (high - low) or 0.01
    low, high = low - span * 0.08, high + span * 0.08
    plot_w = width - label_w - right_pad
    height = top + bottom + row_h * max(len(rows), 1)

    def x(value: float) -> float:
        return round(label_w + (value - low) / (high - low) * plot_w, 1)

    level = f"{(1 - (alpha or 0.05)) * 100:g}%"
    title = f"Forest plot: NRR uplift with {level} confidence intervals"
    desc = "; ".join(f"{c.get('variant')}: {pts(c.get('uplift_abs'))} ({interval(c.get('ci_abs'))})" for c in rows)
    parts = [
        f'<svg class="forest" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
        f"<title>{escape(title)}</title><desc>{escape(desc or 'no comparisons')}</desc>",
        f'<line class="zero" x1="{x(0)}" y1="{top - 8}" x2="{x(0)}" y2="{height - bottom + 6}"/>',
    ]
    if as_number(mde) is not None:
        for sign in (1, -1):
            parts.append(f'<line class="mde" x1="{x(sign * mde)}" y1="{top - 8}" x2="{x(sign * mde)}" '
                         f'y2="{height - bottom + 6}"/>')
        parts.append(f'<text class="axis" x="{x(mde)}" y="{top - 14}" text-anchor="middle">±MDE</text>')
    for i, c in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        parts.append(f'<text class="label" x="{label_w - 10}" y="{cy + 4}" text-anchor="end">'
                     f"{escape(str(c.get('variant')))}</text>")
        lo, hi = as_pair(c.get("ci_abs"))
        uplift = c.get("uplift_abs")
        if as_number(lo) is not None and as_number(hi) is not None:
            parts.append(f'<line class="ci verdict-{escape(str(c.get("verdict")))}" x1="{x(lo)}" y1="{cy}" '
                         f'x2="{x(hi)}" y2="{cy}"/>')
        if as_number(uplift) is not None:
            parts.append(f'<circle class="point verdict-{escape(str(c.get("verdict")))}" cx="{x(uplift)}" '
                         f'cy="{cy}" r="5"/>')
            low_ci, high_ci = as_pair(c.get("ci_abs"))
            text = f"{uplift * 100:+.2f} pts"
            if as_number(low_ci) is not None and as_number(high_ci) is not None:
                text += f" ({low_ci * 100:+.2f} to {high_ci * 100:+.2f})"
        else:
            text = "not computed"
        parts.append(f'<text class="value" x="{width - right_pad + 8}" y="{cy + 4}">{escape(text)}</text>')
    for tick in _ticks(low, high):
        parts.append(f'<text class="tick" x="{x(tick)}" y="{height - 10}" text-anchor="middle">'
                     f"{tick * 100:+.1f}</text>")
    parts.append(f'<text class="tick" x="{label_w - 10}" y="{height - 10}" text-anchor="end">NRR pts</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated label went through escape()


def _ticks(low: float, high: float) -> list[float]:
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 0.01
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12 and len(ticks) < 12:
        ticks.append(round(value, 10))
        value += step
    return ticks


# ------------------------------------------------------------------------ HTML


_CSS = """
:root { --ink:#1d2433; --muted:#5b6478; --line:#d9dee8; --win:#1a7f45; --loss:#b42318; --warn:#9a5b00; --srm:#7a1fa2; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 2rem auto;
  max-width: 60rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.3rem; margin: 1.6rem 0 .4rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.muted { color: var(--muted); } .meta { font-size: .9rem; }
table { border-collapse: collapse; width: 100%; font-size: .86rem; margin: .3rem 0 .8rem; }
th, td { text-align: left; padding: .3rem .45rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
th { background: #f3f5f9; }
.badge { display: inline-block; border: 1px solid currentColor; border-radius: 999px; padding: 0 .45rem; font-size: .78rem; }
.verdict-win { color: var(--win); } .verdict-loss { color: var(--loss); } .verdict-srm { color: var(--srm); }
.verdict-underpowered, .verdict-inconclusive { color: var(--warn); }
.alert { border: 1px solid var(--srm); background: #f6ecfa; padding: .5rem .7rem; border-radius: 6px; }
.pre { white-space: pre-wrap; overflow-wrap: anywhere; }
svg.forest { max-width: 100%; height: auto; font-size: 12px; }
svg.forest line.zero { stroke: var(--ink); stroke-width: 1; }
svg.forest line.mde { stroke: var(--muted); stroke-dasharray: 4 3; }
svg.forest line.ci { stroke: var(--ink); stroke-width: 2.5; }
svg.forest circle.point { fill: var(--ink); }
svg.forest line.verdict-win, svg.forest circle.verdict-win { stroke: var(--win); fill: var(--win); }
svg.forest line.verdict-loss, svg.forest circle.verdict-loss { stroke: var(--loss); fill: var(--loss); }
svg.forest line.verdict-srm, svg.forest circle.verdict-srm { stroke: var(--srm); fill: var(--srm); }
svg.forest text { fill: var(--ink); } svg.forest text.tick, svg.forest text.axis { fill: var(--muted); }
section.experiment { border-top: 2px solid var(--ink); margin-top: 2rem; padding-top: .5rem; }
footer { margin-top: 2rem; font-size: .8rem; color: var(--muted); }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5pt; }
  section.experiment { break-before: page; page-break-before: always; border-top: 0; margin-top: 0; }
  section.experiment.first { break-before: auto; page-break-before: auto; }
  table, svg.forest, tr { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
}
"""

_TEMPLATES = {
    "experiment_block.html": """
{%- set info = r.experiment -%}{%- set plan = r.plan -%}{%- set res = r.result -%}
<section class="experiment{% if first %} first{% endif %}" id="exp-{{ info.key }}">
  <h2>{{ info.name }} <span class="muted">({{ info.key }})</span>
    {% if r.verdict %}<span class="badge verdict-{{ r.verdict }}">{{ r.verdict }}</span>{% endif %}</h2>
  <table class="meta">
    <tr><th>Branch</th><td>{{ info.branch.name if info.branch else "—" }}</td><th>Driver</th><td>{{ info.driver.name if info.driver else "—" }}</td></tr>
    <tr><th>Journey stage</th><td>{{ info.journey_stage or "—" }}</td><th>Owner</th><td>{{ info.owner or "—" }}</td></tr>
    <tr><th>Status</th><td>{{ info.status }}</td><th>Decision</th><td>{% if info.decision %}{{ info.decision }}: <span class="pre">{{ info.decision_rationale }}</span>{% else %}—{% endif %}</td></tr>
    <tr><th>Hypothesis</th><td colspan="3" class="pre">{{ info.hypothesis or "—" }}</td></tr>
    <tr><th>Data version</th><td colspan="3">{% if r.dataset %}v{{ r.dataset.version }} · {{ r.dataset.rows | thousands }} rows · sha256 <code>{{ r.dataset.sha256 }}</code>{% else %}no data uploaded{% endif %}</td></tr>
    <tr><th>Computed</th><td colspan="3">{{ r.computed_at | when }}</td></tr>
  </table>
  <h3>Plan</h3>
  <table>
    <tr><th>Primary metric</th><th class="num">MDE</th><th class="num">alpha</th><th class="num">power</th><th>Control</th><th>Variants (weight)</th><th>Planned</th></tr>
    <tr><td>{{ plan.primary_metric }}</td><td class="num">{{ plan.mde | points }}</td><td class="num">{{ plan.alpha }}</td><td class="num">{{ plan.power }}</td>
      <td>{{ plan.control or "—" }}</td>
      <td>{% for v in plan.variants %}{{ v.key }} ({{ "%g" | format(v.weight) }}){% if not loop.last %}, {% endif %}{% endfor %}</td>
      <td>{{ plan.planned_start or "—" }} to {{ plan.planned_end or "—" }}</td></tr>
  </table>
  <h3>Amendments</h3>
  {% if r.amendments %}
  <table><tr><th>When</th><th>Who</th><th>Field</th><th>Old</th><th>New</th><th>Reason</th></tr>
    {% for a in r.amendments %}<tr><td>{{ a.at | when }}</td><td>{{ a.by or "—" }}</td><td>{{ a.field }}</td>
      <td class="pre">{{ a.old_value }}</td><td class="pre">{{ a.new_value }}</td><td class="pre">{{ a.reason }}</td></tr>{% endfor %}
  </table>
  {% else %}<p class="muted">None: the analysis plan is as registered.</p>{% endif %}
  {% if res %}
  {% if res.srm and res.srm.flag %}<p class="alert"><strong>Sample ratio mismatch</strong> (p = {{ res.srm.p_value | pvalue }}): the arms are not in the planned proportions, so these results cannot be trusted until the assignment is fixed.</p>{% endif %}
  <h3>Arms</h3>
  <table><tr><th>Variant</th><th class="num">Accounts</th><th class="num">Start MRR</th><th class="num">Expansion</th><th class="num">Contraction</th><th class="num">Churned</th><th class="num">End MRR</th><th class="num">NRR</th><th class="num">GRR</th></tr>
    {% for a in res.arms %}<tr><td>{{ a.variant }}</td><td class="num">{{ a.accounts | thousands }}</td><td class="num">{{ a.start_mrr | money }}</td>
      <td class="num">{{ a.expansion_mrr | money }}</td><td class="num">{{ a.contraction_mrr | money }}</td><td class="num">{{ a.churned_mrr | money }}</td>
      <td class="num">{{ a.end_mrr | money }}</td><td class="num">{{ a.nrr | pct }}</td><td class="num">{{ a.grr | pct }}</td></tr>{% endfor %}
  </table>
  <h3>Uplift against {{ res.control }}</h3>
  {{ forest(res.comparisons, mde=res.mde, alpha=res.alpha) }}
  <table><tr><th>Variant</th><th class="num">Uplift</th><th class="num">CI</th><th class="num">Relative</th><th class="num">p</th><th class="num">p (Holm)</th><th class="num">p (Mann-Whitney)</th><th class="num">Power</th><th class="num">Required n/arm</th><th>Verdict</th></tr>
    {% for c in res.comparisons %}<tr><td>{{ c.variant }}</td><td class="num">{{ c.uplift_abs | pts }}</td><td class="num">{{ c.ci_abs | interval }}</td>
      <td class="num">{{ c.uplift_rel | pct }}</td><td class="num">{{ c.p_value | pvalue }}</td><td class="num">{{ c.p_value_adjusted | pvalue }}</td>
      <td class="num">{{ c.p_value_mwu | pvalue }}</td><td class="num">{{ c.power_achieved | pct }}</td><td class="num">{{ c.required_n_per_arm | thousands }}</td>
      <td><span class="badge verdict-{{ c.verdict }}">{{ c.verdict }}</span></td></tr>{% endfor %}
  </table>
  {% set notes = (res.warnings or []) %}
  {% if notes %}<h3>Warnings</h3><ul>{% for w in notes %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
  {% else %}<p class="muted">No results yet: no data has been uploaded.</p>{% endif %}
</section>
""",
    "experiment.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>NRR uplift report: {{ r.experiment.name }}</title><style>{{ css }}</style></head>
<body>
<header><h1>NRR uplift report</h1><p class="muted meta">Exported {{ exported_at }} from NRR Lab · self-contained, prints one experiment per page.</p></header>
{% with first = true %}{% include "experiment_block.html" %}{% endwith %}
<footer>Figures from the analysis snapshot computed {{ r.computed_at | when }}; reproduce them with the "reproduce" bundle (ZIP export).</footer>
</body></html>
""",
    "review.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ rv.review.title }}</title><style>{{ css }}</style></head>
<body>
<header><h1>{{ rv.review.title }}{% if rv.review.branch %} · {{ rv.review.branch.name }}{% endif %}</h1>
<p class="muted meta">Changes from {{ rv.review.changes_window.from | when }} to {{ rv.review.changes_window.to | when }} ·
  as of {{ rv.review.as_of | when }}{% if rv.review.frozen %} (as the meeting saw it){% endif %} · exported {{ exported_at }}</p></header>
<h2>Needs a decision</h2>
{% if rv.needs_decision %}<table><tr><th>Experiment</th><th>Branch</th><th>Status</th><th>Why</th><th>Verdict</th></tr>
{% for n in rv.needs_decision %}{% set e = exps[n.key] %}<tr><td>{{ e.experiment.name }} ({{ n.key }})</td><td>{{ e.experiment.branch.name if e.experiment.branch else "—" }}</td>
<td>{{ e.experiment.status }}</td><td>{{ n.reasons | join("; ") }}</td><td>{{ e.verdict or "—" }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">Nothing needs a decision.</p>{% endif %}
<h2>Changed since last review</h2>
{% if rv.changed %}<table><tr><th>Experiment</th><th>What changed</th><th>Verdict</th></tr>
{% for c in rv.changed %}{% set e = exps[c.key] %}<tr><td>{{ e.experiment.name }} ({{ c.key }})</td>
<td>{% for ch in c.changes %}{{ ch.at | when }}: {{ ch.text }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td>{% if c.verdict_before != c.verdict_now %}{{ c.verdict_before or "no results" }} → {{ c.verdict_now or "no results" }}{% else %}{{ c.verdict_now or "—" }}{% endif %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">Nothing changed.</p>{% endif %}
<h2>Alerts</h2>
{% if rv.alerts %}<table><tr><th>Experiment</th><th>Alert</th></tr>
{% for a in rv.alerts %}{% set e = exps[a.key] %}<tr><td>{{ e.experiment.name }} ({{ a.key }})</td><td>{% for al in a.alerts %}{{ al.text }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No alerts.</p>{% endif %}
<h2>Driver tree summary</h2>
<table><tr><th>Branch</th><th class="num">Draft</th><th class="num">Running</th><th class="num">Stopped</th><th class="num">Decided</th><th class="num">NRR points won this quarter (shipped since {{ rv.review.quarter_start }})</th></tr>
{% for s in rv.driver_tree_summary %}<tr><td>{{ s.branch }}</td><td class="num">{{ s.counts.draft }}</td><td class="num">{{ s.counts.running }}</td><td class="num">{{ s.counts.stopped }}</td><td class="num">{{ s.counts.decided }}</td><td class="num">{{ "%+.2f" | format(s.nrr_points_won) }}</td></tr>{% endfor %}</table>
<h2>Portfolio</h2>
<p class="muted">p (BH) is Benjamini-Hochberg adjusted across the {{ rv.portfolio | length }} comparisons in this table; p (Holm) is adjusted within each experiment.</p>
<table><tr><th>Branch</th><th>Experiment</th><th>Variant</th><th class="num">Uplift</th><th class="num">CI</th><th class="num">p</th><th class="num">p (Holm)</th><th class="num">p (BH, portfolio)</th><th>Verdict</th></tr>
{% for p in rv.portfolio %}<tr><td>{{ p.branch or "—" }}</td><td>{{ p.key }}</td><td>{{ p.variant }}</td><td class="num">{{ p.uplift_abs | pts }}</td><td class="num">{{ p.ci_abs | interval }}</td>
<td class="num">{{ p.p_value | pvalue }}</td><td class="num">{{ p.p_value_adjusted | pvalue }}</td><td class="num">{{ p.p_value_bh_portfolio | pvalue }}</td><td>{{ p.verdict }}</td></tr>{% endfor %}</table>
<h2>Notes, actions and decisions</h2>
{% if rv["items"] %}<table><tr><th>Experiment</th><th>Note</th><th>Action</th><th>Owner</th><th>Due</th><th>Decision</th><th>Saved by</th></tr>
{% for key, it in rv["items"] | dictsort %}<tr><td>{{ key }}</td><td class="pre">{{ it.note }}</td><td class="pre">{{ it.action }}</td><td>{{ it.action_owner or "—" }}</td>
<td>{{ it.action_due or "—" }}</td><td>{% if it.decision %}{{ it.decision }}: <span class="pre">{{ it.decision_rationale }}</span>{% else %}—{% endif %}</td><td>{{ it.updated_by or "—" }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No items.</p>{% endif %}
{% for r in details %}{% with first = false %}{% include "experiment_block.html" %}{% endwith %}{% endfor %}
<footer>NRR Lab weekly review export. Each experiment section shows the analysis snapshot in force at the review's point in time.</footer>
</body></html>
""",
}


def _environment() -> Environment:
    env = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pts=pts, points=points, pct=pct, pvalue=pvalue, money=money, thousands=count, interval=interval, when=when)
    env.globals.update(forest=forest_plot)
    return env


_ENV = _environment()
_STYLE = Markup(_CSS)  # noqa: S704 - a constant of this module


def experiment_html(report: Mapping[str, Any], *, exported_at: datetime) -> str:
    """A self-contained printable page: inline CSS and SVG, no external reference."""
    return _ENV.get_template("experiment.html").render(
        r=_finite(dict(report)), css=_STYLE, exported_at=exported_at.strftime("%Y-%m-%d %H:%M UTC"))


# ---------------------------------------------------------- reproduce bundle


REPRODUCE_SCRIPT = '''"""Recompute this report's NRR figures from its account data with the public NRR Lab `stats` API.

Usage:  python reproduce.py        (needs `stats` from NRR Lab importable: pip install nrrlab)

Reads accounts.csv (one row per account, DESIGN section 3) and expected.json (the
plan the report was computed under and its figures), reruns stats.analyze and prints
the headline figures, then whether they match the report.

Text cells of accounts.csv that begin with ' are quoted against spreadsheet formula
injection: the first ' is not part of the value.
"""
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import stats

HERE = Path(__file__).resolve().parent


def unquote(text):
    text = text or ""
    return text[1:] if text.startswith("'") else text


def read_arms(path):
    columns = defaultdict(lambda: ([], [], [], []))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            start, expansion, contraction, churned = columns[unquote(row["variant"])]
            start.append(float(row["start_mrr"]))
            expansion.append(float(row["expansion_mrr"] or 0))
            contraction.append(float(row["contraction_mrr"] or 0))
            churned.append(float(row["churned_mrr"] or 0))
    return {variant: stats.arm_from_arrays(*values) for variant, values in columns.items()}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9)


def main():
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    plan = expected["plan"]
    result = stats.analyze(read_arms(HERE / "accounts.csv"), control=plan["control"], alpha=plan["alpha"],
                           power=plan["power"], mde=plan["mde"], weights=plan["weights"],
                           variants=plan["variants"])
    for arm in result.arms:
        print(f"arm {arm.variant}: accounts={arm.accounts} nrr={arm.nrr!r}")
    for c in result.comparisons:
        print(f"comparison {c.variant}: uplift_abs={c.uplift_abs!r} ci_abs={list(c.ci_abs)!r} "
              f"p_value={c.p_value!r} verdict={c.verdict}")
        print("  " + stats.summary_sentence(c, result.alpha))
    reported = {c["variant"]: c for c in expected["comparisons"]}
    same = len(reported) == len(result.comparisons) and all(
        c.variant in reported and close(c.uplift_abs, reported[c.variant]["uplift_abs"])
        and close(c.p_value, reported[c.variant]["p_value"]) for c in result.comparisons)
    print("MATCHES the report" if same else "DIFFERS from the report")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
'''

ACCOUNT_COLUMNS: tuple[str, ...] = ("account_id", "variant", "start_mrr", "expansion_mrr", "contraction_mrr",
                                    "churned_mrr", "segment", "days_to_value")


def cents_text(cents: int) -> str:
    """Integer cents as an exact decimal string: 12345 → '123.45'."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{part:02d}"


def _quote_text(text: str | None) -> str:
    """Reversible neutralisation for the bundle's data file (the script strips one leading ')."""
    if text is None:
        return ""
    return "'" + text if text.startswith((*FORMULA_START, "'")) else text


def account_lines(rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """CSV lines (header first) of ``(account_id, variant, start, expansion, contraction, churned, segment, days)``."""
    buffer = io.StringIO()
    # CRLF rows: a field holding a bare CR or LF is then always quoted.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ACCOUNT_COLUMNS)
    yield buffer.getvalue()
    for account_id, variant, start, expansion, contraction, churned, segment, days in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_quote_text(account_id), _quote_text(variant), cents_text(start), cents_text(expansion),
                         cents_text(contraction), cents_text(churned), _quote_text(segment),
                         "" if days is None else repr(float(days))])
        yield buffer.getvalue()


def expected_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """The plan the snapshot was computed under and its figures, for the reproduce script."""
    result = report.get("result") or {}
    stored = report.get("analysis_plan") or {}
    if stored.get("variants"):
        variants = [v["key"] for v in stored["variants"]]
        weights = {v["key"]: v["weight"] for v in stored["variants"]}
    else:
        weights = dict((result.get("srm") or {}).get("expected_weights") or {}) or \
            {v["key"]: v["weight"] for v in report["plan"]["variants"]}
        variants = list(weights)
    plan = {"control": result.get("control"), "alpha": result.get("alpha"), "power": result.get("power"),
            "mde": result.get("mde"), "variants": variants, "weights": weights}
    return _finite({"experiment": report["experiment"]["key"], "plan": plan,
                    "dataset": _public_dataset(report.get("dataset")), "computed_at": report.get("computed_at"),
                    "arms": result.get("arms") or [], "comparisons": result.get("comparisons") or []})


def _readme(report: Mapping[str, Any]) -> str:
    dataset = report.get("dataset") or {}
    return (f"Reproduce bundle for experiment {report['experiment']['key']}\n\n"
            f"accounts.csv   the account rows of data version {dataset.get('version')} "
            f"({dataset.get('rows')} rows, sha256 of the uploaded file {dataset.get('sha256')})\n"
            "expected.json  the analysis plan and the figures the report shows\n"
            "reproduce.py   recomputes them with the public stats API: python reproduce.py\n\n"
            "Money is in currency units with two decimals, exactly as stored (integer cents).\n"
            "Text cells that begin with ' are quoted against spreadsheet formula injection;\n"
            "the first ' is not part of the value.\n")


def write_bundle(archive: zipfile.ZipFile, folder: str, report: Mapping[str, Any], lines: Iterable[str]) -> None:
    """Add one experiment's reproduce files under ``folder/`` of ``archive``."""
    with archive.open(f"{folder}/accounts.csv", "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
        for line in lines:
            out.write(line)
    archive.writestr(f"{folder}/expected.json",
                     json.dumps(expected_figures(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    archive.writestr(f"{folder}/reproduce.py", REPRODUCE_SCRIPT)
    archive.writestr(f"{folder}/README.txt", _readme(report))


def _account_rows(session: Session, dataset_id: int) -> Iterable[Sequence[Any]]:
    r = AccountRow
    query = (select(r.account_id, r.variant, r.start_cents, r.expansion_cents, r.contraction_cents, r.churned_cents,
                    r.segment, r.days_to_value)
             .where(r.dataset_id == dataset_id).order_by(r.id).execution_options(yield_per=20_000))
    yield from session.exec(query)


# ----------------------------------------------------------------- the review


def review_document(review: Review, *, exported_at: datetime) -> dict[str, Any]:
    document = review.to_dict()
    document["exported_at"] = exported_at.isoformat()
    return _finite(document)


REVIEW_COLUMNS: tuple[str, ...] = (
    "week", "experiment_key", "experiment_name", "branch", "driver", "team", "owner", "status", "decision",
    "verdict", "verdict_before", "needs_decision", "changes", "alerts",
    "variant", "uplift_abs", "ci_abs_low", "ci_abs_high", "uplift_rel", "p_value", "p_value_adjusted",
    "p_value_bh_portfolio", "p_value_mwu", "required_n_per_arm", "power_achieved", "comparison_verdict",
    "accounts", "control_accounts", "nrr", "control_nrr",
    "item_note", "item_action", "item_action_owner", "item_action_due", "item_decision",
    "item_decision_rationale", "dataset_version", "dataset_sha256", "dataset_rows", "computed_at",
)


def review_csv(document: Mapping[str, Any]) -> str:
    """One row per comparison of every experiment shown (one row for those without results)."""
    bh = {(p["key"], p["variant"]): p["p_value_bh_portfolio"] for p in document["portfolio"]}
    lines = []
    for row in document["experiments"]:
        key = row["experiment"]["key"]
        review = row.get("review") or {}
        item = document["items"].get(key) or {}
        extra = {
            "week": document["review"]["week"],
            "verdict_before": review.get("verdict_before"),
            "needs_decision": "; ".join(review.get("needs_decision") or []),
            "changes": "; ".join(c.get("text", "") for c in review.get("changes") or []),
            "alerts": "; ".join(a.get("text", "") for a in review.get("alerts") or []),
            "item_note": item.get("note"), "item_action": item.get("action"),
            "item_action_owner": item.get("action_owner"), "item_action_due": item.get("action_due"),
            "item_decision": item.get("decision"), "item_decision_rationale": item.get("decision_rationale"),
        }
        for line in comparison_lines(row):
            lines.append({**line, **extra, "p_value_bh_portfolio": bh.get((key, line.get("variant")))})
    return csv_text(REVIEW_COLUMNS, lines)


def review_markdown(document: Mapping[str, Any]) -> str:
    info = document["review"]
    exps = {r["experiment"]["key"]: r for r in document["experiments"]}
    title = info["title"] + (f" · {info['branch']['name']}" if info.get("branch") else "")
    lines = [f"# {md(title)}", "",
             f"Changes from {when(info['changes_window']['from'])} to {when(info['changes_window']['to'])}; "
             f"as of {when(info['as_of'])}" + (" (as the meeting saw it)" if info["frozen"] else "")
             + f"; exported {when(document['exported_at'])}.", ""]
    lines += ["## Needs a decision", ""]
    lines += _md_table(["experiment", "branch", "status", "why", "verdict"], [
        (f"{exps[n['key']]['experiment']['name']} ({n['key']})",
         (exps[n["key"]]["experiment"].get("branch") or {}).get("name"), exps[n["key"]]["experiment"]["status"],
         "; ".join(n["reasons"]), exps[n["key"]].get("verdict")) for n in document["needs_decision"]])
    lines += ["", "## Changed since last review", ""]
    lines += _md_table(["experiment", "what changed", "verdict"], [
        (f"{exps[c['key']]['experiment']['name']} ({c['key']})", "; ".join(ch["text"] for ch in c["changes"]),
         f"{c['verdict_before'] or 'no results'} → {c['verdict_now'] or 'no results'}"
         if c["verdict_before"] != c["verdict_now"] else c["verdict_now"]) for c in document["changed"]])
    lines += ["", "## Alerts", ""]
    lines += _md_table(["experiment", "alert"], [
        (f"{exps[a['key']]['experiment']['name']} ({a['key']})", "; ".join(al["text"] for al in a["alerts"]))
        for a in document["alerts"]])
    lines += ["", "## Driver tree summary", ""]
    lines += _md_table(["branch", "draft", "running", "stopped", "decided",
                        f"NRR points won (shipped since {info['quarter_start']})"], [
        (s["branch"], s["counts"]["draft"], s["counts"]["running"], s["counts"]["stopped"], s["counts"]["decided"],
         f"{s['nrr_points_won']:+.2f}") for s in document["driver_tree_summary"]])
    lines += ["", "## Portfolio", "",
              f"p (BH) is Benjamini-Hochberg adjusted across the {len(document['portfolio'])} comparisons below; "
              "p (Holm) is adjusted within each experiment.", ""]
    lines += _md_table(["branch", "experiment", "variant", "uplift", "CI", "p", "p (Holm)", "p (BH, portfolio)",
                        "verdict"], [
        (p["branch"], p["key"], p["variant"], pts(p["uplift_abs"]), interval(p["ci_abs"]), pvalue(p["p_value"]),
         pvalue(p["p_value_adjusted"]), pvalue(p["p_value_bh_portfolio"]), p["verdict"])
        for p in document["portfolio"]])
    lines += ["", "## Notes, actions and decisions", ""]
    lines += _md_table(["experiment", "note", "action", "owner", "due", "decision", "saved by"], [
        (key, it["note"], it["action"], it["action_owner"], it["action_due"],
         f"{it['decision']}: {it['decision_rationale']}" if it["decision"] else None, it["updated_by"])
        for key, it in sorted(document["items"].items())])
    for row in _detail_rows(document):
        lines += ["", *_experiment_md_lines(row, level=2)]
    return "\n".join(lines) + "\n"


def _detail_rows(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Experiments that get a section of their own: those with results or on the agenda."""
    wanted = {p["key"] for p in document["portfolio"]} | set(document["items"])
    return [r for r in document["experiments"] if r["experiment"]["key"] in wanted]


def review_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def review_html(document: Mapping[str, Any]) -> str:
    return _ENV.get_template("review.html").render(
        rv=document, exps={r["experiment"]["key"]: r for r in document["experiments"]},
        details=_detail_rows(document), css=_STYLE, exported_at=when(document["exported_at"]))


# ------------------------------------------------------------------- services


def _audit(session: Session, user: User | None, fmt: str, *, entity_type: str, entity_id: str,
           team_id: int | None, details: Mapping[str, Any], ip: str) -> None:
    record_event(session, f"export.{fmt}", actor=user if user is not None and user.id is not None else None,
                 entity_type=entity_type, entity_id=entity_id, team_id=team_id,
                 diff={k: [None, v] for k, v in details.items()}, ip=ip)


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NotFound(f"no export format {fmt[:20]!r}; use one of {', '.join(FORMATS)}")
    return fmt


def export_experiment(session: Session, user: User, key: str, fmt: str, *, now: datetime | None = None,
                      ip: str = "", via: str = "web") -> ExportFile:
    """One experiment's report as ``fmt``, named ``nrr-<key>-<date>.<fmt>``, audited as ``export.<fmt>``.

    Raises
    ------
    NotFound
        Unknown format, no such experiment, or another team's.
    """
    _check_format(fmt)
    now = now or utcnow()
    report = single_report(session, user, key, now=now)
    registry_object = experiment_as_dict(session.get(Experiment, report["experiment"]["id"]), session)
    name = f"nrr-{safe_name(key)}-{now.date().isoformat()}.{fmt}"
    if fmt == "json":
        body = experiment_json(report, exported_at=now, experiment_object=registry_object).encode()
    elif fmt == "csv":
        body = experiment_csv(report).encode()
    elif fmt == "md":
        body = experiment_markdown(report, exported_at=now).encode()
    elif fmt == "html":
        body = experiment_html(report, exported_at=now).encode()
    else:
        body = _experiment_zip(session, report, folder=name.removesuffix(".zip"), now=now,
                               experiment_object=registry_object)
    dataset = report.get("dataset") or {}
    _audit(session, user, fmt, entity_type="experiment", entity_id=key, team_id=report["experiment"]["team_id"],
           details={"format": fmt, "file": name, "dataset_version": dataset.get("version"), "via": via}, ip=ip)
    return ExportFile(name, CONTENT_TYPES[fmt], body)


def _experiment_zip(session: Session, report: Mapping[str, Any], *, folder: str, now: datetime,
                    experiment_object: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _add_experiment(session, archive, folder, report)
        archive.writestr(f"{folder}/report.json",
                         experiment_json(report, exported_at=now, experiment_object=experiment_object))
        archive.writestr(f"{folder}/report.html", experiment_html(report, exported_at=now))
    return buffer.getvalue()


def _add_experiment(session: Session, archive: zipfile.ZipFile, folder: str, report: Mapping[str, Any]) -> bool:
    dataset = report.get("dataset") or {}
    if not report.get("result") or not dataset.get("id") or session.get(Dataset, dataset["id"]) is None:
        archive.writestr(f"{folder}/README.txt", "This experiment has no analysed data yet: nothing to reproduce.\n")
        return False
    write_bundle(archive, folder, report, account_lines(_account_rows(session, dataset["id"])))
    return True


def export_review(session: Session, user: User, week: str, fmt: str, *, branch_id: int | str | None = None,
                  date_from: Any = None, date_to: Any = None, now: datetime | None = None, ip: str = "",
                  via: str = "web") -> ExportFile:
    """A week's (or a date range's) review as ``fmt``, named after the week and the date, audited.

    Raises
    ------
    NotFound
        Unknown format, bad week or branch.
    ValidationFailed
        Malformed date range or branch.
    """
    _check_format(fmt)
    now = now or utcnow()
    review = build_review(session, user, week, branch_id=branch_id, date_from=date_from, date_to=date_to, now=now)
    document = review_document(review, exported_at=now)
    scope = review.week.label if review.mode == "week" else f"{review.date_from}-to-{review.date_to}"
    if review.branch:
        scope += f"-branch-{review.branch['id']}"
    name = f"nrr-review-{safe_name(scope)}-{now.date().isoformat()}.{fmt}"
    if fmt == "json":
        body = review_json(document).encode()
    elif fmt == "csv":
        body = review_csv(document).encode()
    elif fmt == "md":
        body = review_markdown(document).encode()
    elif fmt == "html":
        body = review_html(document).encode()
    else:
        buffer = io.BytesIO()
        folder = name.removesuffix(".zip")
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{folder}/review.json", review_json(document))
            archive.writestr(f"{folder}/review.csv", review_csv(document))
            archive.writestr(f"{folder}/review.md", review_markdown(document))
            archive.writestr(f"{folder}/review.html", review_html(document))
            for row in _detail_rows(document):
                _add_experiment(session, archive, f"{folder}/{safe_name(row['experiment']['key'])}", row)
        body = buffer.getvalue()
    _audit(session, user, fmt, entity_type="review", entity_id=scope, team_id=None,
           details={"format": fmt, "file": name, "week": review.week.label, "via": via}, ip=ip)
    return ExportFile(name, CONTENT_TYPES[fmt], body)

