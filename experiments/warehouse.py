"""Warehouse-native datasets (issue 18 item 1, DESIGN §6): read an experiment's accounts,
or the revenue ledger, from a SQL query on a registered data source.

An experiment's query runs in the warehouse as a CTE under one ``GROUP BY [segment,]
variant`` that returns, per group, the count, the incidence counts (logo churn,
expansion) and the shifted sums and sums of products of every money column (start,
levers, the CUPED pre-period) — the same inputs :func:`experiments.datasets.arm_extras`
reads from our own table. A second ``GROUP BY [segment,] variant, day`` gives the
time-to-value tables. Only these sums come back, plus, for the rank checks, a bounded
random sample of per-account ``end``/``start`` values (:data:`SAMPLE_LIMIT`; every
account when the query returns no more than that). The result becomes a dataset version
with ``source = "warehouse"``, its inputs stored in ``warehouse_result``, and a snapshot
made by :func:`experiments.analysis.refresh_snapshot` — the upload's code path.

The query's columns follow the upload's rules (DESIGN §3): ``account_id``, ``variant`` and
``start_mrr`` are required; a lever column left out, or NULL, is 0, so a query of only the
required columns gives the figures an upload of the same file gives (the moments always
hold start and the three levers); other columns are ignored with the upload's note. Text
is trimmed as the upload trims a file's cells (ids, variants, segments; text money, days
and dates before their cast), a blank one is NULL; text money and days must then be
written as a file writes them (digits and a decimal point: not ``1e3``, ``+5`` or ``.5``,
which the casts take) and a text date as YYYY-MM-DD (:meth:`AccountQuery.not_plain`). Rows
breaking a rule are counted with an example; a money value above the upload's cap, NaN or
±Infinity is refused, and so is money with more than 2 decimal places (exactly for DECIMAL
columns, beyond a hundredth of a cent for binary floats: :meth:`AccountQuery.too_precise`)
and a day count that is NaN or infinite; a value that does not convert (text in
``start_mrr``, a malformed ``enrolled_on``) fails with its column named (a counted rule on
DuckDB, else :func:`_execute_naming_casts`), and so does a column whose type cannot hold
its values (a BOOLEAN, DATE or INTERVAL money column: :func:`wrong_types`, before any row
is read; a PostgreSQL MONEY column is named with the fix, a cast to numeric). An id,
variant or segment of another type (UUID, JSON, BOOLEAN) is read as its text, and one the
upload refuses (a control character, over 255 characters) is refused in the upload's
words (:func:`_text_problem`). An ``enrolled_on`` timestamp with a time zone is an
instant: its date is its date in UTC, whatever the warehouse session's time zone (a
plain timestamp keeps its own date).

The **ledger** cannot be reduced to per-period sums: TTM NRR follows each account across
twelve periods, cohorts need each account's first active month and customer_since, and
the velocity cohorts need per-account terciles. So its query's rows are pulled in chunks
(at most :data:`LEDGER_MAX_ROWS`), written as the §3b CSV in memory and stored through
the ledger upload's own code (:func:`experiments.ledger_import.store_ledger_upload`),
which validates them by the same rules and computes the same figures. A ledger is
company-wide and about a million rows (L16 stores that in seconds), so this costs one
upload's worth of work, without a second implementation of TTM and cohorts in SQL.
A date or timestamp no file can hold (±infinity, BC, a year past 9999) is refused by
line and column in the upload's words, nothing stored (:func:`pull_ledger`).
Its rows' time is the pull's: ~30-50 s per million rows measured on a loaded PostgreSQL,
so a ledger of a few million rows meets the time limit, and its message says which
setting to raise (:data:`TIMEOUT_VARIABLE`). A timestamp with a time zone is written as
its date (or month) in UTC (:func:`_cell`), as ``enrolled_on``.

No transaction of the app's database stays open while a warehouse is read
(:func:`run_refresh`, :func:`refresh_ledger`): what is stored afterwards (the source's
name, the experiment's status) is read again then.

Safety: the URL is read from the environment variable the data source names, never
stored or shown. Each statement runs in a transaction set read-only where the dialect
has one (PostgreSQL ``SET TRANSACTION READ ONLY``; DuckDB opened ``read_only``), with a
statement timeout (PostgreSQL ``statement_timeout``, Snowflake
``STATEMENT_TIMEOUT_IN_SECONDS``, Trino ``query_max_run_time``; BigQuery: set
``job_timeout`` / a byte cap on the URL). On PostgreSQL and DuckDB the timeout bounds the
whole read, every statement together (:class:`_Deadline` cancels what runs once it is
up, 1 s later on PostgreSQL so that one long statement meets its own timeout first);
it is :data:`DEFAULT_TIMEOUT_SECONDS` unless :data:`TIMEOUT_VARIABLE` says otherwise.
Elsewhere a read-only credential is the guarantee. A failed or timed-out query raises
:class:`WarehouseError` with the warehouse's own message (the password, if any, blanked
out).

DuckDB runs inside this process and spills what does not fit in memory to a temporary
directory beside the database file, by default up to 90% of that disk: a runaway query
(a cross join under ``count(DISTINCT …)``) could fill it. So its reads open with a
``memory_limit`` and a ``max_temp_directory_size`` (:data:`DUCKDB_LIMITS`, from the
environment, or per source from its URL's query string); a query that needs more stops
with DuckDB's "Out of Memory" error, worded as which limit it hit, and DuckDB deletes its
spill files when the query fails and the directory when the connection closes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import (
    Date,
    Double,
    String,
    and_,
    case,
    column,
    create_engine,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    try_cast,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from experiments.accounts_csv.contract import MAX_CENTS, MAX_TEXT_LENGTH, WHITESPACE, show
from experiments.analysis import refresh_snapshot
from experiments.audit import record_event
from experiments.datasets import (
    ENROLMENT_WINDOW_DAYS,
    ArmExtras,
    dataset_with_content,
    lock_experiment,
    next_version,
)
from experiments.errors import NotFound, ValidationFailed
from experiments.imports import UPLOAD_STATUSES, variant_keys
from experiments.input_rules import (
    CONTROL_MESSAGE,
    bidi_problem,
    cell_problem,
    control_character,
    parse_id,
)
from experiments.models import Dataset, Experiment, User, utcnow
from experiments.versioning import compare_and_set
from experiments.warehouse_inputs import AccountSample, PushedInputs
from experiments.warehouse_models import (
    DIALECTS,
    SCHEDULES,
    DataSource,
    WarehouseQuery,
    WarehouseResult,
)
from stats import Moments
from stats.velocity import TimeTable

log = logging.getLogger("nrrlab.warehouse")

#: Per-account rows read for the rank checks at most (every row when there are fewer).
#: Equal to stats.robust.MAX_PERMUTATION_ACCOUNTS: any dataset small enough for the
#: permutation test is read whole, so the test sees every account.
SAMPLE_LIMIT = 20_000
#: Seconds one refresh may read the warehouse, all its statements together, unless
#: :data:`TIMEOUT_VARIABLE` says otherwise.
DEFAULT_TIMEOUT_SECONDS = 120
#: The environment variable of the refresh's time limit in seconds (where the jobs run).
TIMEOUT_VARIABLE = "NRRLAB_WAREHOUSE_TIMEOUT"
#: The largest time limit it may set (a day).
MAX_TIMEOUT_SECONDS = 86_400
#: Seconds a ledger refresh may read, unless :data:`LEDGER_TIMEOUT_VARIABLE` says
#: otherwise. A ledger pull brings every row through this process (~30-50 s per million
#: rows on a loaded PostgreSQL, DESIGN): 120 s stopped ledgers of ~3M rows, well inside
#: :data:`LEDGER_MAX_ROWS`; 900 s leaves the largest one room on a slower warehouse.
DEFAULT_LEDGER_TIMEOUT_SECONDS = 900
LEDGER_TIMEOUT_VARIABLE = "NRRLAB_WAREHOUSE_LEDGER_TIMEOUT"
#: Rows a ledger query may return (they are pulled through this process).
LEDGER_MAX_ROWS = 5_000_000
#: Rows fetched per round trip when pulling a ledger.
LEDGER_CHUNK = 50_000
MAX_SQL_LENGTH = 100_000
#: Problems listed at most when the rows break the contract.
MAX_LISTED = 20

REQUIRED = ("account_id", "variant", "start_mrr")
MONEY_OPTIONAL = ("expansion_mrr", "contraction_mrr", "churned_mrr")
OPTIONAL = (*MONEY_OPTIONAL, "segment", "days_to_value", "days_observed", "pre_start_mrr",
            "pre_end_mrr", "enrolled_on")
CONTRACT = (*REQUIRED, *OPTIONAL)
LEDGER_REQUIRED = ("account_id", "period", "start_mrr")
LEDGER_KNOWN = (*LEDGER_REQUIRED, *MONEY_OPTIONAL, "customer_since", "days_to_value")
#: Money columns every account has (an absent lever column is 0, DESIGN §3).
_ACCOUNT_MONEY = ("start_mrr", *MONEY_OPTIONAL)
#: The largest money value of an account row, as an upload's (currency units).
_MAX_MONEY = (MAX_CENTS - 1) / 100
#: The largest finite double (a day count above it is Infinity or NaN).
_MAX_DOUBLE = 1.7976931348623157e308
#: Moment columns in the order of :func:`experiments.datasets.arm_extras`.
_MOMENT_COLUMNS = {
    "start": "start_mrr",
    "expansion": "expansion_mrr",
    "contraction": "contraction_mrr",
    "churned": "churned_mrr",
    "pre_start": "pre_start_mrr",
    "pre_end": "pre_end_mrr",
}
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
#: DuckDB settings of every warehouse read: the environment variable that sets each, and
#: its default. DuckDB's own defaults are 80% of the machine's memory and 90% of the free
#: disk, per process; a warehouse read only brings back sums, a sample or a ledger's rows
#: (streamed), so it needs neither. A source's URL may set either itself
#: (``duckdb:///w.duckdb?memory_limit=4GB``), which wins.
DUCKDB_LIMITS: Mapping[str, tuple[str, str]] = {
    "memory_limit": ("NRRLAB_WAREHOUSE_DUCKDB_MEMORY", "1GB"),
    "max_temp_directory_size": ("NRRLAB_WAREHOUSE_DUCKDB_SPILL", "4GB"),
}
_SIZE = re.compile(r"(\d{1,12}(?:\.\d{1,6})?) ?(?:[KMGT]i?B|B)", re.IGNORECASE)


class WarehouseError(Exception):
    """The warehouse could not be read: no URL, a failed or timed-out query, bad columns.

    The message is meant for the user (the warehouse's own message where there is one).
    """


class TimedOut(WarehouseError):
    """The read was stopped by the refresh's time limit (or a statement's timeout)."""


def refresh_timeout(environ: Mapping[str, str] | None = None, *,
                    ledger: bool = False) -> float:
    """The refresh's time limit: :data:`TIMEOUT_VARIABLE` in seconds, else
    :data:`DEFAULT_TIMEOUT_SECONDS`; with ``ledger``, :data:`LEDGER_TIMEOUT_VARIABLE`, else
    :data:`DEFAULT_LEDGER_TIMEOUT_SECONDS`.

    Raises
    ------
    WarehouseError
        The variable holds no number of seconds from 1 to :data:`MAX_TIMEOUT_SECONDS`.
    """
    variable = LEDGER_TIMEOUT_VARIABLE if ledger else TIMEOUT_VARIABLE
    raw = (os.environ if environ is None else environ).get(variable, "").strip()
    if not raw:
        return DEFAULT_LEDGER_TIMEOUT_SECONDS if ledger else DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 1 <= seconds <= MAX_TIMEOUT_SECONDS:  # NaN fails too
        raise WarehouseError(f"{variable} must be a number of seconds from 1 to "
                             f"{MAX_TIMEOUT_SECONDS}, not {show(raw)}.")
    return seconds


class RowsRejected(WarehouseError):
    """The query's rows break the account contract (DESIGN §3); ``problems`` lists them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("The query's rows break the account data contract (DESIGN §3): "
                         + "; ".join(problems))


