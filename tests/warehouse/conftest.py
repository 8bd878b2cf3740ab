"""Warehouses for the tests: a DuckDB file (duckdb-engine) and a scratch schema on the
PostgreSQL server at 127.0.0.1:5432 (skipped when it cannot be reached), each holding
the same generated account table, and the data source rows that point at them."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

PG_SERVER = "postgresql+psycopg://root@127.0.0.1:5432/test"


def account_frame(seed: int = 7, n: int = 400, *, variants=("control", "treatment"),
                  pre: bool = True) -> pd.DataFrame:
    """Accounts following DESIGN §3 with every optional column (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    rows = len(variants) * n
    start = np.round(np.exp(rng.normal(np.log(600), 0.8, rows)), 2).clip(20, 250_000)
    variant = np.repeat(np.array(variants), n)
    lift = np.where(variant == variants[0], 0.0, 0.08)
    churn = rng.random(rows) < 0.08
    contract = ~churn & (rng.random(rows) < 0.1)
    expand = ~churn & (rng.random(rows) < 0.2 + lift)
    frame = pd.DataFrame({
        "account_id": [f"a-{i:06d}" for i in range(rows)],
        "variant": variant,
        "start_mrr": start,
        "expansion_mrr": np.where(expand, np.round(start * rng.uniform(0.05, 0.6, rows), 2), 0),
        "contraction_mrr": np.where(contract, np.round(start * rng.uniform(0.1, 0.5, rows), 2),
                                    0),
        "churned_mrr": np.where(churn, start, 0.0),
        "segment": rng.choice(["SMB", "Mid-Market", "Enterprise"], size=rows),
    })
    observed = rng.integers(20, 60, rows).astype(float)
    days = np.round(rng.gamma(2.0, 9.0, rows))
    frame["days_to_value"] = np.where(days <= observed, days, np.nan)
    frame["days_observed"] = observed
    if pre:
        frame["pre_start_mrr"] = np.round(start * rng.uniform(0.8, 1.1, rows), 2)
        frame["pre_end_mrr"] = np.round(frame["pre_start_mrr"] * rng.uniform(0.9, 1.2, rows), 2)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def frame_csv(frame: pd.DataFrame) -> bytes:
    out = io.StringIO()
    frame.to_csv(out, index=False, float_format="%.2f")
    return out.getvalue().encode()


@pytest.fixture
def duckdb_url(tmp_path):
    """``duckdb:///…`` of a file holding ``accounts`` (the generated frame) and ``ledger``."""
    path = tmp_path / "warehouse.duckdb"
    url = f"duckdb:///{path}"
    engine = create_engine(url)
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        raw.register("frame", account_frame())
        raw.execute("CREATE TABLE accounts AS SELECT * FROM frame")
        raw.unregister("frame")
    engine.dispose()
    return url


@pytest.fixture
def pg_warehouse():
    """A scratch schema ``wh_…`` on the PostgreSQL server holding ``accounts``; its URL
    (search_path set to the schema) and the schema name. Dropped afterwards."""
    schema = f"wh_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_SERVER)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:  # noqa: BLE001 - no server: skip, say why
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unavailable: {error}")
    frame = account_frame()
    with admin.begin() as connection:
        frame.to_sql("accounts", connection, schema=schema, index=False)
    url = f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    yield url, schema
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
