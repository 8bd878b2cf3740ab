"""A request-wide guard against control characters, for the routes that forget.

PostgreSQL refuses NUL in text (a 500 if it got that far) and no field of this app
means to hold other C0 control characters. The validation kit
(:mod:`experiments.input_rules`) rejects them field by field with a message; this
guard refuses, before any view runs, a request whose query string, form field (name or
value) or upload file name holds one, with a 422 page (a fragment for htmx); a path
holding one names nothing here, so it is a 404. Tab, CR and LF pass in query and form
values, since multi-line fields allow them; the kit refuses them in one-line fields.
Upload file names allow none.

It also answers 404 to a whole-number path parameter (``<int:user_id>``) too large for
any id column: PostgreSQL raises "integer out of range" on such a bound value.
"""

from __future__ import annotations

from flask import Flask, abort, request
from werkzeug.exceptions import NotFound

from experiments.input_rules import MAX_ID, control_character

#: Werkzeug reads a multipart part without a name as the field ``None`` (Flask-WTF's CSRF
#: check then fails with a 500); no form sends one.
UNNAMED = "The request holds a form part without a name, which this site does not accept."
REFUSED = ("{where} contains a control character ({found}), which this site does not accept."
           " Remove it and try again.")


def _shown(name: str) -> str:
    """A field name safe to quote in a message (control characters dropped, shortened)."""
    visible = "".join(c for c in name if c.isprintable())[:40]
    return f"“{visible}”" if visible else "a field"


def _problem() -> str | None:
    for where, values in (("query parameter", request.args), ("form field", request.form)):
        for name, value in values.items(multi=True):
            if name is None:  # a multipart part without a name: no form sends one
                return UNNAMED
            found = control_character(name) or control_character(value or "", multiline=True)
            if found:
                return REFUSED.format(where=f"The {where} {_shown(name)}", found=found)
    for name, upload in request.files.items(multi=True):
        if name is None:
            return UNNAMED
        found = control_character(name) or control_character(upload.filename or "")
        if found:
            return REFUSED.format(where=f"The name of the file sent as {_shown(name)}",
                                  found=found)
    return None


def _id_out_of_range() -> bool:
    return any(isinstance(value, int) and not 0 <= value <= MAX_ID
               for value in (request.view_args or {}).values())


def refuse_control_characters() -> None:
    """``before_request``: abort with 422 when the request carries a control character."""
    if control_character(request.path) or _id_out_of_range():
        raise NotFound()
    problem = _problem()
    if problem:
        abort(422, problem)


def init_input_guard(app: Flask) -> None:
    """Register the guard; it runs before the permission checks and the views."""
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_control_characters)
