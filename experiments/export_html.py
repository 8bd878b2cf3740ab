"""The printable HTML exports: one experiment or one review as a self-contained page.

Templates and style sheet are package data under ``experiments/templates/exports``;
the page carries its CSS and its SVG forest plot inline (no external reference, no
script) and prints one experiment per page. Everything is autoescaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache, partial
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from experiments.documents import ExperimentDocument, finite
from experiments.export_formats import (
    detail_documents,
    review_documents,
    tree_reconstructed,
    verdict_text,
    when,
)
from experiments.forest import forest_plot
from experiments.formatting import count, interval, money, pct, points, pts, pvalue
from experiments.nrr_figures_view import EXPORT_STYLE, nrr_figures


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("experiments", "templates/exports"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pts=pts, points=points, pct=pct, pvalue=pvalue, money=money,
                       thousands=count, interval=interval, when=when)
    env.globals.update(forest_plot=forest_plot, finite=finite,
                       nrr_figures=partial(nrr_figures, style=EXPORT_STYLE),
                       verdict_text=verdict_text)
    return env


@cache
def _style() -> Markup:
    source, _name, _uptodate = _environment().loader.get_source(_environment(), "report.css")
    return Markup(source)  # noqa: S704 - our own package file, not user input


def experiment_html(document: ExperimentDocument, *, exported_at: datetime) -> str:
    """A self-contained printable page: inline CSS and SVG, no external reference."""
    return _environment().get_template("experiment.html").render(
        r=document, css=_style(), exported_at=exported_at.strftime("%Y-%m-%d %H:%M UTC"))


def review_html(review: Mapping[str, Any]) -> str:
    return _environment().get_template("review.html").render(
        rv=review, exps=review_documents(review), details=detail_documents(review),
        css=_style(), exported_at=when(review["exported_at"]),
        reconstructed=tree_reconstructed(review))
