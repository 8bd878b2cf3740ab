"""refresh_snapshot / load_results: SQL sums against an independent in-memory path, plan handling,
the headline verdict, segments and what the page reads back."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

import stats
from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.analysis import (
    DEFAULT_SIGMA,
    MAX_SEGMENTS,
    headline_verdict,
    load_results,
    recompute,
    refresh_snapshot,
)
from experiments.datasets import store_dataset
from experiments.demo import Behaviour, generate_accounts_csv
from experiments.errors import NotFound
from experiments.models import AnalysisSnapshot, AuditEvent, Experiment, Variant, utcnow
from stats import ExperimentResult
from tests.factories import make_experiment

REL = 1e-9


def generated(seed: int, arms: dict[str, tuple[int, Behaviour]], **kwargs) -> bytes:
    return generate_accounts_csv(np.random.default_rng(seed), arms, prefix="acct", **kwargs)


def arrays_analysis(
    table, plan_variants, *, control, weights=None, alpha=0.05, power=0.8, mde=0.02, mask=None
) -> ExperimentResult:
    """The independent path: the file's own arrays straight into stats (no SQL)."""
    money = table.money()
    arms = {}
    for variant in dict.fromkeys(table.variant.tolist()):
        rows = table.variant == variant
        if mask is not None:
            rows = rows & mask
        if not rows.any():
            continue
        arms[variant] = stats.arm_from_arrays(
            money["start"][rows],
            money["expansion"][rows],
            money["contraction"][rows],
            money["churned"][rows],
            # issue 15: per-account days feed the velocity cohorts
            days_to_value=None if table.days_to_value is None else table.days_to_value[rows],
        )
    return stats.analyze(
        arms,
        control=control,
        alpha=alpha,
        power=power,
        mde=mde,
        weights=weights,
        variants=plan_variants,
    )


def assert_close(actual, expected, path="result"):
    """Recursively compare two JSON reports: numbers to 1e-9 relative, everything else exactly."""
    if isinstance(expected, dict):
        assert set(actual) >= set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert actual is not None, path
        assert math.isclose(actual, expected, rel_tol=REL, abs_tol=1e-12), (
            f"{path}: {actual} != {expected}"
        )
    else:
        assert actual == expected, path


def stored(session, experiment, data: bytes, filename="a.csv"):
    table = read_accounts(
        data,
        variants=[
            v.key
            for v in session.exec(
                select(Variant).where(Variant.experiment_id == experiment.id)
            ).all()
        ],
    )
    dataset = store_dataset(session, experiment, table, filename=filename, actor=None)
    return table, dataset


def test_sql_sums_equal_sums_from_the_arrays(session):
    experiment = make_experiment(session)
    table, dataset = stored(
        session,
        experiment,
        generated(3, {"control": (700, Behaviour()), "treatment": (650, Behaviour(p_churn=0.03))}),
    )
    money = table.money()
    for row in datasets.arm_sums(session, dataset.id):
        rows = table.variant == row.variant
        arm = stats.arm_from_arrays(
            money["start"][rows],
            money["expansion"][rows],
            money["contraction"][rows],
            money["churned"][rows],
        )
        assert row.n == arm.sums.n
        for name in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy"):
            assert math.isclose(getattr(row, name), getattr(arm.sums, name), rel_tol=REL), name
        assert math.isclose(row.start, arm.totals.start_mrr, rel_tol=REL)
        assert math.isclose(row.expansion, arm.totals.expansion_mrr, rel_tol=REL)
        assert math.isclose(row.contraction, arm.totals.contraction_mrr, rel_tol=REL, abs_tol=1e-9)
        assert math.isclose(row.churned, arm.totals.churned_mrr, rel_tol=REL, abs_tol=1e-9)
        ratios = datasets.account_ratios(session, dataset.id)[row.variant]
        np.testing.assert_allclose(np.sort(ratios), np.sort(arm.account_nrr), rtol=REL)


