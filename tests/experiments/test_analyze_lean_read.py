"""`nrrlab analyze`'s one-pass DuckDB read keeps the promise of duck.py: a file it accepts
gives exactly read_accounts' numbers, anything else goes to read_accounts (same errors).

Each hostile or odd value below sits in an otherwise valid file; the CLI's whole answer
(exit code, JSON report, stderr) must equal that of a run forced onto the exact reader.
A typed read would get several of them wrong (DuckDB's casts accept ``+5``, ``1e2``,
``5.``, `` 5``, ``1_000`` and round ``5.123``); the text checks and the numeric rules on
the fetched arrays must catch each one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv import read_accounts
from experiments.cli import _SUBCOMMANDS, main
from tests.experiments.test_analyze_duckdb import _accounts, _same

HEADER = ("account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,"
          "days_to_value,days_observed,pre_start_mrr,pre_end_mrr")


def _file(tmp_path, rows: list[list[str]], *, header: str = HEADER, name: str = "a.csv",
          newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join([header, *(",".join(row) for row in rows)]) + newline
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _rows(count: int = 12) -> list[list[str]]:
    """Valid rows, both arms, every column of HEADER filled."""
    return [[f"a{i}", ("control", "treatment")[i % 2], f"{100 + i}.50", f"{i % 3}",
             "0", "0.00" if i % 5 else "", f"{i % 7}.5", "30", f"{90 + i}", f"{95 + i}.1"]
            for i in range(count)]


def _cli(path: Path, monkeypatch, *, exact: bool) -> tuple[int, object, str]:
    """(exit code, parsed report or stdout, stderr); ``exact``: DuckDB switched off."""
    with monkeypatch.context() as patch:
        if exact:
            patch.setattr(duck, "read_columns", lambda path, **kwargs: None)
        result = CliRunner().invoke(main, ["analyze", str(path)])
    out = json.loads(result.stdout) if result.exit_code == 0 else result.stdout
    return result.exit_code, out, result.stderr


def _same_answer(path: Path, monkeypatch) -> object:
    """Assert the CLI answers as the exact reader's run does; what read_columns made of it."""
    found = duck.read_columns(path)
    new = _cli(path, monkeypatch, exact=False)
    old = _cli(path, monkeypatch, exact=True)
    assert new[0] == old[0], (new, old)
    assert new[2] == old[2]
    if old[0] == 0:
        _same(new[1], old[1])
    else:
        assert new[1] == old[1]
    return found


HOSTILE = ["+5", "-0", "-5", "1e2", "1E2", "5e0", "5.", ".5", "5.123", "5.120", " 5", "5 ",
           "NaN", "nan", "inf", "-inf", "Infinity", "0x10", "1_000", "٣", "５", "9" * 30,
           "0" * 300 + "5.25", "99999999999.99", "100000000000", "100000000000.00", "5.1.1",
           "5,5", "0.00", "0", "007.1", "5.10", "\u00a05",
           # Near the zeros whose regular expression the query skips (duck._ZEROS) in the
           # loss and gain columns: only the exact spellings may skip it.
           "0.0", "00", "0.000", "0.", ".0", "+0", "-0.00", " 0", "0 ", "0e0", "0.0.0",
           "0.00 ", "\u00a00"]
COLUMNS = {"start_mrr": 2, "expansion_mrr": 3, "churned_mrr": 5, "days_to_value": 6,
           "days_observed": 7, "pre_end_mrr": 9}


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_number_gets_the_exact_readers_answer(tmp_path, monkeypatch, value, column):
    rows = _rows()
    if column == "days_to_value":
        rows[3][7] = "1" + "0" * 40  # days_observed large enough for any value
    rows[3][COLUMNS[column]] = value
    path = _file(tmp_path, rows)
    found = _same_answer(path, monkeypatch)
    if found is not None:  # accepted: read_accounts must accept it with the same numbers
        table = read_accounts(path, for_storage=False)
        mask = table.variant == "treatment"
        assert found["treatment"].start.tolist() == (table.start_cents[mask] / 100).tolist()
        np.testing.assert_array_equal(found["treatment"].days_to_value,
                                      table.days_to_value[mask])
        np.testing.assert_array_equal(found["treatment"].pre_end,
                                      table.pre_end_cents[mask] / 100)


