"""Learning-speed metrics of runs, from their curves (``values[run, point]`` at ``steps[point]``).

- **steps to threshold**: when a run's *smoothed* curve first reaches the threshold,
  interpolated between the recorded points on either side. A run that never reaches it
  within the budget is right-censored at the budget (``reached = False``): it is kept, not
  dropped, and the statistics treat it as "at least the budget".
- **normalised area under the curve**: the time-average of the curve over the budget
  (trapezoids over the recorded points, in the metric's own units), so 10 means "as good
  as a constant 10 over the whole budget".
- **final performance**: the mean over the last 10% of the budget.

Curves may hold NaN (an update in which no training episode ended has no score); every
function here ignores those points. Smoothing is a trailing mean over a window of
``SMOOTH_FRACTION`` of the points, so it never looks into the future: a run is credited
with reaching a threshold only once its recent average has.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from regspeed.study.results import Run, StudyData

SMOOTH_FRACTION = 0.05  # trailing window, as a fraction of the curve's points
FINAL_FRACTION = 0.1  # "final performance" = mean over this last fraction of the budget
AUTO_LEVELS = (0.25, 0.5, 0.75)  # "auto" thresholds, as fractions of the best final IQM


@dataclasses.dataclass(frozen=True)
class TimeToThreshold:
    """Per run: the step at which it reached a threshold, or the budget if it never did."""

    threshold: float
    steps: np.ndarray  # [runs], float
    reached: np.ndarray  # [runs], bool: False = right-censored at the budget


def smoothing_window(points: int) -> int:
    """The trailing window used for curves of ``points`` points (at least 1)."""
    return max(1, round(SMOOTH_FRACTION * points))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points along the last axis, ignoring NaN; NaN where the
    window holds no value."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    totals = np.cumsum(filled, axis=-1)
    counts = np.cumsum(finite, axis=-1)
    totals[..., window:] = totals[..., window:] - totals[..., :-window]
    counts[..., window:] = counts[..., window:] - counts[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def steps_to_threshold(steps: np.ndarray, values: np.ndarray, threshold: float, budget: float) -> TimeToThreshold:
    """When each run's smoothed curve first reaches ``threshold`` (censored at ``budget``).

    The time is interpolated linearly between the last recorded point below the threshold
    and the first at or above it (on the smoothed curve, the previous point being finite),
    so that its resolution is not the spacing of the recorded points (one PPO update, about
    7% of the default study's median time); a curve at or above the threshold from its
    first point reaches it there."""
    steps = np.asarray(steps, float)
    smoothed = np.nan_to_num(smooth(values, smoothing_window(values.shape[-1])), nan=-np.inf)
    above = smoothed >= threshold
    reached = above.any(axis=-1)
    first = np.where(reached, np.argmax(above, axis=-1), 0)
    before = np.maximum(first - 1, 0)
    rows = np.arange(smoothed.shape[0])
    low, high = smoothed[rows, before], smoothed[rows, first]
    between = reached & (first > 0) & np.isfinite(low)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(between, (threshold - low) / (high - low), 1.0)
    at = steps[before] + np.clip(fraction, 0.0, 1.0) * (steps[first] - steps[before])
    at = np.where(between, at, steps[first])
    return TimeToThreshold(float(threshold), np.where(reached, at, float(budget)), reached)


def area_under_curve(steps: np.ndarray, values: np.ndarray, budget: float) -> np.ndarray:
    """Per run: the curve's time-average over ``[0, budget]`` (trapezoids over its finite
    points; before the first point the first value holds, after the last the last)."""
    result = np.full(values.shape[0], np.nan)
    for run, row in enumerate(values):
        finite = np.isfinite(row)
        if not finite.any():
            continue
        x = np.concatenate([[0.0], np.asarray(steps, float)[finite], [float(budget)]])
        y = np.concatenate([[row[finite][0]], row[finite], [row[finite][-1]]])
        keep = x <= budget
        result[run] = np.trapezoid(y[keep], x[keep]) / budget
    return result


def final_performance(steps: np.ndarray, values: np.ndarray, budget: float) -> np.ndarray:
    """Per run: mean of its finite values in the last ``FINAL_FRACTION`` of the budget."""
    window = np.asarray(steps) > budget * (1 - FINAL_FRACTION)
    if not window.any():
        return np.full(values.shape[0], np.nan)
    part = values[:, window]
    counts = np.isfinite(part).sum(axis=1)
    totals = np.where(np.isfinite(part), part, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def auto_thresholds(best_final_iqm: float) -> list[float]:
    """25%, 50% and 75% of the best condition's final IQM (rounded to 3 significant digits)."""
    if not np.isfinite(best_final_iqm) or best_final_iqm <= 0:
        return []
    return [float(f"{level * best_final_iqm:.3g}") for level in AUTO_LEVELS]


def observed_until(runs: list[Run], budget: int) -> dict[tuple[str, int], float]:
    """Per (condition, seed): the step up to which the run was observed (the budget once
    finished; where its record stops if it is unfinished or failed)."""
    return {
        (run.condition, run.seed): float(budget) if run.status == "finished" else budget * run.progress for run in runs
    }


def condition_times(data: StudyData, metric: str, threshold: float) -> dict[str, tuple[TimeToThreshold, np.ndarray]]:
    """Per condition: its runs' times to ``threshold`` of ``metric`` (a run is censored where
    its record stops) and the runs' seeds."""
    observed = observed_until(data.runs, data.budget_steps)
    found = {}
    for name, curve in data.curves_of(metric).items():
        ttt = steps_to_threshold(curve.steps, curve.values, threshold, data.budget_steps)
        limits = np.asarray([observed[name, seed] for seed in curve.seeds])
        reached = ttt.reached & (ttt.steps <= limits)
        times = TimeToThreshold(threshold, np.where(reached, ttt.steps, limits), reached)
        found[name] = (times, np.asarray(curve.seeds))
    return found
