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
