"""The NRR page to take away: CSV, JSON and a printable, self-contained HTML page; and
the one SVG rendering of the charts that the web pages use too.

:func:`export_nrr` is the service the web downloads (``/nrr.csv``, ``/nrr.json``,
``/nrr/print``) and ``nrrlab export nrr`` call; every export is audited as
``export.<format>``, a row no cached page shows (``unseen_write``). The numbers are the
stored ledger figures, unchanged: the JSON is their stored document
(``stats.ledger.LedgerFigures.to_dict``) with the tree's targets beside it.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlmodel import Session

from experiments.audit import record_event
from experiments.charts import LineChart, Sparkline, Waterfall
from experiments.errors import NotFound, ValidationFailed
from experiments.exports import ExportFile
from experiments.formatting import count, csv_text, money, pct
from experiments.generation import unseen_write
from experiments.models import AuditEvent, User, utcnow
from experiments.nrr_page import CSV_COLUMNS, NrrPage, csv_rows, nrr_page

#: Formats of the NRR export (the page's downloads and ``nrrlab export nrr``).
NRR_FORMATS: tuple[str, ...] = ("csv", "json", "html")
_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("experiments", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, money=money, thousands=count)
    env.globals.update(chart_svg=chart_svg)
    return env


_TEMPLATES = {LineChart: "charts/line.svg", Waterfall: "charts/waterfall.svg",
              Sparkline: "charts/sparkline.svg"}


def chart_svg(chart: LineChart | Waterfall | Sparkline | None, id: str) -> Markup:
    """The accessible SVG of ``chart`` (``role="img"``, ``<title>``, ``<desc>``);
    ``id`` must be unique in the page. Empty markup for ``None``."""
    if chart is None:
        return Markup("")
    template = _environment().get_template(_TEMPLATES[type(chart)])
    return Markup(template.render(c=chart, id=id))  # noqa: S704 - autoescaped template


@cache
def _style() -> Markup:
    env = _environment()
    css = "\n".join(env.loader.get_source(env, name)[0]
                    for name in ("exports/report.css", "charts/charts.css"))
    return Markup(css)  # noqa: S704 - our own package files, not user input


def print_style() -> str:
    """The CSS of the printable page (inline in it; its hash goes into the CSP)."""
    return str(_style())


def nrr_html(page: NrrPage, *, exported_at: datetime) -> str:
    """A self-contained printable page: inline CSS and SVG, no script, no external file."""
    return _environment().get_template("exports/nrr.html").render(
        v=page, css=_style(), exported_at=exported_at.strftime("%Y-%m-%d %H:%M UTC"))


def nrr_document(page: NrrPage, *, exported_at: datetime) -> dict[str, Any]:
    """The JSON export: the stored figures as stored, the targets, when, and which ledger
    upload computed them (``source``)."""
    t = page.targets
    src = page.source
    return {
        "exported_at": exported_at.isoformat(),
        "source": None if src is None else {
            "ledger_version": src.version, "filename": src.filename,
            "uploaded_at": src.uploaded_at.isoformat(), "uploaded_by": src.uploaded_by,
            "first_period": src.first_period, "last_period": src.last_period},
        "targets": {"nrr": t.nrr, "grr": t.grr, "nrr_baseline": t.nrr_baseline,
                    "grr_baseline": t.grr_baseline, "nrr_node": t.nrr_node,
                    "grr_node": t.grr_node},
        "figures": page.figures.to_dict() if page.figures is not None else None,
    }


def export_nrr(session: Session, user: User, fmt: str, *, now: datetime | None = None,
               ip: str = "", via: str = "web") -> ExportFile:
    """The NRR page as ``fmt``, named ``nrr-ledger-<last period>-<date>.<fmt>``, audited.

    Raises
    ------
    NotFound
        Unknown format.
    ValidationFailed
        No ledger has been uploaded yet.
    """
    if fmt not in NRR_FORMATS:
        raise NotFound(f"no NRR export format {fmt[:20]!r}; use one of {', '.join(NRR_FORMATS)}")
    now = now or utcnow()
    page = nrr_page(session, user)
    if page.empty:
        raise ValidationFailed(
            {"": "there is no revenue ledger yet: upload one first (nrrlab ledger import FILE)"})
    name = f"nrr-ledger-{page.figures.periods[-1]}-{now.date().isoformat()}.{fmt}"
    if fmt == "csv":
        body = csv_text(CSV_COLUMNS, csv_rows(page.figures)).encode()
    elif fmt == "json":
        body = json.dumps(nrr_document(page, exported_at=now), indent=2,
                          allow_nan=False).encode()
    else:
        body = nrr_html(page, exported_at=now).encode()
    actor = user if user.id is not None else None
    with unseen_write(session, AuditEvent.__tablename__):  # as experiments.exports._audit
        record_event(session, f"export.{fmt}", actor=actor, entity_type="nrr",
                     entity_id=page.figures.periods[-1], team_id=None,
                     diff={"format": [None, fmt], "file": [None, name], "via": [None, via]},
                     ip=ip)
    return ExportFile(name, _CONTENT_TYPES[fmt], body)
