"""NRR Lab web application: ``create_app`` builds a configured Flask app."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from experiments.db import default_instance_path
from webapp.config import load_config


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; nothing touches the database or secrets before this is called.

    Raises
    ------
    webapp.config.ConfigError, experiments.db.DatabaseConfigError
        Bad configuration, with a one-line message (``nrrlab serve`` prints it and exits).
    """
    instance = Path((config or {}).get("INSTANCE_PATH") or default_instance_path())
    app = Flask(__name__, instance_path=str(instance.resolve()))
    app.config.update(load_config(instance, config))

    from webapp.logging_setup import init_logging

    init_logging(app)

    from webapp.db import init_db

    init_db(app)

    from webapp.security import check_route_declarations, init_security

    init_security(app)

    from webapp.input_guard import init_input_guard

    init_input_guard(app)

    from webapp.errors import init_errors

    init_errors(app)

    from webapp.templating import init_templating

    init_templating(app)

    from webapp import (
        admin,
        auth,
        dashboard,
        experiments,
        exports,
        health,
        journeys,
        planner,
        results,
        review,
        tree,
    )

    for module in (auth, health, dashboard, tree, journeys, experiments, results, review, exports, planner, admin):
        app.register_blueprint(module.bp)

    check_route_declarations(app)
    logging.getLogger("nrrlab").debug("app created for %s", app.config["DATABASE_URL"])
    return app
