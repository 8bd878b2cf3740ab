"""``nrrlab serve``: the web layer's command, added to the ``nrrlab`` group through the
``nrrlab.commands`` entry point (pyproject.toml), so ``experiments`` never imports ``webapp``."""

from __future__ import annotations

import sys

import click

from experiments.db import DatabaseConfigError
from webapp import create_app
from webapp.config import ConfigError
from webapp.results.uploads import start_embedded_worker


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--debug", is_flag=True, help="Flask debug mode (never in production).")
def serve(host: str, port: int, debug: bool) -> None:
    """Serve the web app (development server; use gunicorn in production, see README)."""
    try:
        app = create_app()
    except (ConfigError, DatabaseConfigError) as exc:
        click.echo(f"nrrlab: {exc}", err=True)
        sys.exit(1)
    start_embedded_worker(app)  # uploads run in background threads: nothing else to start
    click.echo(f"NRR Lab on http://{host}:{port}/")
    app.run(host=host, port=port, debug=debug, use_reloader=False)
