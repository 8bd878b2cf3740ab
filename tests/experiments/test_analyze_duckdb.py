"""`nrrlab analyze` reads files with DuckDB (experiments/accounts_csv/duck.py).

The DuckDB reader may only accept a file that ``read_accounts`` accepts, with the same
numbers; anything else goes back to ``read_accounts`` so that the errors (and their
line numbers) are exactly today's. The tests compare the two paths on generated files,
check the error text of bad files, and feed both readers random cells.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv import ImportValidationError, read_accounts
from experiments.analyze_file import AnalysisRequest, analyze_file
from experiments.cli import main
from tests.helpers import SAMPLES

HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"


def _write(tmp_path, text: str, name: str = "accounts.csv", newline: str = "\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def _accounts(rows: int, *, arms=("control", "treatment"), seed: int = 5, segment=False,
              pre=False, days=False, observed=False, enrolled=False, ties=False,
              id_prefix="a", segments=("SMB", "Mid-Market", "Entreprise à part", "")) -> str:
    """A valid file; every optional column of DESIGN §3 can be switched on."""
    rng = np.random.default_rng(seed)
    header = HEADER + ",segment" * segment + ",days_to_value" * days
    header += ",days_observed" * observed + ",pre_start_mrr,pre_end_mrr" * pre
    header += ",enrolled_on" * enrolled
    lines = [header]
    for i in range(rows):
        arm = arms[int(rng.integers(len(arms)))] if i >= len(arms) else arms[i]
        start = 100.0 if ties else round(float(np.exp(rng.normal(6, 1))), 2) + 0.01
        churned = start if rng.random() < 0.08 else 0.0
        contraction = 0.0 if churned or rng.random() < 0.8 else round(start * 0.3, 2)
        expansion = 0.0 if churned or rng.random() < 0.7 else round(start * rng.random(), 2)
        if ties:
            expansion = float(rng.integers(0, 3)) * 10
        cells = [f"{id_prefix}{i}", arm, f"{start:.2f}", f"{expansion:g}",
                 f"{contraction:.2f}" if rng.random() < 0.9 else "", f"{churned:.2f}"]
        if segment:
            cells.append(segments[i % len(segments)])
        reach = round(float(rng.gamma(2, 9)), 1)
        follow = int(rng.integers(10, 90))
        if days:
            cells.append("" if (observed and reach > follow) or rng.random() < 0.1 else f"{reach}")
        if observed:
            cells.append("" if rng.random() < 0.02 and not days else str(follow))
        if pre:
            cells += [f"{start * 0.9:.2f}", "" if i == 7 else f"{start * 0.95:.1f}"]
        if enrolled:
            cells.append("" if i % 5 == 0 else f"2026-0{1 + i % 9}-{1 + i % 28:02d}")
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _same(new, old, where="report"):
    """Equal reports: numbers within 1e-9 relative, everything else identical."""
    if isinstance(old, dict):
        assert new.keys() == old.keys(), where
        for key in old:
            _same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, (list, tuple)):
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(old, float) and not isinstance(new, bool):
        if math.isnan(old):
            assert math.isnan(new), where
        else:
            assert new == pytest.approx(old, rel=1e-9, abs=1e-300), where
    else:
        assert new == old, where


@pytest.fixture
def duck_calls(monkeypatch):
    """What each read_columns call returned (None: declined)."""
    calls = []
    real = duck.read_columns

    def spy(path, **kwargs):
        found = real(path, **kwargs)
        calls.append(found)
        return found

    monkeypatch.setattr(duck, "read_columns", spy)
    return calls


def _both_paths(monkeypatch, path, **flags):
    """analyze_file's report through DuckDB, and through read_accounts (DuckDB switched off)."""
    request = AnalysisRequest(str(path), **flags)
    new = analyze_file(request).to_dict()
    with monkeypatch.context() as patch:
        patch.setattr(duck, "read_columns", lambda path, **kwargs: None)
        old = analyze_file(request).to_dict()
    return new, old


