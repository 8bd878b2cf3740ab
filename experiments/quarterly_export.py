"""The quarterly business review to take away: JSON, CSV, Markdown, printable HTML, or
all four in a ZIP — built from :meth:`QuarterlyReview.to_dict`, like the weekly review's
exports (:mod:`experiments.exports`), and audited the same way (``export.<fmt>``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from experiments.documents import finite
from experiments.export_formats import _dumps, _md_table, safe_name, when
from experiments.export_html import _environment, _style
from experiments.exports import CONTENT_TYPES, ExportFile, _audit, _check_format
from experiments.formatting import csv_text, md
from experiments.models import User, utcnow
from experiments.quarterly import build_quarterly

QUARTERLY_COLUMNS: tuple[str, ...] = (
    "quarter", "kind", "branch", "week", "target", "actual", "actual_period", "actual_source",
    "run", "won", "won_guardrail_failed", "lost", "shipped", "shipped_keys", "impact_raw",
    "impact_shrunk", "won_guardrail_failed_keys", "objective", "key_result", "node",
    "kr_target", "kr_actual", "kr_actual_source", "owner",
)


def _tally_cells(tally: Mapping[str, Any]) -> dict[str, Any]:
    return {"run": tally["run"], "won": tally["won"],
            "won_guardrail_failed": tally["won_guardrail_failed"], "lost": tally["lost"],
            "shipped": tally["shipped"], "shipped_keys": "; ".join(tally["shipped_keys"]),
            "impact_raw": tally["impact_raw"], "impact_shrunk": tally["impact_shrunk"],
            "won_guardrail_failed_keys": "; ".join(tally["won_guardrail_failed_keys"])}


def quarterly_csv(qbr: Mapping[str, Any]) -> str:
    """Rows of kind ``week`` and ``branch_total`` per branch, ``quarter_week`` and
    ``quarter_total`` over every branch, then one ``key_result`` row per key result."""
    label = qbr["quarter"]["label"]
    lines = []
    for b in qbr["branches"]:
        actual = b["actual"] or {}
        head = {"quarter": label, "branch": b["branch"], "target": b["target"],
                "actual": actual.get("actual"), "actual_period": actual.get("period"),
                "actual_source": actual.get("source")}
        for w in b["weeks"]:
            lines.append({**head, "kind": "week", "week": w["week"], **_tally_cells(w)})
        lines.append({**head, "kind": "branch_total", "week": "total",
                      **_tally_cells(b["total"])})
    for w in qbr["weeks"]:
        lines.append({"quarter": label, "kind": "quarter_week", "week": w["week"],
                      **_tally_cells(w)})
    lines.append({"quarter": label, "kind": "quarter_total", "week": "total",
                  **_tally_cells(qbr["totals"])})
    for o in qbr["objectives"]:
        for kr in o["key_results"]:
            lines.append({"quarter": label, "kind": "key_result", "objective": o["title"],
                          "key_result": kr["title"], "node": kr["node"],
                          "kr_target": kr["target"], "kr_actual": kr["actual"],
                          "kr_actual_source": kr["actual_source"], "owner": kr["owner"]})
    return csv_text(QUARTERLY_COLUMNS, lines)


def _number(value: Any) -> str | None:
    return None if value is None else f"{value:.4g}"


def quarterly_markdown(qbr: Mapping[str, Any]) -> str:
    q = qbr["quarter"]
    t = qbr["totals"]
    lines = [f"# {q['title']}", "",
             f"Weeks {q['weeks'][0]} to {q['weeks'][-1]} ({when(q['from'])} to {when(q['to'])});"
             f" as of {when(q['as_of'])}; exported {when(qbr['exported_at'])}.", "",
             f"Quarter totals: {t['run']} run, {t['won']} won, "
             f"{t['won_guardrail_failed']} won — guardrail failed (not counted as won"
             + (f": {', '.join(t['won_guardrail_failed_keys'])}"
                if t["won_guardrail_failed_keys"] else "")
             + f"), {t['lost']} lost, {t['shipped']} shipped.", ""]
    if qbr["impact_note"]:
        lines += [md(qbr["impact_note"]), ""]
    lines += ["## Branches", ""]
    lines += _md_table(["branch", "target", "actual", "run", "won", "won — guardrail failed",
                        "lost", "shipped", "annual impact (shrunk)"], [
        (b["branch"], _number(b["target"]),
         _number((b["actual"] or {}).get("actual")), b["total"]["run"], b["total"]["won"],
         b["total"]["won_guardrail_failed"], b["total"]["lost"], b["total"]["shipped"],
         _number(b["total"]["impact_shrunk"]))
        for b in qbr["branches"]])
    lines += ["", "## Week by week", ""]
    lines += _md_table(["week", "run", "won", "won — guardrail failed", "lost", "shipped",
                        "shipped experiments"], [
        (w["week"], w["run"], w["won"], w["won_guardrail_failed"], w["lost"], w["shipped"],
         "; ".join(w["shipped_keys"]))
        for w in qbr["weeks"]] + [("total", t["run"], t["won"], t["won_guardrail_failed"],
                                    t["lost"], t["shipped"], "; ".join(t["shipped_keys"]))])
    lines += ["", "## Objectives and key results", ""]
    if not qbr["objectives"]:
        lines.append("No objectives for this quarter.")
    for o in qbr["objectives"]:
        # User text outside a table cell is escaped too: a title is not a link or markup.
        lines += ["", f"### {md(o['title'])}", "",
                  f"Team: {md(o['team'] or 'whole company')}; owner: {md(o['owner'])}.", ""]
        lines += _md_table(["key result", "node", "target", "actual", "source", "owner"], [
            (kr["title"], kr["node"], _number(kr["target"]), _number(kr["actual"]),
             kr["actual_source"], kr["owner"]) for kr in o["key_results"]])
    return "\n".join(lines) + "\n"


def quarterly_html(qbr: Mapping[str, Any]) -> str:
    """A self-contained printable page (inline CSS, no script)."""
    return _environment().get_template("quarterly.html").render(
        qbr=qbr, css=_style(), exported_at=when(qbr["exported_at"]), number=_number)


def export_quarterly(session: Session, user: User, quarter: str, fmt: str, *,
                     now: datetime | None = None, ip: str = "", via: str = "web") -> ExportFile:
    """The QBR of ``quarter`` as ``fmt``, named after the quarter and the date, audited.

    Raises
    ------
    NotFound
        Unknown format or bad quarter.
    """
    _check_format(fmt)
    now = now or utcnow()
    qbr = build_quarterly(session, user, quarter, now=now)
    document = finite({**qbr.to_dict(), "exported_at": now.isoformat()})
    label = qbr.quarter.label
    name = f"nrr-qbr-{safe_name(label)}-{now.date().isoformat()}.{fmt}"
    renderers = {"json": lambda d: _dumps(d), "csv": quarterly_csv, "md": quarterly_markdown,
                 "html": quarterly_html}
    if fmt == "zip":
        buffer = io.BytesIO()
        folder = name.removesuffix(".zip")
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for part, render in renderers.items():
                archive.writestr(f"{folder}/qbr.{part}", render(document))
        body = buffer.getvalue()
    else:
        body = renderers[fmt](document).encode()
    _audit(session, user, fmt, entity_type="quarterly_review", entity_id=label, team_id=None,
           details={"format": fmt, "file": name, "quarter": label, "via": via}, ip=ip)
    return ExportFile(name, CONTENT_TYPES[fmt], body)
