"""``nrrlab analyze``: analyse an account CSV without a database.

Kept apart from the service layer so its import path stays lean: the CLI must
read, validate and analyse a million accounts in well under two seconds.
DuckDB reads and validates the file on every core and hands back only each variant's
numeric columns (:mod:`experiments.accounts_csv.duck`); a file it declines is read by
``read_accounts``, whose errors name the lines. Neither pyarrow nor ``scipy.stats`` is
imported for a file DuckDB reads: ``stats`` computes the large-sample Mann–Whitney and
the chi-square SRM check with ``scipy.special``, and ``stats`` itself is imported while
DuckDB parses the file on a thread of its own (``read_columns(..., meanwhile=...)``).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class UsageError(ValueError):
    """A flag is malformed or contradicts the file; the message names the flag."""


@dataclass(frozen=True)
class AnalysisRequest:
    path: str
    control: str = "control"
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.02
    weights: Mapping[str, float] | None = None
    sigma: float | None = None
    sequential: bool = False
    tuning: float | None = None
    #: ``stats.levers.GuardrailSpec`` values (DESIGN §4c), in the order given.
    guardrails: Sequence[Any] = ()
    ttv_target: float = 14.0


def check_plan_numbers(request: AnalysisRequest) -> None:
    """Refuse plan numbers given in the wrong unit before reading the file.

    Raises
    ------
    UsageError
        Naming the flag, e.g. ``--mde 2`` (points instead of a fraction).
    """
    if not np.isfinite(request.mde) or not 0 < request.mde < 1:
        raise UsageError(
            f"--mde must be a fraction between 0 and 1; got {request.mde:g}. "
            "MDE is a fraction: 0.02 = 2 points"
        )
    if request.sigma is not None and not (np.isfinite(request.sigma) and request.sigma > 0):
        raise UsageError(f"--sigma must be a number greater than 0; got {request.sigma:g}")
    if request.tuning is not None:
        if not (np.isfinite(request.tuning) and request.tuning > 0):
            raise UsageError(f"--tuning must be a number greater than 0; got {request.tuning:g}")
        if not request.sequential:
            raise UsageError("--tuning only applies with --sequential")
    if not (np.isfinite(request.ttv_target) and request.ttv_target > 0):
        raise UsageError(
            f"--ttv-target must be a number of days greater than 0; got {request.ttv_target:g}"
        )


def parse_guardrails(texts: Sequence[str]) -> tuple[Any, ...]:
    """``["grr:0.01", "logo_churn:0.005"]`` → ``GuardrailSpec`` values, in the order given.

    Raises
    ------
    UsageError
        Naming the flag and the malformed value.
    """
    if not texts:
        return ()  # without importing stats: the CLI imports it while DuckDB reads the file
    from stats.levers import GuardrailSpec

    specs = []
    for text in texts:
        try:
            specs.append(GuardrailSpec.parse(text))
        except ValueError as exc:
            raise UsageError(f"--guardrail: {exc}") from None
    metrics = [spec.metric for spec in specs]
    repeated = sorted({m for m in metrics if metrics.count(m) > 1})
    if repeated:
        raise UsageError(f"--guardrail: {', '.join(repeated)} is given more than once")
    return tuple(specs)


def _canonical(name: str) -> str:
    visible = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFKC", visible).strip().casefold()


def check_variant_names(table) -> None:
    """Variant names must match exactly: near-duplicates are an error, not extra arms.

    Raises
    ------
    UsageError
        One line per offending name: a control character in it, or a name equal
        to another but for case, spaces or invisible characters.
    """

    def where(name: str) -> str:
        index = int(np.flatnonzero(table.variant == name)[0])
        account = "" if table.account_id is None else f" (account {table.account_id[index]})"
        return f"line {index + 2}{account}"

    errors = _variant_name_errors(table.variants(), where)
    if errors:
        raise UsageError("\n".join(dict.fromkeys(errors)))


def _variant_name_errors(names: Sequence[str], where) -> list[str]:
    """One message per offending name; ``where(name)`` words the line it is first on."""
    errors = []
    for name in names:
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            errors.append(f"{where(name)}, variant: {name!r} contains a control character")
    seen: dict[str, str] = {}
    for name in names:
        key = _canonical(name)
        if key in seen and seen[key] != name:
            errors.append(
                f"{where(name)}, variant: {name!r} differs from {seen[key]!r} only in case, "
                "spaces or invisible characters; variant names must match exactly"
            )
        seen.setdefault(key, name)
    return errors


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``control=1,treatment=1`` → ``{"control": 1.0, "treatment": 1.0}``.

    Raises
    ------
    UsageError
        Naming the malformed part.
    """
    if text is None or not text.strip():
        return None
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(
                f"--weights: {part.strip()!r} is not variant=weight (e.g. control=1,treatment=1)"
            )
        try:
            weight = float(value)
        except ValueError:
            raise UsageError(
                f"--weights: weight of {name!r} is not a number: {value.strip()!r}"
            ) from None
        if not np.isfinite(weight) or weight <= 0:
            raise UsageError(
                f"--weights: weight of {name!r} must be a number greater than 0, got "
                f"{value.strip()!r}"
            )
        if name in weights:
            raise UsageError(f"--weights: variant {name!r} is named twice")
        weights[name] = weight
    return weights


