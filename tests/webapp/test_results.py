"""The upload form and the results section, end to end through the Flask test client."""

from __future__ import annotations

import html
import io
import re

import numpy as np
import pytest
from sqlmodel import Session, func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

import stats
from experiments.accounts_csv import read_accounts
from experiments.demo import Behaviour, generate_accounts_csv
from experiments.models import (
    AccountRow,
    AnalysisSnapshot,
    AuditEvent,
    Dataset,
    DriverNode,
    Experiment,
    Team,
    Variant,
)

HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
GOOD_ROWS = "".join(
    f"g{i},{'control' if i % 2 else 'treatment'},{100 + i}.50,{i % 9},{i % 4},0\n"
    for i in range(60)
)


# ------------------------------------------------------------------------ fixtures


def make_experiment(
    engine,
    key: str = "seat-nudge",
    *,
    team: str | None = "growth",
    status: str = "running",
    variants=("control", "treatment"),
) -> Experiment:
    with Session(engine, expire_on_commit=False) as session:
        team_id = None
        if team is not None:
            team_id = session.exec(select(Team.id).where(Team.slug == team)).one()
        root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
        experiment = Experiment(
            key=key, name=f"Experiment {key}", node_id=root.id, team_id=team_id, status=status
        )
        session.add(experiment)
        session.flush()
        for position, variant in enumerate(variants):
            session.add(
                Variant(
                    experiment_id=experiment.id,
                    key=variant,
                    is_control=position == 0,
                    position=position,
                )
            )
        session.commit()
        return experiment


@pytest.fixture
def analyst(login_as, factory):
    factory.team("other")
    return login_as("viewer", teams={"growth": "analyst"})


@pytest.fixture
def experiment(analyst, db_engine):
    return make_experiment(db_engine)


def multipart(fields: dict[str, str], data: bytes | None, filename: str = "accounts.csv") -> dict:
    """Keyword arguments for a multipart POST, encoded in memory.

    (The test client's own encoder spools large bodies to a temporary file that it
    never closes, which ``filterwarnings = error`` turns into a failure.)
    """
    values = MultiDict(fields)
    if data is not None:
        values.add(
            "file", FileStorage(io.BytesIO(data), filename=filename, content_type="text/csv")
        )
    boundary, body = encode_multipart(values)
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def upload(client, key: str, data: bytes, filename: str = "accounts.csv", *, htmx: bool = False):
    headers = {"HX-Request": "true", "X-CSRFToken": client.csrf} if htmx else {}
    fields = {} if htmx else {"csrf_token": client.csrf}
    return client.post(
        f"/experiments/{key}/datasets", headers=headers, **multipart(fields, data, filename)
    )


def counts(engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return tuple(
            session.exec(select(func.count()).select_from(model)).one()
            for model in (Dataset, AccountRow, AnalysisSnapshot)
        )


def active_version(engine, experiment) -> int | None:
    with Session(engine) as session:
        return session.exec(
            select(func.max(Dataset.version)).where(Dataset.experiment_id == experiment.id)
        ).one()


def text_of(response) -> str:
    """The response's HTML with entities decoded and whitespace runs collapsed."""
    return re.sub(r"\s+", " ", html.unescape(response.get_data(as_text=True)))


# The page's display formats, written out here (not the views' own filters):
# money 1,234.56 · rates 104.20% · uplift in signed points +2.1 · relative +2.1% ·
# p-values to three decimals, "< 0.001" below.
def money(value: float) -> str:
    return f"{value:,.2f}"


def pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def points(value: float, digits: int = 1) -> str:
    return f"{value * 100:+.{digits}f}"


def signed_pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:+.{digits}f}%"


