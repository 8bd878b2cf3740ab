"""The "reproduce" bundle: one experiment's account rows, the figures its report shows,
and a script that recomputes them.

The script (``experiments/bundle/reproduce.py``, package data) runs under plain
``python3`` with only numpy and scipy installed: the bundle carries a copy of the
``stats`` package it imports, the same code that produced the report.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from sqlmodel import Session, select

import stats
from experiments.documents import ExperimentDocument, finite
from experiments.formatting import neutralise
from experiments.models import AccountRow, Dataset

ACCOUNT_COLUMNS: tuple[str, ...] = ("account_id", "variant", "start_mrr", "expansion_mrr",
                                    "contraction_mrr", "churned_mrr", "segment", "days_to_value")


def reproduce_script() -> str:
    """The text of the bundle's ``reproduce.py``."""
    return resources.files("experiments").joinpath("bundle/reproduce.py").read_text("utf-8")


def _stats_sources() -> dict[str, str]:
    """The ``stats`` package's modules by file name (what the script imports)."""
    folder = resources.files(stats)
    return {entry.name: entry.read_text("utf-8") for entry in folder.iterdir()
            if entry.name.endswith(".py")}


def cents_text(cents: int) -> str:
    """Integer cents as an exact decimal string: 12345 → '123.45'."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{part:02d}"


def _quote_text(text: str | None) -> str:
    """Reversible neutralisation for the bundle's data file (the script strips one ')."""
    if text is None:
        return ""
    return neutralise(text, reversible=True)


def account_lines(rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """CSV lines (header first) of ``(account_id, variant, start, expansion, contraction,
    churned, segment, days)`` with money in exact decimals."""
    buffer = io.StringIO()
    # CRLF rows: a field holding a bare CR or LF is then always quoted.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ACCOUNT_COLUMNS)
    yield buffer.getvalue()
    for account_id, variant, start, expansion, contraction, churned, segment, days in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_quote_text(account_id), _quote_text(variant), cents_text(start),
                         cents_text(expansion), cents_text(contraction), cents_text(churned),
                         _quote_text(segment), "" if days is None else repr(float(days))])
        yield buffer.getvalue()


def expected_figures(document: ExperimentDocument) -> dict[str, Any]:
    """The plan the snapshot was computed under and its figures, for the reproduce script."""
    result = document.result or {}
    stored = document.analysis_plan or {}
    if stored.get("variants"):
        variants = [v["key"] for v in stored["variants"]]
        weights = {v["key"]: v["weight"] for v in stored["variants"]}
    else:
        weights = dict((result.get("srm") or {}).get("expected_weights") or {}) or \
            {v.key: v.weight for v in document.plan.variants}
        variants = list(weights)
    plan = {"control": result.get("control"), "alpha": result.get("alpha"),
            "power": result.get("power"), "mde": result.get("mde"), "variants": variants,
            "weights": weights}
    dataset = document.dataset.to_json() if document.dataset else None
    if dataset:
        dataset.pop("id", None)
    return finite({"experiment": document.key, "plan": plan, "dataset": dataset,
                   "computed_at": document.computed_at, "arms": result.get("arms") or [],
                   "comparisons": result.get("comparisons") or []})


def _readme(document: ExperimentDocument) -> str:
    version, rows, sha256 = (document.dataset.version, document.dataset.rows,
                             document.dataset.sha256) if document.dataset else (None, None, None)
    return (f"Reproduce bundle for experiment {document.key}\n\n"
            f"accounts.csv   the account rows of data version {version} "
            f"({rows} rows, sha256 of the uploaded file {sha256})\n"
            "expected.json  the analysis plan and the figures the report shows\n"
            "reproduce.py   recomputes them: python3 reproduce.py (needs numpy and scipy)\n"
            "stats/         NRR Lab's statistics package, which reproduce.py imports\n\n"
            "Money is in currency units with two decimals, exactly as stored (integer cents).\n"
            "Text cells that begin with ' are quoted against spreadsheet formula injection;\n"
            "the first ' is not part of the value.\n")


def write_bundle(archive: zipfile.ZipFile, folder: str, document: ExperimentDocument,
                 lines: Iterable[str]) -> None:
    """Add one experiment's reproduce files under ``folder/`` of ``archive``."""
    with archive.open(f"{folder}/accounts.csv", "w") as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
        for line in lines:
            out.write(line)
    archive.writestr(f"{folder}/expected.json",
                     json.dumps(expected_figures(document), indent=2, ensure_ascii=False,
                                allow_nan=False) + "\n")
    archive.writestr(f"{folder}/reproduce.py", reproduce_script())
    for name, text in sorted(_stats_sources().items()):
        archive.writestr(f"{folder}/stats/{name}", text)
    archive.writestr(f"{folder}/README.txt", _readme(document))


def _account_rows(session: Session, dataset_id: int) -> Iterable[Sequence[Any]]:
    r = AccountRow
    query = (select(r.account_id, r.variant, r.start_cents, r.expansion_cents,
                    r.contraction_cents, r.churned_cents, r.segment, r.days_to_value)
             .where(r.dataset_id == dataset_id).order_by(r.id)
             .execution_options(yield_per=20_000))
    yield from session.exec(query)


def add_experiment(session: Session, archive: zipfile.ZipFile, folder: str,
                   document: ExperimentDocument) -> bool:
    """Add the bundle of ``document`` (a README saying so when it has no analysed data)."""
    dataset = document.dataset
    if not document.result or dataset is None or dataset.id is None \
            or session.get(Dataset, dataset.id) is None:
        archive.writestr(f"{folder}/README.txt",
                         "This experiment has no analysed data yet: nothing to reproduce.\n")
        return False
    write_bundle(archive, folder, document, account_lines(_account_rows(session, dataset.id)))
    return True
