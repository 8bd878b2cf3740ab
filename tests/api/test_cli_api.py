"""``nrrlab push`` / ``nrrlab pull`` against a live server on a free port: the CLI as a
client of the API (token from the environment, no database access of its own). The
server is the app served by werkzeug in a thread with a real (SQLite Huey) job queue, so
``push`` sees its upload queued and polls the job, as against ``nrrlab serve``."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, SQLModel

from experiments.api_tokens import create_token
from experiments.db import make_engine
from experiments.setup import ensure_defaults
from experiments.users import create_user
from tests.factories import accounts_csv, make_experiment
from tests.helpers import dispose_app

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A live server on a free loopback port (this app, in a thread) with a real job queue
    consumed in the background, an analyst's write and read tokens and two experiments."""
    from werkzeug.serving import make_server

    from webapp import create_app
    from webapp.results.uploads import get_jobs

    folder = tmp_path_factory.mktemp("cli-api")
    url = f"sqlite:///{folder / 'cli.db'}"
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)  # a unit-test schema (migrations are tested apart)
    with Session(engine, expire_on_commit=False) as session:
        ensure_defaults(session)
        analyst = create_user(session, "pipeline@example.com", "a long enough password",
                              role="analyst")
        make_experiment(session, "checkout-flow", status="running")
        make_experiment(session, "still-draft", status="draft")
        token = create_token(session, {"name": "cli", "scope": "write"}, actor=analyst).secret
        reader = create_token(session, {"name": "cli-read", "scope": "read"},
                              actor=analyst).secret
        session.commit()
    engine.dispose()
    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "c" * 48, "DATABASE_URL": url,
                      "INSTANCE_PATH": str(folder / "instance"),
                      "JOBS_BACKEND": "sqlite"})  # queued uploads, as `nrrlab serve` runs them
    with app.app_context():
        consumer = get_jobs().start_in_background(workers=1)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_port}", "token": token,
               "reader": reader}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        consumer.stop(graceful=True)
        dispose_app(app)


def _run(live, *args: str, token: str | None = "write"):
    """The command in this process (click's runner): only HTTP reaches the server."""
    from click.testing import CliRunner

    from experiments.cli import main

    env = {"NRRLAB_TOKEN": None if token is None else
           (live["token"] if token == "write" else token), "NRRLAB_SERVER": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_push_then_pull_in_every_format(live, tmp_path):
    data = accounts_csv(seed=11, n=80)
    path = tmp_path / "week48.csv"
    path.write_bytes(data)
    pushed = _run(live, "push", str(path), "--experiment", "checkout-flow",
                  "--server", live["base"])
    assert pushed.exit_code == 0, pushed.stderr
    assert "stored as dataset version 1 of checkout-flow (160 accounts)" in pushed.stdout
    again = _run(live, "push", str(path), "--experiment", "checkout-flow",
                 "--server", live["base"])
    assert again.exit_code == 0 and "nothing new was stored" in again.stdout

    pulled = _run(live, "pull", "checkout-flow", "--server", live["base"], token=live["reader"])
    assert pulled.exit_code == 0, pulled.stderr
    report = json.loads(pulled.stdout)
    # the arms hold the pushed file's accounts per variant (counted here with csv)
    counted = Counter(row["variant"] for row in csv.DictReader(io.StringIO(data.decode())))
    assert {a["variant"]: a["accounts"] for a in report["arms"]} == dict(counted)
    assert report["experiment"]["key"] == "checkout-flow" and report["dataset"]["version"] == 1

    as_csv = _run(live, "pull", "checkout-flow", "--server", live["base"], "--format", "csv",
                  "-o", str(tmp_path / "r.csv"))
    assert as_csv.exit_code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert rows and rows[0]["experiment_key"] == "checkout-flow"
    as_md = _run(live, "pull", "checkout-flow", "--server", live["base"], "--format", "md")
    assert as_md.exit_code == 0 and "checkout-flow" in as_md.stdout


def test_a_bad_file_lists_its_lines_and_exits_2(live, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("account_id,variant,start_mrr\na1,control,100\na2,purple,100\n"
                    "a3,treatment,-1\n")
    pushed = _run(live, "push", str(path), "--experiment", "checkout-flow",
                  "--server", live["base"])
    assert pushed.exit_code == 2
    lines = pushed.stderr.strip().splitlines()
    assert lines[0].startswith("bad.csv: line 3, variant:")
    assert lines[1].startswith("bad.csv: line 4, start_mrr:")
    assert "Traceback" not in pushed.stderr


@pytest.mark.parametrize(("args", "token", "expected"), [
    (("push", "{file}", "--experiment", "checkout-flow"), None, "set NRRLAB_TOKEN"),
    (("push", "{file}", "--experiment", "checkout-flow"), "nrrlab_" + "x" * 43,
     "the token is unknown"),
    (("push", "{file}", "--experiment", "checkout-flow"), "reader", "may only read"),
    (("push", "{file}", "--experiment", "still-draft"), "write", "draft"),
    (("pull", "no-such-experiment"), "write", "There is nothing here"),
])
def test_refusals_are_one_line_and_exit_1(live, tmp_path, args, token, expected):
    path = tmp_path / "good.csv"
    path.write_bytes(accounts_csv(seed=1, n=5))
    token = live["reader"] if token == "reader" else token
    done = _run(live, *[a.format(file=path) for a in args], "--server", live["base"],
                token=token)
    assert done.exit_code == 1, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr


def test_an_unreachable_server_is_one_line(live, tmp_path):
    done = _run(live, "pull", "checkout-flow", "--server", "http://127.0.0.1:9")
    assert done.exit_code == 1 and "cannot reach http://127.0.0.1:9" in done.stderr
    done = _run(live, "pull", "checkout-flow", "--server", "file:///etc/passwd")
    assert done.exit_code == 1 and "http:// or https://" in done.stderr
    assert not Path("passwd").exists()