# ------------------------------------------------------------------ data sources


def register_source(
    session: Session, data: Mapping[str, Any], *, actor: User
) -> DataSource:
    """Register a data source: a name, the environment variable holding its URL, a dialect.

    Nothing secret is stored: the URL stays in the server's environment. Flushed.

    Raises
    ------
    ValidationFailed
        A blank or taken name, an environment variable name that is not UPPER_SNAKE,
        or an unknown dialect.
    """
    errors: dict[str, str] = {}
    name = str(data.get("name") or "").strip()
    env = str(data.get("url_env") or "").strip()
    dialect = str(data.get("dialect") or "").strip()
    if not name:
        errors["name"] = "give the data source a name"
    elif len(name) > 100:
        errors["name"] = "at most 100 characters"
    elif control_character(name):  # worded as a team's or a user's name
        errors["name"] = CONTROL_MESSAGE
    elif problem := bidi_problem(name):
        errors["name"] = problem
    elif session.scalars(select(DataSource).where(DataSource.name == name)).first():
        errors["name"] = f"a data source named {name!r} exists already"
    if not _ENV_NAME.fullmatch(env):
        errors["url_env"] = ("the name of an environment variable: capital letters, digits "
                             "and underscores, not starting with a digit (e.g. WAREHOUSE_URL)")
    if dialect not in DIALECTS:
        errors["dialect"] = f"one of {', '.join(DIALECTS)}"
    if errors:
        raise ValidationFailed(errors)
    source = DataSource(name=name, url_env=env, dialect=dialect, created_by_id=actor.id)
    try:
        with session.begin_nested():  # two admins registering one name at once: not a 500
            session.add(source)
    except IntegrityError as exc:
        raise ValidationFailed({"name": f"a data source named {name!r} exists already"}) from exc
    record_event(session, "warehouse.source_create", actor=actor, entity_type="data_source",
                 entity_id=source.id, diff={"name": [None, name], "url_env": [None, env],
                                            "dialect": [None, dialect]})
    return source


def list_sources(session: Session) -> list[DataSource]:
    return list(session.scalars(select(DataSource).order_by(DataSource.name)))


def source_status(source: DataSource, environ: Mapping[str, str] | None = None) -> str:
    """Whether the server can use ``source`` now, in words (the URL itself is never shown;
    a malformed DuckDB limit is named)."""
    try:
        source_url(source, environ)
        if source.dialect == "duckdb":
            duckdb_limits(environ)
    except WarehouseError as error:
        return str(error)
    return f"{source.url_env} is set ({source.dialect})"


def source_url(source: DataSource, environ: Mapping[str, str] | None = None):
    """The source's URL from its environment variable, checked against its dialect.

    Raises
    ------
    WarehouseError
        The variable is unset, is not a SQLAlchemy URL, or names another backend.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(source.url_env, "").strip()
    if not raw:
        raise WarehouseError(
            f"The environment variable {source.url_env} is not set on the server; set it to "
            f"the {source.dialect} SQLAlchemy URL of {source.name!r}.")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise WarehouseError(
            f"The environment variable {source.url_env} does not hold a SQLAlchemy URL "
            "(dialect+driver://user:password@host/database).") from None
    backend = url.get_backend_name()
    if backend != source.dialect:
        raise WarehouseError(
            f"The environment variable {source.url_env} holds a {backend} URL, but "
            f"{source.name!r} is registered as {source.dialect}.")
    return url


def session_statements(dialect: str, timeout: float) -> list[str]:
    """What each read runs first on ``dialect``: read-only and a statement timeout."""
    seconds = max(1, int(timeout))
    if dialect == "postgresql":
        # One snapshot for every statement of the refresh (the sums and the sample agree).
        return ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                f"SET LOCAL statement_timeout = {seconds * 1000}"]
    if dialect == "snowflake":
        return [f"ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = {seconds}"]
    if dialect == "trino":
        return [f"SET SESSION query_max_run_time = '{seconds}s'"]
    return []  # duckdb: read_only connection + _Deadline; bigquery: job_timeout on URL


def duckdb_limits(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """DuckDB's ``memory_limit`` and ``max_temp_directory_size`` for warehouse reads, from
    the environment (:data:`DUCKDB_LIMITS`).

    Raises
    ------
    WarehouseError
        A value that is not a size such as ``512MB`` or ``4GB`` (or a zero memory limit).
    """
    environ = os.environ if environ is None else environ
    limits: dict[str, str] = {}
    for setting, (variable, default) in DUCKDB_LIMITS.items():
        value = environ.get(variable, "").strip() or default
        size = _SIZE.fullmatch(value)
        if size is None or (setting == "memory_limit" and float(size.group(1)) == 0):
            raise WarehouseError(
                f"The environment variable {variable} must be a size such as 512MB or 4GB "
                f"(DuckDB's {setting} for warehouse reads), not {value[:40]!r}.")
        limits[setting] = value
    return limits


def open_engine(source: DataSource, environ: Mapping[str, str] | None = None) -> Engine:
    """An engine on the source (no pool: reads are rare and long).

    Raises
    ------
    WarehouseError
        No usable URL, a malformed DuckDB limit, or the dialect's driver is not installed.
    """
    url = source_url(source, environ)
    connect_args: dict[str, Any] = {}
    if source.dialect == "duckdb":
        connect_args["read_only"] = True
        # duckdb-engine lays the URL's query string over this config: the URL's wins.
        connect_args["config"] = duckdb_limits(environ)
    try:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as error:
        raise WarehouseError(
            f"The {source.dialect} driver is not installed on the server "
            f"(pip install 'nrrlab[warehouse]'): {error}") from None


def _message(error: BaseException, secret: str | None) -> str:
    """The warehouse's own words, first lines only, with the password blanked out."""
    orig = getattr(error, "orig", None) or error
    text_ = " ".join(str(orig).strip().splitlines()[:3]) or type(orig).__name__
    if secret:
        text_ = text_.replace(secret, "***")
    return text_[:1000]


def _duckdb_limit_hit(error: BaseException, engine: Engine,
                      environ: Mapping[str, str] | None) -> str | None:
    """What a DuckDB "Out of Memory" error means for the user: which limit the query
    needed more than, and how to raise it; ``None`` for any other error."""
    orig = getattr(error, "orig", None) or error
    words = str(orig).strip()
    if not words.startswith("Out of Memory"):
        return None
    first = words.splitlines()[0][:300]
    url_settings = {key: str(value) for key, value in engine.url.query.items()}
    spill = "max_temp_directory_size" in words
    setting = "max_temp_directory_size" if spill else "memory_limit"
    variable, default = DUCKDB_LIMITS[setting]
    environ = os.environ if environ is None else environ
    size = url_settings.get(setting) or environ.get(variable, "").strip() or default
    what = "temporary disk space" if spill else "memory"
    return (f"the query needed more than {size} of {what} and was stopped ({first}). "
            "Aggregate or filter more in the query, or raise the limit: "
            f"{variable} on the server, or {setting} on the source's URL")


#: Seconds between two stops of whatever runs once the refresh's time is up.
_STOP_EVERY = 0.2
#: Seconds a PostgreSQL read may run beyond its timeout before it is stopped: a statement
#: that alone runs too long meets its own statement timeout first (the warehouse's words).
_DEADLINE_GRACE = 1.0


class _Deadline:
    """The time limit of one read, all its statements together (a statement timeout
    bounds each statement alone: a refresh runs up to ~15, counting the per-column
    probes after a conversion error). When ``timeout`` seconds have passed, ``stop``
    (cancel the statement running) is called, and again every :data:`_STOP_EVERY`
    seconds until :meth:`close`, so a statement started after the deadline is stopped
    too."""

    def __init__(self, timeout: float, stop, *, limit: float):
        self.timeout = timeout
        #: The limit the user set (``timeout`` less any grace), for the message.
        self.limit = limit
        self.expired = False
        self._stop = stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-deadline",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._done.wait(self.timeout):
            return
        self.expired = True
        while True:
            try:
                self._stop()
            except Exception:  # a failed cancel: try again
                log.debug("warehouse deadline: stopping the statement failed", exc_info=True)
            if self._done.wait(_STOP_EVERY):
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()

    def message(self, detail: str) -> str:
        return (f"The warehouse refused the query: the query ran longer than {self.limit:g} s "
                f"and was stopped (the time limit of the whole refresh, all its statements "
                f"together: {detail})")


#: Where :func:`reading` keeps its :class:`_Deadline` in the connection's ``info``.
_DEADLINE_KEY = "nrrlab_warehouse_deadline"


def stop_if_late(connection: Connection) -> None:
    """Raise :class:`TimedOut` once the read's time limit is up. A cancel stops only a
    statement the warehouse is running: rows fetched in chunks (a ledger pull: ~30-50 s
    of this process's time per million rows, each FETCH a few milliseconds) leave the
    server idle almost all the time, and PostgreSQL ignores a cancel that reaches an
    idle session, so the loop that consumes them asks here after each chunk.
    """
    deadline = connection.info.get(_DEADLINE_KEY)
    if deadline is not None and deadline.expired:
        raise TimedOut(deadline.message("rows were still being read when it was up"))


def _stopper(dialect: str, raw: Any):
    """How to stop the statement running on the driver connection ``raw``, or ``None``
    (other dialects: their statement timeout bounds each statement)."""
    if dialect == "duckdb":
        return raw.interrupt
    if dialect == "postgresql":
        cancel = getattr(raw, "cancel_safe", None)  # psycopg >= 3.2
        return (lambda: cancel(timeout=2.0)) if cancel is not None else raw.cancel
    return None


