"""import_accounts: validation, atomic storage, duplicate detection, drafts, the audit event."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from experiments.accounts_csv import ImportValidationError
from experiments.imports import ImportRefused, clean_filename, import_accounts
from experiments.models import (
    AccountRow,
    AnalysisSnapshot,
    AuditEvent,
    Dataset,
)
from experiments.users import create_user
from tests.factories import accounts_csv as sample_csv
from tests.factories import make_experiment

HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"


def counts(session: Session) -> tuple[int, int, int]:
    return tuple(
        session.exec(select(func.count()).select_from(model)).one()
        for model in (Dataset, AccountRow, AnalysisSnapshot)
    )


@pytest.fixture
def actor(session):
    user = create_user(session, "ana@example.com", "correct horse battery", role="analyst")
    session.commit()
    return user


def test_valid_file_becomes_a_dataset_version_with_snapshot_and_audit_event(
    session, actor, tmp_path
):
    experiment = make_experiment(session)
    path = tmp_path / "accounts.csv"
    path.write_bytes(sample_csv())

    report = import_accounts(session, experiment, path, filename="accounts.csv", actor=actor)
    session.commit()

    assert not report.duplicate
    assert report.rows == 600
    dataset = report.dataset
    assert (dataset.version, dataset.filename, dataset.row_count) == (1, "accounts.csv", 600)
    assert dataset.uploaded_by_id == actor.id and dataset.has_segment
    assert len(dataset.sha256) == 64
    assert counts(session) == (1, 600, 1)
    assert report.snapshot.dataset_id == dataset.id
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "dataset.upload")).one()
    assert event.actor_id == actor.id
    assert event.diff["rows"] == [None, 600]
    assert event.diff["experiment"] == [None, "exp"]


def test_identical_file_is_recognised_and_nothing_new_is_stored(session, actor):
    experiment = make_experiment(session)
    data = sample_csv()
    first = import_accounts(session, experiment, data, filename="a.csv", actor=actor)
    session.commit()
    again = import_accounts(session, experiment, data, filename="renamed.csv", actor=actor)
    assert again.duplicate
    assert again.dataset.id == first.dataset.id
    assert counts(session) == (1, 600, 1)


def test_a_different_file_becomes_the_next_version(session, actor):
    experiment = make_experiment(session)
    import_accounts(session, experiment, sample_csv(1), filename="a.csv", actor=actor)
    second = import_accounts(session, experiment, sample_csv(2), filename="b.csv", actor=actor)
    assert second.dataset.version == 2
    assert counts(session) == (2, 1200, 2)


def test_invalid_file_stores_nothing_and_lists_errors(session, actor):
    experiment = make_experiment(session)
    import_accounts(session, experiment, sample_csv(), filename="good.csv", actor=actor)
    session.commit()
    bad = (
        HEADER
        + "a1,control,100,0,0,0\n"
        + "a2,control,-5,0,0,0\n"
        + "a1,treatment,10,0,0,0\n"
        + "a3,mystery,10,0,0,0\n"
    ).encode()
    with pytest.raises(ImportValidationError) as caught:
        import_accounts(session, experiment, bad, filename="bad.csv", actor=actor)
    session.rollback()
    messages = [str(e) for e in caught.value.errors]
    assert "line 3, start_mrr: must be greater than 0" in messages
    assert "line 4, account_id: duplicate of line 2" in messages
    assert any(m.startswith("line 5, variant:") for m in messages)
    assert counts(session) == (1, 600, 1)


def test_more_than_fifty_errors_are_counted(session, actor):
    experiment = make_experiment(session)
    # 120 identical problems are one entry; 120 distinct ones (duplicates of different
    # lines) are listed up to 50 and all counted
    rows = "".join(f"a{i},control,0,0,0,0\n" for i in range(120))
    with pytest.raises(ImportValidationError) as caught:
        import_accounts(
            session, experiment, (HEADER + rows).encode(), filename="bad.csv", actor=actor
        )
    assert [(e.line, e.last_line, e.count) for e in caught.value.errors] == [(2, 121, 120)]
    assert caught.value.total == 120
    rows = "".join(f"a{i},control,1,0,0,0\n" for i in range(120))
    with pytest.raises(ImportValidationError) as caught:
        import_accounts(
            session, experiment, (HEADER + rows * 2).encode(), filename="bad.csv", actor=actor
        )
    assert len(caught.value.errors) == 50
    assert caught.value.total == 120


def test_draft_experiment_refuses_uploads(session, actor):
    experiment = make_experiment(session, status="draft")
    with pytest.raises(ImportRefused, match="draft"):
        import_accounts(session, experiment, sample_csv(), filename="a.csv", actor=actor)
    assert counts(session) == (0, 0, 0)


@pytest.mark.parametrize("status", ["running", "stopped"])  # decided: refused (decisions)
def test_started_experiments_accept_uploads(session, actor, status):
    experiment = make_experiment(session, status=status)
    assert (
        import_accounts(session, experiment, sample_csv(), filename="a.csv", actor=actor).rows
        == 600
    )


def test_file_with_only_the_control_arm_is_analysed_with_a_warning(session, actor):
    experiment = make_experiment(session)
    data = (HEADER + "".join(f"a{i},control,{100 + i},{i % 7},0,0\n" for i in range(40))).encode()
    report = import_accounts(session, experiment, data, filename="control-only.csv", actor=actor)
    result = report.snapshot.result
    assert [arm["accounts"] for arm in result["arms"]] == [40, 0]
    assert any("'treatment' has no accounts" in w for w in result["warnings"])
    assert result["comparisons"][0]["uplift_abs"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("accounts.csv", "accounts.csv"),
        ("C:\\Users\\ana\\Desktop\\accounts.csv", "accounts.csv"),
        ("/home/ana/accounts.csv", "accounts.csv"),
        ("", "upload.csv"),
        ("x" * 300 + ".csv", "x" * 255),
    ],
)
def test_clean_filename_keeps_only_the_name(given, expected):
    assert clean_filename(given) == expected


def test_experiment_without_variants_is_refused_not_crashed(session, actor):
    experiment = make_experiment(session, variants=())
    with pytest.raises(ImportRefused, match="no variants"):
        import_accounts(session, experiment, sample_csv(), filename="a.csv", actor=actor)
