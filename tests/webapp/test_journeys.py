"""The journeys page: the default journey, adding, renaming and reordering stages,
full pages and htmx fragments, 422s beside the field, audit events."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, func, select

from experiments.journeys import add_stage, create_journey, move_stage
from experiments.models import AuditEvent, DriverNode, Experiment, Journey, JourneyStage
from experiments.setup import DEFAULT_STAGES
from webapp.db import get_engine

HX = {"HX-Request": "true"}


_VERSIONED = (
    (re.compile(r"^/tree/(\d+)(?:/move|/delete)?$"), DriverNode),
    (re.compile(r"^/journeys/(\d+)$"), Journey),
    (re.compile(r"^/journeys/stages/(\d+)(?:/move|/delete)?$"), JourneyStage),
)


def current_version(client, url: str) -> str | None:
    """The version a page would have put in the form posted to ``url`` (as a browser sends it)."""
    for pattern, model in _VERSIONED:
        if (match := pattern.match(url)) and int(match.group(1)) < 2**31:
            with client.application.app_context(), Session(get_engine()) as session:
                row = session.get(model, int(match.group(1)))
                return str(row.version) if row is not None else "1"
    return None


def post(client, url: str, data: dict | None = None, *, htmx: bool = False):
    form = {"csrf_token": client.csrf, **(data or {})}
    if "version" not in form and (version := current_version(client, url)) is not None:
        form["version"] = version
    return client.post(url, data=form, headers=HX if htmx else {})


def stages(db_engine, journey_id: int | None = None) -> list[str]:
    with Session(db_engine) as session:
        journey = (
            session.get(Journey, journey_id)
            if journey_id
            else session.exec(select(Journey).where(Journey.is_default)).one()
        )
        rows = session.exec(
            select(JourneyStage)
            .where(JourneyStage.journey_id == journey.id)
            .order_by(JourneyStage.position)
        ).all()
        return [s.name for s in rows]


def default_journey(db_engine) -> Journey:
    with Session(db_engine) as session:
        return session.exec(select(Journey).where(Journey.is_default)).one()


def stage_id(db_engine, name: str) -> int:
    with Session(db_engine) as session:
        return session.exec(select(JourneyStage.id).where(JourneyStage.name == name)).one()


def stage_count(db_engine) -> int:
    with Session(db_engine) as session:
        return session.exec(select(func.count()).select_from(JourneyStage)).one()


@pytest.fixture
def editor(login_as):
    return login_as("experimenter")


def test_a_new_install_has_the_default_journey(db_engine, login_as):
    assert (
        stages(db_engine)
        == list(DEFAULT_STAGES)
        == ["onboarding", "adoption", "expansion", "renewal"]
    )
    client = login_as("viewer")
    page = client.get("/journeys/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in body
    positions = [body.index(f">{name}<") for name in DEFAULT_STAGES]
    assert positions == sorted(positions)
    assert "<form" not in body.split('id="journeys"')[1]  # a viewer reads only
    fragment = client.get("/journeys/", headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and 'id="journeys"' in fragment
    assert 'href="/journeys/"' in body  # the navigation links here


def test_editor_forms_are_labelled_and_post_with_htmx(db_engine, editor):
    body = editor.get("/journeys/", headers=HX).get_data(as_text=True)
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', body):
        assert f'for="{field_id}"' in body, field_id
    journey = default_journey(db_engine)
    assert f'hx-post="/journeys/{journey.id}/stages" hx-target="#journeys"' in body
    assert "hx-confirm=" in body  # deleting an unused stage asks first


def test_add_rename_and_reorder_stages_without_js(db_engine, editor):
    journey = default_journey(db_engine)
    response = post(editor, f"/journeys/{journey.id}/stages", {"name": "advocacy"})
    assert response.status_code == 303 and response.headers["Location"].endswith(
        f"/journeys/#journey-{journey.id}"
    )
    assert stages(db_engine)[-1] == "advocacy"
    assert (
        post(
            editor, f"/journeys/stages/{stage_id(db_engine, 'advocacy')}", {"name": "referral"}
        ).status_code
        == 303
    )
    assert stages(db_engine)[-1] == "referral"
    assert (
        post(
            editor, f"/journeys/stages/{stage_id(db_engine, 'referral')}/move", {"direction": "up"}
        ).status_code
        == 303
    )
    assert stages(db_engine) == ["onboarding", "adoption", "expansion", "referral", "renewal"]
    assert (
        post(
            editor,
            f"/journeys/stages/{stage_id(db_engine, 'onboarding')}/move",
            {"direction": "up"},
        ).status_code
        == 303
    )  # already first: nothing moves
    assert stages(db_engine)[0] == "onboarding"
    with Session(db_engine) as session:
        actions = session.exec(
            select(AuditEvent.action)
            .where(AuditEvent.entity_type == "journey_stage")
            .order_by(AuditEvent.id)
        ).all()
    assert actions == ["stage.create", "stage.update", "stage.move"]


def test_htmx_changes_redirect_to_the_fragment(db_engine, editor):
    journey = default_journey(db_engine)
    response = post(editor, f"/journeys/{journey.id}/stages", {"name": "advocacy"}, htmx=True)
    assert response.status_code == 303
    fragment = editor.get(response.headers["Location"], headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and 'value="advocacy"' in fragment


@pytest.mark.parametrize(
    ("url", "data", "message"),
    [
        ("stages", {"name": ""}, "is required"),
        ("stages", {"name": "Adoption"}, "already has a stage called &#39;adoption&#39;"),
        ("stages", {"name": "s" * 201}, "at most 200 characters"),
        ("stages", {"name": "tab\tbed"}, "control characters"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_stage_names_are_a_422_beside_the_field(db_engine, editor, url, data, message, htmx):
    journey = default_journey(db_engine)
    before = stage_count(db_engine)
    response = post(editor, f"/journeys/{journey.id}/{url}", data, htmx=htmx)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(
        rf'id="journey-{journey.id}-new-stage-error">[^<]*{re.escape(message)}', body
    ), body[-2000:]
    assert stage_count(db_engine) == before
    assert ("<html" in body) != htmx


def test_rename_to_a_sibling_name_and_a_bad_direction_are_refused(db_engine, editor):
    adoption = stage_id(db_engine, "adoption")
    response = post(editor, f"/journeys/stages/{adoption}", {"name": "renewal"})
    assert response.status_code == 422
    assert f'id="stage-{adoption}-name-error"' in response.get_data(as_text=True)
    response = post(editor, f"/journeys/stages/{adoption}/move", {"direction": "sideways"})
    assert response.status_code == 422 and "must be one of: up, down" in response.get_data(
        as_text=True
    )
    assert stages(db_engine) == list(DEFAULT_STAGES)


def test_journeys_can_be_added_and_renamed_with_unique_names(db_engine, editor):
    assert (
        post(
            editor, "/journeys/", {"name": "Trial", "description": "<i>self-serve</i>"}
        ).status_code
        == 303
    )
    response = post(editor, "/journeys/", {"name": "trial"})
    assert response.status_code == 422
    assert "a journey called &#39;Trial&#39; already exists" in response.get_data(as_text=True)
    with Session(db_engine) as session:
        trial = session.exec(select(Journey).where(Journey.name == "Trial")).one()
    assert (
        post(editor, f"/journeys/{trial.id}", {"name": "Free trial", "description": ""}).status_code
        == 303
    )
    body = editor.get("/journeys/").get_data(as_text=True)
    assert "Free trial" in body and "<i>self-serve</i>" not in body
    response = post(editor, f"/journeys/{trial.id}", {"name": ""})
    assert (
        response.status_code == 422
        and f'id="journey-{trial.id}-name-error"' in response.get_data(as_text=True)
    )


def test_a_stage_in_use_cannot_be_deleted(db_engine, editor):
    with Session(db_engine) as session:
        root = session.exec(select(DriverNode)).first()
        session.add(
            Experiment(
                key="uses-stage",
                name="Uses",
                node_id=root.id,
                stage_id=stage_id(db_engine, "adoption"),
            )
        )
        session.commit()
    response = post(editor, f"/journeys/stages/{stage_id(db_engine, 'adoption')}/delete")
    assert response.status_code == 422 and "target of 1 experiment" in response.get_data(
        as_text=True
    )
    assert (
        post(editor, f"/journeys/stages/{stage_id(db_engine, 'renewal')}/delete").status_code == 303
    )
    assert stages(db_engine) == ["onboarding", "adoption", "expansion"]
    with Session(db_engine) as session:
        assert session.exec(
            select(AuditEvent.action).where(AuditEvent.action == "stage.delete")
        ).one()


def test_permissions_and_unknown_ids(db_engine, login_as):
    viewer = login_as("viewer")
    journey = default_journey(db_engine)
    assert post(viewer, f"/journeys/{journey.id}/stages", {"name": "x"}).status_code == 403
    team_only = login_as("viewer", teams={"growth": "experimenter"})
    response = post(team_only, f"/journeys/{journey.id}/stages", {"name": "x"})
    assert response.status_code == 403 and "experimenter role" in response.get_data(as_text=True)
    editor = login_as("experimenter")
    assert post(editor, "/journeys/999999/stages", {"name": "x"}).status_code == 404
    assert post(editor, "/journeys/stages/999999", {"name": "x"}).status_code == 404
    assert (
        post(editor, "/journeys/stages/99999999999999999999/move", {"direction": "up"}).status_code
        == 404
    )
    assert stage_count(db_engine) == len(DEFAULT_STAGES)


def test_the_service_keeps_positions_dense(session, factory):
    admin = factory.user("admin@journeys.test", "admin")
    journey = create_journey(session, {"name": "Trial"}, actor=admin)
    first = add_stage(session, journey.id, {"name": "signup"}, actor=admin)
    second = add_stage(session, journey.id, {"name": "activate"}, actor=admin)
    move_stage(session, second.id, "up", actor=admin)
    assert (second.position, first.position) == (0, 1)


# ---------------------------------------------------------------- versions and visibility


def test_a_stale_rename_is_409_with_the_input_kept(db_engine, login_as):
    first, second = login_as("experimenter"), login_as("experimenter")
    onboarding = stage_id(db_engine, "onboarding")
    assert (
        post(
            first, f"/journeys/stages/{onboarding}", {"name": "welcome", "version": "1"}
        ).status_code
        == 303
    )
    response = post(
        second, f"/journeys/stages/{onboarding}", {"name": "first week", "version": "1"}
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f"The stage &#39;welcome&#39; was changed by {first.user.email}" in body
    assert 'value="first week"' in body and "it is now version 2" in body
    assert "onboarding" not in stages(db_engine) and "welcome" in stages(db_engine)
    journey = default_journey(db_engine)
    renamed = post(first, f"/journeys/{journey.id}", {"name": "Lifecycle", "version": "1"})
    assert renamed.status_code == 303
    stale = post(second, f"/journeys/{journey.id}", {"name": "Customer", "version": "1"})
    assert stale.status_code == 409 and default_journey(db_engine).name == "Lifecycle"


@pytest.mark.parametrize(
    "suffix, data",
    [
        ("", {"name": "welcome"}),
        ("/move", {"direction": "down"}),
        ("/delete", {}),
    ],
)
def test_a_stage_form_without_a_version_is_422(db_engine, editor, suffix, data):
    adoption = stage_id(db_engine, "adoption")
    response = post(editor, f"/journeys/stages/{adoption}{suffix}", {**data, "version": ""})
    assert response.status_code == 422 and "made on" in response.get_data(as_text=True)
    assert stages(db_engine) == list(DEFAULT_STAGES)


def test_stage_counts_only_count_experiments_the_reader_may_see(db_engine, login_as, factory):
    adoption = stage_id(db_engine, "adoption")
    factory.experiment("growth-a", team="growth", stage_id=adoption)
    factory.experiment("growth-b", team="growth", stage_id=adoption)
    factory.experiment("shared", stage_id=adoption)
    for key in ("success-a", "success-b"):
        factory.experiment(key, team="success", stage_id=adoption)
    grower = login_as("viewer", teams={"growth": "viewer"})
    body = grower.get("/journeys/").get_data(as_text=True)
    link = f'href="/experiments/?stage_id={adoption}">'
    assert link + "3 experiments</a>" in body
    admin = login_as("admin")
    assert link + "5 experiments</a>" in admin.get("/journeys/").get_data(as_text=True)
    outsider = login_as("viewer")
    assert link + "1 experiment</a>" in outsider.get("/journeys/").get_data(as_text=True)