def _import_statistics() -> None:
    # Run while DuckDB parses the file on its own thread (it releases the GIL): stats
    # (numpy, scipy.special) is ~0.3 s of imports. The Mann–Whitney and chi-square
    # checks of a file's size need no scipy.stats.
    import stats  # noqa: F401


def arms_from_table(table) -> dict:
    """Per-variant :class:`stats.ArmData` from an ``AccountTable``."""
    from stats import arm_from_arrays

    money = table.money()
    arms = {}
    variants = table.variant
    pre = table.pre_start_cents is not None and table.pre_end_cents is not None
    for variant in table.variants():
        mask = variants == variant
        arms[variant] = arm_from_arrays(
            money["start"][mask],
            money["expansion"][mask],
            money["contraction"][mask],
            money["churned"][mask],
            pre_start=table.pre_start_cents[mask] / 100 if pre else None,
            pre_end=table.pre_end_cents[mask] / 100 if pre else None,
            days_to_value=None if table.days_to_value is None else table.days_to_value[mask],
            days_observed=None if table.days_observed is None else table.days_observed[mask],
        )
    return arms


def _read_arms(request: AnalysisRequest) -> tuple[dict, list[str]]:
    """Per-variant :class:`stats.ArmData` and the planned variant order (control first).

    DuckDB reads the file (:mod:`experiments.accounts_csv.duck`); whatever it declines —
    a file that breaks the data contract, odd variant names, or anything it is unsure
    about — is read again by ``read_accounts``, whose errors name the lines.
    """
    from experiments.accounts_csv.duck import read_columns

    columns = read_columns(request.path, meanwhile=_import_statistics)
    if columns is None or _variant_name_errors(list(columns), lambda name: ""):
        from experiments.accounts_csv import read_accounts

        table = read_accounts(request.path, for_storage=False)
        check_variant_names(table)
        variants = _planned_order(request, table.variants())
        return arms_from_table(table), variants
    variants = _planned_order(request, list(columns))
    from stats import arm_from_arrays

    arms = {
        name: arm_from_arrays(
            found.start,
            found.expansion,
            found.contraction,
            found.churned,
            pre_start=found.pre_start,
            pre_end=found.pre_end,
            days_to_value=found.days_to_value,
            days_observed=found.days_observed,
        )
        for name, found in columns.items()
    }
    return arms, variants


def _planned_order(request: AnalysisRequest, observed: list[str]) -> list[str]:
    """The file's variants with the control first, once the flags agree with them."""
    if request.control not in observed:
        raise UsageError(
            f"--control: variant {request.control!r} is not in the file; its variants are "
            f"{', '.join(observed)}"
        )
    if len(observed) < 2:
        raise UsageError(
            f"the file has only one variant ({observed[0]}); a comparison needs a control and "
            "at least one treatment"
        )
    if request.weights is not None:
        unknown = [v for v in request.weights if v not in observed]
        if unknown:
            raise UsageError(
                f"--weights: unknown variant(s) {', '.join(unknown)}; the file's variants are "
                f"{', '.join(observed)}"
            )
        missing = [v for v in observed if v not in request.weights]
        if missing:
            raise UsageError(f"--weights: no weight for variant(s) {', '.join(missing)}")
    return [request.control, *[v for v in observed if v != request.control]]


def analyze_file(request: AnalysisRequest):
    """Read, validate and analyse ``request.path``.

    Raises
    ------
    experiments.accounts_csv.ImportValidationError
        The file breaks the data contract (line-numbered errors).
    UsageError
        A flag contradicts the file (unknown control, weights naming unknown variants).
    """
    check_plan_numbers(request)
    # A short switch interval lets the reader's thread get the GIL back quickly between
    # its DuckDB calls while this thread imports the statistics.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:
        arms, variants = _read_arms(request)
    finally:
        sys.setswitchinterval(interval)
    from stats import analyze

    try:
        return analyze(
            arms,
            control=request.control,
            alpha=request.alpha,
            power=request.power,
            mde=request.mde,
            weights=request.weights,
            variants=variants,
            sigma=request.sigma,
            sequential=request.sequential,
            tuning=request.tuning,
            guardrails=tuple(request.guardrails),
            ttv_target=request.ttv_target,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
