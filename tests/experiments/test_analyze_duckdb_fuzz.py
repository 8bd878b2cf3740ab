"""Differential fuzzing of `nrrlab analyze`'s DuckDB read against the exact reader.

duck.py promises that a file :func:`read_columns` accepts is one the exact reader
accepts, with the same numbers; anything else is declined (``None``) and
``read_accounts`` words the errors. Hypothesis writes small files: the contract's
columns in random order, case and padding, unknown and unnamed columns, repeated
columns; valid, near-valid and hostile values (loss exactly at start or a cent over,
money near the cap, long digit strings, impossible dates); repeated and padded ids, odd
variants, control characters; BOM, CRLF, a lone CR, blank lines, rows of commas, a
missing final line break, a quote, a stray byte. For each file it requires: DuckDB declines, or both
readers accept it with bit-identical per-variant arrays (NaN in the same places) and
the CLI prints the same report as a run forced onto the exact reader.

Half the files are read with a scan chunk just past the header and two or three sampled
lines, so that small files reach what only large ones would otherwise: the byte scan's
chunk boundaries, the first chunk's cheaper padding check (and the full re-check after
it), and the extra passes for a variant neither in the first chunk nor sampled.

``derandomize=True``: the same examples on every run, so CI is repeatable.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import date
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv import ImportValidationError
from experiments.accounts_csv.exact import read_exact
from experiments.cli import main

OPTIONAL = ("expansion_mrr", "contraction_mrr", "churned_mrr", "segment", "days_to_value",
            "days_observed", "pre_start_mrr", "pre_end_mrr", "enrolled_on")
MONEY = ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "pre_start_mrr",
         "pre_end_mrr")
TEXT_COLUMNS = ("account_id", "variant", "segment")
MAX_CENTS = 10**13

# Numbers the contract refuses (some only for money), that a typed read would take.
HOSTILE_NUMBERS = ["+5", "-0", "-5", "1e2", "1E2", "5.", ".5", "5.123", " 5", "5 ", "\u00a05",
                   "NaN", "inf", "Infinity", "0x10", "1_000", "٣", "５", "5.1.1", "1" + "0" * 400,
                   "0" * 300 + "5.25"]
# Values the contract refuses in one column or another, or that a typed read would take.
HOSTILE = ["", " ", "+5", "-0", "-5", "1e2", "5.", ".5", "5.123", " 5", "5 ", "\u00a05",
           "5\u3000", "NaN", "inf", "Infinity", "0x10", "1_000", "٣", "５", "5.1.1", "9" * 30,
           "0" * 300 + "5.25", "100000000000", "99999999999.995", "1" + "0" * 400,
           "2026-01-01", "x"]
# Valid variants, then odd ones (a case or padding twin, invisible characters, too long).
VARIANTS = ["control", "treatment", "b"]
ODD_VARIANTS = ["é-arm", "a b", "Control", " control", "control ", "control\u00a0",
                "ctl\u3000", "t\u200bx", "v" * 255, "v" * 256, "\ufeffb", "é" * 128]
SEGMENTS = ["", "SMB", "Mid Market", "é"]
ODD_SEGMENTS = [" SMB", "SMB ", "\ufeffSMB", "x" * 256, "é" * 200, "é" * 128, " "]
ODD_IDS = ["", " ", "x" * 255, "x" * 256, "é" * 128, "é" * 200, "a\u0085b", "#1", "a b",
           "a\u00a0", "\u3000a", "id0 "]
UNKNOWN = ["", "x", "1e5 +-", "é", " padded ", "n" * 300]
# Day counts at the edges of a double: huge but finite, underflowing, long; then infinite.
LONG_DAYS = ["1" + "0" * 308, "0." + "0" * 400 + "1", "1." + "9" * 60,
             "17976931348623158" + "0" * 292, "0." + "0" * 323 + "4940656458412465"]
ODD_DAYS = ["9" * 400, "1" + "0" * 309, "17976931348623159" + "0" * 292]
ODD_DATES = ["0000-01-01", "2023-02-29", "2026-13-01", "2026-1-01", "20260101",
             " 2026-01-01", "2026-02-30", "2026-00-10", "99999-01-01"]

# A faulty file has one of these (one fault, so that no other masks it); a row's fault is
# in one row.
ROW_FAULTS = ("hostile-value", "hostile-money", "hostile-days", "duplicate-id", "odd-id",
              "odd-variant", "odd-segment", "odd-money", "loss-over", "days-over", "odd-days",
              "odd-date", "control-character")
FILE_FAULTS = ("lone-pre", "repeated-column", "empty-line", "row-of-commas", "short-row",
               "blank-last-line", "other-line-break", "lone-cr", "stray-byte")
# The columns a fault needs in the header.
NEEDS = {"hostile-days": ["days_to_value", "days_observed"], "odd-segment": ["segment"],
         "loss-over": ["churned_mrr"], "days-over": ["days_to_value", "days_observed"],
         "odd-days": ["days_observed"],
         "odd-date": ["enrolled_on"]}


def _money_text(cents: int, zeros: int, style: int) -> str:
    """``cents`` as the contract allows it written: leading zeros, 0–2 decimals."""
    whole = f"{cents // 100:0{zeros + 1}d}"
    if style == 0 and cents % 100 == 0:
        return whole
    if style == 1 and cents % 10 == 0:
        return f"{whole}.{cents % 100 // 10}"
    return f"{whole}.{cents % 100:02d}"


# Valid amounts (in cents), biased to the edges: small, any, just below the cap.
cents_values = st.one_of(
    st.integers(1, 10_000),
    st.integers(1, MAX_CENTS - 1),
    st.integers(MAX_CENTS - 1_000, MAX_CENTS - 1),
    st.sampled_from([1, 5, 10, 99, 100, 12_345]),
)
# ... and the ones the contract refuses: 0 for start, the cap and just over it.
odd_cents = st.sampled_from([0, MAX_CENTS, MAX_CENTS + 1, MAX_CENTS + 100])


@st.composite
def money(draw, cents=None) -> str:
    cents = draw(cents_values) if cents is None else cents
    return _money_text(cents, draw(st.integers(0, 3)), draw(st.integers(0, 2)))


@st.composite
def days(draw) -> str:
    if draw(st.integers(0, 9)) == 9:
        return draw(st.sampled_from(LONG_DAYS))
    whole = draw(st.integers(0, 10 ** draw(st.integers(0, 20))))
    if draw(st.booleans()):
        return str(whole)
    fraction = draw(st.text("0123456789", min_size=1, max_size=30))
    return f"{whole}.{fraction}"


@st.composite
def row(draw, names: list[str], serial: int, earlier_ids: list[str],
        faults: list[str]) -> list[str]:
    """One row's values for the (lower-case) column ``names``: valid but for ``faults``."""
    cells: dict[str, str] = {"account_id": f"id{serial}"}
    if "duplicate-id" in faults and earlier_ids:  # as it is, or equal once trimmed
        pad = draw(st.sampled_from(["", "", " ", "\u00a0", "\u3000", "\ufeff", "\u2007"]))
        cells["account_id"] = draw(st.sampled_from([f"{pad}{{}}", f"{{}}{pad}"])).format(
            draw(st.sampled_from(earlier_ids)))
    if "odd-id" in faults:
        cells["account_id"] = draw(st.sampled_from(ODD_IDS))
    cells["variant"] = draw(st.sampled_from(ODD_VARIANTS if "odd-variant" in faults
                                            else VARIANTS))
    start = draw(cents_values)
    contraction = draw(st.integers(0, start)) if "contraction_mrr" in names else 0
    # the loss rule at its edge: all of start lost, a cent less, or a cent more
    rest = start - contraction
    churned = rest + 1 if "loss-over" in faults else draw(
        st.sampled_from([rest, 0, max(rest - 1, 0)]))
    cells["start_mrr"] = draw(money(start))
    cells["contraction_mrr"] = "" if not contraction and draw(st.booleans()) else draw(
        money(contraction))
    cells["churned_mrr"] = draw(money(churned))
    cells["expansion_mrr"] = draw(st.one_of(st.just(""), money()))
    cells["pre_start_mrr"] = draw(st.one_of(st.just(""), money()))
    cells["pre_end_mrr"] = draw(st.one_of(st.just(""), money()))
    if "odd-money" in faults:
        present = [name for name in MONEY if name in names]
        cells[draw(st.sampled_from(present))] = draw(money(draw(odd_cents)))
    cells["segment"] = draw(st.sampled_from(ODD_SEGMENTS if "odd-segment" in faults
                                            else SEGMENTS))
    observed = draw(days())
    if "odd-days" in faults:
        observed = draw(st.sampled_from(ODD_DAYS))
    cells["days_observed"] = "" if draw(st.integers(0, 9)) == 9 else observed
    cells["days_to_value"] = draw(st.sampled_from(["", observed, "0"]))
    if "days-over" in faults:
        # (the last pair differs in decimals only: equal doubles, which both readers allow)
        cells["days_observed"], cells["days_to_value"] = draw(st.sampled_from(
            [("1", "2"), ("0", "0.000001"), ("1" + "0" * 300, "1" + "0" * 301),
             ("10000000000000000", "10000000000000001")]))
    cells["enrolled_on"] = draw(
        st.sampled_from(ODD_DATES) if "odd-date" in faults else st.one_of(
            st.just(""), st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat)))
    values = [cells.get(name) for name in names]
    values = [draw(st.sampled_from(UNKNOWN)) if value is None else value for value in values]
    targets = {"hostile-value": range(len(values)),
               "hostile-money": [at for at, name in enumerate(names) if name in MONEY],
               "hostile-days": [at for at, name in enumerate(names) if name.startswith("days")]}
    if "control-character" in faults:  # (or a quote) in a text value, or at its edge
        text = [at for at, name in enumerate(names) if name in TEXT_COLUMNS or name not in cells]
        at = draw(st.sampled_from(text))
        cut = draw(st.integers(0, len(values[at])))
        character = draw(st.sampled_from(["\t", "\x00", "\x0b", "\x1f", "\x7f", '"', "\x85"]))
        values[at] = values[at][:cut] + character + values[at][cut:]
    for fault, columns in targets.items():
        if fault in faults:
            at = draw(st.sampled_from(list(columns)))
            values[at] = draw(st.sampled_from(
                HOSTILE if fault == "hostile-value" else HOSTILE_NUMBERS))
            other = {"days_to_value": "days_observed", "days_observed": "days_to_value"}
            if other.get(names[at]) in names:  # the other blank: no day order to break
                values[names.index(other[names[at]])] = ""
    return values


