"""Reading the experiment form and answering conflicts, shared by the registry,
tree, journeys and planner views (denials are answered centrally in webapp.errors)."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from experiments.errors import Conflict
from experiments.plan_input import MAX_VARIANTS
from webapp.rendering import render_page_or_partial

#: The plain fields of the experiment form (variants come as parallel lists).
EXPERIMENT_FIELDS: tuple[str, ...] = (
    "key",
    "name",
    "node_id",
    "stage_id",
    "team_id",
    "owner_id",
    "hypothesis",
    "primary_metric",
    "mde",
    "alpha",
    "power",
    "analysis",
    "guardrails",
    "ttv_target_days",
    "planned_start",
    "planned_end",
    "reason",
    "version",
)
#: The most rows a form may send; anything beyond is a forged request, cut here.
ROW_LIMIT = MAX_VARIANTS + 5


def conflict_response(exc: Conflict) -> Response:
    """409 with the conflict's own message (the generic error page only names the code)."""
    return render_page_or_partial(
        "errors/error.html", "errors/_error.html", status=409, code=409, message=str(exc)
    )


def shown_errors(errors: dict[str, str]) -> dict[str, str]:
    """Field errors as a form shows them: the hidden ``version`` field's under the form's own
    (``""``) message, since no input is there to stand beside."""
    if "version" not in errors:
        return errors
    shown = {k: v for k, v in errors.items() if k != "version"}
    shown[""] = "version: " + errors["version"]
    return shown


def variant_rows(form: MultiDict) -> list[dict[str, str]]:
    """The variant rows of the form, from its parallel ``variant_key/name/weight`` lists."""
    keys = form.getlist("variant_key")[:ROW_LIMIT]
    names = form.getlist("variant_name")[:ROW_LIMIT]
    weights = form.getlist("variant_weight")[:ROW_LIMIT]
    return [
        {"key": k or "", "name": n or "", "weight": w or ""}
        for k, n, w in zip_longest(keys, names, weights)
    ]


def experiment_form_data(form: MultiDict) -> dict[str, Any]:
    """The experiment form as the registry services read it."""
    data: dict[str, Any] = {name: form.get(name, "") for name in EXPERIMENT_FIELDS if name in form}
    data["variants"] = variant_rows(form)
    controls = form.getlist("control")
    data["control"] = controls if len(controls) > 1 else (controls[0] if controls else "")
    return data


def apply_variant_action(data: dict[str, Any], action: str) -> dict[str, Any]:
    """Add a blank row (``add``) or drop row ``i`` (``remove:i``), keeping the control on its
    row."""
    rows = list(data.get("variants") or [])
    control = data.get("control")
    control_index = (
        int(control)
        if isinstance(control, str) and control.isdigit() and len(control) < 4
        else None
    )
    if action == "add" and len(rows) < MAX_VARIANTS:
        rows.append({"key": "", "name": "", "weight": "1"})
    elif action.startswith("remove:") and action[7:].isdigit():
        index = int(action[7:])
        if 0 <= index < len(rows) and len(rows) > 1:
            rows.pop(index)
            if control_index is not None:
                control_index = (
                    None
                    if control_index == index
                    else (control_index - 1 if control_index > index else control_index)
                )
    return {
        **data,
        "variants": rows,
        "control": "" if control_index is None else str(control_index),
    }
