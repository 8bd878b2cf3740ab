"""NRR Lab statistics: pure functions over arrays and sufficient statistics.

No Flask, SQL or file I/O lives here. ``scipy.stats`` is imported lazily inside the
functions that need it, so ``import stats`` is cheap (numpy and ``scipy.special`` only);
``stats.impact`` and ``stats.ledger`` (the portfolio views, ~40 ms of imports that
``nrrlab analyze`` never uses) are imported when one of their names is first used
(``stats.ledger_figures``, ``from stats import shrink``). Sample size, power and the
p-value adjustments are the figures of pingouin's ``power_ttest``, ``power_ttest2n`` and
``multicomp`` (DESIGN §4), computed without importing pingouin; the tests check them
against pingouin and statsmodels.

Examples
--------
>>> import stats
>>> control = stats.arm_from_arrays([100.0, 200.0], [0.0, 10.0], [5.0, 0.0], [0.0, 0.0])
>>> round(control.totals.nrr, 4)
1.0167
"""

from stats.analysis import (
    ArmResult,
    Comparison,
    ExperimentResult,
    Verdict,
    analyze,
    summary_sentence,
)
from stats.cuped import CupedResult, cuped
from stats.levers import (
    GuardrailResult,
    GuardrailSpec,
    LeverFigure,
    Proportions,
    guardrail,
    lever_figures,
    two_proportions,
)
from stats.moments import MOMENT_COLUMNS, Moments
from stats.power import achieved_power, required_sample_size
from stats.ratio import (
    delta_method_variance,
    ratio_estimate,
    relative_uplift_variance,
    sigma_lin,
    welch_satterthwaite_df,
)
from stats.robust import PermutationResult, permutation_test
from stats.sequential import SequentialResult, sequential_test
from stats.significance import (
    Adjustment,
    MannWhitneyResult,
    SRMResult,
    bh_adjust,
    holm_adjust,
    mann_whitney,
    mann_whitney_p,
    segment_adjust,
    srm_test,
)
from stats.sizing import SizingPlan, plan_sample_sizes
from stats.sums import ArmData, ArmTotals, CoMoments, SufficientStats, arm_from_arrays
from stats.velocity import (
    TimeTable,
    kaplan_meier,
    km_curve,
    logrank_p,
    velocity_arm,
    velocity_cohorts,
    velocity_groups,
)

__all__ = [
    "MOMENT_COLUMNS",
    "Adjustment",
    "ArmData",
    "ArmResult",
    "ArmTotals",
    "CoMoments",
    "Comparison",
    "CupedResult",
    "ExperimentResult",
    "GuardrailResult",
    "GuardrailSpec",
    "Impact",
    "LedgerArrays",
    "LedgerFigures",
    "LeverFigure",
    "MannWhitneyResult",
    "Moments",
    "PermutationResult",
    "Proportions",
    "SRMResult",
    "SequentialResult",
    "Shrinkage",
    "SizingPlan",
    "SufficientStats",
    "TimeTable",
    "Verdict",
    "achieved_power",
    "analyze",
    "arm_from_arrays",
    "between_variance",
    "bh_adjust",
    "cuped",
    "delta_method_variance",
    "guardrail",
    "holm_adjust",
    "kaplan_meier",
    "km_curve",
    "ledger_figures",
    "lever_figures",
    "logrank_p",
    "mann_whitney",
    "mann_whitney_p",
    "permutation_test",
    "plan_sample_sizes",
    "ratio_estimate",
    "relative_uplift_variance",
    "required_sample_size",
    "revenue_impact",
    "segment_adjust",
    "sequential_test",
    "shrink",
    "sigma_lin",
    "srm_test",
    "summary_sentence",
    "two_proportions",
    "velocity_arm",
    "velocity_cohorts",
    "velocity_groups",
    "welch_satterthwaite_df",
]

#: Names imported from their module when first used (module ``__getattr__``, PEP 562).
_LAZY = {
    "Impact": "stats.impact",
    "Shrinkage": "stats.impact",
    "between_variance": "stats.impact",
    "revenue_impact": "stats.impact",
    "shrink": "stats.impact",
    "LedgerArrays": "stats.ledger",
    "LedgerFigures": "stats.ledger",
    "ledger_figures": "stats.ledger",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stats' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
