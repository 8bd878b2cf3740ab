"""The ledger import's speed paths (issue 16 benchmark) change no result.

* Without any quote in the file the fast reader splits lines plainly; with quotes (a
  comma or a line break inside a value) it keeps quote-aware splitting — both equal the
  exact reader, and a quoted comma is one value.
* The dimension codes the fast reader hands to the figures give the same labels and
  per-value figures as pandas grouping the raw CSV text (blank and whitespace-only values
  as ``(blank)``, a literal ``(blank)`` merged with them).
* ``customer_since`` written to SQLite as text equals Python's ``date.isoformat`` per row,
  for dense and sparse date ranges and blanks; the rows read back carry the version id.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlmodel import Session, select

from experiments import ledger as service
from experiments.ledger import _iso_dates, _part_of_table, import_ledger
from experiments.ledger_csv import _read_exact, _read_fast, read_ledger
from experiments.ledger_models import LedgerRow
from tests.experiments.test_ledger_csv import assert_same_tables

HEADER = (
    "account_id,period,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,"
    "customer_since,days_to_value,plan,region\n"
)


def _ledger_text(seed: int, *, quoted: bool) -> str:
    rng = np.random.default_rng(seed)
    plans = ["pro", "basic", "", "  ", "(blank)", "Team"]
    regions = ["EU, West" if quoted else "EU West", "US", "", "APAC"]
    lines = [HEADER]
    for account in range(60):
        since = date(2023, 1, 1) + timedelta(days=int(rng.integers(0, 700)))
        since_text = "" if account % 7 == 0 else since.isoformat()
        days = "" if account % 5 == 0 else str(int(rng.integers(0, 90)))
        plan = plans[int(rng.integers(0, len(plans)))]
        for month in range(1, 13):
            start = int(rng.integers(0, 5)) * 100
            churned = start if rng.random() < 0.1 else 0
            region = regions[int(rng.integers(0, len(regions)))]
            region = f'"{region}"' if "," in region else region
            lines.append(
                f"acc-{account},2025-{month:02d},{start},{int(rng.integers(0, 30))},0,"
                f"{churned},{since_text},{days},{plan},{region}\n"
            )
    return "".join(lines)


@pytest.mark.parametrize("quoted", [False, True])
def test_fast_reader_equals_exact_reader_with_and_without_quotes(quoted):
    data = _ledger_text(3, quoted=quoted).encode()
    assert (b'"' in data) is quoted
    fast = _read_fast(data, ("plan", "region"))
    assert fast is not None
    exact = _read_exact(data, ("plan", "region"), 50)
    assert_same_tables(fast, exact)
    regions = set(dict(fast.dimensions)["region"].tolist())
    assert ("EU, West" if quoted else "EU West") in regions


def test_a_quoted_line_break_still_reaches_the_exact_reader_with_its_physical_line():
    data = (HEADER + "a,2025-01,1,0,0,0,,,pro,EU\n"
            'b,2025-01,1,0,0,0,,,"pro\nplus",EU\n'
            "c,2025-01,-1,0,0,0,,,pro,EU\n").encode()
    with pytest.raises(service.ImportValidationError) as caught:
        read_ledger(data, dimensions="plan,region")
    assert [str(error) for error in caught.value.errors] == [
        "line 3, plan: contains a control character (U+000A)",
        "line 5, start_mrr: must be 0 or greater",
    ]


def test_dimension_codes_from_the_reader_give_pandas_groups():
    text = _ledger_text(11, quoted=True)
    table = read_ledger(text.encode(), dimensions="plan,region")
    assert table.dimension_codes is not None
    ledger = _part_of_table(table, table.months(), ["plan", "region"])
    arrays = ledger.arrays()
    stripped = service.CurrentLedger(**{
        **{name: getattr(ledger, name) for name in (
            "account_id", "month", "start_cents", "expansion_cents", "contraction_cents",
            "churned_cents", "customer_since_month", "days_to_value", "dimensions",
            "account_code")},
        "dimension_codes": None,
    }).arrays()

    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for name in ("plan", "region"):
        shown = raw[name].str.strip().replace("", "(blank)")
        codes, labels = arrays.dimensions[name]
        assert labels == tuple(sorted(shown.unique()))
        assert [labels[c] for c in codes] == shown.tolist()
        # The general path (hashing each row's string) agrees code for code.
        assert np.array_equal(codes, stripped.dimensions[name][0])
        assert labels == stripped.dimensions[name][1]
        # Per-value start MRR of the last period, from the stored figures.
        from stats.ledger import ledger_figures

        figures = ledger_figures(arrays)
        expected = (
            raw.assign(label=shown, start=raw["start_mrr"].astype(float))
            .query("period == '2025-12' and start > 0")
            .groupby("label")["start"].sum()
        )
        dimension = next(d for d in figures.dimensions if d.name == name)
        for label, total in expected.items():
            assert dimension.monthly[label][-1].start_mrr == pytest.approx(total)


@pytest.mark.parametrize("spread_days", [30, 10**6])
def test_customer_since_text_equals_isoformat_per_row(spread_days):
    rng = np.random.default_rng(spread_days)
    days = rng.integers(0, spread_days, size=500)
    values = (np.datetime64("1990-01-01") + days).astype("datetime64[D]")
    values[::9] = np.datetime64("NaT")
    expected = [
        None if np.isnat(v) else (date(1990, 1, 1) + timedelta(days=int(d))).isoformat()
        for v, d in zip(values, days, strict=True)
    ]
    assert _iso_dates(values, 0, len(values), len(values)) == expected
    assert _iso_dates(values, 100, 250, 150) == expected[100:250]
    assert _iso_dates(np.full(4, np.datetime64("NaT"), "datetime64[D]"), 0, 4, 4) == [None] * 4


@pytest.mark.db
def test_rows_written_carry_the_version_id_and_dates(session: Session):
    text = _ledger_text(5, quoted=False)
    version = import_ledger(session, text.encode(), dimensions="plan,region", actor=None,
                            filename="l.csv")
    session.commit()
    rows = session.exec(select(LedgerRow).order_by(LedgerRow.id)).all()
    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert len(rows) == len(raw)
    assert {row.version_id for row in rows} == {version.id}
    stored = [row.customer_since for row in rows]
    stored = [None if value is None else value.isoformat() for value in stored]
    assert stored == [value or None for value in raw["customer_since"]]


@pytest.mark.db
def test_figures_computed_during_the_insert_equal_a_recomputation_from_the_database(
    db_engine, tmp_path, monkeypatch
):
    """First upload and a full replacement (both own every period: the figures computed
    while the rows were written are stored), then a partial one (recomputed): each stored
    document equals the figures of the current rows read back from the database."""
    from experiments import ledger_import
    from experiments.ledger import current_figures, current_ledger
    from experiments.ledger_import import store_ledger_upload
    from tests.ledger_gen import write_csv

    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=120, months=13, seed=8)
    data = path.read_bytes()
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 500)
    monkeypatch.setattr(ledger_import, "SQLITE_YIELD_SECONDS", 0)
    used = []
    real = service._figures_document

    def spy(ledger):
        used.append(len(ledger))
        return real(ledger)

    monkeypatch.setattr(service, "_figures_document", spy)
    ahead = []

    def ahead_spy(pool, session, table):
        future = service.figures_in_background(pool, session, table)
        ahead.append(future is not None)
        return future

    monkeypatch.setattr(ledger_import, "figures_in_background", ahead_spy)
    changed = data.replace(b",basic,", b",pro,")
    partial = b"\n".join(
        [data.split(b"\n")[0]] + [line for line in changed.split(b"\n") if b",2025-" in line
                                  and line.split(b",")[1] >= b"2025-12"]
    ) + b"\n"
    for body, dims in ((data, "plan,region,size"), (changed, "plan,region,size"),
                       (partial, "plan,region,size")):
        store_ledger_upload(db_engine, body, dimensions=dims, actor_id=None, filename="l.csv")
        with Session(db_engine) as session:
            stored = current_figures(session)
            assert stored == real(current_ledger(session))
    # One computation per upload: the partial one is not computed ahead (it cannot be
    # the whole current ledger), the others are not recomputed.
    assert used == [1093, 1093, 1047]
    assert ahead == [True, True, False]


def test_one_trim_then_match_helper_for_the_fast_readers():
    """The fast account and ledger readers share one trim-only-if-needed pattern check."""
    import pyarrow as pa

    from experiments import ledger_csv
    from experiments.accounts_csv import fast

    assert ledger_csv._matching is fast._matching
    padded = pa.chunked_array([[" 1.50", "2"]])
    assert fast._matching(padded, fast._MONEY_RE2).to_pylist() == ["1.50", "2"]
    assert fast._matching(pa.chunked_array([["x"]]), fast._MONEY_RE2) is None
    assert fast._money_units(pa.chunked_array([["1.25", None]])).to_pylist() == [1.25, None]


def test_one_header_preamble_for_the_fast_readers():
    from experiments import ledger_csv
    from experiments.accounts_csv import fast

    assert ledger_csv._fast_header is fast._fast_header
    assert fast._fast_header(b"\xef\xbb\xbfa,b\n1,2\n", 1 << 20) == (6, ["a", "b"])
    assert fast._fast_header(b"a,b", 1 << 20) is None