@contextmanager
def reading(
    source: DataSource, *, environ: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Iterator[Connection]:
    """A read-only connection with a statement timeout; errors become :class:`WarehouseError`.

    The transaction is always rolled back: nothing a query might do is kept.
    """
    engine = open_engine(source, environ)
    secret = engine.url.password
    deadline: _Deadline | None = None
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                for statement in session_statements(source.dialect, timeout):
                    connection.exec_driver_sql(statement)
                stop = _stopper(source.dialect, connection.connection.driver_connection)
                if stop is not None:
                    grace = _DEADLINE_GRACE if source.dialect == "postgresql" else 0.0
                    deadline = _Deadline(timeout + grace, stop, limit=timeout)
                    connection.info[_DEADLINE_KEY] = deadline
                yield connection
            finally:
                if deadline is not None:
                    connection.info.pop(_DEADLINE_KEY, None)
                    deadline.close()
                transaction.rollback()
    except WarehouseError:
        raise
    except (DBAPIError, SQLAlchemyError) as error:
        detail = _message(error, secret)
        expired = deadline is not None and deadline.expired
        if expired:
            raise TimedOut(deadline.message(detail)) from None
        if source.dialect == "duckdb":
            detail = _duckdb_limit_hit(error, engine, environ) or detail
        # 57014: PostgreSQL's query_canceled (its statement_timeout, or the deadline's cancel)
        stopped = getattr(getattr(error, "orig", None), "sqlstate", None) == "57014"
        raise (TimedOut if stopped else WarehouseError)(
            f"The warehouse refused the query: {detail}") from None
    except Exception as error:  # noqa: BLE001 - drivers (BigQuery) raise outside DBAPI
        raise WarehouseError(f"The warehouse could not be read: {_message(error, secret)}"
                             ) from None
    finally:
        engine.dispose()


# --------------------------------------------------------------------- the query


def check_sql(sql: str) -> str:
    """The query text, trimmed of a final ``;``.

    Raises
    ------
    ValidationFailed
        Blank, too long, control characters, or more than one statement.
    """
    body = (sql or "").strip().rstrip(";").rstrip()
    problem = None
    if not body:
        problem = "write a SELECT query that returns one row per account"
    elif len(body) > MAX_SQL_LENGTH:
        problem = f"at most {MAX_SQL_LENGTH:,} characters"
    elif control_character(body, multiline=True):
        problem = control_character(body, multiline=True)
    elif ";" in body:
        problem = ("one SELECT statement only: remove the ';' (a ';' inside a string literal "
                   "counts too: use chr(59) there)")
    if problem:
        raise ValidationFailed({"sql_text": problem})
    return body


def probe_columns(connection: Connection, sql: str) -> list[tuple[str, str | None]]:
    """The query's columns and the kind of each (``WHERE 1 = 0``: no rows are read).

    A kind is ``"float"`` (DOUBLE, REAL), ``"decimal"`` (DECIMAL, NUMERIC), ``"integer"``,
    ``"text"``, ``"boolean"``, ``"date"`` (DATE, TIMESTAMP), ``"instant"`` (TIMESTAMP WITH
    TIME ZONE), ``"money"`` (PostgreSQL's MONEY) or ``"other"`` (INTERVAL, JSON, UUID,
    bytes, lists: neither a number, a date nor text), read from the driver's
    description on PostgreSQL and DuckDB; ``None`` (unknown) elsewhere or for any other
    type.
    """
    rows = text(sql).columns().subquery("warehouse_probe")
    probe = select(literal_column("*")).select_from(rows).where(false())
    result = connection.execute(probe)
    dialect = connection.dialect.name
    description = result.cursor.description if result.cursor is not None else None
    codes = [d[1] for d in description] if description else [None] * len(result.keys())
    return [(str(name), _kind(code, dialect)) for name, code in zip(result.keys(), codes,
                                                                    strict=True)]


#: PostgreSQL type OIDs by kind (float4/8, numeric, int2/4/8, text/varchar/bpchar, bool,
#: date/timestamp, timestamptz, money, interval/json/jsonb/uuid/bytea).
_PG_KINDS = {700: "float", 701: "float", 1700: "decimal", 20: "integer", 21: "integer",
             23: "integer", 25: "text", 1043: "text", 1042: "text", 16: "boolean",
             1082: "date", 1114: "date", 1184: "instant", 790: "money",
             **dict.fromkeys((1186, 114, 3802, 2950, 17), "other")}
_DUCKDB_KINDS = {"DOUBLE": "float", "FLOAT": "float", "REAL": "float", "VARCHAR": "text",
                 **dict.fromkeys(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                                  "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"), "integer"),
                 "BOOLEAN": "boolean",
                 **dict.fromkeys(("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS",
                                  "TIMESTAMP_NS"), "date"),
                 "TIMESTAMP WITH TIME ZONE": "instant",
                 **dict.fromkeys(("INTERVAL", "JSON", "UUID", "BLOB"), "other")}


def _kind(code: Any, dialect: str) -> str | None:
    if dialect == "postgresql":
        return _PG_KINDS.get(code) if isinstance(code, int) else None
    if dialect == "duckdb" and code is not None:
        name = str(code).upper()
        if name.startswith("DECIMAL"):
            return "decimal"
        if name.endswith("]") or name.startswith(("STRUCT", "MAP", "UNION")):
            return "other"
        return _DUCKDB_KINDS.get(name)
    return None


#: Kinds a contract column cannot hold whatever its values (the refresh names the column
#: before any row is read): a number is never true/false, a date, an interval or JSON
#: (DuckDB would read true as 1.00; PostgreSQL's refusal names no column). PostgreSQL's
#: MONEY does not cast to a float either: the user is told to cast it to numeric.
_WRONG_KINDS = {"number": ("boolean", "date", "instant", "other", "money"),
                "date (YYYY-MM-DD)": ("boolean", "integer", "float", "decimal", "other",
                                      "money")}
_KIND_WORDS = {"boolean": "true/false", "date": "a date or timestamp",
               "instant": "a date or timestamp", "money": "PostgreSQL's money type",
               "integer": "a number",
               "float": "a number", "decimal": "a number",
               "other": "neither a number, a date nor text"}


def wrong_types(kinds: Mapping[str, str | None]) -> list[str]:
    """The contract's columns whose type cannot hold what they must (``{contract name:
    kind}`` of :func:`probe_columns`), as problems naming each."""
    return [(f"{name} is of PostgreSQL's money type, which the refresh does not read: "
             f"cast it to numeric in the query ({name}::numeric AS {name})"
             if kinds[name] == "money" and must == "number" else
             f"{name} holds a value that is not a {must} (the query returns it as "
             f"{_KIND_WORDS[kinds[name]]})")
            for name, must in _CAST_KINDS.items()
            if kinds.get(name) in _WRONG_KINDS[must]]


def map_columns(names: list[str], *, known: tuple[str, ...], required: tuple[str, ...],
                allow_extra: bool = False, ignore_extra: bool = False) -> dict[str, str]:
    """``{contract name: the query's column name}`` (names compared case-insensitively).

    ``allow_extra``: other columns are mapped too (the ledger's dimensions);
    ``ignore_extra``: they are left out of the mapping (an account query, as the upload
    ignores unknown columns; :func:`ignored_columns` words the note), unless a required
    column is missing: then they are named beside it, likely its misspelling. A column DuckDB
    renamed because the query repeats a contract name (``start_mrr_1`` beside
    ``start_mrr``) is the repeat it is, never ignored.

    Raises
    ------
    WarehouseError
        Missing required columns, columns the contract does not know (unless
        ``allow_extra`` or ``ignore_extra``), or two columns with one name.
    """
    mapping: dict[str, str] = {}
    problems = []
    extra = []
    for name in names:
        key = str(name).strip().lower()
        if key in mapping:
            problems.append(f"the column {key} appears twice")
        elif key in known or allow_extra:
            mapping[key] = str(name)
        else:
            extra.append(str(name))
    lowered = {str(n).strip().lower() for n in names}
    renamed = [n for n in extra if (m := _RENAMED.fullmatch(n.strip().lower()))
               and m.group(1) in known and m.group(1) in lowered]
    problems += [f"the column {_RENAMED.fullmatch(n.strip().lower()).group(1)} appears twice "
                 f"(the second was renamed {n})" for n in renamed]
    missing = [name for name in required if name not in mapping]
    # Ignored only when nothing is missing: else the unknown names are likely the cause.
    extra = [n for n in extra if n not in renamed and not (ignore_extra and not missing)]
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if extra:
        problems.append(
            f"extra column{'s' if len(extra) > 1 else ''} {', '.join(extra)}: not part of the "
            f"contract; select only {', '.join(known)}")
    if ("pre_start_mrr" in mapping) != ("pre_end_mrr" in mapping) and "pre_start_mrr" in known:
        problems.append("pre_start_mrr and pre_end_mrr come together or not at all")
    if problems:
        raise WarehouseError("The query's columns do not match the contract: "
                             + "; ".join(problems) + ".")
    return mapping


#: A repeated column name as DuckDB renames it in a subquery (``start_mrr_1``).
_RENAMED = re.compile(r"(.+)_[0-9]+")


def ignored_columns(names: list[str], mapping: Mapping[str, str]) -> tuple[str, ...]:
    """The note of an account query's columns outside the contract, as the upload's."""
    used = set(mapping.values())
    unknown = [str(n) for n in names if str(n) not in used]
    if not unknown:
        return ()
    return (f"ignored unknown column{'s' if len(unknown) > 1 else ''}: "
            + ", ".join(show(n) for n in unknown),)


class _Trimmed(FunctionElement):
    """``NULLIF(TRIM(value, <the upload's WHITESPACE>), '')``: a text value trimmed as the
    upload trims it, blank as NULL. The characters are written into the SQL text, not
    bound, so that the same expression in a select list and its ``GROUP BY`` is one."""

    type = String()
    inherit_cache = True
    name = "trim"


#: :data:`WHITESPACE` as a SQL literal (no quote or backslash among them).
_WHITESPACE_SQL = "'" + WHITESPACE + "'"
#: BigQuery's string literals hold no raw line breaks: its escapes instead.
_WHITESPACE_BIGQUERY = "'" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "'"


@compiles(_Trimmed)
def _trimmed(element, compiler, **kw):  # trim(x, chars): Snowflake and others
    (value,) = list(element.clauses)
    return f"nullif(trim({compiler.process(value, **kw)}, {_WHITESPACE_SQL}), '')"


@compiles(_Trimmed, "postgresql")
@compiles(_Trimmed, "duckdb")
def _trimmed_when_padded(element, compiler, **kw):
    """Trimmed only when the first or last character is whitespace (or the value is
    empty): most ids are not padded, and trimming each of a million ids by a set of
    characters cost DuckDB ~1.2 s of CPU per aggregate, against ~0.1 s for this test."""
    (value,) = list(element.clauses)
    x = compiler.process(value, **kw)
    padded = (f"strpos({_WHITESPACE_SQL}, left({x}, 1)) > 0 OR "
              f"strpos({_WHITESPACE_SQL}, right({x}, 1)) > 0")
    return f"CASE WHEN {padded} THEN nullif(trim({x}, {_WHITESPACE_SQL}), '') ELSE {x} END"


