"""One response for every file the site hands out (experiment, review, quarter and NRR
exports): the service's :class:`experiments.exports.ExportFile` as a download."""

from __future__ import annotations

from flask import Response

from experiments.exports import ExportFile


def file_response(export: ExportFile, *, inline: bool = False) -> Response:
    """``export`` with its MIME type, named by ``Content-Disposition`` (``attachment`` to
    save it, ``inline`` to show it in the browser, e.g. the printable page)."""
    response = Response(export.body, content_type=export.content_type)
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{export.filename}"'
    return response
