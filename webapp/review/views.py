"""The weekly review meeting."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, redirect, render_template, url_for

from webapp.security import allow

bp = Blueprint("review", __name__, url_prefix="/review")


def iso_week_label(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@bp.route("/")
@allow("viewer")
def current():
    """Redirect to this ISO week's review."""
    return redirect(url_for("review.week", week=iso_week_label(date.today())))


@bp.route("/<week>")
@allow("viewer")
def week(week: str):
    """One week's review."""
    try:
        year, number = week.split("-W")
        date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        abort(404)
    return render_template("review/week.html", week=week)