@compiles(_Trimmed, "bigquery")
def _trimmed_bigquery(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"nullif(trim({compiler.process(value, **kw)}, {_WHITESPACE_BIGQUERY}), '')"


@compiles(_Trimmed, "trino")
def _trimmed_trino(element, compiler, **kw):  # Trino has only the standard form
    (value,) = list(element.clauses)
    return f"nullif(trim(BOTH {_WHITESPACE_SQL} FROM {compiler.process(value, **kw)}), '')"


def _trim(value):
    """A text value trimmed as the upload trims (DESIGN §3), blank as NULL."""
    return _Trimmed(value)


#: How a file writes a number and a date (the upload's readers, DESIGN §3): a text value
#: of a number or date column must look so (:meth:`AccountQuery.not_plain`).
_PLAIN_NUMBER = "^-?[0-9]+([.][0-9]+)?$"
_PLAIN_DATE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

#: Money and day values within this many cents of a whole cent are taken as that cent in
#: a binary float column: the float nearest to 0.10 is not 0.10, and at the upload's cap
#: (10^13 cents) two roundings move a value by ~0.002 cents.
_CENT_TOLERANCE = 0.01


@dataclass(frozen=True)
class AccountQuery:
    """The user's query as a CTE and the SQL expressions of the contract's columns."""

    cte: Any
    columns: Mapping[str, str]
    #: ``{contract name: kind}`` (:func:`probe_columns`; absent: unknown).
    kinds: Mapping[str, str | None] = field(default_factory=dict)
    #: The warehouse's dialect: on DuckDB text is converted with TRY_CAST and a value
    #: that does not convert is counted as a rule (:func:`check_query`).
    dialect: str = ""

    @classmethod
    def of(cls, sql: str, columns: Mapping[str, str],
           kinds: Mapping[str, str | None] | None = None, dialect: str = "") -> AccountQuery:
        rows = text(sql).columns(*(column(name) for name in columns.values()))
        return cls(rows.cte("warehouse_rows"), dict(columns), dict(kinds or {}), dialect)

    def has(self, name: str) -> bool:
        return name in self.columns

    def raw(self, name: str):
        return self.cte.c[self.columns[name]]

    def key(self, name: str):
        """A column to group, order or take the least of (account_id, variant, segment):
        as it is, but as its text when of a kind that is neither text nor a number
        (PostgreSQL has no equality or ordering for JSON, no min() of a UUID; a file holds
        ``true``, not ``True``). An unknown kind is left as it is."""
        if self.kind(name) in ("boolean", "date", "instant", "other"):
            return self._as_text(name)
        return self.raw(name)

    def _as_text(self, name: str):
        """A column of another type as its text; a timestamp with a time zone as its
        moment in UTC (cast as it is, PostgreSQL writes it in the session's zone:
        ``2025-07-01 01:30:00+02`` in Berlin, ``2025-06-30 23:30:00+00`` in UTC, so the
        same query gave other segments, another sha256 and a new version)."""
        raw = self.raw(name)
        if self.kind(name) == "instant":
            raw = func.timezone(literal_column("'UTC'"), raw)  # one text in GROUP BY too
        return func.cast(raw, String())

    def kind(self, name: str) -> str | None:
        return self.kinds.get(name)

    def text(self, name: str):
        """A text column (account_id, variant, segment) trimmed as the upload trims it
        (DESIGN §3's :data:`WHITESPACE`), blank as NULL; any other type as its text."""
        return _trim(self.raw(name) if self.kind(name) == "text" else self._as_text(name))

    def money(self, name: str):
        """A money column as float (an absent lever column is 0; blank is 0, DESIGN §3)."""
        if name not in self.columns:
            return literal(0.0)
        value = self.number(name)
        return value if name in ("start_mrr", "pre_start_mrr", "pre_end_mrr") else (
            func.coalesce(value, 0.0))

    def number(self, name: str):
        """A number column as float; text is trimmed first (blank is NULL), as uploaded."""
        return self._converted(name, Double())

    def day(self):
        """``enrolled_on`` as a date (text trimmed first, blank is NULL). A timestamp with
        a time zone is an instant: its date in UTC, whatever the warehouse session's time
        zone (a plain timestamp keeps its own date)."""
        if self.kind("enrolled_on") == "instant":
            return func.cast(func.timezone("UTC", self.raw("enrolled_on")), Date())
        return self._converted("enrolled_on", Date())

    def _converted(self, name: str, target):
        if self.kind(name) != "text":
            return func.cast(self.raw(name), target)
        if self.dialect == "duckdb":  # trimmed text names no source column in its error
            return try_cast(_trim(self.raw(name)), target)
        return func.cast(_trim(self.raw(name)), target)

    def blank(self, name: str):
        """Whether a value is blank (NULL, or text of whitespace only), not whether it
        failed to convert."""
        if self.kind(name) == "text":
            return _trim(self.raw(name)).is_(None)
        return self.raw(name).is_(None)

    def unconvertible(self, name: str):
        """Whether a text value does not convert (DuckDB only; ``None`` elsewhere, where
        :func:`_execute_naming_casts` names the column after the warehouse's error)."""
        if self.dialect != "duckdb" or self.kind(name) != "text":
            return None
        target = Date() if name == "enrolled_on" else Double()
        return and_(_trim(self.raw(name)).is_not(None), self._converted(name, target).is_(None))

    def not_plain(self, name: str):
        """Whether a text value that converts is not written as the upload reads it
        (DESIGN §3): digits with an optional decimal point (a sign only to be refused as
        negative), a date as YYYY-MM-DD; the casts also take ``1e3``, ``+5``, ``.5``,
        ``0x10`` or ``2026/01/05``, which a file may not hold. ``None`` unless text.
        A value that does not convert at all is :meth:`unconvertible`'s (DuckDB) or
        fails the cast (PostgreSQL)."""
        if self.kind(name) != "text":
            return None
        trimmed = _trim(self.raw(name))
        date_ = name == "enrolled_on"
        unlike = not_(trimmed.regexp_match(_PLAIN_DATE if date_ else _PLAIN_NUMBER))
        if date_:  # year 0000 fits the pattern; the upload refuses it, DuckDB reads it
            unlike = or_(unlike, trimmed.startswith("0000"))
        condition = and_(trimmed.is_not(None), unlike)
        if self.dialect == "duckdb":  # one rule per value: not the unconvertible ones
            condition = and_(condition, self._converted(name, Date() if date_ else Double())
                             .is_not(None))
        return condition

    def negative(self, name: str):
        """Whether a money or day value is below 0; text written with a minus sign too
        (``-0`` and ``-0.00`` are negative numbers to the upload, which refuses them)."""
        value = self.number(name)
        if self.kind(name) != "text":
            return value < 0
        return or_(value < 0, and_(value.is_not(None),
                                   _trim(self.raw(name)).startswith("-", autoescape=True)))

    def too_precise(self, name: str):
        """Whether a money value has more than 2 decimal places (the upload refuses it).

        DECIMAL/NUMERIC: exactly, in the column's own arithmetic (``x <> round(x, 2)``);
        an integer never. A binary float (and text or an unknown type, read as one) has
        no exact decimals: refused when more than :data:`_CENT_TOLERANCE` of a cent away
        from a whole cent. Negative, NaN, infinite or too large values break other rules.
        """
        kind = self.kind(name)
        if kind == "integer":
            return None
        if kind == "decimal":
            return self.raw(name) != func.round(self.raw(name), 2)
        value = self.number(name)
        cents = value * 100.0
        return and_(value >= 0, value <= _MAX_MONEY,
                    func.abs(cents - func.round(cents)) > _CENT_TOLERANCE)

    @property
    def end(self):
        return (self.money("start_mrr") + self.money("expansion_mrr")
                - self.money("contraction_mrr") - self.money("churned_mrr"))

    def segment(self):
        return self.key("segment") if self.has("segment") else null()


def check_query(q: AccountQuery):
    """One aggregate over the rows: each contract rule's violations, the count, the means.

    Returns the select, the rules' messages (its row is read by :func:`_problems`) and the
    money columns whose means follow.
    """
    start = q.money("start_mrr")
    account = q.text("account_id")
    rules: list[tuple[str, Any]] = [
        (f"{name} holds a value that is not a {kind}", condition)
        for name, kind in _CAST_KINDS.items()
        if q.has(name) and (condition := q.unconvertible(name)) is not None
    ]
    rules += [
        (f"{name} is not a plain number (use digits with an optional decimal point, e.g. "
         "1234.50)" if kind == "number" else f"{name} is not a date such as 2026-12-01 "
         "(YYYY-MM-DD)", condition)
        for name, kind in _CAST_KINDS.items()
        if q.has(name) and (condition := q.not_plain(name)) is not None
    ]
    # The upload's rules of an id's text (DESIGN §3): the words come from the example
    # (:func:`_text_problem`); a value too long is not also counted for a control character.
    too_long = func.length(account) > MAX_TEXT_LENGTH
    rules.append((_ID_TOO_LONG, too_long))
    if q.dialect in ("postgresql", "duckdb"):  # elsewhere no tested regular expression
        rules.append((_ID_CONTROL, and_(not_(too_long), account.regexp_match(_CONTROL_SQL))))
    rules += [
        ("account_id is blank", account.is_(None)),
        ("variant is blank", q.text("variant").is_(None)),
        ("start_mrr is blank", q.blank("start_mrr")),
        ("start_mrr must be greater than 0", start <= 0),
    ]
    for name in MONEY_OPTIONAL:
        if q.has(name):
            rules.append((f"{name} must be 0 or more", q.negative(name)))
    # The upload's cap (MAX_CENTS); NaN is above every number in PostgreSQL and DuckDB,
    # so it is caught here too, and so is Infinity (-Infinity is below 0 above).
    for name in (*_ACCOUNT_MONEY, "pre_start_mrr", "pre_end_mrr"):
        if q.has(name):
            rules.append((f"{name} must be a number of at most {_MAX_MONEY:,.2f}",
                          q.money(name) > _MAX_MONEY))
    for name in (*_ACCOUNT_MONEY, "pre_start_mrr", "pre_end_mrr"):
        if q.has(name) and (condition := q.too_precise(name)) is not None:
            rules.append((f"{name} must have at most 2 decimal places", condition))
    if q.has("contraction_mrr") or q.has("churned_mrr"):
        rules.append(("contraction_mrr + churned_mrr must not exceed start_mrr",
                      q.money("contraction_mrr") + q.money("churned_mrr") > start))
    for name in ("days_to_value", "days_observed"):
        if q.has(name):
            rules.append((f"{name} must be 0 or more", q.negative(name)))
            # NaN is above every number in PostgreSQL and DuckDB, as Infinity is; the
            # upload reads digits only (12.5 days is fine), never NaN or Infinity.
            rules.append((f"{name} must be a finite number (not NaN or Infinity)",
                          q.number(name) > _MAX_DOUBLE))
    if q.has("days_to_value") and q.has("days_observed"):
        reached = q.number("days_to_value")  # a NaN one is named above, not here again
        rules.append(("days_to_value must not exceed days_observed",
                      and_(reached <= _MAX_DOUBLE, reached > q.number("days_observed"))))
    if q.has("enrolled_on") and q.kind("enrolled_on") in ("date", "instant"):
        # A DATE or TIMESTAMP holds what no file may: infinity, years before 1 or after
        # 9999 (a file's YYYY-MM-DD, DESIGN §3). PostgreSQL's driver failed on them
        # naming no column; DuckDB gave 9999-12-31 for infinity, a BC year as the same
        # year AD, a year past 9999 as text that failed with "Invalid isoformat string".
        # (Text is read as written: :meth:`AccountQuery.not_plain` holds it to YYYY-MM-DD;
        # a type unknown, on another dialect, is left to its warehouse.)
        day = q.day()
        rules.append((f"enrolled_on must be a date from {_FIRST_DAY} to {_LAST_DAY}",
                      or_(day < literal(_FIRST_DAY, Date()),
                          day > literal(_LAST_DAY, Date()))))
    if q.has("pre_start_mrr"):
        rules.append(("pre_start_mrr and pre_end_mrr must both be given or both be blank",
                      q.blank("pre_start_mrr") != q.blank("pre_end_mrr")))
        rules.append(("pre_start_mrr and pre_end_mrr must be 0 or more",
                      or_(q.negative("pre_start_mrr"), q.negative("pre_end_mrr"))))
    # rows, distinct and non-blank account ids (a blank id is not a repeat)
    aggregates = [func.count(), func.count(func.distinct(account)), func.count(account)]
    for _, condition in rules:  # the example as it is (trimmed in Python: cheaper)
        aggregates.append(func.sum(case((condition, 1), else_=0)))
        aggregates.append(func.min(case((condition, q.key("account_id")), else_=None)))
    # start and the three levers always (an absent lever is 0 on every row, as in an
    # upload without the column: the analysis reads all four); the pre-period if given.
    names = [n for n in _MOMENT_COLUMNS.values() if n in _ACCOUNT_MONEY or q.has(n)]
    aggregates += [func.avg(q.money(n)) for n in names]
    return select(*aggregates).select_from(q.cte), [m for m, _ in rules], names


#: The dates a file's enrolled_on can hold (YYYY-MM-DD, year 0000 refused).
_FIRST_DAY = date(1, 1, 1)
_LAST_DAY = date(9999, 12, 31)
#: The rules of an account_id's text, worded from their example by :func:`_problems`.
_ID_TOO_LONG = "account_id is too long"
_ID_CONTROL = "account_id contains a control character"
#: The upload's control characters (C0 and DEL, ``CONTROL_ONE_LINE``) as a regular
#: expression PostgreSQL's and DuckDB's (RE2) both read.
_CONTROL_SQL = "[\\x00-\\x1f\\x7f]"


def _text_problem(value: str) -> str | None:
    """Why the upload refuses a (trimmed) id, variant or segment, in its words."""
    if len(value) > MAX_TEXT_LENGTH:
        return f"is too long ({len(value):,} characters; at most {MAX_TEXT_LENGTH})"
    return cell_problem(value)


#: Contract columns the aggregates cast, and what each must hold.
_CAST_KINDS = {**dict.fromkeys((*_ACCOUNT_MONEY, "pre_start_mrr", "pre_end_mrr",
                                "days_to_value", "days_observed"), "number"),
               "enrolled_on": "date (YYYY-MM-DD)"}
#: PostgreSQL's SQLSTATEs for a value that does not convert (text to number or date).
_PG_CONVERSION = ("22P02", "22007", "22008", "22003")
_DUCKDB_CAST_COLUMN = re.compile(r"Conversion Error:.*?when casting from source column (\w+)")


def _execute_naming_casts(connection: Connection, q: AccountQuery, statement, dialect: str):
    """``connection.execute(statement)``; a value that does not convert to the contract's
    type (text in ``start_mrr``, a malformed ``enrolled_on``) fails the refresh with the
    column named, as an upload names it. PostgreSQL does not say which column: the
    statement runs in a savepoint, and each cast column is then tried alone."""
    if dialect != "postgresql":
        try:
            return connection.execute(statement).all()
        except DBAPIError as error:
            found = _DUCKDB_CAST_COLUMN.search(str(getattr(error, "orig", error)))
            by_name = {v.lower(): k for k, v in q.columns.items()}
            name = by_name.get(found.group(1).lower()) if found else None
            if name in _CAST_KINDS:
                raise _not_convertible([name], error) from None
            raise
    savepoint = connection.begin_nested()
    try:
        rows = connection.execute(statement).all()
    except DBAPIError as error:
        savepoint.rollback()
        if getattr(getattr(error, "orig", None), "sqlstate", None) not in _PG_CONVERSION:
            raise
        bad = []
        # The query itself first (its own casts may be what failed), then each column.
        for name, kind in [(None, None), *_CAST_KINDS.items()]:
            if name is not None and not q.has(name):
                continue
            probe = connection.begin_nested()
            try:
                counted = (func.count() if name is None else func.count(
                    q.day() if kind.startswith("date") else q.number(name)))
                connection.execute(select(counted).select_from(q.cte)).all()
                probe.commit()
            except DBAPIError as failed:
                probe.rollback()
                if name is None:
                    raise error from None
                # Another error of the query itself (division by zero, a timeout) when
                # this column is computed: the warehouse's words, not "not a number".
                if getattr(getattr(failed, "orig", None), "sqlstate", None) not in (
                        _PG_CONVERSION):
                    raise failed from None
                bad.append(name)
        if bad:
            raise _not_convertible(bad, error) from None
        raise
    savepoint.commit()
    return rows


def _not_convertible(names: list[str], error: BaseException) -> RowsRejected:
    said = " ".join(str(getattr(error, "orig", error)).strip().splitlines()[:1])[:300]
    return RowsRejected([
        *(f"{name} holds a value that is not a {_CAST_KINDS[name]}" for name in names),
        f"the warehouse said: {said}",
    ])


def _problems(row, messages: list[str]) -> tuple[list[str], int]:
    total, distinct, named = int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)
    problems = []
    if distinct < named:
        problems.append(f"{named - distinct:,} repeated account_id values: one row per account")
    for i, message in enumerate(messages):
        count, example = row[3 + 2 * i], row[4 + 2 * i]
        if count:
            example = _key(example)
            if message in (_ID_TOO_LONG, _ID_CONTROL) and example is not None:
                message = f"account_id {_text_problem(example)}"
            if example is not None and _text_problem(example):
                example = show(example)  # escaped and shortened, as the upload shows it
            where = f" (e.g. account_id {example})" if example is not None else ""
            problems.append(f"{int(count):,} row{'s' if count != 1 else ''}: {message}{where}")
    return problems[:MAX_LISTED], total


