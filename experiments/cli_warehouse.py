"""``nrrlab warehouse``: list data sources and refresh a warehouse query now (issue 18).

The same service as the page's refresh button (:func:`experiments.warehouse.run_refresh`),
run in the foreground: for a cron job or to see a query's error at the terminal. Exit
status 0 when a new version was stored or nothing changed, 1 when the refresh failed
(the warehouse's message on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import click

from experiments.cli_common import checked_engine, fail


def _fail(message: str, code: int = 2) -> None:
    fail("warehouse", message, code)


def _engine():
    return checked_engine("warehouse")


@click.group("warehouse")
def warehouse() -> None:
    """Warehouse data sources and the queries datasets and the ledger are read with."""


@warehouse.command("sources")
def sources_command() -> None:
    """List the data sources and whether this process can use each one's URL."""
    from sqlmodel import Session

    from experiments.warehouse import list_sources, source_status

    engine = _engine()
    try:
        with Session(engine) as session:
            for source in list_sources(session):
                click.echo(f"{source.name}\t{source.dialect}\t${source.url_env}\t"
                           f"{source_status(source)}")
    finally:
        engine.dispose()


@warehouse.command("refresh")
@click.option("--experiment", "key", default=None, metavar="KEY",
              help="Refresh this experiment's query.")
@click.option("--ledger", "ledger", is_flag=True, help="Refresh the revenue ledger's query.")
def refresh_command(key: str | None, ledger: bool) -> None:
    """Read an experiment's (or the ledger's) warehouse query now and store the result."""
    if bool(key) == ledger:
        _fail("give exactly one of --experiment KEY or --ledger")
    engine = _engine()
    try:
        outcome = _refresh(engine, key, ledger)
    finally:
        engine.dispose()
    if outcome.status == "failed":
        _fail(outcome.message, 1)
    click.echo(f"{outcome.status}: {outcome.message}")


def _refresh(engine, key: str | None, ledger: bool):
    from sqlmodel import Session, select

    from experiments.models import Experiment
    from experiments.warehouse import experiment_query, ledger_query, run_refresh

    with Session(engine) as session:
        if ledger:
            query = ledger_query(session)
        else:
            experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
            if experiment is None:
                _fail(f"no experiment {key!r}")
            query = experiment_query(session, experiment)
        if query is None:
            _fail("no warehouse query is saved for it yet (save one on its Warehouse page)")
        query_id = query.id
    return run_refresh(engine, query_id)