def pvalue(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def known_effect_csv(seed: int = 7) -> bytes:
    # True effect: treatment churns 3% of accounts instead of 9% and expands more often.
    return generate_accounts_csv(
        np.random.default_rng(seed),
        {
            "control": (1500, Behaviour(p_churn=0.09)),
            "treatment": (1500, Behaviour(p_churn=0.03, p_expand=0.22)),
        },
        prefix="acct",
    )


def independent_analysis(data: bytes, *, variants=("control", "treatment")):
    """stats.analyze on the file's own arrays: read_accounts + arm_from_arrays, no SQL."""
    table = read_accounts(data, variants=list(variants))
    money_columns = table.money()
    arms = {}
    for variant in variants:
        rows = table.variant == variant
        if rows.any():
            arms[variant] = stats.arm_from_arrays(
                *(money_columns[c][rows] for c in ("start", "expansion", "contraction", "churned"))
            )
    return stats.analyze(
        arms,
        control=variants[0],
        alpha=0.05,
        power=0.8,
        mde=0.02,
        variants=list(variants),
        weights=dict.fromkeys(variants, 1.0),
    )


# ----------------------------------------------------------------- upload → results


def test_upload_then_results_page_shows_the_independent_figures(analyst, experiment, db_engine):
    data = known_effect_csv()
    response = upload(analyst, experiment.key, data)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/experiments/{experiment.key}")

    page = analyst.get(f"/experiments/{experiment.key}/results")
    assert page.status_code == 200
    body = text_of(page)
    expected = independent_analysis(data)
    for arm in expected.arms:
        row = re.search(rf"<th scope=\"row\">{arm.variant}.*?</tr>", body, re.S).group(0)
        for figure in (
            f"{arm.accounts:,}",
            money(arm.start_mrr),
            money(arm.expansion_mrr),
            money(arm.contraction_mrr),
            money(arm.churned_mrr),
            money(arm.end_mrr),
            pct(arm.nrr, 2),
            pct(arm.grr, 2),
        ):
            assert figure in row, (arm.variant, figure)
    (c,) = expected.comparisons
    comparison_row = re.search(
        r'<table class="table comparisons-table">.*?</table>', body, re.S
    ).group(0)
    for figure in (
        points(c.uplift_abs, 2),
        f"[{points(c.ci_abs[0])}, {points(c.ci_abs[1])}]",
        signed_pct(c.uplift_rel, 2),
        f"[{signed_pct(c.ci_rel[0])}, {signed_pct(c.ci_rel[1])}]",
        pvalue(c.p_value),
        pvalue(c.p_value_adjusted),
        pvalue(c.p_value_mwu),
        pct(c.power_achieved, 0),
    ):
        assert figure in comparison_row, figure
    assert c.verdict == "win"
    assert "Win" in body
    assert stats.summary_sentence(c, 0.05) in body
    assert "<svg" in body and "<title" in body and "<desc" in body
    assert "Plan in force" in body

    with Session(db_engine) as session:
        snapshot = session.exec(select(AnalysisSnapshot)).one()
        assert snapshot.verdict == "win"
        assert snapshot.result["comparisons"][0]["uplift_abs"] == pytest.approx(
            c.uplift_abs, rel=1e-9
        )
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "dataset.upload")).one()
        assert event.actor_id == analyst.user.id


def test_htmx_upload_swaps_the_component_and_triggers_a_results_refresh(analyst, experiment):
    response = upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), htmx=True)
    assert response.status_code == 200
    body = text_of(response)
    assert "<html" not in body
    assert 'class="upload upload-done"' in body
    assert 'hx-target="this"' in body and 'hx-swap="outerHTML"' in body
    assert "dataset version 1 (60 accounts)" in body
    assert response.headers["HX-Trigger"] == "results-updated"
    assert "HX-Request" in response.headers["Vary"]


def test_htmx_upload_without_the_csrf_header_is_refused(analyst, experiment, db_engine):
    response = analyst.post(
        f"/experiments/{experiment.key}/datasets",
        headers={"HX-Request": "true"},
        **multipart({}, (HEADER + GOOD_ROWS).encode()),
    )
    assert response.status_code == 400
    assert counts(db_engine) == (0, 0, 0)