@st.composite
def header(draw, faults: list[str]) -> list[str]:
    names = ["account_id", "variant", "start_mrr"]
    names += draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    names += [name for fault in faults for name in NEEDS.get(fault, ()) if name not in names]
    pre = [name for name in ("pre_start_mrr", "pre_end_mrr") if name in names]
    if "lone-pre" in faults:
        names = [name for name in names if name != "pre_end_mrr"]
        names += ["pre_start_mrr"] * (not pre)
    elif len(pre) == 1:
        names.append("pre_end_mrr" if pre == ["pre_start_mrr"] else "pre_start_mrr")
    names += draw(st.lists(st.sampled_from(["notes", "", "Extra"]), max_size=2))
    if "repeated-column" in faults:
        names.append(draw(st.sampled_from(["Variant", "start_mrr", " account_id"])))
    names = draw(st.permutations(names))
    return [draw(st.sampled_from([name, name.upper(), f" {name}", name.title()]))
            if draw(st.integers(0, 3)) == 3 else name for name in names]


@st.composite
def csv_files(draw, fault: str | None) -> bytes:
    """A small account CSV as bytes: valid but for ``fault``.

    (Hypothesis draws the simplest choice, 0, more often than its share: every rare
    choice below is one of the larger values.)
    """
    faults = [] if fault is None else [fault]
    columns = draw(header(faults))
    names = [name.strip().lower() for name in columns]
    lines = [",".join(columns)]
    count = draw(st.integers(2 if "duplicate-id" in faults else 1, 10))
    faulty = {fault: draw(st.integers(int(fault == "duplicate-id"), count - 1)) for fault in faults
              if fault in ROW_FAULTS}
    ids: list[str] = []
    for serial in range(count):
        values = draw(row(names, serial, ids,
                          [fault for fault, at in faulty.items() if at == serial]))
        ids.append(values[names.index("account_id")])
        lines.append(",".join(values))
    if "empty-line" in faults:
        lines.insert(draw(st.integers(1, len(lines))), "")
    if "row-of-commas" in faults:
        lines.insert(draw(st.integers(1, len(lines))), "," * (len(columns) - 1))
    if "short-row" in faults:
        at = draw(st.integers(1, len(lines) - 1))
        lines[at] = lines[at].rsplit(",", 1)[0]
    if "blank-last-line" in faults:
        lines.append("")
    newline = "\r" if "lone-cr" in faults else draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines)
    if "other-line-break" in faults:
        other = "\n" if newline != "\n" else "\r\n"
        text = newline.join(lines[:-1]) + other + lines[-1]
    text += "" if draw(st.integers(0, 4)) == 4 else newline  # a final line break, mostly
    data = ("\ufeff" if draw(st.integers(0, 5)) == 5 else "").encode() + text.encode()
    if "stray-byte" in faults:  # mostly in a value after the header
        at = draw(st.integers(0 if draw(st.integers(0, 4)) == 4 else data.find(b"\n") + 1,
                              len(data)))
        stray = draw(st.sampled_from([b'"', b"\t", b"\x00", b"\x0b", b"\x7f", b"\xff", b"\xc3",
                                      b"\x85", b"\r"]))
        data = data[:at] + stray + data[at:]
    return data


