"""The upload's reader (experiments/accounts_csv/duck.py, read_upload and read_table).

pyarrow's fast reader first; for a file it declines, DuckDB: a file DuckDB is sure of
becomes the same table ``read_accounts`` builds (rows, hash), a file whose broken rows
DuckDB can point at gets the exact reader's errors for those lines, word for word;
anything else goes to the exact reader. The tests compare with ``read_accounts`` on
generated files (DuckDB's table on its own too), bad files of every contract rule,
random bad cells and the shared bad sample, and run the upload job both ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

import numpy as np
import pytest
from sqlmodel import Session, select

import experiments.accounts_csv.duck as duck
import experiments.accounts_csv.fast as fast
import experiments.imports as imports
from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.accounts_csv.contract import ArrowText
from experiments.imports import run_upload_job
from experiments.models import AccountRow, Dataset, UploadJob
from tests.experiments.test_analyze_duckdb import BAD, HEADER, SHAPES, _accounts, _write
from tests.experiments.test_upload_jobs import job_of, make_experiment, spool
from tests.helpers import SAMPLES

KEYS = ["control", "treatment"]


def _arms(shape: dict) -> list[str]:
    return list(shape.get("arms", ("control", "treatment")))


def _same_table(new, old) -> None:
    """Field by field: equal values, dtypes and missing columns; NaN/NaT in the same places."""
    for field in dataclasses.fields(old):
        a, b = (_objects(getattr(table, field.name)) for table in (new, old))
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray), field.name
            assert a.dtype == b.dtype, field.name
            assert not a.flags.writeable, field.name
            assert np.array_equal(a, b, equal_nan=b.dtype.kind in "fM"), field.name
            if b.dtype == object:
                assert [type(value) for value in a.tolist()] == [type(v) for v in b.tolist()]
        else:
            assert a == b, field.name


def _objects(column):
    """An ArrowText (the fast reader's ids) as the read-only object array it stands for."""
    if not isinstance(column, ArrowText):
        return column
    values = np.asarray(column)
    values.flags.writeable = False
    return values


def _errors(call):
    with pytest.raises(ImportValidationError) as raised:
        call()
    return raised.value.errors, raised.value.total, str(raised.value)


@pytest.fixture
def duck_answers(monkeypatch):
    """What each read_table call did: a table, None (declined) or the error it raised."""
    answers = []
    real = duck.read_table

    def spy(*args, **kwargs):
        try:
            found = real(*args, **kwargs)
        except ImportValidationError as error:
            answers.append(error)
            raise
        answers.append(found)
        return found

    monkeypatch.setattr(duck, "read_table", spy)
    return answers


def _today(monkeypatch):
    """The upload reads with read_accounts alone, as it did before DuckDB."""
    monkeypatch.setattr(imports, "read_upload", lambda path, keys, most, sha256: read_accounts(
        path, variants=keys, max_errors=most))


def _read_upload(path, keys):
    return imports._read_upload(path, keys, hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_generated_files_make_the_same_table_as_read_accounts(tmp_path, shape):
    path = _write(tmp_path, _accounts(**SHAPES[shape]))
    keys = _arms(SHAPES[shape])
    old = read_accounts(path, variants=keys)
    found = duck.read_table(path, keys, 50)
    assert found is not None, "DuckDB declined a valid file"
    _same_table(dataclasses.replace(found, sha256=old.sha256), old)
    _same_table(_read_upload(path, keys), old)


@pytest.mark.parametrize("layout", ["crlf", "bom", "no-final-newline", "extra-column"])
def test_file_layouts_make_the_same_table(tmp_path, layout):
    text = _accounts(500, segment=True, days=True, observed=True, pre=True, enrolled=True)
    if layout == "bom":
        text = "\ufeff" + text
    if layout == "no-final-newline":
        text = text.removesuffix("\n")
    if layout == "extra-column":
        text = "\n".join(line + (",Notes" if i == 0 else ",1e5 +-")
                         for i, line in enumerate(text.splitlines())) + "\n"
    path = _write(tmp_path, text, newline="\r\n" if layout == "crlf" else "\n")
    old = read_accounts(path, variants=KEYS)
    found = duck.read_table(path, KEYS, 50)
    assert found is not None
    _same_table(dataclasses.replace(found, sha256=old.sha256), old)


def test_a_file_the_fast_reader_declines_is_read_by_duckdb(tmp_path, monkeypatch,
                                                            duck_answers):
    path = _write(tmp_path, _accounts(600, segment=True, days=True, enrolled=True))
    monkeypatch.setattr(fast, "read_fast", lambda *args, **kwargs: None)
    table = _read_upload(path, KEYS)
    assert duck_answers and duck_answers[0] is not None
    _same_table(table, read_accounts(path, variants=KEYS))  # (its exact reader, here)


def test_the_hash_is_the_files(tmp_path):
    path = _write(tmp_path, _accounts(300))
    table = _read_upload(path, KEYS)
    assert table.sha256 == read_accounts(path, variants=KEYS).sha256
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_variant_the_experiment_lacks_keeps_its_error(tmp_path, duck_answers):
    path = _write(tmp_path, _accounts(200, arms=("control", "treatment", "extra")))
    new = _errors(lambda: _read_upload(path, KEYS))
    assert new == _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert "is not one of the experiment's variants (control, treatment)" in new[2]
    assert isinstance(duck_answers[0], ImportValidationError)  # worded from DuckDB's lines


@pytest.mark.parametrize("rule", BAD, ids=list(BAD))
def test_every_contract_rule_keeps_the_exact_readers_errors(tmp_path, rule):
    body, expected = BAD[rule]
    path = tmp_path / "bad.csv"
    path.write_bytes(body.encode("utf-8") if rule != "not-utf8" else body.encode("latin-1"))
    new = _errors(lambda: _read_upload(path, KEYS))
    assert new == _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert expected in new[2]


# A broken row's line is worded by DuckDB's path only when no id may repeat another.
POINTED_AT = ["start-zero", "start-negative", "three-decimals", "plus-sign", "too-large",
              "loss-exceeds-start", "days-beyond-observed", "pre-bad", "date-impossible",
              "id-blank", "variant-blank"]


@pytest.mark.parametrize("rule", POINTED_AT)
def test_broken_rows_are_worded_without_reading_the_file_again(tmp_path, rule):
    body, expected = BAD[rule]
    path = _write(tmp_path, body)
    with pytest.raises(ImportValidationError) as raised:
        duck.read_table(path, KEYS, 50)
    assert expected in str(raised.value)


def test_a_padded_duplicate_id_is_left_to_read_accounts(tmp_path, duck_answers):
    # " a " is a duplicate of "a" once trimmed: only the whole file can tell.
    path = _write(tmp_path, HEADER + "\na,control,5,0,0,0\n a ,treatment,0,0,0,0\n")
    new = _errors(lambda: _read_upload(path, KEYS))
    assert new == _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert "line 3, account_id: duplicate of line 2" in new[2]
    assert duck_answers == [None]


def test_rows_duckdb_only_declines_are_left_to_the_exact_reader(tmp_path, monkeypatch,
                                                                duck_answers):
    # A padded money value is no error: DuckDB points at its row, the exact reader finds
    # nothing wrong there, and reads the whole file.
    path = _write(tmp_path, HEADER + "\na,control, 5,0,0,0\nb,treatment,6,0,0,0\n")
    old = read_accounts(path, variants=KEYS)
    monkeypatch.setattr(fast, "read_fast", lambda *args, **kwargs: None)
    _same_table(_read_upload(path, KEYS), old)
    assert duck_answers == [None]


def test_many_errors_are_grouped_and_counted_as_the_exact_reader_does(tmp_path, duck_answers):
    rng = random.Random(4)
    lines = [HEADER + ",segment,days_to_value"]
    for i in range(3_000):
        cells = [f"a{i}", KEYS[i % 2], f"{100 + i}.5", "1", "0", "0", "SMB", "3"]
        if rng.random() < 0.05:
            cells[rng.choice([2, 3, 4, 5, 7])] = rng.choice(["-1", "x", "0", "1.234", "9" * 14])
        if rng.random() < 0.03:
            cells[1] = f"arm-{i}"  # each one its own message: more than 50 distinct errors
        lines.append(",".join(cells))
    path = _write(tmp_path, "\n".join(lines) + "\n")
    new = _errors(lambda: _read_upload(path, KEYS))
    old = _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert new == old
    assert len(new[0]) == 50 and new[1] > 100
    assert isinstance(duck_answers[0], ImportValidationError)


_ALPHABET = "0123456789.+-eE_ x\u00a0"


@pytest.mark.parametrize("seed", range(4))
def test_random_cells_give_the_same_table_or_the_same_errors(tmp_path, seed):
    rng = random.Random(seed)
    header = HEADER + ",days_to_value,days_observed,pre_start_mrr,pre_end_mrr,segment"
    worded = declined = 0
    for case in range(40):
        rows = [[f"a{i}", KEYS[i % 2], f"{100 + i}.5", f"{i}", "", "0", f"{i}.25", "90",
                 f"{50 + i}", f"{60 + i}.1", "SMB"] for i in range(8)]
        for _ in range(rng.randint(1, 3)):
            token = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 6)))
            rows[rng.randrange(8)][rng.randrange(11)] = token
        text = "\n".join(",".join(row) for row in [header.split(","), *rows]) + "\n"
        path = _write(tmp_path, text, name=f"random{case}.csv")
        try:
            old = read_accounts(path, variants=KEYS, max_errors=50)
        except ImportValidationError:
            old = None
        if old is None:
            assert _errors(lambda p=path: _read_upload(p, KEYS)) == _errors(
                lambda p=path: read_accounts(p, variants=KEYS, max_errors=50))
        else:
            _same_table(_read_upload(path, KEYS), old)
        try:
            found = duck.read_table(path, KEYS, 50)
        except ImportValidationError:
            worded += 1
        else:
            declined += found is None
    assert worded and declined  # both of DuckDB's answers besides a table were seen