def test_snapshot_equals_stats_analyze_on_the_files_arrays(session):
    experiment = make_experiment(
        session, variants=(("control", 1.0), ("a", 1.0), ("b", 1.0)), mde=0.03, alpha=0.1, power=0.9
    )
    data = generated(
        5,
        {
            "control": (900, Behaviour()),
            "a": (900, Behaviour(p_expand=0.3)),
            "b": (900, Behaviour(p_churn=0.12)),
        },
    )
    table, dataset = stored(session, experiment, data)
    snapshot = refresh_snapshot(session, experiment, dataset)
    expected = arrays_analysis(
        table,
        ["control", "a", "b"],
        control="control",
        alpha=0.1,
        power=0.9,
        mde=0.03,
        weights={"control": 1.0, "a": 1.0, "b": 1.0},
    )
    assert_close(snapshot.result, expected.to_dict())
    assert snapshot.result["plan"]["mde"] == 0.03
    assert snapshot.result["dataset"] == {
        "id": dataset.id,
        "version": 1,
        "filename": "a.csv",
        "sha256": table.sha256,
        "rows": 2700,
    }
    assert snapshot.verdict == headline_verdict(expected)
    for name in ("Enterprise", "Mid-Market", "SMB"):
        segment = arrays_analysis(
            table,
            ["control", "a", "b"],
            control="control",
            alpha=0.1,
            power=0.9,
            mde=0.03,
            weights={"control": 1.0, "a": 1.0, "b": 1.0},
            mask=table.segment == name,
        )
        assert_close(snapshot.segments[name], segment.to_dict(), f"segments[{name}]")


def test_known_effect_is_found(session):
    experiment = make_experiment(session)
    _, dataset = stored(
        session,
        experiment,
        generated(
            11,
            {
                "control": (4000, Behaviour(p_churn=0.10)),
                "treatment": (4000, Behaviour(p_churn=0.02)),
            },
        ),
    )
    snapshot = refresh_snapshot(session, experiment, dataset)
    comparison = snapshot.result["comparisons"][0]
    assert comparison["verdict"] == "win" and snapshot.verdict == "win"
    # True effect: 8 points less churn of the start MRR (churn is all of an account's MRR).
    low, high = comparison["ci_abs"]
    assert low < 0.08 < high


def test_plan_control_weights_and_order_come_from_the_variants(session):
    # The control is not first by position, and the planned split is 2:1.
    experiment = make_experiment(session, variants=(("new", 1.0), ("base", 2.0)), control="base")
    table, dataset = stored(
        session, experiment, generated(4, {"base": (800, Behaviour()), "new": (400, Behaviour())})
    )
    snapshot = refresh_snapshot(session, experiment, dataset)
    result = snapshot.result
    assert result["control"] == "base"
    assert [arm["variant"] for arm in result["arms"]] == ["new", "base"]
    assert result["srm"]["expected_weights"] == pytest.approx({"new": 1 / 3, "base": 2 / 3})
    assert not result["srm"]["flag"]
    expected = arrays_analysis(
        table, ["new", "base"], control="base", weights={"new": 1.0, "base": 2.0}
    )
    assert_close(result, expected.to_dict())


def test_srm_is_the_headline_verdict(session):
    experiment = make_experiment(session)
    _, dataset = stored(
        session,
        experiment,
        generated(
            6, {"control": (1500, Behaviour()), "treatment": (1000, Behaviour(p_expand=0.5))}
        ),
    )
    snapshot = refresh_snapshot(session, experiment, dataset)
    assert snapshot.result["srm"]["flag"]
    assert snapshot.verdict == "srm"


@pytest.mark.parametrize(
    ("verdicts", "flag", "expected"),
    [
        (["inconclusive", "win"], False, "win"),
        (["loss", "underpowered"], False, "loss"),
        (["inconclusive", "underpowered"], False, "underpowered"),
        (["inconclusive"], False, "inconclusive"),
        (["win"], True, "srm"),
        ([], False, None),
    ],
)
def test_headline_verdict_order(verdicts, flag, expected):
    comparisons = tuple(
        stats.Comparison(
            f"t{i}", None, (None, None), None, (None, None), None, None, None, None, None, None, v
        )
        for i, v in enumerate(verdicts)
    )
    result = ExperimentResult(
        0.05, 0.8, 0.02, "control", stats.SRMResult(0.5, {}, {}, flag), (), comparisons
    )
    assert headline_verdict(result) == expected


def test_segments_are_capped_at_the_largest(session):
    experiment = make_experiment(session)
    header = "account_id,variant,start_mrr,expansion_mrr,segment\n"
    lines = []
    for s in range(MAX_SEGMENTS + 3):
        size = 30 + s  # the last segments are the largest
        for i in range(size):
            lines.append(
                f"s{s}-{i},{'control' if i % 2 else 'treatment'},{100 + i},{i % 5},seg-{s:02d}\n"
            )
    _, dataset = stored(session, experiment, (header + "".join(lines)).encode())
    snapshot = refresh_snapshot(session, experiment, dataset)
    assert len(snapshot.segments) == MAX_SEGMENTS
    assert "seg-00" not in snapshot.segments and f"seg-{MAX_SEGMENTS + 2:02d}" in snapshot.segments
    assert snapshot.result["segments_omitted"] == 3


