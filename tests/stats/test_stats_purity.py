"""stats/ stays pure (no web, database or file I/O) and cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import stats

STATS_DIR = Path(stats.__file__).parent
MODULES = sorted(STATS_DIR.glob("*.py"))
FORBIDDEN_IMPORTS = {
    "flask",
    "sqlalchemy",
    "sqlmodel",
    "sqlite3",
    "psycopg",
    "alembic",
    "webapp",
    "experiments",
    "os",
    "io",
    "pathlib",
    "shutil",
    "requests",
    "urllib",
    "csv",
    "logging",
}
FORBIDDEN_CALLS = {"open", "print", "eval", "exec"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_has_no_io_or_framework_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )
            continue
        else:
            continue
        assert not roots & FORBIDDEN_IMPORTS, (
            f"{path.name}:{node.lineno} imports {roots & FORBIDDEN_IMPORTS}"
        )


def test_public_api_is_exported():
    for name in stats.__all__:
        assert hasattr(stats, name), name


def test_import_stays_cheap():
    # pingouin and scipy.stats take about a second to import; they must load only when used.
    probe = (
        "import sys, stats; "
        "print(sorted(m for m in ('pingouin', 'scipy.stats', 'pandas') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=STATS_DIR.parent,
    )
    assert output.stdout.strip() == "[]"
