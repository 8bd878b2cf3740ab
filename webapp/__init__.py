"""NRR Lab web application: ``create_app`` builds a configured Flask app."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from experiments.db import default_instance_path
from webapp import (
    admin,
    api,
    audit_hooks,
    auth,
    dashboard,
    experiments,
    exports,
    health,
    journeys,
    ledger,
    me,
    notify,
    nrr,
    planner,
    quarterly,
    results,
    review,
    tree,
    warehouse,
)
from webapp.config import load_config
from webapp.db import init_db
from webapp.errors import init_errors
from webapp.input_guard import init_input_guard
from webapp.logging_setup import init_logging
from webapp.page_cache import init_page_cache
from webapp.security import check_route_declarations, init_security
from webapp.static_assets import init_static_assets
from webapp.templating import init_templating


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

    init_logging(app)
    init_db(app)
    audit_hooks.install()
    init_security(app)
    init_input_guard(app)
    init_errors(app)
    init_templating(app)
    init_static_assets(app)
    init_page_cache(app)
    for module in (auth, health, dashboard, tree, journeys, experiments, results, review, exports,
                   planner, admin, nrr, ledger, me, quarterly, notify, warehouse):
        app.register_blueprint(module.bp)
    api.init_app(app)  # the JSON API (token-authenticated) and the API tokens page

    check_route_declarations(app)
    logging.getLogger("nrrlab").debug("app created for %s", app.config["DATABASE_URL"])
    return app