SHAPES = {
    "two-arms": {"rows": 2_000},
    "three-arms": {"rows": 1_500, "arms": ("treatment-b", "control", "treatment-a")},
    "segments": {"rows": 900, "segment": True},
    # ASCII with spaces inside values: the padding check runs in SQL, not in the byte scan
    "segments-with-spaces": {"rows": 900, "segment": True,
                             "segments": ("Mid Market", "SMB", "Large account", "")},
    "cuped": {"rows": 1_200, "pre": True},
    "velocity": {"rows": 1_000, "days": True, "observed": True},
    "days-only": {"rows": 800, "days": True},
    "ties": {"rows": 1_000, "ties": True},
    "tiny": {"rows": 8},
    "everything": {"rows": 700, "segment": True, "pre": True, "days": True, "observed": True,
                   "enrolled": True, "arms": ("control", "b", "c")},
    "non-ascii-ids": {"rows": 400, "id_prefix": "client-é-"},
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_every_figure_equals_the_read_accounts_path(tmp_path, monkeypatch, duck_calls, shape):
    path = _write(tmp_path, _accounts(**SHAPES[shape]))
    new, old = _both_paths(monkeypatch, path, control="control")
    assert duck_calls and duck_calls[0] is not None, "DuckDB declined a valid file"
    _same(new, old)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"newline": "\r\n"}, id="crlf"),
        pytest.param({"bom": True}, id="bom"),
        pytest.param({"reorder": True}, id="columns-in-another-order-and-case"),
        pytest.param({"extra": True}, id="unknown-column"),
        pytest.param({"no_final_newline": True}, id="no-final-newline"),
        pytest.param({"newline": "\r\n", "no_final_newline": True}, id="crlf-no-final-newline"),
    ],
)
def test_file_layouts_duckdb_reads_give_the_same_report(tmp_path, monkeypatch, duck_calls,
                                                        variant):
    text = _accounts(600, segment=True, days=True)
    if variant.get("reorder"):
        rows = [line.split(",") for line in text.splitlines()]
        order = [7, 2, 0, 6, 5, 1, 4, 3]
        rows[0] = [name.upper() for name in rows[0]]
        text = "\n".join(",".join(row[i] for i in order) for row in rows) + "\n"
    if variant.get("extra"):
        text = "\n".join(line + (",notes" if i == 0 else ",anything at all; 1e5 +-")
                         for i, line in enumerate(text.splitlines())) + "\n"
    if variant.get("bom"):
        text = "\ufeff" + text
    if variant.get("no_final_newline"):
        text = text.removesuffix("\n")
    path = _write(tmp_path, text, newline=variant.get("newline", "\n"))
    new, old = _both_paths(monkeypatch, path)
    assert duck_calls[0] is not None
    _same(new, old)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('a," control",100,0,0,0\nb,treatment,100,0,0,0\n', id="quotes"),
        pytest.param(" a,control,100,0,0,0\nb,treatment,100,0,0,0\n", id="padded-id"),
        pytest.param("a,control ,100,0,0,0\nb,treatment,100,0,0,0\n", id="padded-variant"),
        pytest.param("a,control,\t100,0,0,0\nb,treatment,100,0,0,0\n", id="tab-padded-money"),
        pytest.param("a,control,100,\u00a05,0,0\nb,treatment,100,0,0,0\n", id="nbsp-money"),
        pytest.param("a,control,100,0,0,0\r\nb,treatment,100,0,0,0\n", id="mixed-line-ends"),
        pytest.param("a,control,100,0,0,0\n,,,,,\nb,treatment,100,0,0,0\n", id="blank-row"),
        pytest.param("a,control,100,0,0,0\n\nb,treatment,100,0,0,0\n", id="empty-line"),
    ],
)
def test_valid_files_duckdb_declines_are_read_by_read_accounts(tmp_path, monkeypatch,
                                                                duck_calls, text):
    path = _write(tmp_path, HEADER + "\n" + text)
    new, old = _both_paths(monkeypatch, path)
    assert duck_calls == [None]
    _same(new, old)