def test_dataset_without_segment_column_has_no_segments(session):
    experiment = make_experiment(session)
    _, dataset = stored(
        session,
        experiment,
        generated(
            2, {"control": (50, Behaviour()), "treatment": (50, Behaviour())}, with_segments=False
        ),
    )
    assert refresh_snapshot(session, experiment, dataset).segments is None


def test_load_results_without_data_sizes_with_the_default_sigma(session):
    experiment = make_experiment(session)
    results = load_results(session, experiment)
    assert not results.has_data and results.result is None
    assert results.assumed_sigma == DEFAULT_SIGMA
    assert results.required_n == stats.required_sample_size(
        0.02, DEFAULT_SIGMA, alpha=0.05, power=0.8
    )
    assert [(p.variant, p.accounts, p.required) for p in results.progress] == [
        ("control", 0, results.required_n),
        ("treatment", 0, results.required_n),
    ]


def test_load_results_reads_the_latest_snapshot_and_versions(session):
    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=10))
    _, first = stored(
        session,
        experiment,
        generated(1, {"control": (300, Behaviour()), "treatment": (300, Behaviour())}),
    )
    refresh_snapshot(session, experiment, first)
    _, second = stored(
        session,
        experiment,
        generated(2, {"control": (400, Behaviour()), "treatment": (400, Behaviour())}),
        filename="b.csv",
    )
    refresh_snapshot(session, experiment, second)

    results = load_results(session, experiment)
    assert results.dataset.version == 2 and results.is_active_version
    assert [v.version for v in results.versions] == [2, 1]
    assert [arm.accounts for arm in results.result.arms] == [400, 400]
    assert set(results.summaries) == {"treatment"}
    assert results.required_n == results.result.comparisons[0].required_n_per_arm
    assert results.assumed_sigma is None
    assert results.segment_names == ("Enterprise", "Mid-Market", "SMB")
    assert {row.segment for row in results.segment_rows} == set(results.segment_names)
    if results.required_n > 400:
        assert results.expected_date is not None

    older = load_results(session, experiment, dataset_version=1, segment="SMB")
    assert older.dataset.version == 1 and not older.is_active_version
    assert older.segment == "SMB"
    assert sum(arm.accounts for arm in older.result.arms) < 600

    with pytest.raises(NotFound):
        load_results(session, experiment, dataset_version=9)
    with pytest.raises(NotFound):
        load_results(session, experiment, segment="Nope")


def test_amended_plan_marks_the_snapshot_outdated_until_recomputed(session):
    experiment = make_experiment(session)
    _, dataset = stored(
        session,
        experiment,
        generated(1, {"control": (300, Behaviour()), "treatment": (300, Behaviour())}),
    )
    refresh_snapshot(session, experiment, dataset)
    assert not load_results(session, experiment).plan_outdated

    experiment.mde = 0.05
    session.add(experiment)
    session.flush()
    outdated = load_results(session, experiment)
    assert outdated.plan_outdated and outdated.result.mde == 0.02

    recompute(session, experiment, actor=None)
    fresh = load_results(session, experiment)
    assert not fresh.plan_outdated and fresh.result.mde == 0.05
    assert len(session.exec(select(AnalysisSnapshot)).all()) == 2
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "analysis.recompute")).one()


def test_recompute_without_data_is_not_found(session):
    with pytest.raises(NotFound):
        recompute(session, make_experiment(session), actor=None)


def test_snapshot_round_trips_through_the_database(session, db_engine):
    experiment = make_experiment(session)
    _, dataset = stored(
        session,
        experiment,
        generated(8, {"control": (200, Behaviour()), "treatment": (200, Behaviour())}),
    )
    refresh_snapshot(session, experiment, dataset)
    session.commit()
    with Session(db_engine) as fresh:
        reread = load_results(fresh, fresh.get(Experiment, experiment.id))
    assert reread.result == load_results(session, experiment).result


def test_import_snapshot_equals_a_recompute_from_the_stored_rows(session):
    # The import hands the in-memory ratios to the Mann-Whitney check; a recompute reads
    # them back from the database. Both must give the same figures.
    from experiments.imports import import_accounts

    experiment = make_experiment(session)
    data = generated(
        12, {"control": (500, Behaviour()), "treatment": (450, Behaviour(p_expand=0.25))}
    )
    data += b"blank-seg,control,120.00,0,0,0,,\n"
    imported = import_accounts(session, experiment, data, filename="a.csv", actor=None).snapshot
    again = refresh_snapshot(session, experiment, imported_dataset(session, imported))
    assert_close(again.result, imported.result)
    assert_close(again.segments, imported.segments)
    assert imported.result["comparisons"][0]["p_value_mwu"] is not None


def imported_dataset(session, snapshot):
    from experiments.models import Dataset

    return session.get(Dataset, snapshot.dataset_id)