def test_plain_values_are_read_by_duckdb(tmp_path):
    # The controls of the test above: the forms the contract allows are accepted.
    rows = _rows()
    rows[1][2], rows[2][3], rows[3][9], rows[4][6] = "007.1", "0.0", "5", "0000.25"
    assert duck.read_columns(_file(tmp_path, rows)) is not None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"id": " a3"}, id="padded-id"),
        pytest.param({"id": "a3 "}, id="id-trailing-space"),
        pytest.param({"id": "a1"}, id="duplicate-id"),
        pytest.param({"id": "a\u00a03"}, id="id-with-inner-nbsp"),
        pytest.param({"id": "x" * 256}, id="id-too-long"),
        pytest.param({"id": ""}, id="id-blank"),
        pytest.param({"variant": " control"}, id="variant-padded"),
        pytest.param({"variant": "control\u3000"}, id="variant-ideographic-space"),
        pytest.param({"variant": "Control"}, id="variant-case"),
        pytest.param({"variant": ""}, id="variant-blank"),
        pytest.param({"loss": ("100.10", "0.10", "100.00")}, id="loss-equals-start"),
        pytest.param({"loss": ("0.30", "0.10", "0.20")}, id="loss-equals-start-in-cents"),
        pytest.param({"loss": ("100.10", "0.11", "100.00")}, id="loss-one-cent-over"),
        pytest.param({"days": ("31", "30")}, id="days-beyond-observed"),
        pytest.param({"days": ("30", "30")}, id="days-equal-observed"),
        pytest.param({"days": ("", "")}, id="days-blank"),
    ],
)
def test_odd_rows_get_the_exact_readers_answer(tmp_path, monkeypatch, change):
    rows = _rows()
    if "id" in change:
        rows[3][0] = change["id"]
    if "variant" in change:
        rows[3][1] = change["variant"]
    if "loss" in change:
        rows[3][2], rows[3][4], rows[3][5] = change["loss"]
        rows[3][3] = "0"
    if "days" in change:
        rows[3][6], rows[3][7] = change["days"]
    _same_answer(_file(tmp_path, rows), monkeypatch)


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param({"bom": True}, id="bom"),
        pytest.param({"newline": "\r\n"}, id="crlf"),
        pytest.param({"blank_line": True}, id="blank-line"),
        pytest.param({"blank_row": True}, id="row-of-commas"),
        pytest.param({"short_row": True}, id="row-with-a-value-missing"),
        pytest.param({"quote": True}, id="quoted-value"),
    ],
)
def test_file_layouts_get_the_exact_readers_answer(tmp_path, monkeypatch, layout):
    lines = [",".join(row) for row in _rows()]
    if layout.get("blank_line"):
        lines.insert(4, "")
    if layout.get("blank_row"):
        lines.insert(4, "," * 9)
    if layout.get("short_row"):
        lines[4] = lines[4].rsplit(",", 1)[0]
    if layout.get("quote"):
        lines[4] = lines[4].replace(",control,", ',"control",')
    newline = layout.get("newline", "\n")
    path = tmp_path / "a.csv"
    path.write_bytes((b"\xef\xbb\xbf" if layout.get("bom") else b"")
                     + newline.join([HEADER, *lines, ""]).encode())
    found = _same_answer(path, monkeypatch)
    if layout.get("bom") or layout.get("newline"):
        assert found is not None  # still read by DuckDB


def _big_rows(count: int, *, sorted_by_variant: bool = False) -> list[list[str]]:
    """More than the byte scan's first chunk (1 MiB) of valid rows."""
    rows = [[f"account-number-{i:08d}", ("control", "treatment", "variant-c")[i % 3],
             f"{100 + i % 997}.{i % 100:02d}", f"{i % 5}.25", "0", "", f"{i % 11}", "60",
             f"{90 + i % 13}", f"{95 + i % 17}.5"] for i in range(count)]
    if sorted_by_variant:
        rows.sort(key=lambda row: row[1])
    return rows


def test_a_file_sorted_by_variant_is_read_by_duckdb(tmp_path, monkeypatch):
    # "treatment" and "variant-c" first appear after the first chunk: the lines sampled
    # across the file name them.
    rows = _big_rows(60_000, sorted_by_variant=True)
    path = _file(tmp_path, rows)
    assert b"treatment" not in path.read_bytes()[: 1 << 20]
    found = _same_answer(path, monkeypatch)
    assert found is not None and list(found) == ["control", "treatment", "variant-c"]


def test_a_variant_neither_in_the_first_chunk_nor_sampled_costs_a_pass_more(tmp_path,
                                                                             monkeypatch):
    rows = _big_rows(60_000, sorted_by_variant=True)
    for row in rows[41_000:41_040]:  # 40 lines: less than 1/256 of the file
        row[1] = "tiny"
    path = _file(tmp_path, rows)
    head = duck._head(path)
    layout = duck.resolve_header(head.header, 1)[0]
    assert "tiny" not in duck._first_variants(head, layout)
    found = _same_answer(path, monkeypatch)
    assert found is not None and list(found) == ["control", "treatment", "variant-c", "tiny"]