def test_reuploading_the_identical_file_is_recognised(analyst, experiment, db_engine):
    data = (HEADER + GOOD_ROWS).encode()
    assert upload(analyst, experiment.key, data).status_code == 303
    again = upload(analyst, experiment.key, data, filename="again.csv", htmx=True)
    assert again.status_code == 200
    assert "identical to the active dataset" in text_of(again)
    assert "HX-Trigger" not in again.headers
    assert counts(db_engine) == (1, 60, 1)
    followed = upload(analyst, experiment.key, data)
    assert followed.status_code == 303
    assert "identical to the active dataset" in text_of(analyst.get(followed.headers["Location"]))


def test_new_version_and_the_version_switcher(analyst, experiment):
    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), filename="first.csv")
    upload(
        analyst,
        experiment.key,
        (HEADER + GOOD_ROWS + "extra,control,10,0,0,0\n").encode(),
        filename="second.csv",
    )
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "version 2</strong> (active)" in body and "second.csv" in body and "first.csv" in body
    older = analyst.get(
        f"/experiments/{experiment.key}/results?dataset=1", headers={"HX-Request": "true"}
    )
    assert older.status_code == 200
    older_body = text_of(older)
    assert "<html" not in older_body and "older dataset version" in older_body
    assert analyst.get(f"/experiments/{experiment.key}/results?dataset=7").status_code == 404


# --------------------------------------------------------------------- bad input


BAD_FILES = {
    "missing column": ("account_id,variant\na,control\n", "missing required column"),
    "negative money": (
        HEADER + "a,control,-10,0,0,0\n",
        "line 2, start_mrr: must be greater than 0",
    ),
    "non-numeric money": (HEADER + "a,control,12k,0,0,0\n", "is not a plain number"),
    "losses above start": (HEADER + "a,control,100,0,60,50\n", "contraction_mrr + churned_mrr"),
    "start zero": (HEADER + "a,control,0,0,0,0\n", "start_mrr: must be greater than 0"),
    "duplicate account": (
        HEADER + "a,control,10,0,0,0\nb,treatment,10,0,0,0\na,treatment,10,0,0,0\n",
        "line 4, account_id: duplicate of line 2",
    ),
    "empty file": ("", "the file is empty"),
    "header only": (HEADER, "the file has a header but no data rows"),
    "unknown variant": (
        HEADER + "a,control,10,0,0,0\nb,mystery,10,0,0,0\n",
        "is not one of the experiment's variants",
    ),
    "not utf-8": (
        b"account_id,variant,start_mrr\na,control,10\nb,contr\xff,10\n",
        "is not valid UTF-8",
    ),
}


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_rejected_with_their_errors_and_nothing_changes(
    analyst, experiment, db_engine, case, htmx
):
    assert (
        upload(
            analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), filename="good.csv"
        ).status_code
        == 303
    )
    before = counts(db_engine)
    content, message = BAD_FILES[case]
    data = content if isinstance(content, bytes) else content.encode()
    response = upload(analyst, experiment.key, data, filename="bad.csv", htmx=htmx)
    assert response.status_code == 422
    body = text_of(response)
    assert message in body
    assert "The file was not stored." in body and "still the active one" in body
    assert ("<html" in body) is not htmx
    assert counts(db_engine) == before
    assert active_version(db_engine, experiment) == 1


def test_error_list_groups_identical_errors_and_shows_the_first_twenty(analyst, experiment):
    data = (HEADER + "".join(f"a{i},control,0,0,0,0\n" for i in range(75))).encode()
    body = text_of(upload(analyst, experiment.key, data))
    assert body.count("must be greater than 0") == 1
    assert "lines 2–76, start_mrr: must be greater than 0" in body
    assert "75 problems" in body and "more problem" not in body
    # 30 distinct problems (duplicates of different lines): 20 listed, 10 counted
    rows = "".join(f"b{i},control,5,0,0,0\n" for i in range(30))
    body = text_of(upload(analyst, experiment.key, (HEADER + rows * 2).encode()))
    assert body.count("account_id: duplicate of line") == 20
    assert "line 51, account_id: duplicate of line 21" in body
    assert "… and 10 more problems not listed here." in body


