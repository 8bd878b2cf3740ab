"""experiments/ is the domain layer: it never imports the web layer or Flask (the web
layer adds its own commands to `nrrlab` through an entry point, see webapp/cli.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
MODULES = sorted(EXPERIMENTS_DIR.rglob("*.py"))
# Jinja itself is fine here: the HTML export renders its own templates without Flask.
WEB_ROOTS = {"flask", "flask_login", "flask_wtf", "werkzeug", "webapp", "gunicorn"}


def imported_roots(path: Path) -> dict[str, int]:
    """Every top-level package the module imports, anywhere in it, with a line number."""
    roots: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            roots.setdefault(name.split(".")[0], node.lineno)
    return roots


def test_the_scan_sees_the_domain_modules():
    names = {p.name for p in MODULES}
    assert {"cli.py", "models.py", "registry.py", "errors.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(EXPERIMENTS_DIR)))
def test_domain_module_imports_nothing_of_the_web_layer(path):
    found = {root: line for root, line in imported_roots(path).items() if root in WEB_ROOTS}
    assert not found, f"experiments/{path.name} imports the web layer: {found}"


def test_importing_the_domain_and_its_cli_loads_no_flask():
    code = ("import sys, experiments.cli, experiments.registry, experiments.review; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'flask', 'webapp', 'werkzeug', 'flask_login', 'flask_wtf'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=EXPERIMENTS_DIR.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_nrrlab_serve_comes_from_the_web_layer_and_has_help():
    from click.testing import CliRunner

    from experiments.cli import main

    assert "serve" not in main.commands  # not defined in experiments/
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main serve [OPTIONS]" in result.output and "--port" in result.output
    listing = CliRunner().invoke(main, ["--help"]).output
    assert "serve" in listing and "analyze" in listing


WEBAPP_DIR = EXPERIMENTS_DIR.parent / "webapp"
VIEW_MODULES = sorted(p for p in WEBAPP_DIR.rglob("*.py")
                      if p.name == "views.py" or p.name.endswith("_views.py"))
STATISTICS_ROOTS = {"stats", "numpy", "scipy", "pandas", "statsmodels"}
QUERY_NAMES = {"select", "text", "func", "update", "delete", "insert", "and_", "or_"}
# The health check's SELECT 1 is the one query a view may run.
SQL_ALLOWED = {"health/views.py"}


def test_the_view_scan_sees_the_wave_two_blueprints():
    names = {str(p.relative_to(WEBAPP_DIR)) for p in VIEW_MODULES}
    assert {"nrr/views.py", "ledger/views.py", "me/views.py", "quarterly/views.py",
            "notify/views.py", "warehouse/views.py", "api/views.py", "api/tokens_views.py",
            "review/action_views.py"} <= names


@pytest.mark.parametrize("path", VIEW_MODULES, ids=lambda p: str(p.relative_to(WEBAPP_DIR)))
def test_views_hold_no_sql_and_no_statistics(path):
    """DESIGN §5: SQL and statistics live in experiments/ services; views only call them."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stats_roots = {root: line for root, line in imported_roots(path).items()
                   if root in STATISTICS_ROOTS}
    assert not stats_roots, f"webapp/{path.relative_to(WEBAPP_DIR)} imports {stats_roots}"
    if str(path.relative_to(WEBAPP_DIR)) in SQL_ALLOWED:
        return
    query = [(alias.name, node.lineno) for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.level == 0
             and (node.module or "").split(".")[0] in {"sqlmodel", "sqlalchemy"}
             for alias in node.names if alias.name in QUERY_NAMES]
    assert not query, f"webapp/{path.relative_to(WEBAPP_DIR)} builds SQL: {query}"
