"""DataFrames of a study: every stored point in ``results.to_pandas``, and per-run metrics
(``frames.run_metrics``) that agree with the report's analysis run for run."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regspeed.analysis import compare, frames
from regspeed.errors import ConfigError
from regspeed.study import results
from regspeed.study.store import Store


@pytest.fixture(scope="module")
def tiny_data(tiny_study: Path) -> results.StudyData:
    with Store.open(tiny_study) as store:
        return results.load(store)


@pytest.mark.slow  # the tiny study fixture: about 30 s
def test_to_pandas_holds_every_stored_point_once_with_its_value(tiny_study: Path) -> None:
    with Store.open(tiny_study) as store:
        frame = results.to_pandas(store)
        names = {run.run_id: (run.condition, run.seed) for run in store.runs()}
        expected = {
            (*names[run_id], metric, int(step)): value
            for metric in store.metric_names()
            for run_id, (steps, values) in store.curve(metric).items()
            for step, value in zip(steps, values, strict=True)
        }
    assert list(frame.columns) == list(results.FRAME_COLUMNS)
    assert set(frame["cell"]) == {results.CELL}
    keys = list(zip(frame["condition"], frame["seed"], frame["metric"], frame["step"], strict=True))
    assert len(keys) == len(set(keys)) == len(expected)
    assert set(keys) == set(expected)
    np.testing.assert_array_equal(frame["value"].to_numpy(), np.array([expected[key] for key in keys]))


@pytest.mark.slow  # the tiny study fixture: about 30 s
def test_to_pandas_reads_a_folder_in_study_order_and_a_chosen_metric(tiny_study: Path) -> None:
    frame = results.to_pandas(tiny_study, metrics=["score"])
    with Store.open(tiny_study) as store:
        assert frame.equals(results.to_pandas(store)[lambda f: f["metric"] == "score"].reset_index(drop=True))
        conditions = [c["name"] for c in store.conditions()]
    assert list(dict.fromkeys(frame["condition"])) == conditions
    ordered = frame.assign(order=frame["condition"].map(conditions.index))
    assert ordered.equals(ordered.sort_values(["order", "seed", "metric", "step"], kind="stable"))
    assert frame["seed"].dtype == np.int64 and frame["step"].dtype == np.int64 and frame["value"].dtype == np.float64


@pytest.mark.slow  # the tiny study fixture: about 30 s
def test_to_pandas_names_an_unknown_metric(tiny_study: Path) -> None:
    with pytest.raises(ConfigError, match="no values of 'nope'; choose among"):
        results.to_pandas(str(tiny_study), metrics=["score", "nope"])


def test_without_pandas_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    for call in (lambda: results.to_pandas("anywhere"), lambda: frames.run_metrics(synthetic_study())):
        with pytest.raises(ConfigError) as raised:
            call()
        assert "pip install 'regspeed[pandas]'" in str(raised.value) and "\n" not in str(raised.value)


def test_run_metrics_of_arrays_censor_an_unfinished_run_where_its_record_stops() -> None:
    data = synthetic_study()
    analysis = compare.analyze(data)
    frame = frames.run_metrics(data, analysis)
    assert len(frame) == len(data.runs) * 2  # two thresholds of the one speed metric
    assert_agrees(frame, data, analysis)
    unfinished = frame[(frame["condition"] == "l2@0.01") & (frame["seed"] == 2)]
    assert list(unfinished["reached"]) == [True, False]  # the second threshold comes after its record stops
    assert unfinished["steps_to_threshold"].iloc[1] == BUDGET / 2
    assert frame.loc[frame["condition"] == "none", "strength"].eq(0.0).all()


@pytest.mark.slow  # the tiny study fixture: about 30 s
@pytest.mark.parametrize(
    "thresholds",
    [None, {"score": [0.1, 0.2, 5.0], "steps": [8.0]}, {}],
    ids=["spec", "reached-and-censored", "auto"],
)
def test_run_metrics_agree_with_the_analysis(tiny_data: results.StudyData, thresholds: dict | None) -> None:
    data = tiny_data if thresholds is None else dataclasses.replace(tiny_data, thresholds=thresholds)
    analysis = compare.analyze(data)
    frame = frames.run_metrics(data, analysis)
    assert list(frame.columns) == list(frames.RUN_METRIC_COLUMNS)
    assert len(frame) == len(data.runs) * sum(max(1, len(analysis.thresholds.get(m, []))) for m in analysis.summaries)
    assert_agrees(frame, data, analysis)
    if thresholds:  # the reached and the censored both appear
        assert set(frame["reached"].dropna()) == {True, False}


@pytest.mark.slow  # the tiny study fixture: about 30 s
def test_run_metrics_without_an_analysis_use_the_reports_thresholds(tiny_data: results.StudyData) -> None:
    frame = frames.run_metrics(tiny_data)
    assert frame.equals(frames.run_metrics(tiny_data, compare.analyze(tiny_data)))
    assert sorted(frame["threshold"].dropna().unique()) == [1.0, 2.0]  # the spec's
    no_threshold = frame[frame["threshold"].isna()]
    assert set(no_threshold["metric"]) == set(tiny_data.speed_metrics) - {"score"}
    assert no_threshold["reached"].isna().all() and no_threshold["steps_to_threshold"].isna().all()
    assert set(frame["kind"]) == {"none", "l2"} and set(frame["cell"]) == {results.CELL}


def assert_agrees(frame: pd.DataFrame, data: results.StudyData, analysis: compare.StudyAnalysis) -> None:
    """Every time, censoring, AUC and final performance in ``frame`` is the analysis' own."""
    for times in analysis.times:
        for condition, ttt in times.times.items():
            rows = _rows(frame, times.metric, condition, threshold=times.threshold)
            assert list(rows["seed"]) == data.curves_of(times.metric)[condition].seeds
            np.testing.assert_array_equal(rows["steps_to_threshold"].to_numpy(float), ttt.steps)
            np.testing.assert_array_equal(rows["reached"].to_numpy(bool), ttt.reached)
    for metric, summaries in analysis.summaries.items():
        for summary in summaries:
            rows = _rows(frame, metric, summary.condition).drop_duplicates("seed")
            np.testing.assert_array_equal(rows["auc"].to_numpy(float), summary.auc_per_run)
            np.testing.assert_array_equal(rows["final"].to_numpy(float), summary.final_per_run)


