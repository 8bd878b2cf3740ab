"""The results body is rendered once per distinct input and kept (``webapp.results.body``):
a kept body is exactly the body a fresh render gives, follows every change of what it
shows, and never carries another user's forms or another session's CSRF token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot
from tests.webapp.test_results import (
    GOOD_ROWS,
    HEADER,
    known_effect_csv,
    make_experiment,
    text_of,
    upload,
)

ROOT = Path(__file__).resolve().parents[2]
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def body_cache(app):
    return app.extensions.get("nrrlab.results_body")


def without_tokens(page: str) -> str:
    """The page with its CSRF tokens (timestamped per request) blanked."""
    page = _TOKEN.sub('name="csrf_token" value="…"', page)
    return re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": "…"', page)


def results_body(page: str) -> str:
    start = page.index('<div class="results-body"')
    return page[start:page.index("</section>", start)]


@pytest.fixture
def analyst(login_as, factory):
    return login_as("viewer", teams={"growth": "analyst"})


@pytest.fixture
def experiment(analyst, db_engine):
    return make_experiment(db_engine)


@pytest.mark.parametrize("path", [
    "/experiments/seat-nudge",
    "/experiments/seat-nudge/results",
    "/experiments/seat-nudge/results?segment=SMB",
    "/experiments/seat-nudge/results?dataset=1",
])
def test_a_kept_body_is_the_freshly_rendered_body(app, analyst, experiment, path):
    app.config["PAGE_CACHE"] = False  # every GET renders the page: the body cache's road
    assert upload(analyst, experiment.key, known_effect_csv()).status_code in (200, 202, 303)
    assert upload(analyst, experiment.key, known_effect_csv(seed=8)).status_code in (200, 202,
                                                                                    303)
    analyst.get("/")  # shows (and so drops) the uploads' flashed messages
    app.config["RESULTS_BODY_CACHE"] = False
    fresh = analyst.get(path)
    assert fresh.status_code == 200
    app.config["RESULTS_BODY_CACHE"] = True
    first, second = analyst.get(path), analyst.get(path)
    assert body_cache(app).hits >= 1  # the second read used the kept body
    fragment = analyst.get(path, headers={"HX-Request": "true"}) if "/results" in path else None
    for kept in (first, second):
        assert without_tokens(kept.get_data(as_text=True)) == \
            without_tokens(fresh.get_data(as_text=True))
    if fragment is not None:
        assert fragment.get_data(as_text=True).strip() == \
            results_body(second.get_data(as_text=True)).strip()


@pytest.mark.parametrize("page_cache", [False, True])
def test_forms_in_a_kept_body_are_this_users_with_this_sessions_token(
        app, login_as, experiment, db_engine, page_cache):
    """An analyst fills the cache with the 'Analyse it now' form; another analyst gets it
    with a token of their own session that the POST accepts; a viewer gets no form."""
    app.config["PAGE_CACHE"] = page_cache
    first = login_as("viewer", teams={"growth": "analyst"})
    upload(first, experiment.key, (HEADER + GOOD_ROWS).encode())
    first.get("/")  # the upload's flashed message
    with Session(db_engine) as session:
        for snapshot in session.exec(select(AnalysisSnapshot)).all():
            session.delete(snapshot)
        session.commit()
    path = f"/experiments/{experiment.key}/results"
    page = first.get(path).get_data(as_text=True)
    assert "Analyse it now" in page
    hits = body_cache(app).hits

    second = login_as("viewer", teams={"growth": "analyst"})
    theirs = second.get(path).get_data(as_text=True)
    assert body_cache(app).hits == hits + 1  # the body the first analyst's view rendered
    assert "Analyse it now" in theirs
    mine = {t.split(".")[0] for t in _TOKEN.findall(page)}
    tokens = _TOKEN.findall(theirs)
    assert tokens and not mine & {t.split(".")[0] for t in tokens}
    assert second.post(f"/experiments/{experiment.key}/recompute",
                       data={"csrf_token": tokens[-1]}).status_code == 303

    viewer = login_as("viewer", teams={"growth": "viewer"})
    with Session(db_engine) as session:
        for snapshot in session.exec(select(AnalysisSnapshot)).all():
            session.delete(snapshot)
        session.commit()
    page = text_of(viewer.get(path))
    assert "has not been analysed yet" in page and "Analyse it now" not in page


def test_a_new_analysis_replaces_the_kept_body(app, analyst, experiment):
    app.config["PAGE_CACHE"] = False
    upload(analyst, experiment.key, known_effect_csv())
    path = f"/experiments/{experiment.key}"
    before = text_of(analyst.get(path))
    assert "version 1" in before and "version 2" not in before
    upload(analyst, experiment.key, known_effect_csv(seed=8))
    after = text_of(analyst.get(path))
    assert "version 2" in after and "3,000 accounts" in after


def test_a_key_is_refused_when_a_repr_could_name_two_values():
    """An object address can be reused by a later object with other values."""
    from types import SimpleNamespace

    from webapp.results.body import inputs_digest

    experiment = SimpleNamespace(key="k", status="running")
    controls = SimpleNamespace(may_upload=True)
    assert inputs_digest(experiment, None, controls) is not None
    assert inputs_digest(SimpleNamespace(key=object(), status="running"), None,
                         controls) is None


def test_the_body_templates_read_only_what_the_key_holds():
    """The key leaves ``results.document`` out (it carries the moment it was read) and
    holds only experiment.key/status and controls.may_upload of those objects."""
    folder = ROOT / "webapp" / "templates" / "results"
    names = ["_body.html", "_nrr_figures.html", "_forest.html", "_progress.html",
             "_macros.html"]
    for name in names:
        source = re.sub(r"\{#.*?#\}", "", (folder / name).read_text(), flags=re.S)
        assert ".document" not in source, name
        assert set(re.findall(r"\bexperiment\.(\w+)", source)) <= {"key", "status"}, name
        assert set(re.findall(r"\bcontrols\.(\w+)", source)) <= {"may_upload"}, name
        assert not re.search(r"\b(current_user|request|session|config)\b[.\[]", source), name


#: Names the body templates may read without defining them: their three inputs, the
#: names ``_body.html`` sets for the partials it includes, and pure template globals.
_BODY_NAMES = frozenset({
    "experiment", "results", "controls",
    "r", "res", "nf", "d", "k", "adjusted", "seq", "sp", "key", "fp", "ch", "v",
    "csrf_token", "url_for", "nrr_figures", "forest_plot", "range", "dict", "namespace",
})
_BODY_TEMPLATES = ("results/_body.html", "results/_nrr_figures.html", "results/_forest.html",
                   "results/_progress.html", "results/_macros.html")


def body_free_names(env, source: str) -> set[str]:
    """The names a template reads from its context or the globals (Jinja's own scoping:
    a loop variable called ``g`` is not Flask's ``g``). Parsed by a bare environment of
    the app's extensions: Jinja does not report names the app's environment holds as
    globals (``request``, ``g``, ``config``, ...); filters are pure."""
    from jinja2 import Environment, meta

    bare = Environment(extensions=list(env.extensions))
    bare.filters.update(env.filters)
    bare.tests.update(env.tests)
    return meta.find_undeclared_variables(bare.parse(source))


def test_the_body_templates_read_no_request_user_or_config(app):
    """Anything per request or user (``request``, ``g``, ``session``, ``config``, ``me``,
    flashed messages, other globals) read by the body would be served to the next reader
    of the same inputs: only the key's inputs and pure globals may be named."""
    env = app.jinja_env
    for name in _BODY_TEMPLATES:
        source = env.loader.get_source(env, name)[0]
        assert body_free_names(env, source) <= _BODY_NAMES, name


def test_the_body_reads_of_experiment_and_controls_only_what_the_key_holds(
        app, analyst, experiment, db_engine):
    """Rendered, the body asks the experiment for its key and status only and the controls
    for may_upload only (the key holds those, not the objects): checked on the objects
    themselves, whatever the templates' syntax (``x.a``, ``x['a']``, ``x|attr('a')``)."""
    from experiments.analysis import load_results
    from experiments.models import Experiment
    from experiments.registry import ResultsControls
    from webapp.results.body import TEMPLATE

    upload(analyst, experiment.key, known_effect_csv())

    class Recorder:
        def __init__(self, real, seen):
            object.__setattr__(self, "_real", real)
            object.__setattr__(self, "_seen", seen)

        def __getattr__(self, name):
            self._seen.add(name)
            return getattr(self._real, name)

        def __getitem__(self, name):
            self._seen.add(name)
            return getattr(self._real, name)

    from flask import render_template
    with Session(db_engine) as session, app.test_request_context("/"):
        stored = session.exec(select(Experiment)).one()
        for segment in (None, "SMB"):
            results = load_results(session, stored, segment=segment)
            for may_upload in (True, False):
                read_of_experiment: set[str] = set()
                read_of_controls: set[str] = set()
                render_template(TEMPLATE, results=results,
                                experiment=Recorder(stored, read_of_experiment),
                                controls=Recorder(ResultsControls(may_upload, []),
                                                  read_of_controls))
                assert "key" in read_of_experiment  # the recorder sees the reads
                assert read_of_experiment <= {"key", "status"}
                assert read_of_controls <= {"may_upload"}