def test_a_ten_megabyte_line_is_an_error_not_a_crash(analyst, experiment, db_engine):
    assert upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode()).status_code == 303
    data = (HEADER + "a," + "x" * (10 * 1024 * 1024) + ",10,0,0,0\n").encode()
    response = upload(analyst, experiment.key, data)
    assert response.status_code == 422
    body = text_of(response)
    assert "line 2" in body and "x" * 100 not in body  # reported, not echoed
    assert counts(db_engine) == (1, 60, 1)
    assert active_version(db_engine, experiment) == 1


def test_a_file_above_the_size_limit_is_a_413_page(app, analyst, experiment, db_engine):
    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode())
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    response = upload(analyst, experiment.key, (HEADER + GOOD_ROWS * 100).encode())
    assert response.status_code == 413
    assert "larger than the upload limit" in text_of(response)
    assert counts(db_engine) == (1, 60, 1)


def test_missing_file_field_is_a_422_with_a_message(analyst, experiment):
    response = analyst.post(
        f"/experiments/{experiment.key}/datasets", **multipart({"csrf_token": analyst.csrf}, None)
    )
    assert response.status_code == 422
    assert "Choose a CSV file" in text_of(response)


def test_file_with_only_the_control_arm_is_analysed_with_a_warning(analyst, experiment):
    data = (HEADER + "".join(f"c{i},control,{100 + i},{i % 5},0,0\n" for i in range(30))).encode()
    assert upload(analyst, experiment.key, data).status_code == 303
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "variant 'treatment' has no accounts" in body
    assert "Warnings" in body
    assert "—" in body  # uplift and its CI cannot be computed


def test_degenerate_results_show_dashes_and_warnings(analyst, experiment):
    data = (HEADER + "a,control,100,0,0,0\nb,treatment,100,10,0,0\n").encode()
    assert upload(analyst, experiment.key, data).status_code == 303
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "has a single account" in body
    comparison_row = re.search(
        r'<table class="table comparisons-table">.*?</table>', body, re.S
    ).group(0)
    assert comparison_row.count("—") >= 4


def test_srm_banner_explains_what_to_check(analyst, experiment):
    data = generate_accounts_csv(
        np.random.default_rng(3),
        {"control": (900, Behaviour()), "treatment": (500, Behaviour())},
        prefix="s",
    )
    upload(analyst, experiment.key, data)
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "Sample ratio mismatch: these results are not trustworthy" in body
    for what in ("Assignment", "Logging", "Bots", "Filters"):
        assert what in body


# ------------------------------------------------------------ states and access


def test_running_experiment_without_data_says_so_and_shows_required_n(analyst, experiment):
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "No account data yet." in body
    assert "This experiment is running" in body
    required = stats.required_sample_size(0.02, 0.25, alpha=0.05, power=0.8)
    assert f'<strong class="required-n">{required:,}</strong>' in body
    sigma = "\N{GREEK SMALL LETTER SIGMA}"
    assert f"{sigma} = 0.25 for the linearised NRR: assumed — no measurement yet" in body
    assert 'class="upload upload-idle"' in body


def test_draft_refuses_upload_with_a_clear_message(analyst, db_engine):
    draft = make_experiment(db_engine, "draft-one", status="draft")
    page = text_of(analyst.get(f"/experiments/{draft.key}/results"))
    assert "once the experiment is running" in page
    assert 'class="upload' not in page
    response = upload(analyst, draft.key, (HEADER + GOOD_ROWS).encode())
    assert response.status_code == 409
    assert "still a draft" in text_of(response)
    assert counts(db_engine) == (0, 0, 0)