def extras_query(q: AccountQuery, names: list[str], shifts: list[float], *, by_segment: bool):
    """``GROUP BY [segment,] variant`` of counts and shifted sums and products.

    Every money column is centred on its mean over the whole query before it is summed
    and multiplied (the shifted-data algorithm; Chan, Golub & LeVeque 1983, §3), as
    :func:`experiments.datasets.arm_extras` does on our own table.
    """
    deviations = [q.money(_MOMENT_COLUMNS[n]) - shift for n, shift in zip(names, shifts,
                                                                          strict=True)]
    pairs = [(i, j) for i in range(len(names)) for j in range(i, len(names))]
    pre_missing = (
        func.sum(case((or_(q.money("pre_start_mrr").is_(None),
                           q.money("pre_end_mrr").is_(None)), 1), else_=0))
        if q.has("pre_start_mrr") else literal(0)
    )
    start = q.money("start_mrr")
    # Grouped by the values as they are (cheap: few distinct); :func:`_extras_from_rows`
    # adds up the groups whose trimmed keys are equal ('control ' is 'control').
    keys = [q.key("segment"), q.key("variant")] if by_segment else [q.key("variant")]
    return select(
        q.key("segment") if by_segment else null(),
        q.key("variant"),
        func.count(),
        func.sum(case((q.money("churned_mrr") == start, 1), else_=0)),
        func.sum(case((q.money("expansion_mrr") > 0, 1), else_=0)),
        pre_missing,
        *(func.sum(d) for d in deviations),
        *(func.sum(deviations[i] * deviations[j]) for i, j in pairs),
    ).select_from(q.cte).group_by(*keys)


def _key(value: Any) -> str | None:
    """A segment or variant as the upload reads its cell: trimmed, blank is ``None``."""
    return None if value is None else (str(value).strip(WHITESPACE) or None)


def _segment_problems(extras: Mapping[tuple[str | None, str], ArmExtras]) -> list[str]:
    """The upload's rules of a variant's and a segment's text (DESIGN §3: at most
    MAX_TEXT_LENGTH characters, no control character), checked once per group."""
    problems = []
    for position, name in ((1, "variant"), (0, "segment")):
        rows: dict[str, int] = {}
        for key, extra in extras.items():
            if key[position] is not None:
                rows[key[position]] = rows.get(key[position], 0) + extra.moments.n
        for value, n in rows.items():
            if problem := _text_problem(value):
                problems.append(f"{n:,} row{'s' if n != 1 else ''}: {name} {problem} "
                                f"({name} {show(value)})")
    return problems[:MAX_LISTED]


def _extras_from_rows(rows, names: list[str], shifts: list[float]):
    pairs = [(i, j) for i in range(len(names)) for j in range(i, len(names))]
    k = len(names)
    merged: dict[tuple[str | None, str | None], list] = {}
    for segment, variant, *counts in rows:  # every field is a sum: groups add up
        key = (_key(segment), _key(variant))
        values = [0 if v is None else v for v in counts]
        merged[key] = values if key not in merged else [
            a + b for a, b in zip(merged[key], values, strict=True)]
    out: dict[tuple[str | None, str], ArmExtras] = {}
    for (segment, variant), (n, churned, expanded, pre_missing, *rest) in merged.items():
        n = int(n)
        sums = {name: float(rest[i] or 0.0) for i, name in enumerate(names)}
        products = {(names[i], names[j]): float(rest[k + index] or 0.0)
                    for index, (i, j) in enumerate(pairs)}
        keep = names if not int(pre_missing or 0) else names[:4]
        shifted = Moments.from_sums(
            n, {name: sums[name] for name in keep},
            {(a, b): products[a, b] if (a, b) in products else products[b, a]
             for a in keep for b in keep},
        )
        moments = Moments(
            n, tuple(keep),
            tuple(m + shifts[names.index(name)] for name, m in zip(keep, shifted.mean,
                                                                    strict=True)),
            shifted.comoment, shifted.tolerance,
        )
        out[segment, str(variant)] = ArmExtras(moments, int(churned or 0), int(expanded or 0))
    return out


def times_query(q: AccountQuery, *, by_segment: bool):
    """``GROUP BY [segment,] variant, time``: events and censored accounts per day."""
    reached = q.number("days_to_value") if q.has("days_to_value") else func.cast(null(), Double())
    time = func.coalesce(reached, q.number("days_observed"))
    keys = ([q.key("segment"), q.key("variant"), time] if by_segment
            else [q.key("variant"), time])  # trimmed in Python, as the extras' keys
    return (
        select(
            q.key("segment") if by_segment else null(),
            q.key("variant"),
            time,
            func.sum(case((reached.is_not(None), 1), else_=0)),
            func.sum(case((reached.is_(None), 1), else_=0)),
        )
        .select_from(q.cte)
        .where(time.is_not(None))
        .group_by(*keys)
    )


def random_order(dialect: str):
    """The dialect's uniform random number, for ``ORDER BY … LIMIT`` sampling."""
    return func.rand() if dialect == "bigquery" else func.random()


def sample_query(q: AccountQuery, dialect: str, *, limit: int, whole: bool):
    """Per-account values for the rank checks: every row, or ``limit`` rows at random."""
    days = q.number("days_to_value") if q.has("days_to_value") else func.cast(null(), Double())
    query = select(q.key("variant"), q.segment(), q.end, q.money("start_mrr"), days
                   ).select_from(q.cte)  # variant and segment trimmed in Python
    # Every row in account order (a stable input for the seeded permutation test), or a
    # uniform random sample.
    if whole:
        return query.order_by(q.key("account_id"))
    return query.order_by(random_order(dialect)).limit(limit)


# -------------------------------------------------------------------- computing