@pytest.mark.parametrize("segment", [" SMB", "SMB\u3000", "\ufeffSMB"])
def test_a_padded_segment_is_declined_but_analysed(tmp_path, monkeypatch, duck_calls, segment):
    text = _accounts(40, segment=True).replace(",SMB\n", f",{segment}\n", 1)
    assert segment in text
    path = _write(tmp_path, text)
    new, old = _both_paths(monkeypatch, path)
    assert duck_calls == [None]
    _same(new, old)


def test_line_breaks_as_a_lone_cr_are_declined_but_analysed(tmp_path, monkeypatch, duck_calls):
    path = _write(tmp_path, _accounts(50), newline="\r")
    new, old = _both_paths(monkeypatch, path)
    assert duck_calls == [None]
    _same(new, old)


PLAIN = " (use digits with an optional decimal point, e.g. 1234.50)"
PLAIN_DAYS = " (use digits with an optional decimal point, e.g. 12.5)"

# Each contract rule (DESIGN §3): the CLI's stderr is the exact reader's, line for line.
BAD = {
    "missing-column": ("account_id,variant,expansion_mrr\na,control,1\n",
                       "line 1: missing required column: start_mrr"),
    "one-pre-column": (HEADER + ",pre_start_mrr\na,control,5,0,0,0,1\nb,treatment,5,0,0,0,1\n",
                       "line 1, pre_start_mrr: comes with pre_end_mrr: the pre-period needs "
                       "both columns (or neither)"),
    "header-twice": (HEADER + ",Variant\na,control,5,0,0,0,x\n",
                     "line 1, variant: appears more than once in the header"),
    "empty": ("", "line 1: the file is empty"),
    "header-only": (HEADER + "\n", "line 1: the file has a header but no data rows"),
    "width": (HEADER + "\na,control,5,0,0\nb,treatment,5,0,0,0\n",
              "line 2: has 5 values but the header has 6 columns"),
    "id-blank": (HEADER + "\n,control,5,0,0,0\nb,treatment,5,0,0,0\n",
                 "line 2, account_id: is required"),
    "id-duplicate": (HEADER + "\na,control,5,0,0,0\nb,treatment,5,0,0,0\na,control,5,0,0,0\n",
                     "line 4, account_id: duplicate of line 2"),
    "id-duplicate-once-trimmed": (HEADER + "\na,control,5,0,0,0\n a ,treatment,5,0,0,0\n",
                                  "line 3, account_id: duplicate of line 2"),
    "id-too-long": (HEADER + f"\n{'x' * 256},control,5,0,0,0\nb,treatment,5,0,0,0\n",
                    "line 2, account_id: is too long (256 characters; at most 255)"),
    "id-control": (HEADER + "\na\x01,control,5,0,0,0\nb,treatment,5,0,0,0\n",
                   "line 2, account_id: contains a control character (U+0001)"),
    "id-nul": (HEADER + "\na,control,5,0,0,0\nb\x00,treatment,5,0,0,0\n",
               "line 3, account_id: contains a control character (U+0000)"),
    "variant-blank": (HEADER + "\na,,5,0,0,0\nb,treatment,5,0,0,0\n",
                      "line 2, variant: is required"),
    "start-blank": (HEADER + "\na,control,,0,0,0\nb,treatment,5,0,0,0\n",
                    "line 2, start_mrr: is required"),
    "start-zero": (HEADER + "\na,control,0.00,0,0,0\nb,treatment,5,0,0,0\n",
                   "line 2, start_mrr: must be greater than 0"),
    "start-negative": (HEADER + "\na,control,-5,0,0,0\nb,treatment,5,0,0,0\n",
                       "line 2, start_mrr: must be greater than 0"),
    "minus-zero": (HEADER + "\na,control,5,-0,0,0\nb,treatment,5,0,0,0\n",
                   "line 2, expansion_mrr: must be 0 or greater"),
    "three-decimals": (HEADER + "\na,control,5.005,0,0,0\nb,treatment,5,0,0,0\n",
                       "line 2, start_mrr: must have at most 2 decimal places"),
    "plus-sign": (HEADER + "\na,control,+5,0,0,0\nb,treatment,5,0,0,0\n",
                  'line 2, start_mrr: "+5" is not a plain number' + PLAIN),
    "exponent": (HEADER + "\na,control,5,1e2,0,0\nb,treatment,5,0,0,0\n",
                 'line 2, expansion_mrr: "1e2" is not a plain number' + PLAIN),
    "leading-point": (HEADER + "\na,control,5,.5,0,0\nb,treatment,5,0,0,0\n",
                      'line 2, expansion_mrr: ".5" is not a plain number' + PLAIN),
    "trailing-point": (HEADER + "\na,control,5,0,5.,0\nb,treatment,5,0,0,0\n",
                       'line 2, contraction_mrr: "5." is not a plain number' + PLAIN),
    "underscore": (HEADER + "\na,control,1_000,0,0,0\nb,treatment,5,0,0,0\n",
                   'line 2, start_mrr: "1_000" is not a plain number' + PLAIN),
    "quoted-after-space": (HEADER + '\na,control, "5",0,0,0\nb,treatment,5,0,0,0\n',
                           'line 2, start_mrr: ""5"" is not a plain number' + PLAIN),
    "too-large": (HEADER + "\na,control,100000000000,0,0,0\nb,treatment,5,0,0,0\n",
                  "line 2, start_mrr: is too large (at most 99999999999.99)"),
    "loss-exceeds-start": (HEADER + "\na,control,5,0,3,3\nb,treatment,5,0,0,0\n",
                           "line 2, churned_mrr: contraction_mrr + churned_mrr (6.00) must not "
                           "exceed start_mrr (5.00)"),
    "days-negative": (HEADER + ",days_to_value\na,control,5,0,0,0,-1\nb,treatment,5,0,0,0,1\n",
                      "line 2, days_to_value: must be 0 or greater"),
    "days-text": (HEADER + ",days_to_value\na,control,5,0,0,0,inf\nb,treatment,5,0,0,0,1\n",
                  'line 2, days_to_value: "inf" is not a plain number' + PLAIN_DAYS),
    "days-too-large": (HEADER + ",days_to_value\na,control,5,0,0,0," + "9" * 400
                       + "\nb,treatment,5,0,0,0,1\n", "line 2, days_to_value: is too large"),
    "days-beyond-observed": (
        HEADER + ",days_to_value,days_observed\na,control,5,0,0,0,30,20\nb,treatment,5,0,0,0,1,2\n",
        "line 2, days_to_value: (30) must not exceed days_observed (20): value cannot be "
        "reached after the account stopped being followed"),
    "pre-bad": (HEADER + ",pre_start_mrr,pre_end_mrr\na,control,5,0,0,0,1,x\n"
                "b,treatment,5,0,0,0,1,1\n",
                'line 2, pre_end_mrr: "x" is not a plain number' + PLAIN),
    "date-impossible": (HEADER + ",enrolled_on\na,control,5,0,0,0,2026-02-30\n"
                        "b,treatment,5,0,0,0,\n",
                        'line 2, enrolled_on: "2026-02-30" is not a calendar date'),
    "segment-control": (HEADER + ",segment\na,control,5,0,0,0,S\x7fMB\nb,treatment,5,0,0,0,\n",
                        "line 2, segment: contains a control character (U+007F)"),
    "segment-too-long": (HEADER + f",segment\na,control,5,0,0,0,{'é' * 256}\n"
                         "b,treatment,5,0,0,0,\n",
                         "line 2, segment: is too long (256 characters; at most 255)"),
    "not-utf8": (HEADER + "\na,control,5,0,0,0\nb\xff,treatment,5,0,0,0\n",
                 "line 3: is not valid UTF-8 text (byte 0xFF); save the file as CSV UTF-8"),
}


