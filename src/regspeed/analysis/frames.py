"""A study's per-run learning-speed metrics as one table (pandas, the optional ``pandas`` extra).

:func:`run_metrics` gives, for every run, speed metric and threshold, what the report's
statistics are computed from: the time to the threshold (censored where the run never reached
it), the normalised area under the curve and the final performance. The numbers come from
:mod:`regspeed.analysis.metrics` (``condition_times``, ``area_under_curve``,
``final_performance``) and the thresholds from :func:`regspeed.analysis.compare.analyze`, so
they are the report's, row for row; the table adds no computation of its own. For the raw
curves, see :func:`regspeed.study.results.to_pandas`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from regspeed.analysis import compare, metrics
from regspeed.study import results
from regspeed.study.results import StudyData

if TYPE_CHECKING:
    import pandas

RUN_METRIC_COLUMNS = (
    "cell",  # the study's factor combination: always results.CELL today
    "condition",
    "kind",  # regularizer kind ("none" for the baseline)
    "strength",
    "seed",
    "metric",
    "threshold",  # NaN for a speed metric the study sets no threshold on (its AUC and final performance only)
    "steps_to_threshold",  # when the run reached it; if it did not, where it was censored
    "reached",  # False: censored (never reached within the budget, or the run's record stops earlier)
    "auc",  # normalised area under the curve (the curve's time-average over the budget)
    "final",  # final performance (mean over the last 10% of the budget)
)


def run_metrics(data: StudyData, analysis: compare.StudyAnalysis | None = None) -> pandas.DataFrame:
    """One row per (speed metric, condition, seed, threshold), in that order (the learner's
    metrics, the study's conditions): columns :data:`RUN_METRIC_COLUMNS`.

    The thresholds are the report's (``analysis.thresholds``: the spec's, or "auto" ones from
    the best condition's final performance); pass the ``analysis`` you already have, else
    :func:`compare.analyze` computes it. A speed metric without thresholds has one row per run
    with ``threshold``, ``steps_to_threshold`` and ``reached`` missing. ``steps_to_threshold``
    counts in ``data.step_unit``; with ``reached`` it is right-censored survival data (e.g.
    for a Kaplan-Meier fit). Needs pandas (``pip install 'regspeed[pandas]'``)."""
    pd = results.pandas_module()
    thresholds = (analysis if analysis is not None else compare.analyze(data)).thresholds
    speed = [metric for metric in data.speed_metrics if metric in data.curves]
    rows = [row for metric in speed for row in _metric_rows(data, metric, thresholds.get(metric, []))]
    frame = pd.DataFrame(rows, columns=list(RUN_METRIC_COLUMNS))
    return frame.astype({"seed": "int64", "strength": "float64", "threshold": "float64", "reached": "boolean"})


def _metric_rows(data: StudyData, metric: str, levels: list[float]) -> list[tuple]:
    """The rows of one metric: per condition, seed and threshold (one row per run, with the
    threshold's columns missing, when the metric has no thresholds)."""
    times = {float(level): metrics.condition_times(data, metric, level) for level in levels}
    rows = []
    for condition in data.conditions:
        curve = data.curves_of(metric)[condition.name]
        auc = metrics.area_under_curve(curve.steps, curve.values, data.budget_steps)
        final = metrics.final_performance(curve.steps, curve.values, data.budget_steps)
        described = (results.CELL, condition.name, condition.kind, condition.strength)
        for run, seed in enumerate(curve.seeds):
            measured = (float(auc[run]), float(final[run]))
            if not times:
                rows.append((*described, seed, metric, math.nan, math.nan, None, *measured))
            for threshold, per_condition in times.items():
                ttt, _ = per_condition[condition.name]  # its censored times to the threshold, and seeds
                timed = (float(ttt.steps[run]), bool(ttt.reached[run]))
                rows.append((*described, seed, metric, threshold, *timed, *measured))
    return rows