@dataclass(frozen=True)
class Pulled:
    """What one read of an experiment's query brought back."""

    inputs: PushedInputs
    columns: tuple[str, ...]
    #: What the user is told besides the figures (unknown columns ignored).
    notes: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        """The content key of the sums: equal for the same data read again.

        Floats are rounded to 10 significant digits first: a parallel warehouse adds in
        a different order each time, which moves the last bits of a sum. A partial
        random sample is left out (the sums decide whether the data changed).
        """
        content = self.inputs.to_json()
        if not self.inputs.sample.complete:  # a random sample differs on every read
            content["sample"] = {"total": self.inputs.total}
        document = json.dumps(_rounded(content), sort_keys=True, default=str)
        return hashlib.sha256(document.encode()).hexdigest()


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_rounded(v) for v in value]
        return sorted(items, key=repr) if items and isinstance(items[0], dict) else items
    return value


def pull_experiment(
    source: DataSource, sql: str, variants: tuple[str, ...], *,
    environ: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
    sample_limit: int = SAMPLE_LIMIT,
) -> Pulled:
    """Run the experiment's query as aggregates in the warehouse (see the module doc).

    Raises
    ------
    WarehouseError
        The query failed or timed out (the warehouse's message, and for a time-out the
        setting that bounds it), its columns do not match the contract, or its rows break
        it (:class:`RowsRejected`), or name variants the experiment does not have.
    """
    try:
        return _pull_experiment(source, sql, variants, environ=environ, timeout=timeout,
                                sample_limit=sample_limit)
    except TimedOut as error:
        raise TimedOut(
            f"{error} If the query is right but the warehouse needs longer, raise "
            f"{TIMEOUT_VARIABLE} (seconds; now {timeout:g}) where the refresh jobs run."
        ) from None


def _pull_experiment(
    source: DataSource, sql: str, variants: tuple[str, ...], *,
    environ: Mapping[str, str] | None, timeout: float, sample_limit: int,
) -> Pulled:
    sql = check_sql(sql)
    with reading(source, environ=environ, timeout=timeout) as connection:
        probed = probe_columns(connection, sql)
        returned = [name for name, _kind in probed]
        columns = map_columns(returned, known=CONTRACT, required=REQUIRED, ignore_extra=True)
        notes = ignored_columns(returned, columns)
        kinds = dict(probed)
        q = AccountQuery.of(sql, columns, {key: kinds[name] for key, name in columns.items()},
                            source.dialect)
        if wrong := wrong_types(q.kinds):
            raise RowsRejected(wrong)
        check, messages, mean_columns = check_query(q)
        (row,) = _execute_naming_casts(connection, q, check, source.dialect)
        problems, total = _problems(row, messages)
        if problems:
            raise RowsRejected(problems)
        if total == 0:
            raise WarehouseError("The query returned no rows.")
        means = [float(v or 0.0) for v in row[3 + 2 * len(messages):]]
        names = [n for n, c in _MOMENT_COLUMNS.items() if c in mean_columns]
        by_segment = q.has("segment")
        rows = connection.execute(extras_query(q, names, means, by_segment=by_segment)).all()
        extras = _extras_from_rows(rows, names, means)
        if segment_problems := _segment_problems(extras):
            raise RowsRejected(segment_problems)
        unknown = sorted({v for _s, v in extras} - set(variants))
        if unknown:
            counts = {v: sum(e.moments.n for (_s, w), e in extras.items() if w == v)
                      for v in unknown}
            raise RowsRejected([
                f"{counts[v]:,} rows: variant {v!r} is not one of the experiment's variants "
                f"({', '.join(variants)})" for v in unknown])
        times: dict[tuple[str | None, str], TimeTable] = {}
        if q.has("days_observed"):
            counts: dict[tuple[str | None, str], list] = {}
            for segment, variant, t, events, censored in connection.execute(
                times_query(q, by_segment=by_segment)
            ):
                key = (_key(segment), str(_key(variant)))
                counts.setdefault(key, []).append((float(t), int(events), int(censored)))
            times = {key: TimeTable.from_counts(value) for key, value in counts.items()}
        enrolment = (_dated_enrolment(connection, q, total, source.dialect)
                     if q.has("enrolled_on") else None)
        whole = total <= sample_limit
        sampled = connection.execute(
            sample_query(q, source.dialect, limit=sample_limit, whole=whole)).all()
        counted = sum(extra.moments.n for extra in extras.values())
        if counted != total or (whole and len(sampled) != total):
            raise WarehouseError(
                "The query's rows changed while they were being read (counted "
                f"{total:,}, then {counted:,} and {len(sampled):,}); refresh again, or read "
                "from a table that is not being written.")
    sample = _sample(sampled, total, with_days=q.has("days_to_value"))
    return Pulled(PushedInputs(extras, times, sample, by_segment, enrolment), tuple(columns),
                  notes)


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _dated_enrolment(connection: Connection, q: AccountQuery, total: int,
                     dialect: str) -> dict | None:
    """Accounts per variant at the last enrolment day and before the window's start,
    when every account has an enrolled_on date (two small aggregates; DESIGN §3)."""
    day = q.day()
    ((dated, first, last),) = _execute_naming_casts(
        connection, q, select(func.count(day), func.min(day), func.max(day)).select_from(q.cte),
        dialect)
    if dated != total or first is None or last is None:
        return None
    first, last = _day(first), _day(last)
    if last <= first:
        return None
    cut = max(first, last - timedelta(days=ENROLMENT_WINDOW_DAYS))
    rows = connection.execute(
        select(q.key("variant"), func.count(),
               func.sum(case((day < literal(cut, Date()), 1), else_=0)))
        .select_from(q.cte).group_by(q.key("variant"))).all()
    now: dict[str, int] = {}
    before: dict[str, int] = {}
    for v, n, b in rows:  # trimmed in Python: groups of one variant add up
        now[str(_key(v))] = now.get(str(_key(v)), 0) + int(n)
        before[str(_key(v))] = before.get(str(_key(v)), 0) + int(b or 0)
    return {"cut": cut.isoformat(), "last": last.isoformat(), "now": now, "before": before}


def _sample(rows, total: int, *, with_days: bool) -> AccountSample:
    variant = np.array([str(_key(r[0])) for r in rows], dtype=object)
    segment = np.array([_key(r[1]) for r in rows], dtype=object)
    end = np.array([float(r[2]) for r in rows], dtype=np.float64)
    start = np.array([float(r[3]) for r in rows], dtype=np.float64)
    days = (np.array([np.nan if r[4] is None else float(r[4]) for r in rows], dtype=np.float64)
            if with_days else None)
    return AccountSample(variant, segment, end, start, days, total)


# ------------------------------------------------------------ queries and refresh


def experiment_query(session: Session, experiment: Experiment) -> WarehouseQuery | None:
    return session.scalars(
        select(WarehouseQuery).where(WarehouseQuery.experiment_id == experiment.id)
    ).first()


def ledger_query(session: Session) -> WarehouseQuery | None:
    return session.scalars(
        select(WarehouseQuery).where(WarehouseQuery.target == "ledger")
        .order_by(WarehouseQuery.id)
    ).first()


#: The 409 of a save that someone else's save overtook (the typed text stays on the page).
CHANGED_SINCE = ("This query was changed by someone else since you opened it; your text is "
                 "kept below, check the current one and save again.")
SAVED_SINCE = ("This query was saved by someone else since you opened it; your text is kept "
               "below, check the current one and save again.")


def save_query(
    session: Session, data: Mapping[str, Any], *, actor: User,
    experiment: Experiment | None, version: int | None = None,
) -> WarehouseQuery:
    """Create or change the query of ``experiment`` (``None``: the ledger's). Flushed.

    ``version`` is the version the actor edited (compare-and-set); ``0``: the actor saw
    no query and creates one; ``None``: no check.

    Raises
    ------
    ValidationFailed
        Unknown source, bad SQL text or schedule.
    Conflict
        Someone changed the query since ``version``, or saved one since the actor saw none
        (also when both first saves run at once: the unique experiment, or the one ledger
        query, refuses the second row).
    """
    from experiments.errors import Conflict

    errors: dict[str, str] = {}
    try:
        sql = check_sql(str(data.get("sql_text") or ""))
    except ValidationFailed as error:
        errors.update(error.errors)
        sql = ""
    source_id = parse_id(data.get("source_id"))  # bounded: a huge id never reaches the DB
    source = session.get(DataSource, source_id) if source_id is not None else None
    if source is None:
        errors["source_id"] = "choose a registered data source"
    schedule = str(data.get("schedule") or "manual")
    if schedule not in SCHEDULES:
        errors["schedule"] = f"one of {', '.join(SCHEDULES)}"
    if errors:
        raise ValidationFailed(errors)
    query = experiment_query(session, experiment) if experiment else ledger_query(session)
    before = None
    if query is None:
        query = WarehouseQuery(
            target="experiment" if experiment else "ledger",
            experiment_id=experiment.id if experiment else None,
            source_id=source.id, sql_text=sql, schedule=schedule, created_by_id=actor.id)
    else:
        if version == 0:  # the form was opened before this query existed
            raise Conflict(SAVED_SINCE)
        if version is not None and version != query.version:
            raise Conflict(CHANGED_SINCE)
        before = {"source_id": query.source_id, "schedule": query.schedule,
                  "sql_text": query.sql_text}
        # In SQL (WHERE version = seen): the check above reads a row that may be stale.
        seen = query.version if version is None else version
        try:
            compare_and_set(session, query, seen, {
                "source_id": source.id, "sql_text": sql, "schedule": schedule,
                "updated_at": utcnow()}, what="This query", entity_type="warehouse_query",
                entity_id=query.id)
        except Conflict as exc:
            raise Conflict(CHANGED_SINCE) from exc
    if before is None:  # two first saves at once: the slower one is a 409, not a 500
        try:
            with session.begin_nested():
                session.add(query)
        except IntegrityError as exc:
            raise Conflict(SAVED_SINCE) from exc
    session.add(query)
    session.flush()
    after = {"source_id": source.id, "schedule": schedule, "sql_text": sql}
    record_event(
        session, "warehouse.query_save", actor=actor, entity_type="warehouse_query",
        entity_id=query.id, team_id=experiment.team_id if experiment else None,
        diff={k: [None if before is None else before[k], v] for k, v in after.items()
              if before is None or before[k] != v})
    return query


@dataclass(frozen=True)
class RefreshOutcome:
    """How one refresh went: ``ok`` (a new version), ``unchanged`` or ``failed``."""

    status: str
    message: str
    dataset_id: int | None = None


def refresh_experiment(
    session: Session, query: WarehouseQuery, *, actor: User | None,
    environ: Mapping[str, str] | None = None, timeout: float | None = None,
    sample_limit: int | None = None,
) -> RefreshOutcome:
    """Read the experiment's query and store a new dataset version with its snapshot.

    ``sample_limit`` bounds the per-account rows read (default :data:`SAMPLE_LIMIT`);
    ``timeout`` the seconds of the whole read (default :func:`refresh_timeout`).

    The warehouse is read before anything is written here (no lock is held while it
    works); then, under the experiment's lock, the experiment and the data source are
    read again (renamed, or no longer running, during the read) and the sums become a
    ``warehouse`` dataset version, its ``warehouse_result`` and a snapshot. Sums
    identical to a stored version's leave the data as it is (``unchanged``). A failure
    stores nothing but the query's status and the warehouse's message. Flushed, not
    committed. The caller's session stays open during the read: the job
    (:func:`run_refresh`) ends its read transaction before the pull instead.
    """
    planned = _plan_refresh(session, query)
    if isinstance(planned, RefreshOutcome):
        return _finish(session, query, planned)
    pulled = _pull_planned(planned, environ=environ, timeout=timeout,
                           sample_limit=sample_limit)
    if isinstance(pulled, RefreshOutcome):
        return _finish(session, query, pulled)
    return _store_pulled(session, query, planned, pulled, actor=actor)