def _bits_equal(got, expected, what: str) -> None:
    """Equal float64 arrays bit for bit, a NaN wherever the other has one."""
    assert got is not None and expected is not None, what
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype == np.float64, what
    assert got.shape == expected.shape, what
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), what
    assert np.array_equal(got[~nan].view(np.uint64), expected[~nan].view(np.uint64)), what


def _same_columns(found, data: bytes) -> None:
    """What DuckDB accepted, the exact reader accepts with the same numbers."""
    try:
        table = read_exact(data, None, 50)
    except ImportValidationError as exc:
        raise AssertionError(f"DuckDB accepted a file the exact reader refuses: {exc}") from None
    assert list(found) == table.variants(), "other variants than the exact reader's"
    money = table.money()
    for variant, got in found.items():
        mask = table.variant == variant
        for key in ("start", "expansion", "contraction", "churned"):
            _bits_equal(getattr(got, key), money[key][mask], f"{variant}.{key}")
        for key, cents in (("pre_start", table.pre_start_cents),
                           ("pre_end", table.pre_end_cents)):
            if cents is None:
                assert getattr(got, key) is None, key
            else:
                _bits_equal(getattr(got, key), cents[mask] / 100, f"{variant}.{key}")
        for key in ("days_to_value", "days_observed"):
            if getattr(table, key) is None:
                assert getattr(got, key) is None, key
            else:
                _bits_equal(getattr(got, key), getattr(table, key)[mask], f"{variant}.{key}")


