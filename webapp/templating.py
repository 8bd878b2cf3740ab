"""Template globals and filters shared by every page."""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import generate_csrf

from webapp.security import acting_user


def pts(value: float | None, digits: int = 1) -> str:
    """An NRR difference as signed percentage points: 0.021 → '+2.1 pts'."""
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f} pts"


def size_pts(value: float | None, digits: int = 1) -> str:
    """A size in NRR points, unsigned (an MDE is a two-sided size): 0.02 → '2.0 pts'."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f} pts"


def pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


def money(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}"


def pvalue(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def init_templating(app: Flask) -> None:
    app.jinja_env.filters.update(pts=pts, size_pts=size_pts, pct=pct, money=money, pvalue=pvalue)
    app.jinja_env.globals.update(csrf_token=generate_csrf)

    @app.context_processor
    def inject_user() -> dict:
        return {"me": acting_user()}