@pytest.mark.parametrize("rule", BAD, ids=list(BAD))
def test_bad_files_keep_the_exact_readers_error_text(tmp_path, duck_calls, rule):
    body, expected = BAD[rule]
    path = tmp_path / "bad.csv"
    # \xff stands for a byte that is not UTF-8 (latin-1 maps every other char to itself)
    path.write_bytes(body.encode("utf-8") if rule != "not-utf8" else body.encode("latin-1"))
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{path}: {expected}"]
    assert duck_calls == [None]


def test_year_zero_is_declined_as_the_exact_reader_refuses_it(tmp_path):
    # (pyarrow's fast reader accepts 0000-01-01, so the CLI's fallback analyses this
    # file today; DuckDB, which cannot know that, leaves the decision to read_accounts.)
    path = _write(tmp_path, HEADER + ",enrolled_on\na,control,5,0,0,0,0000-01-01\n"
                  "b,treatment,5,0,0,0,\n")
    assert duck.read_columns(path) is None


def test_a_value_beyond_the_csv_field_limit_is_declined(tmp_path):
    # The exact reader refuses a value longer than csv.field_size_limit(); the decision,
    # and its wording, stay with read_accounts.
    path = _write(tmp_path, HEADER + ",notes\na,control,5,0,0,0," + "n" * 200_000
                  + "\nb,treatment,5,0,0,0,\n")
    assert duck.read_columns(path) is None


