"""The revenue ledger service: import, versions replacing periods, stored figures, the
staged web path, two uploads at once, and the CLI.

Expected figures are computed independently with pandas from the CSV text (DESIGN §3b:
period NRR = Σend/Σstart over active rows, GRR = Σ(start − contraction − churned)/Σstart,
logo churn = share of active rows with churned = start), never with the code under test.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import func
from sqlmodel import Session, select

from experiments import ledger as service
from experiments import ledger_import
from experiments.cli import main
from experiments.ledger import (
    DuplicateLedger,
    current_figures,
    current_ledger,
    import_ledger,
    latest_start_mrr,
    ledger_plain_sigma,
    versions,
)
from experiments.ledger_csv import ImportValidationError
from experiments.ledger_import import store_ledger_upload
from experiments.ledger_models import LedgerFigures, LedgerPeriod, LedgerRow, LedgerVersion
from experiments.models import AuditEvent
from experiments.users import create_user
from tests.ledger_gen import write_csv

pytestmark = pytest.mark.db
DIMS = "plan,region,size"


@pytest.fixture(scope="module")
def ledger_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("ledger") / "ledger.csv"
    write_csv(path, n_accounts=300, months=14, seed=5)
    return path


@pytest.fixture
def actor(session):
    user = create_user(session, "revops@example.com", "correct horse battery", role="analyst")
    session.commit()
    return user


def frame(data: bytes | str) -> pd.DataFrame:
    import io

    text = data if isinstance(data, str) else data.decode()
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for column in ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr"):
        # exact cents through Decimal, then float currency units
        df[column] = [float(Decimal(v or "0")) for v in df[column]]
    return df


def monthly_by_hand(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    active = df[df.start_mrr > 0].copy()
    active["end"] = (active.start_mrr + active.expansion_mrr - active.contraction_mrr
                     - active.churned_mrr)
    active["kept"] = active.start_mrr - active.contraction_mrr - active.churned_mrr
    active["lost"] = (active.churned_mrr == active.start_mrr).astype(float)
    out = {}
    for period, group in active.groupby("period"):
        out[period] = {
            "accounts": len(group),
            "start_mrr": group.start_mrr.sum(),
            "nrr": group.end.sum() / group.start_mrr.sum(),
            "grr": group.kept.sum() / group.start_mrr.sum(),
            "logo_churn": group.lost.mean(),
        }
    return out


def assert_monthly_matches(figures: dict, expected: dict[str, dict[str, float]]) -> None:
    rows = {row["period"]: row for row in figures["monthly"]}
    assert set(expected) <= set(rows)
    for period, want in expected.items():
        got = rows[period]
        assert got["accounts"] == want["accounts"], period
        for key in ("start_mrr", "nrr", "grr", "logo_churn"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), (period, key)


def counts(session: Session) -> tuple[int, int, int, int]:
    return tuple(
        session.exec(select(func.count()).select_from(model)).one()
        for model in (LedgerVersion, LedgerRow, LedgerPeriod, LedgerFigures)
    )


# ------------------------------------------------------------------ import


def test_an_upload_becomes_version_1_with_exact_rows_figures_and_an_audit_event(
    session, actor, ledger_csv
):
    data = ledger_csv.read_bytes()
    df = frame(data)
    version = import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor,
                            filename="ledger.csv")
    session.commit()

    assert (version.version, version.status, version.row_count) == (1, "ready", len(df))
    assert version.periods == sorted(df.period.unique())
    assert version.dimensions == ["plan", "region", "size"]
    assert version.account_count == df.account_id.nunique()
    # money exact: the stored cents add up to the file's decimal sum
    stored = session.exec(select(func.sum(LedgerRow.start_cents))).one()
    assert stored == int(sum(Decimal(v) for v in frame_raw(data, "start_mrr")) * 100)
    assert counts(session) == (1, len(df), len(version.periods), 1)

    figures = current_figures(session)
    assert_monthly_matches(figures, monthly_by_hand(df))
    last = version.periods[-1]
    active_last = df[(df.period == last) & (df.start_mrr > 0)]
    assert latest_start_mrr(session) == pytest.approx(active_last.start_mrr.sum(), rel=1e-12)
    pro = active_last[active_last.plan == "pro"]
    assert latest_start_mrr(session, dimension="plan", value="pro") == pytest.approx(
        pro.start_mrr.sum(), rel=1e-12)
    assert latest_start_mrr(session, dimension="plan", value="nope") is None
    # σ of account-level NRR (end/start) in the last period, ddof=1, by pandas
    ratio = (active_last.start_mrr + active_last.expansion_mrr - active_last.contraction_mrr
             - active_last.churned_mrr) / active_last.start_mrr
    assert ledger_plain_sigma(session) == pytest.approx(ratio.std(ddof=1), rel=1e-6)

    event = session.exec(select(AuditEvent).where(AuditEvent.action == "ledger.upload")).one()
    assert event.actor_id == actor.id
    assert event.diff["version"] == [None, 1]
    assert event.diff["periods"] == [None, version.periods]
    assert event.diff["rows"] == [None, len(df)]
    assert event.diff["replaced"] == [None, {}]
    (info,) = versions(session)
    assert (info.version, info.status, info.uploaded_by, info.rows) == (
        1, "current", actor.name or actor.email, len(df))
    # The rows read back from the database give the same document as the rows the upload
    # held in memory (cohorts by customer_since, days to value, every dimension).
    read_back = service._figures_document(current_ledger(session))
    assert read_back == figures
    assert figures["cohorts"] and figures["velocity_cohorts"]


def frame_raw(data: bytes, column: str) -> list[str]:
    import csv
    import io

    return [row[column] or "0" for row in csv.DictReader(io.StringIO(data.decode()))]


def test_uploading_periods_again_replaces_just_those_periods_as_a_new_version(
    session, actor, ledger_csv
):
    data = ledger_csv.read_bytes()
    original = frame(data)
    import_ledger(session, data, dimensions=DIMS, actor=actor, filename="ledger.csv")
    session.commit()
    before = {row["period"]: row for row in current_figures(session)["monthly"]}

    # The last two periods again: every expansion dropped, and a new "segment" dimension.
    periods = sorted(original.period.unique())[-2:]
    lines = data.decode().splitlines()
    header = lines[0].split(",")
    at = {name: i for i, name in enumerate(header)}
    out = [lines[0] + ",segment"]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[at["period"]] in periods:
            cells[at["expansion_mrr"]] = "0.00"
            out.append(",".join(cells) + ",direct")
    replacement = ("\n".join(out) + "\n").encode()
    version = import_ledger(session, replacement, dimensions=DIMS + ",segment", actor=actor,
                            filename="fix.csv")
    session.commit()

    assert version.version == 2 and version.periods == periods
    expected = pd.concat([original[~original.period.isin(periods)], frame(replacement)])
    figures = current_figures(session)
    assert_monthly_matches(figures, monthly_by_hand(expected))
    for row in figures["monthly"]:
        if row["period"] in periods:
            assert row["expansion_mrr"] == 0
        else:
            assert row == before[row["period"]]  # untouched periods: the same figures
    # rows of version 1 had no segment: they count as (blank)
    segment = figures["dimensions"]["segment"]
    assert sorted(segment["values"]) == ["(blank)", "direct"]

    infos = versions(session)
    assert [(i.version, i.status) for i in infos] == [(2, "current"), (1, "partly current")]
    assert infos[1].current_periods == tuple(sorted(set(original.period) - set(periods)))
    assert counts(session)[1] == len(original) + len(frame(replacement))  # v1 kept whole
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "ledger.upload")
                         .order_by(AuditEvent.id.desc())).first()
    assert event.diff["replaced"] == [None, dict.fromkeys(periods, 1)]

    # Read back entirely from the database, the current ledger is the expected rows.
    current = current_ledger(session)
    assert len(current) == len(expected)
    assert current.start_cents.sum() == round(expected.start_mrr.sum() * 100)
    assert current.expansion_cents.sum() == round(expected.expansion_mrr.sum() * 100)
    assert sorted(np.unique(current.dimensions["segment"]).tolist()) == ["(blank)", "direct"]


def test_a_bad_file_stores_nothing_and_leaves_the_current_ledger_as_it_was(
    session, actor, ledger_csv
):
    import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor, filename="ledger.csv")
    session.commit()
    before_counts, before_figures = counts(session), current_figures(session)
    bad = ledger_csv.read_bytes() + b"x-1,2025-99,10,0,0,0,,,basic,na,smb\n"
    last_line = bad.decode().count("\n")
    with pytest.raises(ImportValidationError) as caught:
        import_ledger(session, bad, dimensions=DIMS, actor=actor, filename="bad.csv")
    session.rollback()
    assert [str(e) for e in caught.value.errors] == [
        f'line {last_line:,}, period: "2025-99" is not a month written YYYY-MM (e.g. 2025-01)'
    ]
    assert counts(session) == before_counts
    assert current_figures(session) == before_figures


def test_the_same_file_again_is_recognised_and_nothing_is_stored(session, actor, ledger_csv):
    import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor, filename="ledger.csv")
    session.commit()
    with pytest.raises(DuplicateLedger, match="identical to ledger version 1"):
        import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor, filename="again.csv")
    session.rollback()
    assert counts(session)[0] == 1


def test_no_ledger_yet(session):
    assert current_figures(session) is None
    assert latest_start_mrr(session) is None and ledger_plain_sigma(session) is None
    assert versions(session) == []


# ------------------------------------------------------------------ the staged web path


def test_the_staged_upload_commits_whole_versions_and_cleans_up_after_a_failure(
    db_engine, actor, ledger_csv, monkeypatch
):
    data = ledger_csv.read_bytes()
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 1_000)  # several chunk transactions
    monkeypatch.setattr(ledger_import, "SQLITE_YIELD_SECONDS", 0)
    version = store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=actor.id,
                                  filename="ledger.csv")
    assert version.version == 1

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger_import, "activate_version", broken)
    changed = data.replace(b",basic,", b",pro,", 1)
    with pytest.raises(RuntimeError):
        store_ledger_upload(db_engine, changed, dimensions=DIMS, actor_id=actor.id,
                            filename="changed.csv")
    with Session(db_engine) as session:
        assert counts(session) == (1, version.row_count, len(version.periods), 1)
        assert session.exec(select(LedgerVersion.status)).all() == ["ready"]


def test_two_uploads_at_once_each_finish_whole_and_the_later_one_wins(
    db_engine, actor, ledger_csv
):
    """Two threads upload overlapping periods at the same moment: both become versions,
    every period's pointer names one whole version, and the stored figures of the last
    one equal the figures of the ledger as it is now."""
    data = ledger_csv.read_bytes()
    lines = data.decode().splitlines()
    second = "\n".join([lines[0], *(line.replace(",basic,", ",pro,") for line in lines[1:])])
    files = [data, (second + "\n").encode()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def upload(content: bytes) -> None:
        try:
            barrier.wait()
            store_ledger_upload(db_engine, content, dimensions=DIMS, actor_id=actor.id,
                                filename="ledger.csv")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(content,)) for content in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Session(db_engine) as session:
        numbered = session.exec(select(LedgerVersion.id, LedgerVersion.version)
                                .order_by(LedgerVersion.version)).all()
        assert [n for _, n in numbered] == [1, 2]
        owners = set(session.exec(select(LedgerPeriod.version_id)).all())
        assert owners == {numbered[-1][0]}  # the later version holds every period
        stored = current_figures(session)
        recomputed = service._figures_document(current_ledger(session))
        assert stored["monthly"] == recomputed["monthly"]


# ------------------------------------------------------------------ CLI


def test_cli_imports_lists_and_reports_errors_with_line_numbers(
    db_engine, database_url, ledger_csv, tmp_path, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(main, ["ledger", "import", str(ledger_csv), "--dimensions", DIMS])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ledger version 1: ")

    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,period,start_mrr,region\na,2025-01,5,na\na,2025-01,6,na\n")
    result = runner.invoke(main, ["ledger", "import", str(bad)])
    assert result.exit_code == 2
    assert 'line 1: unknown column "region"' in result.stderr
    result = runner.invoke(main, ["ledger", "import", str(bad), "--dimensions", "region"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "line 3, period: duplicate of line 2 (same account_id and period)"
    )
    assert "bad.csv was not stored (1 problem)" in result.stderr

    result = runner.invoke(main, ["ledger", "versions"])
    assert result.exit_code == 0
    assert result.output.splitlines()[1].startswith("1\t")
    assert result.output.splitlines()[1].endswith("\tall")


def test_rows_are_written_for_a_version_whose_attributes_expired_at_commit(
    db_engine, ledger_csv
):
    """Reading ``version.id`` inside PostgreSQL's COPY would load it on the connection that
    is busy copying, which never returns: the id is read before the copy starts."""
    from experiments.ledger import insert_rows, reserve_version
    from experiments.ledger_csv import read_ledger

    table = read_ledger(ledger_csv.read_bytes(), dimensions=DIMS)
    done = threading.Event()

    def write() -> None:
        with Session(db_engine) as session:  # expire_on_commit=True, the default
            version = reserve_version(session, table, filename="x.csv", actor=None)
            session.commit()
            insert_rows(session, version, table)
            session.commit()
        done.set()

    worker = threading.Thread(target=write, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done.is_set(), "insert_rows hung"
    with Session(db_engine) as session:
        assert counts(session)[1] == len(table)


def test_figures_that_cannot_be_computed_are_stored_as_the_reason(
    session, actor, ledger_csv, monkeypatch
):
    import stats.ledger

    def refuse(arrays):
        raise ValueError("an (account, period) pair appears twice")

    monkeypatch.setattr(stats.ledger, "ledger_figures", refuse)
    import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor, filename="ledger.csv")
    session.commit()
    assert current_figures(session) == {
        "error": "the figures could not be computed: an (account, period) pair appears twice"
    }
    assert latest_start_mrr(session) is None and ledger_plain_sigma(session) is None
    assert versions(session)[0].status == "current"  # the rows are stored and current


def test_a_mistyped_year_that_would_stretch_the_ledger_is_refused(session, actor, ledger_csv):
    import_ledger(session, ledger_csv, dimensions=DIMS, actor=actor, filename="ledger.csv")
    session.commit()
    first = current_figures(session)["periods"][0]
    typo = b"account_id,period,start_mrr\nz,2205-01,10\n"
    with pytest.raises(ImportValidationError) as caught:
        import_ledger(session, typo, actor=actor, filename="typo.csv")
    session.rollback()
    assert [str(e) for e in caught.value.errors] == [
        f"line 1, period: the ledger would run from {first} to 2205-01 (2,161 months, with the"
        " periods already stored); at most 360 months — is a year mistyped?"
    ]
    assert counts(session)[0] == 1


def test_the_stored_file_name_is_the_base_name_without_control_characters(session, actor):
    data = b"account_id,period,start_mrr\na,2025-01,10\n"
    version = import_ledger(session, data, actor=actor, filename="C:\\exports\\led\x1bger.csv")
    assert version.filename == "ledger.csv"


def test_each_version_knows_the_row_id_range_of_its_rows(session, actor, ledger_csv):
    data = ledger_csv.read_bytes()
    first = import_ledger(session, data, dimensions=DIMS, actor=actor, filename="a.csv")
    second = import_ledger(session, data.replace(b",basic,", b",pro,"), dimensions=DIMS,
                           actor=actor, filename="b.csv")
    session.commit()
    for version in (first, second):
        low, high = session.exec(select(func.min(LedgerRow.id), func.max(LedgerRow.id))
                                 .where(LedgerRow.version_id == version.id)).one()
        assert (version.first_row_id, version.last_row_id) == (low, high)
    assert first.last_row_id < second.first_row_id