def test_the_shared_bad_sample_keeps_its_errors(duck_answers):
    path = SAMPLES / "accounts_bad_example.csv"
    new = _errors(lambda: _read_upload(path, KEYS))
    assert new == _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert "line 3, start_mrr: must be greater than 0" in new[2]


def _stored(session: Session, dataset_id: int) -> list[tuple]:
    columns = [column for column in AccountRow.__table__.columns
               if column.name not in ("id", "dataset_id")]
    rows = session.exec(select(*columns).where(AccountRow.dataset_id == dataset_id)
                        .order_by(AccountRow.id)).all()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("reader", ["fast", "duckdb"])
def test_the_upload_job_stores_what_read_accounts_would(db_engine, session, tmp_path,
                                                        monkeypatch, duck_answers, reader):
    data = _accounts(700, segment=True, days=True, observed=True, pre=True,
                     enrolled=True).encode()
    new_experiment = make_experiment(session, "duck")
    new_job = spool(session, new_experiment, tmp_path, data, "a.csv")
    with monkeypatch.context() as patch:
        if reader == "duckdb":
            patch.setattr(fast, "read_fast", lambda *args, **kwargs: None)
        run_upload_job(db_engine, new_job, tmp_path)
    assert len(duck_answers) == (reader == "duckdb")
    assert all(answer is not None for answer in duck_answers)
    with monkeypatch.context() as patch:
        _today(patch)
        old_experiment = make_experiment(session, "reference")
        old_job = spool(session, old_experiment, tmp_path, data, "a.csv")
        run_upload_job(db_engine, old_job, tmp_path)
    new, old = job_of(session, new_job), job_of(session, old_job)
    assert (new.state, new.rows_read, new.notes) == (old.state, old.rows_read, old.notes)
    assert new.state == "done"
    new_set, old_set = session.get(Dataset, new.dataset_id), session.get(Dataset, old.dataset_id)
    assert new_set.sha256 == old_set.sha256 == hashlib.sha256(data).hexdigest()
    assert new_set.row_count == old_set.row_count == 700
    assert _stored(session, new.dataset_id) == _stored(session, old.dataset_id)