@pytest.mark.parametrize(("cell", "accepted"), [
    pytest.param((1, "control group"), True, id="variant-with-a-space"),
    pytest.param((0, "account 59000"), True, id="id-with-a-space"),
    pytest.param((0, "account-59000 "), False, id="padded-id"),
    pytest.param((0, "account-5900é"), True, id="non-ascii-id"),
    pytest.param((0, "account-5900\u00a0"), False, id="id-padded-with-nbsp"),
])
def test_padding_after_the_first_chunk_is_still_checked(tmp_path, monkeypatch, cell, accepted):
    # The query starts with the cheaper padding check the first chunk allows (no space,
    # ASCII only); a space or non-ASCII byte later in the file means a full re-check.
    rows = _big_rows(60_000)
    position, value = cell
    for row in rows[59_000:] if position == 1 else rows[59_000:59_001]:
        row[position] = value
    path = _file(tmp_path, rows)
    head = path.read_bytes()[: 1 << 20]
    assert b" " not in head and head.isascii()
    found = _same_answer(path, monkeypatch)
    assert (found is not None) == accepted


def test_more_than_64_variants_are_left_to_read_accounts(tmp_path, monkeypatch):
    rows = [[f"a{i}", "control" if i < 2 else f"v{i // 2}", "100", "0", "0", "0", "", "", "",
             ""] for i in range(2 * 66)]
    path = _file(tmp_path, rows)
    assert duck.read_columns(path) is None
    _same_answer(path, monkeypatch)


def test_money_reads_as_cents_divided_by_100(tmp_path):
    """DuckDB's DOUBLE of a decimal text equals read_accounts' cents / 100, bit for bit,
    over random amounts up to the cap (with leading zeros and one or two decimals)."""
    rng = np.random.default_rng(3)
    cents = rng.integers(1, 10**13, 20_000)
    cents[:100] = 10**13 - 1 - np.arange(100)
    texts = [f"{c // 100:0{rng.integers(1, 16)}d}" + (f".{c % 100:02d}" if i % 3 else
             f".{c % 100 // 10}" if c % 10 == 0 else f".{c % 100:02d}")
             for i, c in enumerate(cents.tolist())]
    rows = [[f"a{i}", ("control", "treatment")[i % 2], text, text, "0", "", "", "", text, ""]
            for i, text in enumerate(texts)]
    path = _file(tmp_path, rows)
    found = duck.read_columns(path)
    assert found is not None
    table = read_accounts(path, for_storage=False)
    for variant in ("control", "treatment"):
        mask = table.variant == variant
        assert found[variant].start.tolist() == (table.start_cents[mask] / 100).tolist()
        assert found[variant].expansion.tolist() == (table.expansion_cents[mask] / 100).tolist()
        assert found[variant].pre_start.tolist() == (
            table.pre_start_cents[mask] / 100).tolist()


def test_meanwhile_runs_once_whether_duckdb_reads_or_declines(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(_accounts(50))
    bad = tmp_path / "bad.csv"
    bad.write_text("no header here")
    for path in (good, bad, _file(tmp_path, [["a", "control", "+5"] + ["0"] * 7])):
        calls = []
        duck.read_columns(path, meanwhile=lambda calls=calls: calls.append(1))
        assert calls == [1]


def test_an_error_meanwhile_stops_the_query_and_propagates(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(_accounts(3_000))

    def fail():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        duck.read_columns(path, meanwhile=fail)
    assert not [t for t in threading.enumerate() if t.name == "nrrlab-duckdb"]


def test_the_lazy_commands_are_the_commands_they_name():
    for name, (module, attribute) in _SUBCOMMANDS.items():
        command = getattr(__import__(module, fromlist=[attribute]), attribute)
        assert command.name == name
    assert set(_SUBCOMMANDS) <= set(main.list_commands(None))


def test_the_analyze_path_imports_nothing_it_does_not_need(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(_accounts(300))
    unwanted = ["pyarrow", "pandas", "scipy.stats", "sqlmodel", "sqlalchemy", "flask",
                "experiments.cli_api", "urllib.request", "stats.ledger", "stats.impact"]
    code = ("import sys\n"
            "from experiments.cli import main\n"
            f"sys.argv = ['nrrlab', 'analyze', {str(path)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print('LOADED', [m for m in {unwanted!r} if m in sys.modules])\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("LOADED []"), done.stdout[-500:]