def test_viewer_in_the_team_sees_results_but_cannot_upload(login_as, experiment, db_engine):
    viewer = login_as("viewer", teams={"growth": "viewer"})
    page = text_of(viewer.get(f"/experiments/{experiment.key}/results"))
    assert "No account data yet." in page and 'class="upload' not in page
    assert upload(viewer, experiment.key, (HEADER + GOOD_ROWS).encode()).status_code == 403
    assert counts(db_engine) == (0, 0, 0)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/experiments/{key}/results"),
        ("post", "/experiments/{key}/datasets"),
        ("post", "/experiments/{key}/recompute"),
    ],
)
def test_another_teams_experiment_is_not_found(login_as, db_engine, analyst, method, path):
    theirs = make_experiment(db_engine, "their-test", team="other")
    outsider = login_as("viewer", teams={"growth": "analyst"})
    url = path.format(key=theirs.key)
    if method == "get":
        response = outsider.get(url)
    else:
        response = outsider.post(
            url, **multipart({"csrf_token": outsider.csrf}, (HEADER + GOOD_ROWS).encode())
        )
    assert response.status_code == 404
    assert counts(db_engine) == (0, 0, 0)


def test_unknown_experiment_is_not_found(analyst):
    assert analyst.get("/experiments/nope/results").status_code == 404


def test_results_need_sign_in(client, experiment):
    assert client.get(f"/experiments/{experiment.key}/results").status_code == 302


def test_recompute_runs_the_analysis_again(analyst, experiment, db_engine):
    assert (
        analyst.post(
            f"/experiments/{experiment.key}/recompute", data={"csrf_token": analyst.csrf}
        ).status_code
        == 422
    )  # no data yet
    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode())
    response = analyst.post(
        f"/experiments/{experiment.key}/recompute", data={"csrf_token": analyst.csrf}
    )
    assert response.status_code == 303
    htmx = analyst.post(
        f"/experiments/{experiment.key}/recompute",
        headers={"HX-Request": "true", "X-CSRFToken": analyst.csrf},
    )
    assert htmx.status_code == 200 and 'class="results-body"' in htmx.get_data(as_text=True)
    assert counts(db_engine)[2] == 3


# ------------------------------------------------------------ segments and escaping


def test_segment_switch_returns_the_partial_with_the_exploratory_note(analyst, experiment):
    data = known_effect_csv(9)
    upload(analyst, experiment.key, data)
    full = analyst.get(f"/experiments/{experiment.key}/results?segment=SMB&dataset=1")
    assert full.status_code == 200 and "<html" in full.get_data(as_text=True)
    partial = analyst.get(
        f"/experiments/{experiment.key}/results?segment=SMB&dataset=1",
        headers={"HX-Request": "true"},
    )
    body = text_of(partial)
    assert "<html" not in body
    assert "Segment <strong>SMB</strong> only" in body and "exploratory" in body
    assert "HX-Request" in partial.headers["Vary"]
    table = read_accounts(data, variants=["control", "treatment"])
    smb = int((table.segment == "SMB").sum())
    arm_counts = [
        int(x.replace(",", ""))
        for x in re.findall(
            r'<th scope="row">(?:control|treatment).*?<td class="num">([\d,]+)</td>', body, re.S
        )[:2]
    ]
    assert sum(arm_counts) == smb
    assert analyst.get(f"/experiments/{experiment.key}/results?segment=Nope").status_code == 404