def test_the_upload_job_records_the_same_errors(db_engine, session, tmp_path, monkeypatch,
                                                duck_answers):
    text = _accounts(400).splitlines()
    text[120] = text[120].replace(",control,", ",control,-", 1).replace(",treatment,",
                                                                       ",treatment,-", 1)
    text[300] = "x300,control,5,0,4,4"
    data = ("\n".join(text) + "\n").encode()
    experiment = make_experiment(session)
    new_job = spool(session, experiment, tmp_path, data, "bad.csv")
    run_upload_job(db_engine, new_job, tmp_path)
    assert isinstance(duck_answers[0], ImportValidationError)
    with monkeypatch.context() as patch:
        _today(patch)
        old_job = spool(session, experiment, tmp_path, data, "bad.csv")
        run_upload_job(db_engine, old_job, tmp_path)
    new, old = job_of(session, new_job), job_of(session, old_job)
    assert (new.state, new.message, new.error_total, new.errors) == (
        old.state, old.message, old.error_total, old.errors)
    assert new.error_total == 2 and [error[0] for error in new.errors] == [121, 301]
    assert session.exec(select(UploadJob).where(UploadJob.dataset_id.is_not(None))).all() == []


@pytest.mark.parametrize("layout", ["crlf", "bom", "no-final-newline", "crlf-no-final-newline"])
def test_broken_rows_keep_their_lines_in_every_layout(tmp_path, monkeypatch, duck_answers,
                                                      layout):
    lines = _accounts(300, segment=True).splitlines()
    lines[40] = lines[40].replace(",control,", ",control,-", 1).replace(",treatment,",
                                                                       ",treatment,-", 1)
    lines[-1] = lines[-1].split(",", 1)[0] + ",control,5,0,9,0,SMB"
    text = ("\ufeff" if layout == "bom" else "") + "\n".join(lines)
    text += "" if layout.endswith("no-final-newline") else "\n"
    path = _write(tmp_path, text, newline="\r\n" if layout.startswith("crlf") else "\n")
    new = _errors(lambda: _read_upload(path, KEYS))
    assert new == _errors(lambda: read_accounts(path, variants=KEYS, max_errors=50))
    assert [error.line for error in new[0]] == [41, 301]
    assert isinstance(duck_answers[0], ImportValidationError)


