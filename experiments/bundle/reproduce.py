"""Recompute this report's NRR figures from its account data with NRR Lab's `stats` package.

Usage:  python3 reproduce.py

Needs Python 3.11+ with numpy and scipy (pip install numpy scipy); nothing else. The
`stats/` folder beside this script is NRR Lab's statistics package, copied into the
bundle, so the figures are recomputed by the very code that produced the report.

Reads accounts.csv (one row per account, DESIGN section 3) and expected.json (the
plan the report was computed under and its figures), reruns stats.analyze and prints
the headline figures, then whether they match the report.

The NRR levers (expansion, contraction, churn, GRR), logo churn and expansion incidence
(DESIGN section 4c) are then re-derived a second way, from the formulas alone with numpy
and scipy (no `stats` import), and compared with the report's figures too:

* lever, per arm: R = sum(x) / sum(start), x = expansion, contraction, churned, or
  start - contraction - churned for GRR; var(R) = var(x - R*start, ddof 1) / (n * mean(start)^2)
  (the delta method, Deng, Knoblich & Lu 2018); treatment - control with Welch-Satterthwaite
  df = V^2 / (V_T^2/(n_T-1) + V_C^2/(n_C-1)), V = V_T + V_C, interval +- t(1-alpha/2, df)*sqrt(V)
  and p = 2*T_df(-|diff|/sqrt(V)) (Welch 1947); no interval and no p when V = 0;
* logo churn: share of accounts with churned_mrr = start_mrr; expansion incidence: share
  with expansion_mrr > 0; diff = treatment - control, unpooled
  se = sqrt(p_C(1-p_C)/n_C + p_T(1-p_T)/n_T), p = 2*(1 - Phi(|diff|/se)) (Agresti 2013, 3.1);
  no p when se = 0;
* each guardrail of the plan (non-inferiority, one-sided at alpha, margin m): GRR with d, se,
  df of the GRR lever, p = 1 - T_df((d + m)/se), pass if d - t(1-alpha, df)*se > -m, fail if
  d + t(1-alpha, df)*se < -m; logo churn with d, se of logo churn, p = 1 - Phi((m - d)/se),
  pass if d + z(1-alpha)*se < m, fail if d - z(1-alpha)*se > m; else inconclusive; no p and
  no status when se is missing or 0 (Schuirmann 1987; Wellek 2010).

Text cells of accounts.csv that begin with ' are quoted against spreadsheet formula
injection: the first ' is not part of the value.
"""
import csv
import json
import math
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
from scipy import stats as distributions

HERE = Path(__file__).resolve().parent
# Run as `python3 -I reproduce.py` the script's folder is not on the path: put it there
# so the bundled `stats/` is found.
sys.path.insert(0, str(HERE))

import stats  # noqa: E402 - after the path is set


def unquote(text):
    text = text or ""
    return text[1:] if text.startswith("'") else text


def read_arms(path):
    columns = defaultdict(lambda: ([], [], [], []))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            start, expansion, contraction, churned = columns[unquote(row["variant"])]
            start.append(float(row["start_mrr"]))
            expansion.append(float(row["expansion_mrr"] or 0))
            contraction.append(float(row["contraction_mrr"] or 0))
            churned.append(float(row["churned_mrr"] or 0))
    return {variant: stats.arm_from_arrays(*values) for variant, values in columns.items()}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9)


# ---------------------------------------------------------------- levers and logo churn
# Re-derived from the formulas with numpy and scipy only (see the module docstring).