def test_the_shared_bad_sample_keeps_its_errors(duck_calls):
    result = CliRunner().invoke(main, ["analyze", str(SAMPLES / "accounts_bad_example.csv")])
    assert result.exit_code == 2
    with pytest.raises(ImportValidationError) as raised:
        read_accounts(SAMPLES / "accounts_bad_example.csv", for_storage=False)
    # The reference: what the upload (read_accounts) reports for the same file.
    path = SAMPLES / "accounts_bad_example.csv"
    assert result.stderr.splitlines() == [f"{path}: {line}" for line in str(raised.value)
                                          .splitlines()]
    assert "line 3, start_mrr: must be greater than 0" in result.stderr
    assert duck_calls == [None]


def test_near_duplicate_variant_names_keep_their_line_numbers(tmp_path, duck_calls):
    text = _accounts(30) + "odd,Control,100,0,0,0\n"
    result = CliRunner().invoke(main, ["analyze", str(_write(tmp_path, text))])
    assert result.exit_code == 2
    assert result.stderr == (
        "nrrlab: line 32, variant: 'Control' differs from 'control' only in case, spaces or "
        "invisible characters; variant names must match exactly\n"
    )


_ALPHABET = "0123456789.+-eE_ x\u00a0"


@pytest.mark.parametrize("seed", range(3))
def test_random_cells_duckdb_accepts_only_what_read_accounts_accepts(tmp_path, seed):
    """One random cell in an otherwise valid file: whenever DuckDB accepts the file,
    read_accounts accepts it too and reads the same numbers."""
    rng = random.Random(seed)
    columns = ("account_id", "start_mrr", "expansion_mrr", "churned_mrr", "days_to_value",
               "days_observed", "pre_start_mrr")
    accepted = declined = 0
    for case in range(60):
        rows = [[f"a{i}", ("control", "treatment")[i % 2], f"{100 + i}.5", f"{i}", "", "0",
                 f"{i}.25", "90", f"{50 + i}", f"{60 + i}.1"] for i in range(6)]
        token = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 6)))
        column = rng.choice(columns)
        position = (0, 2, 3, 5, 6, 7, 8)[columns.index(column)]
        rows[rng.randrange(6)][position] = token
        header = (HEADER + ",days_to_value,days_observed,pre_start_mrr,pre_end_mrr").split(",")
        text = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
        path = _write(tmp_path, text, name=f"random{case}.csv")
        found = duck.read_columns(path)
        if found is None:
            declined += 1
            continue
        accepted += 1
        table = read_accounts(path, for_storage=False)  # raises if DuckDB accepted a bad file
        assert list(found) == table.variants()
        money = table.money()
        for variant, got in found.items():
            mask = table.variant == variant
            for key in ("start", "expansion", "contraction", "churned"):
                np.testing.assert_array_equal(getattr(got, key), money[key][mask])
            np.testing.assert_array_equal(got.days_to_value, table.days_to_value[mask])
            np.testing.assert_array_equal(got.days_observed, table.days_observed[mask])
            np.testing.assert_array_equal(got.pre_start, table.pre_start_cents[mask] / 100)
            np.testing.assert_array_equal(got.pre_end, table.pre_end_cents[mask] / 100)
    assert accepted and declined  # the generator makes both kinds of file