def _cli(path: Path, *, exact: bool) -> tuple[tuple[int, str, str], list]:
    """((exit code, stdout, stderr), what each read_columns call returned); ``exact``:
    DuckDB switched off."""
    calls = []
    real = duck.read_columns

    def spy(path, **kwargs):
        calls.append(None if exact else real(path, **kwargs))
        return calls[-1]

    with mock.patch.object(duck, "read_columns", spy):
        result = CliRunner().invoke(main, ["analyze", str(path)])
    return (result.exit_code, result.stdout, result.stderr), calls


def _small_chunks(data: bytes, extra: int, samples: int):
    """A scan chunk ``extra`` bytes past the header line, ``samples`` - 1 lines sampled
    across the file: small files take the paths of large ones."""
    header_end = data.find(b"\n") + 1 or len(data)
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(duck, "_SCAN_CHUNK", header_end + extra))
    stack.enter_context(mock.patch.object(duck, "_SAMPLES", samples))
    return stack


def _check(data: bytes, small: bool, extra: int, samples: int) -> None:
    """DuckDB declines the file, or the exact reader reads the same numbers from it and
    the CLI prints what it prints with DuckDB switched off."""
    with tempfile.TemporaryDirectory(prefix="nrrlab-fuzz-") as folder:
        path = Path(folder) / "accounts.csv"
        path.write_bytes(data)
        reading = (lambda: _small_chunks(data, extra, samples)) if small else contextlib.nullcontext
        with reading():
            found = duck.read_columns(path)
        # (pytest --hypothesis-show-statistics: how the examples split)
        event(f"DuckDB {'declined' if found is None else 'accepted'}")
        if found is None:
            return  # the CLI reads the file with read_accounts, as a forced run does
        _same_columns(found, data)
        with reading():
            new, calls = _cli(path, exact=False)
        assert calls[0] is not None
        old, _ = _cli(path, exact=True)
        assert new == old


FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
reads = {"small": st.booleans(), "extra": st.integers(1, 80), "samples": st.integers(2, 4)}


@settings(FUZZ, max_examples=40)
@given(data=csv_files(None), **reads)
def test_valid_files_duckdb_accepts_give_the_exact_readers_numbers_and_report(
        data, small, extra, samples):
    _check(data, small, extra, samples)


@pytest.mark.parametrize("fault", ROW_FAULTS + FILE_FAULTS)
@settings(FUZZ, max_examples=15)
@given(data=st.data(), **reads)
def test_a_faulty_file_is_declined_or_read_as_the_exact_reader_reads_it(
        fault, data, small, extra, samples):
    _check(data.draw(csv_files(fault)), small, extra, samples)