@dataclass(frozen=True)
class _Planned:
    """What an experiment's refresh reads from the app's database before the pull."""

    experiment_id: int
    source: DataSource  # its name is read again when the result is stored
    sql: str
    variants: tuple[str, ...]


def _not_running(experiment: Experiment, during: bool = False) -> RefreshOutcome:
    return RefreshOutcome(
        "failed", f"The experiment is {experiment.status}: data is read while it is "
        "running or stopped." + (" It changed while the warehouse was read; nothing was "
                                 "stored." if during else ""))


def _plan_refresh(session: Session, query: WarehouseQuery) -> _Planned | RefreshOutcome:
    experiment = session.get(Experiment, query.experiment_id)
    source = session.get(DataSource, query.source_id)
    if experiment is None or source is None:
        raise NotFound("the query's experiment or data source no longer exists")
    if experiment.status not in UPLOAD_STATUSES:  # as an upload: the plan must be locked
        return _not_running(experiment)
    keys = variant_keys(session, experiment)
    if not keys:  # as an upload refuses it (current_plan would raise outside any handler)
        return RefreshOutcome("failed", "This experiment has no variants, so no query can "
                              "match it. Add its variants first.")
    return _Planned(experiment.id, source, query.sql_text, tuple(keys))


def _pull_planned(planned: _Planned, *, environ: Mapping[str, str] | None,
                  timeout: float | None, sample_limit: int | None) -> Pulled | RefreshOutcome:
    try:
        return pull_experiment(planned.source, planned.sql, planned.variants,
                               environ=environ,
                               timeout=refresh_timeout(environ) if timeout is None else timeout,
                               sample_limit=SAMPLE_LIMIT if sample_limit is None
                               else sample_limit)
    except (WarehouseError, ValidationFailed, ValueError) as error:
        return RefreshOutcome("failed", str(error))


def _store_pulled(session: Session, query: WarehouseQuery, planned: _Planned, pulled: Pulled,
                  *, actor: User | None) -> RefreshOutcome:
    sha = pulled.sha256
    noted = "".join(f" Note: {note}." for note in pulled.notes)
    lock_experiment(session, planned.experiment_id)
    # Read again under the lock: a pull may take minutes, and the experiment may have been
    # stopped for good or the source renamed meanwhile (objects kept from before the pull
    # are not refreshed by a plain get).
    experiment = session.get(Experiment, planned.experiment_id, populate_existing=True)
    source = session.get(DataSource, planned.source.id, populate_existing=True)
    if experiment is None:
        raise NotFound("the query's experiment no longer exists")
    if experiment.status not in UPLOAD_STATUSES:
        return _finish(session, query, _not_running(experiment, during=True))
    if (changed := _changed_during_pull(session, query, planned, experiment)) is not None:
        return _finish(session, query, RefreshOutcome("failed", changed))
    source_name = source.name if source is not None else planned.source.name
    twin = dataset_with_content(session, experiment.id, sha)
    if twin is not None:
        return _finish(session, query, RefreshOutcome(
            "unchanged", f"The warehouse returned the same sums as dataset version "
            f"{twin.version}; nothing new was stored.{noted}", twin.id))
    inputs = pulled.inputs
    dataset = Dataset(
        experiment_id=experiment.id, version=next_version(session, experiment),
        source="warehouse", filename=f"{source_name} (warehouse query)"[:255], sha256=sha,
        content_sha256=sha, status="ready", row_count=inputs.total,
        has_segment=inputs.by_segment, has_days_to_value="days_to_value" in pulled.columns,
        has_days_observed="days_observed" in pulled.columns,
        has_pre_period="pre_start_mrr" in pulled.columns,
        has_enrolled_on=inputs.enrolment is not None,
        uploaded_by_id=actor.id if actor else None, uploaded_at=utcnow())
    session.add(dataset)
    session.flush()
    session.add(WarehouseResult(dataset_id=dataset.id, query_id=query.id,
                                total_rows=inputs.total,
                                sample_rows=len(inputs.sample.variant),
                                inputs=inputs.to_json()))
    session.flush()
    snapshot = refresh_snapshot(session, experiment, dataset, pushed=inputs)
    record_event(session, "warehouse.refresh", actor=actor, entity_type="experiment",
                 entity_id=experiment.key, team_id=experiment.team_id,
                 diff={"dataset_version": [None, dataset.version],
                       "verdict": [None, snapshot.verdict]})
    sampled = "" if inputs.sample.complete else (
        f"; rank checks on a random sample of {len(inputs.sample.variant):,}")
    return _finish(session, query, RefreshOutcome(
        "ok", f"Dataset version {dataset.version}: {inputs.total:,} accounts summed in the "
        f"warehouse{sampled}.{noted}", dataset.id))


#: Why sums pulled before an edit are not stored (:func:`_changed_during_pull`).
VARIANTS_CHANGED = ("The experiment's variants changed while the warehouse was read, so its "
                    "sums were checked against the old ones and may not match them; nothing "
                    "was stored. Refresh again.")
QUERY_CHANGED = ("The query was saved with another text or data source while the warehouse "
                 "was read, so these sums are of the old query; nothing was stored. Refresh "
                 "again.")


def _changed_during_pull(session: Session, query: WarehouseQuery, planned: _Planned,
                         experiment: Experiment) -> str | None:
    """Why sums pulled for ``planned`` cannot be stored now, read under the experiment's
    lock (and the query's row lock, so a save waits for this transaction): its variants
    changed (the sums are keyed by the old ones: a renamed arm would be analysed as
    empty beside an arm the plan no longer has), or the query's text or source did (the
    status 'ok' would stand under a query that did not give these sums). As an upload
    refuses a file whose experiment's variants changed while it was stored."""
    if set(variant_keys(session, experiment)) != set(planned.variants):
        return VARIANTS_CHANGED
    now = session.get(WarehouseQuery, query.id, populate_existing=True, with_for_update=True)
    if now is not None and (now.sql_text, now.source_id) != (planned.sql, planned.source.id):
        return QUERY_CHANGED
    return None


def _finish(session: Session, query: WarehouseQuery, outcome: RefreshOutcome) -> RefreshOutcome:
    query.last_status = outcome.status
    query.last_message = outcome.message
    query.last_refresh_at = utcnow()
    if outcome.dataset_id is not None:
        query.last_dataset_id = outcome.dataset_id
    session.add(query)
    session.flush()
    return outcome


def _cell(value: Any, name: str) -> str:
    """One ledger cell as the §3b CSV writes it. A timestamp with a time zone (the
    driver returns it aware, in the warehouse session's zone) is an instant: its date
    and its month are those in UTC, as an experiment's ``enrolled_on`` (the same query
    gives the same ledger on a Berlin- or LA-zoned warehouse); a plain timestamp keeps
    its own date."""
    if value is None:
        return ""
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # a UTC date past 9999 or before 1: refused by line
            return ""
    if name == "period" and isinstance(value, date | datetime):
        return f"{value.year:04d}-{value.month:02d}"
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


#: The ledger upload's words for a period and a date a file cannot hold
#: (:mod:`experiments.ledger_csv`), for a ledger query's date that no file can hold.
_NOT_A_MONTH = "is not a month written YYYY-MM (e.g. 2025-01)"
_NOT_A_DAY = "is not a date written YYYY-MM-DD (e.g. 2024-03-01)"


def _keep_unheld_as_text(raw: Any) -> None:
    """Make the psycopg connection ``raw`` return a date or timestamp Python cannot hold
    (``infinity``, ``-infinity``, a BC date, a year past 9999) as PostgreSQL writes it
    (text), where its loaders fail naming neither the row nor the column ("date too
    large (after year 10K)"). Every other value is loaded by the usual (C) loader, through
    one more Python call: 300,000 rows with three date columns were pulled in 2.4-2.6 s,
    2.2-2.4 s before (local PostgreSQL, load ~2 on 2 cores). An instant whose UTC
    date a file holds but whose date in the session's zone it does not (9999-12-31
    23:30 UTC is 10000-01-01 in Berlin) is read as that UTC instant
    (:func:`_edge_instant`), as every other instant is written by its UTC date."""
    from psycopg import DataError
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    for name in ("date", "timestamp", "timestamptz"):
        usual = raw.adapters.get_loader(raw.adapters.types[name].oid, Format.TEXT)
        rescue = staticmethod(_edge_instant) if name == "timestamptz" else None

        class Lenient(Loader):
            _usual, _rescue = usual, rescue

            def __init__(self, oid, context=None):
                super().__init__(oid, context)
                self._load = self._usual(oid, context).load

            def load(self, data):
                try:
                    return self._load(data)
                except DataError:
                    written = bytes(data).decode()
                    instant = self._rescue(written) if self._rescue else None
                    return written if instant is None else instant

        raw.adapters.register_loader(name, Lenient)


#: An instant PostgreSQL writes (DateStyle ISO) on the day after 9999-12-31 or before
#: 0001-01-01 in the session's zone: day, time, fraction, UTC offset, era.
_EDGE_INSTANT = re.compile(r"(10000-01-01|0001-12-31) (\d\d):(\d\d):(\d\d)(\.\d+)?"
                           r"([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?( BC)?")


def _edge_instant(written: str) -> datetime | None:
    """The UTC instant of ``written`` if its UTC date lies from 0001-01-01 to 9999-12-31
    though its date in the session's zone does not (the zone's offset moved it over the
    edge), else ``None``."""
    match = _EDGE_INSTANT.fullmatch(written)
    if match is None:
        return None
    day, hours, minutes, seconds, fraction, sign, oh, om, osec, bc = match.groups()
    if (day == "0001-12-31") != bool(bc):  # 0001-12-31 AD is a date Python holds
        return None
    ordinal = date.max.toordinal() + 1 if bc is None else 0  # 10000-01-01 / 1 BC's last day
    offset = (int(oh) * 3600 + int(om or 0) * 60 + int(osec or 0)) * (1 if sign == "+" else -1)
    moment = ordinal * 86_400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds) - offset
    ordinal, second = divmod(moment, 86_400)
    if not 1 <= ordinal <= date.max.toordinal():
        return None
    micro = int((fraction or ".")[1:].ljust(6, "0")[:6])
    return datetime.combine(date.fromordinal(ordinal), datetime.min.time()).replace(
        hour=second // 3600, minute=second % 3600 // 60, second=second % 60,
        microsecond=micro, tzinfo=UTC)