def test_days_parse_to_the_same_doubles_as_python(tmp_path):
    rng = random.Random(11)
    texts = [f"{rng.randint(0, 10**rng.randint(0, 18))}.{rng.randint(0, 10**rng.randint(0, 25))}"
             for _ in range(2_000)]
    lines = [HEADER + ",days_to_value"]
    lines += [f"a{i},{('control', 'treatment')[i % 2]},5,0,0,0,{text}"
              for i, text in enumerate(texts)]
    found = duck.read_columns(_write(tmp_path, "\n".join(lines) + "\n"))
    assert found is not None
    got = np.concatenate([found["control"].days_to_value, found["treatment"].days_to_value])
    # The reference is Python's float(), which the exact reader uses.
    expected = [float(text) for text in texts[0::2]] + [float(text) for text in texts[1::2]]
    assert got.tolist() == expected


def test_a_file_with_a_million_cents_sums_exactly(tmp_path):
    """Cents, not floats: 0.10 + 0.20 is read as 10 + 20 cents, as the exact reader does."""
    lines = [HEADER] + [f"a{i},{('control', 'treatment')[i % 2]},0.10,0.20,0,0"
                        for i in range(1_000)]
    found = duck.read_columns(_write(tmp_path, "\n".join(lines) + "\n"))
    assert found["control"].start.tolist() == [0.1] * 500
    assert found["control"].expansion.tolist() == [0.2] * 500


def test_a_valid_file_is_analysed_without_pyarrow(tmp_path):
    """pyarrow (~0.15 s to import) is only loaded when DuckDB declines a file."""
    path = _write(tmp_path, _accounts(300))
    code = ("import sys\n"
            "from experiments.cli import main\n"
            f"sys.argv = ['nrrlab', 'analyze', {str(path)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('PYARROW', 'pyarrow' in sys.modules)\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"comparisons"' in done.stdout
    assert done.stdout.strip().endswith("PYARROW False"), done.stdout[-500:]


def test_duckdb_prints_no_progress_bar_into_the_report(tmp_path):
    """DuckDB draws a progress bar on stdout for a read over 2 s (a large file, a busy
    machine): it would land in the middle of the JSON report. It must be off during the
    read (in a process of its own: under pytest's capture DuckDB starts with it off)."""
    path = _write(tmp_path, _accounts(50))
    code = (
        "import duckdb\n"
        "import experiments.accounts_csv.duck as duck\n"
        "seen = []\n"
        "real = duckdb.connect\n"
        "class Spy:\n"
        "    def __init__(self, c): self.c = c\n"
        "    def execute(self, q, *p):\n"
        "        if 'read_csv' in q:\n"
        "            seen.append(self.c.execute(\"SELECT current_setting('enable_progress_bar')\")"
        ".fetchone()[0])\n"
        "        return self.c.execute(q, *p)\n"
        "    def close(self): self.c.close()\n"
        "duckdb.connect = lambda **kw: Spy(real(**kw))\n"
        f"assert duck.read_columns({str(path)!r}) is not None\n"
        "print('SETTINGS', seen)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("SETTINGS [False]"), done.stdout[-500:]
