"""Sequential studies: seeds in waves, and a comparison stops receiving runs once it is decided.

A sequential study (spec ``[execution] sequential = true``) looks at its primary
comparisons (the first metric with thresholds, at its middle threshold) after each wave,
with ``n_1 < n_2 < ... < n_K`` seeds per condition. At look ``k`` every comparison still
open gets the paired test of :mod:`~regspeed.analysis.stats` (signed-rank difference test
and equivalence test, exact) on its first ``n_k`` seed pairs, each at level
``alpha_k / m``: ``m`` primary comparisons, and ``alpha_1 + ... + alpha_K = alpha`` spent
like Pocock's boundary (Lan and DeMets' spending function ``alpha * ln(1 + (e - 1) t)``,
``t = n_k / n_K``). A comparison is decided at the first look where either test rejects:
faster / slower, or equivalent; open after the last look, it is inconclusive.

The family-wise error over comparisons, looks and both tests is at most ``alpha`` by the
union bound (for any true speed-up, at most one of the two tests can err): valid for
exact tests whatever the correlation between looks, and conservative; calibrated by
simulation in the benchmark. The thresholds must be numbers fixed in the spec: an "auto"
threshold would move as seeds arrive.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from regspeed.analysis import metrics, stats
from regspeed.study.results import StudyData


@dataclasses.dataclass(frozen=True)
class Decision:
    """How a primary comparison ended in a sequential study."""

    condition: str
    look: int  # index into the looks
    seeds: int  # seed pairs it was decided on
    verdict: str
    p_difference: float  # scaled so that < alpha means the test rejected at its look: p * m * alpha / alpha_k
    p_equivalence: float  # likewise


@dataclasses.dataclass(frozen=True)
class SequentialOutcome:
    """A sequential study's looks so far and what they decided."""

    metric: str
    threshold: float
    looks: tuple[int, ...]  # seeds per condition at each look
    spent: tuple[float, ...]  # alpha spent at each look
    completed: int  # looks whose runs have all finished
    decisions: dict[str, Decision]  # condition -> its decision (the still-open ones are absent)
    open: list[str]  # conditions still receiving runs


def spending(looks: tuple[int, ...], alpha: float = stats.ALPHA) -> tuple[float, ...]:
    """The alpha spent at each look: increments of ``alpha * ln(1 + (e - 1) t)``, summing to ``alpha``."""
    spent = [alpha * math.log(1 + (math.e - 1) * n / looks[-1]) for n in looks]
    return tuple(float(b - a) for a, b in zip([0.0, *spent[:-1]], spent, strict=True))