def test_a_file_that_changes_during_the_import_is_refused(session, tmp_path, monkeypatch):
    # import_accounts hashes the file, then reads it: a file written to in between would
    # store rows of other bytes under the first hash (a later upload of the first bytes
    # would be taken for it).
    path = tmp_path / "growing.csv"
    path.write_bytes(_accounts(50).encode())
    experiment = make_experiment(session)
    real = imports.read_upload

    def read_after_a_write(source, *args):
        with open(source, "ab") as file:
            file.write(b"late-1,control,10,0,0,0\n")
        return real(source, *args)

    monkeypatch.setattr(imports, "read_upload", read_after_a_write)
    with pytest.raises(imports.ImportRefused, match="changed while it was being imported"):
        imports.import_accounts(session, experiment, path, filename="growing.csv", actor=None)
    assert session.exec(select(Dataset).where(Dataset.experiment_id == experiment.id)).all() == []


HOSTILE = {
    "nul-in-id": HEADER.encode() + b"\na,control,5,0,0,0\nb\x00,treatment,5,0,0,0\n",
    "nul-in-header": HEADER.replace("variant", "vari\x00ant").encode() + b"\na,control,5,0,0,0\n",
    "not-utf8": HEADER.encode() + b"\na,control,5,0,0,0\nb\xff,treatment,5,0,0,0\n",
    "header-only": HEADER.encode() + b"\n",
    "line-over-the-field-limit": HEADER.encode() + b"\na,control,5,0,0,0\n"
    + b"x" * 131_073 + b",treatment,5,0,0,0\n",
    "quotes-inside-ids": HEADER.encode() + b'\na"1,control,5,0,0,0\n"b""2",treatment,5,0,0,0\n'
    + b'"c,3",treatment,-5,0,0,0\n',
    "quoted-ids-good": HEADER.encode() + b'\na"1,control,5,0,0,0\n"b""2",treatment,5,0,0,0\n',
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_files_at_an_odd_path_get_the_exact_readers_answer(tmp_path, monkeypatch,
                                                                     name):
    # Every reader DuckDB's path can take (fast reader declined too): the exact reader's
    # errors word for word, never a traceback; the same table when the file is good.
    folder = tmp_path / "odd 'dir\"; $x é"
    folder.mkdir()
    path = folder / "up;load 'x\".csv"
    path.write_bytes(HOSTILE[name])
    for fast_first in (True, False):
        with monkeypatch.context() as patch:
            if not fast_first:
                patch.setattr(fast, "read_fast", lambda *args, **kwargs: None)
            try:
                expected = read_accounts(path, variants=KEYS, max_errors=50)
            except ImportValidationError:
                expected = None
            if expected is None:
                assert _errors(lambda: duck.read_upload(path, KEYS, 50, "h")) == _errors(
                    lambda: read_accounts(path, variants=KEYS, max_errors=50))
            else:
                _same_table(duck.read_upload(path, KEYS, 50, expected.sha256), expected)