BUDGET = 1_000


def synthetic_study() -> results.StudyData:
    """Two conditions x 3 seeds of curves rising linearly (the L2 ones more slowly); L2's seed 2
    is still running, halfway through its budget."""
    steps = np.arange(10, BUDGET + 1, 10)
    rates = {"none": [0.004, 0.005, 0.006], "l2@0.01": [0.003, 0.004, 0.005]}
    runs, curves = [], []
    for name, condition_rates in rates.items():
        values = np.asarray(condition_rates)[:, None] * steps[None, :]
        if name == "l2@0.01":
            values[2, steps > BUDGET / 2] = np.nan
        curves.append(results.ConditionCurves(name, [0, 1, 2], steps, values))
        runs += [results.Run(name, seed, "finished", 1.0, None) for seed in range(3)]
    runs[-1] = results.Run("l2@0.01", 2, "running", 0.5, None)
    return results.StudyData(
        name="synthetic",
        task="made-up",
        budget_steps=BUDGET,
        step_unit="updates",
        speed_metrics=("score",),
        thresholds={"score": [1.0, 2.9]},
        margin=1.1,
        looks=(3,),
        conditions=[results.Condition("none", "none", 0.0, {}), results.Condition("l2@0.01", "l2", 0.01, {})],
        runs=runs,
        curves={"score": curves},
        wall_seconds=1.0,
        versions={},
        spec_toml="",
        metric_labels={},
        watchable=False,
        progress_metric="score",
    )


def _rows(frame: pd.DataFrame, metric: str, condition: str, threshold: float | None = None) -> pd.DataFrame:
    """The rows of one metric and condition (and threshold), in the frame's order."""
    chosen = (frame["metric"] == metric) & (frame["condition"] == condition)
    if threshold is not None:
        chosen &= frame["threshold"] == threshold
    return frame[chosen]