def test_filenames_and_segment_names_are_escaped(analyst, experiment):
    evil = "<script>alert(1)</script>"
    evil_name = "<img src=x onerror=alert(1)>"
    rows = "".join(
        f"x{i},{'control' if i % 2 else 'treatment'},{100 + i},{i % 3},0,0,{evil}\n"
        for i in range(20)
    )
    data = (
        "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment\n" + rows
    ).encode()
    response = upload(analyst, experiment.key, data, filename=f"{evil_name}.csv", htmx=True)
    raw = response.get_data(as_text=True)
    assert "<img" not in raw and "&lt;img src=x onerror=" in raw
    page = analyst.get(f"/experiments/{experiment.key}/results").get_data(as_text=True)
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the segment name
    bad = upload(analyst, experiment.key, (HEADER + f"a,{evil},10,0,0,0\n").encode(), filename=evil)
    assert bad.status_code == 422 and "<script>alert" not in bad.get_data(as_text=True)


def test_forest_plot_is_accessible_and_uses_no_inline_styles(analyst, experiment):
    upload(analyst, experiment.key, known_effect_csv())
    page = analyst.get(f"/experiments/{experiment.key}/results").get_data(as_text=True)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert "MDE" in svg and ">treatment<" in svg
    assert "style=" not in page
    assert "<progress" in page


def test_experiment_page_includes_the_results_section(analyst, experiment):
    upload(analyst, experiment.key, known_effect_csv())
    page = text_of(analyst.get(f"/experiments/{experiment.key}"))
    assert 'id="results"' in page
    assert 'class="upload upload-idle"' in page
    assert "Plan in force" in page and "<svg" in page


def test_a_dataset_without_snapshot_offers_analysis(analyst, experiment, db_engine):
    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode())
    with Session(db_engine) as session:
        for snapshot in session.exec(select(AnalysisSnapshot)).all():
            session.delete(snapshot)
        session.commit()
    body = text_of(analyst.get(f"/experiments/{experiment.key}/results"))
    assert "has not been analysed yet" in body and "Analyse it now" in body
    assert (
        analyst.post(
            f"/experiments/{experiment.key}/recompute", data={"csrf_token": analyst.csrf}
        ).status_code
        == 303
    )
    assert "Plan in force" in text_of(analyst.get(f"/experiments/{experiment.key}/results"))


def test_the_stored_analysis_equals_nrrlab_analyze_on_the_same_file(
    analyst, experiment, db_engine, tmp_path
):
    """Issue #6: what the page shows (the snapshot, from SQL sums) is what the CLI prints."""
    import json as json_module

    from click.testing import CliRunner
    from sqlmodel import Session, select

    from experiments.cli import main
    from experiments.models import AnalysisSnapshot

    data = known_effect_csv()
    assert upload(analyst, experiment.key, data).status_code == 303
    path = tmp_path / "accounts.csv"
    path.write_bytes(data)
    cli = CliRunner().invoke(main, ["analyze", str(path), "--weights", "control=1,treatment=1"])
    assert cli.exit_code == 0, cli.stderr
    printed = json_module.loads(cli.stdout)
    with Session(db_engine) as session:
        stored = session.exec(select(AnalysisSnapshot.result)).one()

    def figures(report):
        numbers = {}
        for arm in report["arms"]:
            for name in ("accounts", "start_mrr", "end_mrr", "nrr", "grr"):
                numbers[f"{arm['variant']}.{name}"] = arm[name]
        for c in report["comparisons"]:
            for name in (
                "uplift_abs",
                "uplift_rel",
                "p_value",
                "p_value_adjusted",
                "p_value_mwu",
                "sigma_lin",
                "required_n_per_arm",
                "power_achieved",
            ):
                numbers[f"{c['variant']}.{name}"] = c[name]
            numbers[f"{c['variant']}.ci_abs"] = tuple(c["ci_abs"])
            numbers[f"{c['variant']}.verdict"] = c["verdict"]
        numbers["srm.p_value"] = report["srm"]["p_value"]
        return numbers

    cli_figures, page_figures = figures(printed), figures(stored)
    assert cli_figures.keys() == page_figures.keys()
    for name, value in cli_figures.items():
        if isinstance(value, float | tuple):
            assert page_figures[name] == pytest.approx(value, rel=1e-9), name
        else:
            assert page_figures[name] == value, name