def _unheld_dates(chunk, first_line: int, dated: list[tuple[str, int, int | None]],
                  sink) -> None:
    """Count the chunk's dates no file can hold, by line and column, in the ledger
    upload's words. ``dated``: (contract name, the value's position, the position of
    its DuckDB ``isinf`` flag or ``None``). Such a date reached here as text (a
    PostgreSQL value kept by :func:`_keep_unheld_as_text`, DuckDB's BC dates and years
    past 9999); DuckDB's ±infinity as 9999-12-31 / 0001-01-01, told apart by its flag;
    an instant whose date in the session's zone a file holds but whose UTC date it does
    not, as that instant (its UTC date is what :func:`_cell` writes).
    """
    for name, position, flag in dated:
        words = _NOT_A_MONTH if name == "period" else _NOT_A_DAY
        for offset, row in enumerate(chunk):
            value = row[position]
            if flag is not None and row[flag]:
                value = "infinity" if value.year == 9999 else "-infinity"
            elif value.__class__ is not str:
                if (value.__class__ is not datetime or value.tzinfo is None
                        or 1 < value.year < 9999):
                    continue
                try:  # an instant of 9999-12-31 in LA may be 10000-01-01 in UTC
                    value.astimezone(UTC)
                    continue
                except OverflowError:
                    value = value.isoformat(sep=" ")
            sink.add(first_line + offset, name, f"{show(value)} {words}")


def pull_ledger(
    source: DataSource, sql: str, *, environ: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_LEDGER_TIMEOUT_SECONDS, max_rows: int = LEDGER_MAX_ROWS,
) -> tuple[bytes, tuple[str, ...]]:
    """The ledger query's rows as §3b CSV bytes and its dimension columns (rows in chunks).

    A ``period`` that comes back as a date is written as its month (YYYY-MM). Columns
    beyond the contract's are the dimensions. A DATE or TIMESTAMP(TZ) value no file can
    hold (±infinity, before year 1, after 9999) is refused by line and column in the
    ledger upload's words (:func:`_unheld_dates`), after every row has been read.

    Raises
    ------
    WarehouseError
        The query failed, lacks a required column, or returned more than ``max_rows``.
    ImportValidationError
        A date no file can hold, by line (line n = the query's row n - 1) and column.
    """
    from experiments.accounts_csv.exact import _ErrorSink

    sql = check_sql(sql)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    count = 0
    from experiments.ledger import MAX_REPORTED_ERRORS  # as the ledger upload lists them

    sink = _ErrorSink(MAX_REPORTED_ERRORS)
    try:
        with reading(source, environ=environ, timeout=timeout) as connection:
            probed = probe_columns(connection, sql)
            kinds = dict(probed)
            columns = map_columns([name for name, _kind in probed], known=LEDGER_KNOWN,
                                  required=LEDGER_REQUIRED, allow_extra=True)
            names = list(columns)
            writer.writerow(names)
            dated_names = [k for k in names if kinds[columns[k]] in ("date", "instant")]
            statement = text(sql)
            if source.dialect == "postgresql" and dated_names:
                _keep_unheld_as_text(connection.connection.driver_connection)
            elif source.dialect == "duckdb" and dated_names:
                # DuckDB's driver gives infinity as 9999-12-31 and -infinity as 0001-01-01:
                # a flag per date column tells them from those days.
                rows = text(sql).columns(*(column(name) for name, _kind in probed)
                                         ).subquery("ledger_rows")
                statement = select(rows, *(func.isinf(rows.c[columns[k]])
                                           for k in dated_names))
            result = connection.execution_options(stream_results=True,
                                                  yield_per=LEDGER_CHUNK).execute(statement)
            with result:  # stopped early (too many rows, too late): its cursor closed
                keys = list(result.keys())
                index = {key: keys.index(columns[key]) for key in names}
                first_flag = len(keys) - len(dated_names)
                dated = [(k, index[k], first_flag + i if source.dialect == "duckdb" else None)
                         for i, k in enumerate(dated_names)]
                for chunk in result.partitions(LEDGER_CHUNK):
                    first_line = count + 2  # line 1 is the header
                    count += len(chunk)
                    if count > max_rows:
                        raise WarehouseError(
                            f"The ledger query returned more than {max_rows:,} rows; "
                            "aggregate to one row per account and period, or narrow the "
                            "periods.")
                    if dated:
                        _unheld_dates(chunk, first_line, dated, sink)
                    writer.writerows([_cell(row[index[k]], k) for k in names] for row in chunk)
                    stop_if_late(connection)
    except TimedOut as error:
        # Every row comes through this process (~30-50 s per million rows measured on a
        # loaded PostgreSQL, docs/DESIGN.md): a large ledger meets the limit first.
        raise TimedOut(
            f"{error} The ledger query had returned {count:,} rows by then: a ledger "
            "refresh reads every row, which takes far longer than an experiment's sums. "
            f"Raise {LEDGER_TIMEOUT_VARIABLE} (seconds; now {timeout:g}) where the refresh jobs "
            "run, or return fewer rows (one per account and period, fewer periods)."
        ) from None
    if sink.total:  # raised here: inside reading() it would become a WarehouseError
        raise sink.fail()
    dimensions = tuple(name for name in names if name not in LEDGER_KNOWN)
    return out.getvalue().encode(), dimensions


def refresh_ledger(
    engine: Engine, query_id: int, *, actor_id: int | None,
    environ: Mapping[str, str] | None = None, timeout: float | None = None,
    max_rows: int = LEDGER_MAX_ROWS,
) -> RefreshOutcome:
    """Pull the ledger query's rows and store them as the next ledger version (committed).

    Errors of the rows are the ledger upload's, by line: line 1 is the header, so line
    *n* is the query's row *n − 1*. ``timeout``: seconds for the whole read (default
    :func:`refresh_timeout` of a ledger: 900 s).
    """
    from experiments.accounts_csv.contract import ImportValidationError
    from experiments.ledger import DuplicateLedger
    from experiments.ledger_import import store_ledger_upload

    # Read what the pull needs, then end the transaction: the app's database holds no
    # transaction (on SQLite maybe the write lock) while the warehouse works.
    with Session(engine) as session:
        query = session.get(WarehouseQuery, query_id)
        if query is None or query.target != "ledger":
            raise NotFound(f"no ledger query {query_id}")
        source = session.get(DataSource, query.source_id)
        if source is None:
            raise NotFound(f"the data source of ledger query {query_id} no longer exists")
        sql, source_id = query.sql_text, source.id
    stored: int | None = None
    try:
        data, dimensions = pull_ledger(
            source, sql, environ=environ, max_rows=max_rows,
            timeout=refresh_timeout(environ, ledger=True) if timeout is None else timeout)
        # Saved with another text or source during the pull: these rows are the old
        # query's (checked before the store; a save during the store itself still lands
        # after this version, which is then reported as the old text's).
        with Session(engine) as session:
            if session.scalar(select(func.count()).select_from(WarehouseQuery).where(
                    WarehouseQuery.id == query_id, WarehouseQuery.sql_text == sql,
                    WarehouseQuery.source_id == source_id)) == 0:
                raise WarehouseError(QUERY_CHANGED)
        # The name as it is after the pull (renamed meanwhile: the version shows the new one).
        name = _source_name(engine, source_id, source.name)
        version = store_ledger_upload(engine, data, dimensions=dimensions, actor_id=actor_id,
                                      filename=f"{name} (warehouse query)")
        stored = data.count(b"\n") - 1
        log.info("ledger refreshed from %s: version id %s", name, version.id)
        outcome = None
    except ImportValidationError as error:
        outcome = RefreshOutcome("failed", "The query's rows break the ledger contract "
                                 "(line n = the query's row n − 1): " + str(error)
                                 .replace("\n", "; "))
    except DuplicateLedger as error:
        outcome = RefreshOutcome("unchanged", str(error))
    except (WarehouseError, ValidationFailed) as error:
        outcome = RefreshOutcome("failed", str(error))
    with Session(engine) as session:
        if outcome is None:  # the source's name in the transaction that reports it
            name = _source_name(session, source_id, source.name)
            outcome = RefreshOutcome("ok", f"Ledger version stored from {name} "
                                     f"({stored:,} rows).", None)
        query = session.get(WarehouseQuery, query_id)
        if query is None:  # deleted during the refresh: nothing to report on
            return outcome
        _finish(session, query, outcome)
        session.commit()
        return outcome


def _source_name(bind: Engine | Session, source_id: int, known: str) -> str:
    """The data source's name as it is now (``known`` if it was deleted meanwhile)."""
    if isinstance(bind, Session):
        name = bind.scalar(select(DataSource.name).where(DataSource.id == source_id))
    else:
        with Session(bind) as session:
            name = session.scalar(select(DataSource.name).where(DataSource.id == source_id))
    return known if name is None else name


def run_refresh(engine: Engine, query_id: int, *, actor_id: int | None = None,
                environ: Mapping[str, str] | None = None) -> RefreshOutcome:
    """Refresh one query in its own transactions (the job's body; committed).

    No transaction of the app's database is open while the warehouse is read: the query,
    its experiment and its source are read first, the pull runs, and a new transaction
    stores the result (reading the experiment and the source again under its lock).
    """
    with Session(engine) as session:
        query = session.get(WarehouseQuery, query_id)
        if query is None:
            raise NotFound(f"no warehouse query {query_id}")
        target = query.target
    if target == "ledger":
        return refresh_ledger(engine, query_id, actor_id=actor_id, environ=environ)
    try:
        with Session(engine) as session:
            query = session.get(WarehouseQuery, query_id)
            planned = _plan_refresh(session, query)
            if isinstance(planned, RefreshOutcome):
                outcome = _finish(session, query, planned)
                session.commit()
                return outcome
        pulled = _pull_planned(planned, environ=environ, timeout=None, sample_limit=None)
        with Session(engine) as session:
            query = session.get(WarehouseQuery, query_id)
            if query is None:
                raise NotFound(f"no warehouse query {query_id}")
            if isinstance(pulled, RefreshOutcome):
                outcome = _finish(session, query, pulled)
            else:
                actor = session.get(User, actor_id) if actor_id is not None else None
                outcome = _store_pulled(session, query, planned, pulled, actor=actor)
            session.commit()
            return outcome
    except Exception as error:
        log.exception("warehouse refresh %s failed", query_id)
        with Session(engine) as session:
            query = session.get(WarehouseQuery, query_id)
            if query is None:
                raise
            outcome = _finish(session, query, RefreshOutcome(
                "failed", f"The refresh failed and stored nothing: {error}"))
            session.commit()
        return outcome


#: Seconds after which a query on each schedule is due again.
SCHEDULE_SECONDS = {"hourly": 3600, "daily": 86_400}


def due_queries(session: Session, now: datetime | None = None) -> list[int]:
    """Ids of scheduled queries whose last refresh is older than their schedule allows.

    A query queued less than an hour ago is not due (its job will run; one queued
    longer was lost with its process); a minute of slack keeps an hourly job on the hour
    from skipping a beat.
    """
    now = now or utcnow()
    due = []
    for query in session.scalars(
        select(WarehouseQuery).where(WarehouseQuery.schedule != "manual")
    ):
        if query.last_status == "queued" and (now - _aware(query.updated_at, now)
                                              ).total_seconds() < 3600:
            continue
        last = None if query.last_refresh_at is None else _aware(query.last_refresh_at, now)
        if last is None or (now - last).total_seconds() >= SCHEDULE_SECONDS[query.schedule] - 60:
            due.append(query.id)
    return due


def _aware(moment: datetime, now: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


def mark_queued(session: Session, query: WarehouseQuery) -> None:
    """Show the refresh as queued until the job reports (flushed)."""
    query.last_status = "queued"
    query.last_message = "Refresh queued."
    query.updated_at = utcnow()
    session.add(query)
    session.flush()