MONEY = ("start_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
#: Lever -> its numerator from an arm's columns (the denominator is always start).
LEVERS = {
    "expansion": lambda arm: arm["expansion_mrr"],
    "contraction": lambda arm: arm["contraction_mrr"],
    "churn": lambda arm: arm["churned_mrr"],
    "grr": lambda arm: arm["start_mrr"] - arm["contraction_mrr"] - arm["churned_mrr"],
}


def read_cents(path):
    """{variant: {column: float64 array of whole cents}} (exact: integers below 2**53)."""
    values = defaultdict(lambda: {name: [] for name in MONEY})
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            arm = values[unquote(row["variant"])]
            for name in MONEY:
                arm[name].append(int(Decimal(row[name] or "0") * 100))
    return {variant: {name: np.asarray(column, dtype=np.float64)
                      for name, column in arm.items()} for variant, arm in values.items()}


def ratio_and_variance(arm, numerator):
    """R = sum(x)/sum(start) and its delta-method variance (None where undefined)."""
    start = arm["start_mrr"]
    n = start.size
    if n == 0 or start.sum() == 0:
        return None, None, n
    x = numerator(arm)
    ratio = float(x.sum() / start.sum())
    if n < 2:
        return ratio, None, n
    residual = x - ratio * start
    return ratio, float(np.var(residual, ddof=1) / (n * start.mean() ** 2)), n


def lever(control, treatment, numerator, alpha):
    """(the lever's figure, its se, its Welch df); se and df None without an interval."""
    ratio_c, var_c, n_c = ratio_and_variance(control, numerator)
    ratio_t, var_t, n_t = ratio_and_variance(treatment, numerator)
    out = {"control": ratio_c, "treatment": ratio_t, "uplift_abs": None,
           "ci_abs": [None, None], "p_value": None}
    if ratio_c is None or ratio_t is None:
        return out, None, None
    diff = ratio_t - ratio_c
    out["uplift_abs"] = diff
    if var_c is None or var_t is None or var_c + var_t == 0:
        return out, None, None
    var = var_c + var_t
    df = var ** 2 / (var_t ** 2 / (n_t - 1) + var_c ** 2 / (n_c - 1))
    se = math.sqrt(var)
    critical = float(distributions.t.ppf(1 - alpha / 2, df))
    out["ci_abs"] = [diff - critical * se, diff + critical * se]
    out["p_value"] = float(2 * distributions.t.sf(abs(diff) / se, df))
    return out, se, df


def proportions(count_c, n_c, count_t, n_t):
    """(the two-proportion figure, its unpooled se or None)."""
    p_c = count_c / n_c if n_c else None
    p_t = count_t / n_t if n_t else None
    out = {"control": p_c, "treatment": p_t, "diff": None, "p_value": None}
    if p_c is None or p_t is None:
        return out, None
    out["diff"] = p_t - p_c
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    if se > 0:
        out["p_value"] = float(2 * distributions.norm.sf(abs(out["diff"]) / se))
        return out, se
    return out, None


def guardrail(metric, margin, alpha, grr, logo_churn):
    """One non-inferiority guardrail from the GRR lever's or logo churn's (d, se, df)."""
    out = {"diff": None, "p_value": None, "status": None}
    if metric == "grr":
        figure, se, df = grr
        diff = out["diff"] = figure["uplift_abs"]
        if diff is None or not se or df is None:
            return out
        out["p_value"] = float(distributions.t.sf((diff + margin) / se, df))
        critical = float(distributions.t.ppf(1 - alpha, df))
        low, high = diff - critical * se > -margin, diff + critical * se < -margin
    else:
        figure, se = logo_churn
        diff = out["diff"] = figure["diff"]
        if diff is None or not se:
            return out
        out["p_value"] = float(distributions.norm.sf((margin - diff) / se))
        critical = float(distributions.norm.ppf(1 - alpha))
        low, high = diff + critical * se < margin, diff - critical * se > margin
    out["status"] = "pass" if low else ("fail" if high else "inconclusive")
    return out


def nrr_native(arms, control, variant, alpha, guardrails=()):
    """The comparison's levers, logo churn, expansion incidence and the ``guardrails``
    (``[{"metric", "margin"}]``) as DESIGN section 4b keys."""
    empty = {name: np.zeros(0) for name in MONEY}
    c, t = arms.get(control, empty), arms.get(variant, empty)

    def share(arm, test):
        return int(np.count_nonzero(test(arm))), int(arm["start_mrr"].size)

    def churned(arm):
        return arm["churned_mrr"] == arm["start_mrr"]

    def expanded(arm):
        return arm["expansion_mrr"] > 0

    levers = {name: lever(c, t, numerator, alpha) for name, numerator in LEVERS.items()}
    logo_churn = proportions(*share(c, churned), *share(t, churned))
    return {
        "levers": {name: figure for name, (figure, _se, _df) in levers.items()},
        "logo_churn": logo_churn[0],
        "expansion_incidence": proportions(*share(c, expanded), *share(t, expanded))[0],
        "guardrails": [guardrail(g["metric"], g["margin"], alpha, levers["grr"], logo_churn)
                       for g in guardrails],
    }


def flat(figure):
    """A lever or proportion object as (name, value) pairs, the interval split."""
    for key, value in figure.items():
        if key == "ci_abs":
            low, high = [*value, None, None][:2] if value else (None, None)
            yield "ci_low", low
            yield "ci_high", high
        else:
            yield key, value


def compare_nrr_native(expected, arms):
    """Print the re-derived figures beside the report's; True when every one agrees.

    A report computed before these figures existed has no such keys: nothing to compare.
    """
    plan = expected["plan"]
    same = True
    for reported in expected["comparisons"]:
        variant = reported["variant"]
        planned = [g for g in reported.get("guardrails") or []
                   if g.get("metric") in ("grr", "logo_churn")
                   and isinstance(g.get("margin"), int | float)]
        mine = nrr_native(arms, plan["control"], variant, plan["alpha"], planned)
        parts = [("lever " + name, figure, (reported.get("levers") or {}).get(name))
                 for name, figure in mine["levers"].items()]
        parts += [(name, mine[name], reported.get(name))
                  for name in ("logo_churn", "expansion_incidence")]
        for label, figure, stored in parts:
            cells = " ".join(f"{key}={value!r}" for key, value in flat(figure))
            if stored is None:
                print(f"  {variant} {label}: {cells} (not in the report)")
                continue
            agree = all(close(value, dict(flat(stored)).get(key))
                        for key, value in flat(figure))
            print(f"  {variant} {label}: {cells} {'same' if agree else 'DIFFERENT'}")
            same = same and agree
        for spec, figure in zip(planned, mine["guardrails"], strict=True):
            agree = (close(figure["diff"], spec.get("diff"))
                     and close(figure["p_value"], spec.get("p_value"))
                     and figure["status"] == spec.get("status"))
            cells = " ".join(f"{key}={value!r}" for key, value in figure.items())
            print(f"  {variant} guardrail {spec['metric']}: margin={spec['margin']!r} {cells} "
                  f"{'same' if agree else 'DIFFERENT'}")
            same = same and agree
    return same


def main():
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    plan = expected["plan"]
    result = stats.analyze(read_arms(HERE / "accounts.csv"), control=plan["control"],
                           alpha=plan["alpha"], power=plan["power"], mde=plan["mde"],
                           weights=plan["weights"], variants=plan["variants"])
    for arm in result.arms:
        print(f"arm {arm.variant}: accounts={arm.accounts} nrr={arm.nrr!r}")
    for c in result.comparisons:
        print(f"comparison {c.variant}: uplift_abs={c.uplift_abs!r} ci_abs={list(c.ci_abs)!r} "
              f"p_value={c.p_value!r} verdict={c.verdict}")
        print("  " + stats.summary_sentence(c, result.alpha))
    reported = {c["variant"]: c for c in expected["comparisons"]}
    same = len(reported) == len(result.comparisons) and all(
        c.variant in reported and close(c.uplift_abs, reported[c.variant]["uplift_abs"])
        and close(c.p_value, reported[c.variant]["p_value"]) for c in result.comparisons)
    print("Levers, logo churn and expansion incidence, re-derived with numpy and scipy:")
    same = compare_nrr_native(expected, read_cents(HERE / "accounts.csv")) and same
    print("MATCHES the report" if same else "DIFFERS from the report")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
