"""Template globals and filters shared by every page."""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import generate_csrf

from experiments import formatting
from experiments.nrr_export import chart_svg
from webapp.security import acting_user

# The pages show one decimal fewer than the exports; the formatting itself is shared.


def pts(value: float | None, digits: int = 1) -> str:
    """An NRR difference as signed percentage points: 0.021 → '+2.1 pts'."""
    return formatting.pts(value, digits)


def size_pts(value: float | None, digits: int = 1) -> str:
    """A size in NRR points, unsigned (an MDE is a two-sided size): 0.02 → '2.0 pts'."""
    return formatting.points(value, digits)


def pct(value: float | None, digits: int = 1) -> str:
    return formatting.pct(value, digits)


def pvalue(value: float | None) -> str:
    return formatting.pvalue(value, 3)


def init_templating(app: Flask) -> None:
    app.jinja_env.filters.update(
        pts=pts, size_pts=size_pts, pct=pct, money=formatting.money, pvalue=pvalue
    )
    app.jinja_env.globals.update(csrf_token=generate_csrf, chart_svg=chart_svg)

    @app.context_processor
    def inject_user() -> dict:
        return {"me": acting_user()}