def primary_threshold(data: StudyData) -> tuple[str, float] | None:
    """The primary comparisons' metric and (middle) threshold, when the spec fixes them as numbers."""
    for metric in data.speed_metrics:
        levels = data.thresholds.get(metric)
        if isinstance(levels, list) and levels and metric in data.curves:
            return metric, float(levels[len(levels) // 2])
    return None


def _look_seeds(data: StudyData, seeds: int) -> list[int] | None:
    """The seeds of a look (the baseline's first ``seeds``), or None if not all are planned."""
    baseline = sorted({run.seed for run in data.runs if run.condition == data.conditions[0].name})
    return baseline[:seeds] if len(baseline) >= seeds else None


def _complete(data: StudyData, conditions: list[str], seeds: list[int]) -> bool:
    """Whether every run of ``conditions`` on ``seeds`` exists and has ended (finished or failed)."""
    ended = {(run.condition, run.seed) for run in data.runs if run.status in ("finished", "failed")}
    return all((name, seed) in ended for name in conditions for seed in seeds)


def _pairs_on(
    times: dict[str, tuple[metrics.TimeToThreshold, np.ndarray]], baseline: str, name: str, seeds: list[int]
) -> stats.PairedRatios:
    """The paired ratios of ``name`` against the baseline on ``seeds``."""
    (base, base_seeds), (other, other_seeds) = times[baseline], times[name]
    pick_base = np.asarray([int(np.flatnonzero(base_seeds == seed)[0]) for seed in seeds])
    pick_other = np.asarray([int(np.flatnonzero(other_seeds == seed)[0]) for seed in seeds])
    return stats.paired_ratios(
        base.steps[pick_base], base.reached[pick_base], other.steps[pick_other], other.reached[pick_other]
    )


def look_decision(
    condition: str,
    test: stats.PairedTest,
    look: int,
    seeds: int,
    comparisons: int,
    spent: float,
    last: bool,
    alpha: float = stats.ALPHA,
) -> Decision | None:
    """What one look decides for one open comparison: both tests at level ``spent /
    comparisons`` (their p-values scaled to compare with ``alpha``); None while it stays
    open, an inconclusive decision at the last look."""
    scale = comparisons * alpha / spent
    p, q = min(1.0, test.p_difference * scale), min(1.0, test.p_equivalence * scale)
    verdict = stats.verdict(p, test.faster_direction, q, alpha)
    if verdict == "inconclusive" and not last:
        return None
    return Decision(condition, look, seeds, verdict, p, q)


@dataclasses.dataclass(frozen=True)
class Looks:
    """What the looks so far decided."""

    completed: int  # looks taken (all their runs had ended)
    decisions: dict[str, Decision]  # condition -> its decision
    open: list[str]  # conditions still receiving runs, in the order given


def decide(
    conditions: list[str],
    looks: tuple[int, ...],
    pairs_at: Callable[[str, int], stats.PairedRatios],
    ready: Callable[[int, list[str]], bool],
    margin: float,
    alpha: float = stats.ALPHA,
) -> Looks:
    """The sequential rule: at each look whose runs are ``ready`` (for the baseline and the
    conditions still open), every open condition's paired test on ``pairs_at(condition,
    look)`` decides it or leaves it open (:func:`look_decision`). Shared by :func:`outcome`
    (stored runs) and the calibration by simulation."""
    spent = spending(looks, alpha)
    still_open = list(conditions)
    decisions: dict[str, Decision] = {}
    completed = 0
    for look, (seeds, level) in enumerate(zip(looks, spent, strict=True)):
        if not still_open or not ready(look, still_open):
            break
        completed = look + 1
        last = look == len(looks) - 1
        for name in list(still_open):
            test = stats.paired_test(pairs_at(name, look), margin)
            decision = look_decision(name, test, look, seeds, len(conditions), level, last, alpha)
            if decision is not None:
                decisions[name] = decision
                still_open.remove(name)
    return Looks(completed, decisions, still_open)


def outcome(data: StudyData, alpha: float = stats.ALPHA) -> SequentialOutcome | None:
    """Replay the looks of a sequential study on its stored runs (deterministic: the same
    runs give the same decisions). None for a study with one look or no numeric threshold."""
    primary = primary_threshold(data)
    if len(data.looks) < 2 or primary is None:
        return None
    metric, threshold = primary
    baseline = data.conditions[0].name
    times = metrics.condition_times(data, metric, threshold)

    def look_seeds(look: int) -> list[int] | None:
        return _look_seeds(data, data.looks[look])

    def ready(look: int, still_open: list[str]) -> bool:
        seeds = look_seeds(look)
        return seeds is not None and _complete(data, [baseline, *still_open], seeds)

    def pairs_at(name: str, look: int) -> stats.PairedRatios:
        return _pairs_on(times, baseline, name, look_seeds(look) or [])

    found = decide([c.name for c in data.conditions[1:]], data.looks, pairs_at, ready, data.margin, alpha)
    spent = spending(data.looks, alpha)
    return SequentialOutcome(metric, threshold, data.looks, spent, found.completed, found.decisions, found.open)


def next_wave(data: StudyData) -> list[str]:
    """The regularized conditions that need the next wave of seeds (the runner's question
    after each wave): those still open after the latest complete look; none after the last."""
    found = outcome(data)
    return [] if found is None else list(found.open)
