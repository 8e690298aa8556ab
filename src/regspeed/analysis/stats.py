"""Statistics of a study, after Agarwal et al. (2021), "Deep RL at the Edge of the
Statistical Precipice", with scipy doing the work.

- IQM (25% trimmed mean) with a 95% bootstrap interval over runs (one task, so the
  stratified bootstrap is the plain bootstrap of runs within a condition).
- Probability of improvement ``P(X > Y) + P(X = Y) / 2`` (the Mann-Whitney statistic over
  ``n * m``) with a bootstrap interval resampling both conditions.
- Time-to-threshold as censored data: Kaplan-Meier curves (``scipy.stats.ecdf``), the
  log-rank test (``scipy.stats.logrank``), the speed-up ratio of median times
  (baseline / condition; > 1 is faster) with a bootstrap interval, and the direction of a
  difference from the restricted mean time (the area under the Kaplan-Meier curve up to
  the budget, finite even when a median is not reached).
- Holm's step-down correction across all comparisons of a study (scipy has only the
  Benjamini-Hochberg family, ``false_discovery_control``, which controls a different
  error rate, so Holm is written here).
- Power by simulation (:func:`power`): a simulated study draws two bootstrap samples of
  the baseline's own censored times to the threshold, divides one sample's times by the
  speed-up, and runs the log-rank test at the given level; the power is the share of
  200 such studies (fixed seed) that reject. :func:`power_statement` gives the smallest
  speed-up on :data:`SPEEDUP_GRID` found with probability :data:`POWER` with the study's
  runs per condition, and the runs per condition (on :data:`SEEDS_GRID`) a target speed-up
  needs. Schoenfeld's formula is not used: it assumes exponential-like times, and RL
  time-to-threshold distributions are far narrower, so it badly understated what a study
  can detect.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
ALPHA = 0.05
POWER = 0.8
VERDICTS = ("faster", "slower", "no detectable difference")


def iqm(values: np.ndarray) -> float:
    """Interquartile mean of the finite values (NaN if none)."""
    finite = np.asarray(values, float)[np.isfinite(values)]
    return float(stats.trim_mean(finite, 0.25)) if len(finite) else float("nan")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def iqm_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM over runs (NaN with fewer than 2 runs)."""
    finite = np.asarray(values, float)[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan"), float("nan")
    result = stats.bootstrap(
        (finite,),
        lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y) + P(X = Y) / 2`` for a random run X of one condition and Y of another."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return float("nan")
    return float(stats.mannwhitneyu(x, y).statistic / (len(x) * len(y)))


def probability_of_improvement_interval(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of :func:`probability_of_improvement`, resampling both sides."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    rng = _rng(seed)
    a = x[rng.integers(0, len(x), (RESAMPLES, len(x)))][:, :, None]
    b = y[rng.integers(0, len(y), (RESAMPLES, len(y)))][:, None, :]
    draws = ((a > b).sum(axis=(1, 2)) + 0.5 * (a == b).sum(axis=(1, 2))) / (len(x) * len(y))
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


# ------------------------------------------------------------------ time to threshold


def _censored(times: np.ndarray, reached: np.ndarray) -> stats.CensoredData:
    times, reached = np.asarray(times, float), np.asarray(reached, bool)
    return stats.CensoredData(uncensored=times[reached], right=times[~reached])


@dataclasses.dataclass(frozen=True)
class SurvivalCurve:
    """Kaplan-Meier estimate of P(not yet reached the threshold at step t)."""

    steps: np.ndarray
    not_reached: np.ndarray


def kaplan_meier(times: np.ndarray, reached: np.ndarray) -> SurvivalCurve:
    """The Kaplan-Meier (product-limit) curve of time-to-threshold, a step function from 1.

    Written out here (it equals ``scipy.stats.ecdf`` on censored data: tested) because the
    bootstrap intervals evaluate it thousands of times, where scipy's overhead dominates.
    """
    times, reached = np.asarray(times, float), np.asarray(reached, bool)
    event_steps = np.unique(times[reached])
    if not len(event_steps):
        return SurvivalCurve(np.asarray([0.0]), np.asarray([1.0]))
    at_risk = (times[None, :] >= event_steps[:, None]).sum(axis=1)
    events = ((times[None, :] == event_steps[:, None]) & reached[None, :]).sum(axis=1)
    return SurvivalCurve(
        np.concatenate([[0.0], event_steps]), np.concatenate([[1.0], np.cumprod(1 - events / at_risk)])
    )


def median_time(times: np.ndarray, reached: np.ndarray) -> float:
    """Kaplan-Meier median time to threshold; ``inf`` when fewer than half reached it."""
    curve = kaplan_meier(times, reached)
    below = np.flatnonzero(curve.not_reached <= 0.5)
    return float(curve.steps[below[0]]) if len(below) else float("inf")


def restricted_mean_time(times: np.ndarray, reached: np.ndarray, budget: float) -> float:
    """Area under the Kaplan-Meier curve up to ``budget``: the mean time to threshold when
    runs that never reach it count as reaching it at the budget."""
    curve = kaplan_meier(times, reached)
    edges = np.concatenate([np.minimum(curve.steps, budget), [budget]])
    return float(np.sum(np.diff(edges) * curve.not_reached))


def logrank_p(times_a: np.ndarray, reached_a: np.ndarray, times_b: np.ndarray, reached_b: np.ndarray) -> float:
    """Two-sided log-rank p-value; 1 when no run of either group reached the threshold."""
    if not (np.any(reached_a) or np.any(reached_b)):
        return 1.0
    result = stats.logrank(_censored(times_a, reached_a), _censored(times_b, reached_b))
    return float(result.pvalue) if np.isfinite(result.pvalue) else 1.0


def speedup(base_times: np.ndarray, base_reached: np.ndarray, times: np.ndarray, reached: np.ndarray) -> float:
    """Median time of the baseline over the condition's (> 1: the condition is faster).
    ``inf`` when only the condition's median is reached, 0 when only the baseline's, NaN
    when neither."""
    base, other = median_time(base_times, base_reached), median_time(times, reached)
    if np.isinf(base) and np.isinf(other):
        return float("nan")
    if np.isinf(other):
        return 0.0
    return float("inf") if np.isinf(base) else base / other


def speedup_interval(
    base_times: np.ndarray, base_reached: np.ndarray, times: np.ndarray, reached: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval of :func:`speedup`, resampling runs within each condition."""
    rng = _rng(seed)
    n, m = len(base_times), len(times)
    draws = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        a, b = rng.integers(0, n, n), rng.integers(0, m, m)
        draws[i] = speedup(base_times[a], base_reached[a], times[b], reached[b])
    draws = draws[~np.isnan(draws)]
    if len(draws) < RESAMPLES / 2:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], method="inverted_cdf")
    return float(low), float(high)


# --------------------------------------------------------------- decisions and power


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    m = len(p)
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def verdict(adjusted_p: float, faster_direction: bool, alpha: float = ALPHA) -> str:
    """``faster`` / ``slower`` only when the corrected test is significant."""
    if not adjusted_p < alpha:
        return "no detectable difference"
    return "faster" if faster_direction else "slower"


@dataclasses.dataclass(frozen=True)
class PowerStatement:
    """What a comparison of ``seeds`` runs per condition could detect at level ``alpha``."""

    seeds: int
    alpha: float
    detectable_speedup: float  # smallest speed-up found with probability >= POWER (inf: none tried)
    seeds_for: dict[float, int]  # speed-up -> runs per condition needed (-1: more than tried)


def _rejects(
    times: np.ndarray, reached: np.ndarray, speedup_ratio: float, seeds: int, alpha: float, rng: np.random.Generator
) -> bool:
    """One simulated study: two bootstrap samples of the baseline, one sped up."""
    a, b = rng.integers(0, len(times), seeds), rng.integers(0, len(times), seeds)
    return logrank_p(times[a], reached[a], times[b] / speedup_ratio, reached[b]) < alpha


def power(
    times: np.ndarray,
    reached: np.ndarray,
    speedup_ratio: float,
    seeds: int,
    alpha: float,
    simulations: int = 200,
    seed: int = 0,
) -> float:
    """Probability that the log-rank test at ``alpha`` detects ``speedup_ratio`` with
    ``seeds`` runs per condition, simulated by resampling the baseline's own times (its
    spread and censoring) and dividing one sample's times by the speed-up."""
    rng = _rng(seed)
    return float(np.mean([_rejects(times, reached, speedup_ratio, seeds, alpha, rng) for _ in range(simulations)]))


SPEEDUP_GRID = (1.05, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0)
SEEDS_GRID = (3, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300)


def power_statement(
    times: np.ndarray, reached: np.ndarray, alpha: float, targets: tuple[float, ...] = (1.2,)
) -> PowerStatement:
    """The smallest speed-up (on :data:`SPEEDUP_GRID`) detected with probability
    :data:`POWER` with this many runs, and the runs needed for each target speed-up."""
    seeds = len(times)
    detectable = next((s for s in SPEEDUP_GRID if power(times, reached, s, seeds, alpha) >= POWER), float("inf"))
    needed = {
        target: next((n for n in SEEDS_GRID if power(times, reached, target, n, alpha) >= POWER), -1)
        for target in targets
    }
    return PowerStatement(seeds, alpha, detectable, needed)
