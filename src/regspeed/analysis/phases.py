"""Learning speed in a changing world, phase by phase: does a regularizer make *relearning* faster?

A run's budget is split into phases of ``P = StudyData.phase_steps`` budget units, the world
changing at each boundary. Phase ``k`` holds the points recorded at steps in ``(k P, (k+1) P]``
(phase 0 also a point at step 0, an evaluation before training); the last phase is shorter
when the budget is not a multiple of ``P``. A point at a boundary (the update that ended
there) is the end of the phase that ended there.

Everything is measured at one metric and threshold: the primary family's of
:func:`~regspeed.analysis.compare.analyze` (the study's answer). Where the walls change
(``board``, ``obstacles``: :data:`RELATIVE_CHANGES`) and that threshold is ``"auto"``, what a
run can reach differs from phase to phase (a 6 x 6 area holds fewer foods than 14 x 14), so a
fixed threshold would measure the area, not learning: each phase then has its own, the same
fraction of the best condition's final IQM *in that phase* (over the last 10% of the phase,
as :func:`metrics.auto_thresholds` takes it over the budget's; a phase whose best is not
positive keeps the whole run's). Such thresholds absorb what every condition shares: a best that
falls phase after phase (loss of plasticity all conditions suffer, or harder layouts) does not
lengthen the times; the per-phase areas under the curve show it. Per run and phase:

- **time to threshold from the phase's start**: :func:`metrics.steps_to_threshold` on the
  phase's segment alone, its steps counted from the phase's start. So the trailing mean
  restarts at each change (the previous phase's scores cannot carry a run over the
  threshold), over 5% of the phase's points, as it runs over 5% of a whole curve's.
  Right-censored at the phase's end, or where the run's record stops (an unfinished or
  failed run), as :func:`metrics.condition_times` censors whole runs;
- **the area under the phase's curve** (:func:`metrics.area_under_curve` over the phase's
  length), NaN for a phase the run did not record to its end.

Per condition: the per-phase IQM curves of both (95% bootstrap intervals; a phase never
reached counts at its length). Against the baseline, seed by seed, with the verdict
machinery of the primary comparisons (:func:`stats.paired_test`: the exact signed-rank test
of the per-seed log time ratios, the Hodges-Lehmann speed-up with its exact interval and the
equivalence test against ``[analysis] margin``; Holm over the conditions; :func:`stats.verdict`),
two families, each Holm-corrected over the conditions on its own:

- **first learning**: phase 0's time;
- **relearning**: per seed, the *mean* time over the relearning phases (``k >= 1``).

A phase's time is *restricted to the phase*: a phase recorded to its end without reaching the
threshold counts as its length, exactly (a restricted mean time, as survival analysis's
restricted mean survival time: "how much of the phase went by before it got there"), which is
what the tables show. So a phase the world changed too early for is not an unknown but the
worst time that phase allows, and the interval stays finite: treating it as censored (its
true time open above) would make one such phase of one seed open every interval. Only a run
whose record stops inside a phase (unfinished, failed) is censored there. The test and the
estimate restrict both runs of a pair, phase by phase, to the earlier censoring time of the two
(then both are known exactly and swapping the labels negates their log ratio, so the
signed-rank null stays exact; for one phase this is :func:`stats.paired_ratios`' ``observed``);
the interval and the equivalence test use bounds, open above a censored mean. A pair is
compared on the phases both runs entered.

**The trend across phases** ("does phase k take longer than phase 1?"): per run, the OLS slope
of the *log* time against the phase index over the relearning phases (at least two known,
so a study needs three phases). Log, because times to threshold are skewed and multiplicative
(every speed-up here is a ratio): a log slope is scale-free, so conditions whose typical times
differ compare, and ``exp(slope) - 1`` reads as "each phase takes x% longer than the one
before". Relearning phases only, because phase 0 starts from a fresh network, a different
situation reported on its own: including it would mix "relearning costs more than learning"
with "relearning gets harder". Censored phases enter at their end, which flattens a rising
trend (conservative). Per condition: the IQM of the slopes with a bootstrap interval; against
the baseline: the per-seed slope differences (IQM with interval, exact signed-rank p-value,
Holm over the conditions). A positive baseline slope is plasticity being lost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from regspeed.analysis import metrics, stats
from regspeed.analysis.stats import Interval
from regspeed.envs import schedule
from regspeed.study.results import ConditionCurves, StudyData

NOT_ESTIMATED = Interval(float("nan"), float("nan"), float("nan"))
RELATIVE_CHANGES = schedule.WALL_CHANGES  # changes after which a phase may allow more or less than another


@dataclasses.dataclass(frozen=True)
class PhaseTimes:
    """One condition's runs phase by phase: arrays ``[runs, phases]``."""

    condition: str
    seeds: np.ndarray  # [runs]
    times: np.ndarray  # from the phase's start: when reached, else its censoring time; NaN: the run never entered it
    reached: np.ndarray  # bool
    known: np.ndarray  # bool: reached, or the whole phase recorded without reaching it (then its time is its length)
    auc: np.ndarray  # normalised area under the phase's curve; NaN unless the whole phase was recorded

    def capped(self) -> np.ndarray:
        """The times that are known (a phase never reached: its length), NaN elsewhere."""
        return np.where(self.known, self.times, np.nan)


@dataclasses.dataclass(frozen=True)
class PhaseComparison:
    """A condition against the baseline on the seeds both ran, in one family (first learning
    or relearning): the same test, estimate and verdict as a primary comparison."""

    pairs: int
    speedup: Interval  # baseline's time / condition's (> 1: faster), Hodges-Lehmann, exact 95% interval
    p_value: float  # difference test, uncorrected
    p_equivalence: float  # equivalence test (TOST) against the margin, uncorrected
    p_holm: float  # Holm-corrected over the conditions (this family)
    p_equivalence_holm: float
    faster_direction: bool
    verdict: str  # one of stats.VERDICTS


@dataclasses.dataclass(frozen=True)
class PhaseCondition:
    """One condition's learning speed phase by phase, and against the baseline (``None`` /
    NaN for the baseline itself)."""

    condition: str
    times: list[Interval]  # per phase: IQM over runs of the time to threshold from its start (unreached: its length)
    areas: list[Interval]  # per phase: IQM over runs of the normalised area under its curve
    first_reached: tuple[int, int]  # runs that reached the threshold in phase 0, of the runs whose phase 0 is known
    relearning: Interval  # IQM over runs of the run's mean time over its known relearning phases
    relearning_reached: tuple[int, int]  # relearning phases that reached it, of those known (all runs together)
    slope: Interval  # IQM over runs of the slope of log time per phase (relearning phases); exp(slope) - 1 per phase
    first_vs_baseline: PhaseComparison | None
    relearning_vs_baseline: PhaseComparison | None
    slope_change: Interval | None  # IQM of the per-seed slope differences, condition minus baseline
    slope_p: float  # exact signed-rank test of those differences, uncorrected
    slope_p_holm: float  # Holm-corrected over the conditions

    @property
    def first(self) -> Interval:
        """Phase 0's time to threshold (first learning)."""
        return self.times[0]


@dataclasses.dataclass(frozen=True)
class PhaseAnalysis:
    """A changing world's learning speed, phase by phase, at one metric and threshold."""

    metric: str
    threshold: float  # the whole run's (the study's primary threshold)
    phase_steps: int
    edges: np.ndarray  # phase k runs from edges[k] to edges[k + 1] (budget units)
    conditions: list[PhaseCondition]  # study order: the baseline first
    runs: dict[str, PhaseTimes]  # condition -> its runs phase by phase
    thresholds: np.ndarray  # per phase, the threshold its times are measured at
    fraction: float | None = None  # thresholds this fraction of each phase's best (walls change); None: ``threshold``
    own: np.ndarray | None = None  # per phase (with ``fraction``): it has its own; False: no best > 0, ``threshold``

    @property
    def per_phase(self) -> bool:
        """Whether each phase has its own threshold (relative to its best), not the whole run's."""
        return self.fraction is not None

    @property
    def count(self) -> int:
        """How many phases (at least 2)."""
        return len(self.edges) - 1

    def of(self, condition: str) -> PhaseCondition | None:
        """The condition's row (None if it has none)."""
        return next((row for row in self.conditions if row.condition == condition), None)


def phase_edges(budget: float, phase_steps: int) -> np.ndarray:
    """The phases' boundaries ``[0, P, 2P, ..., budget]``: phase k runs from ``edges[k]`` to
    ``edges[k + 1]`` (the last may be shorter)."""
    return np.append(np.arange(0, budget, phase_steps, dtype=float), float(budget))


def phase_points(steps: np.ndarray, edges: np.ndarray, phase: int) -> np.ndarray:
    """Which recorded points belong to ``phase``: steps in ``(start, end]``, for phase 0 ``[0, end]``."""
    steps = np.asarray(steps, float)
    start, end = edges[phase], edges[phase + 1]
    return ((steps > start) | ((phase == 0) & (steps >= start))) & (steps <= end)


def smoothed(steps: np.ndarray, values: np.ndarray, phase_steps: int, budget: float) -> np.ndarray:
    """Curves ``[runs, points]`` smoothed as the analysis reads them: :func:`metrics.smooth`'s
    trailing mean over 5% of the points, restarted at each phase's start (over the whole curve
    in a stationary world, ``phase_steps`` 0). Points outside every phase keep their values."""
    if phase_steps <= 0:
        return metrics.smooth(values, metrics.smoothing_window(values.shape[-1]))
    edges = phase_edges(budget, phase_steps)
    result = np.array(values, float)
    for phase in range(len(edges) - 1):
        points = phase_points(steps, edges, phase)
        if points.any():
            result[..., points] = metrics.smooth(values[..., points], metrics.smoothing_window(int(points.sum())))
    return result


def phase_times(
    curve: ConditionCurves, edges: np.ndarray, threshold: float | np.ndarray, observed: np.ndarray
) -> PhaseTimes:
    """Per run (recorded up to step ``observed[run]``) and phase: the time to ``threshold``
    (one for every phase, or one per phase) from the phase's start on the phase's own points
    (censored at its end or where the record stops) and the area under the phase's curve."""
    runs, count = len(curve.seeds), len(edges) - 1
    levels = np.broadcast_to(np.asarray(threshold, float), (count,))
    times, auc = np.full((runs, count), np.nan), np.full((runs, count), np.nan)
    reached, known = np.zeros((runs, count), bool), np.zeros((runs, count), bool)
    for phase in range(count):
        start, end = edges[phase], edges[phase + 1]
        points = phase_points(curve.steps, edges, phase)
        limit = np.clip(observed - start, 0.0, end - start)
        entered, complete = observed > start, observed >= end
        hit, at, area = np.zeros(runs, bool), limit, np.full(runs, np.nan)
        if points.any():
            steps = np.asarray(curve.steps, float)[points] - start
            found = metrics.steps_to_threshold(steps, curve.values[:, points], float(levels[phase]), end - start)
            hit = found.reached & (found.steps <= limit)
            at = np.where(hit, found.steps, limit)
            area = metrics.area_under_curve(steps, curve.values[:, points], end - start)
        times[:, phase] = np.where(entered, at, np.nan)
        reached[:, phase] = hit & entered
        known[:, phase] = (hit | complete) & entered
        auc[:, phase] = np.where(complete, area, np.nan)
    return PhaseTimes(curve.condition, np.asarray(curve.seeds), times, reached, known, auc)


def _mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: the mean of the values where ``mask`` (NaN where none)."""
    counts = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, values, 0.0).sum(axis=1) / np.where(counts > 0, counts, np.nan)


def paired_phase_ratios(base: PhaseTimes, other: PhaseTimes, phases: slice) -> stats.PairedRatios:
    """Per seed both ran (and entered one of ``phases`` in both): the log ratio, baseline over
    condition, of the mean time over the phases both entered (each restricted to its phase: a
    phase recorded to its end without reaching counts as its length, exactly), as
    :class:`stats.PairedRatios`: ``observed`` with each phase restricted to the pair's earlier
    censoring time (a record that stopped inside the phase), ``low`` and ``high`` bounding the
    ratio where one is censored (see the module docstring)."""
    _, in_base, in_other = np.intersect1d(base.seeds, other.seeds, return_indices=True)
    # a run at its threshold from the first point has time 0: one step, as stats.paired_ratios counts it
    t0, k0 = np.maximum(base.times[in_base, phases], 1.0), base.known[in_base, phases]
    t1, k1 = np.maximum(other.times[in_other, phases], 1.0), other.known[in_other, phases]
    both = np.isfinite(t0) & np.isfinite(t1)
    keep = both.any(axis=1)
    t0, k0, t1, k1, both = t0[keep], k0[keep], t1[keep], k1[keep], both[keep]
    limit = np.minimum(np.where(k0, np.inf, t0), np.where(k1, np.inf, t1))
    observed = np.log(_mean(np.minimum(t0, limit), both)) - np.log(_mean(np.minimum(t1, limit), both))
    bounds = stats.paired_ratios(_mean(t0, both), (k0 | ~both).all(axis=1), _mean(t1, both), (k1 | ~both).all(axis=1))
    return dataclasses.replace(bounds, observed=observed)


def compared(ratios: list[stats.PairedRatios], margin: float) -> list[PhaseComparison]:
    """One family's comparisons (a condition each, against the baseline): the paired test,
    Holm's correction of both tests over the family, and the verdicts."""
    if not ratios:
        return []
    tests = [stats.paired_test(r, margin) for r in ratios]
    differences = stats.holm([t.p_difference for t in tests])
    equivalences = stats.holm([t.p_equivalence for t in tests])
    found = []
    for test, p, q in zip(tests, differences, equivalences, strict=True):
        low, high = np.exp(test.interval)
        found.append(
            PhaseComparison(
                pairs=test.pairs,
                speedup=Interval(test.speedup, float(low), float(high)),
                p_value=test.p_difference,
                p_equivalence=test.p_equivalence,
                p_holm=float(p),
                p_equivalence_holm=float(q),
                faster_direction=test.faster_direction,
                verdict=stats.verdict(float(p), test.faster_direction, float(q)),
            )
        )
    return found


def log_slopes(times: np.ndarray) -> np.ndarray:
    """Per run (row of ``times[runs, phases]``, NaN where unknown): the OLS slope of the log
    time against the phase index; NaN with fewer than two known phases."""
    known = np.isfinite(times)
    index = np.broadcast_to(np.arange(times.shape[1], dtype=float), times.shape)
    logs = np.log(np.maximum(np.where(known, times, 1.0), 1.0))
    x_mean, y_mean = _mean(index, known), _mean(logs, known)
    dx = np.where(known, index - x_mean[:, None], 0.0)
    dy = np.where(known, logs - y_mean[:, None], 0.0)
    spread = (dx * dx).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, (dx * dy).sum(axis=1) / spread, np.nan)


def _seed_differences(base_seeds: np.ndarray, base: np.ndarray, seeds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per seed in both: ``values`` minus ``base`` (finite differences only)."""
    _, in_base, in_other = np.intersect1d(base_seeds, seeds, return_indices=True)
    difference = values[in_other] - base[in_base]
    return difference[np.isfinite(difference)]


def _summary(times: PhaseTimes) -> tuple[list[Interval], list[Interval], Interval, Interval]:
    """Per-phase IQM curves (time, area), the IQM of the runs' mean relearning time and of their slopes."""
    capped = times.capped()
    per_phase = [stats.iqm_estimate(capped[:, phase]) for phase in range(capped.shape[1])]
    areas = [stats.iqm_estimate(times.auc[:, phase]) for phase in range(capped.shape[1])]
    relearning = stats.iqm_estimate(_mean(capped[:, 1:], times.known[:, 1:]))
    return per_phase, areas, relearning, stats.iqm_estimate(log_slopes(capped[:, 1:]))


def phase_thresholds(
    curves: dict[str, ConditionCurves], edges: np.ndarray, fraction: float, fallback: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per phase: ``fraction`` of the best condition's final IQM in that phase (its runs' means
    over the phase's last :data:`metrics.FINAL_FRACTION`), rounded to 3 significant digits as
    :func:`metrics.auto_thresholds` rounds, and whether the phase has it; ``fallback`` (not
    its own) where no condition's is positive."""
    found, own = np.full(len(edges) - 1, float(fallback)), np.zeros(len(edges) - 1, bool)
    for phase in range(len(edges) - 1):
        start, end = edges[phase], edges[phase + 1]
        finals = []
        for curve in curves.values():
            points = phase_points(curve.steps, edges, phase)
            steps = np.asarray(curve.steps, float)[points] - start
            finals.append(stats.iqm(metrics.final_performance(steps, curve.values[:, points], end - start)))
        best = max((value for value in finals if np.isfinite(value)), default=np.nan)
        if np.isfinite(best) and best > 0:
            found[phase], own[phase] = float(f"{fraction * best:.3g}"), True
    return found, own


def analyze(data: StudyData, metric: str, threshold: float, fraction: float | None = None) -> PhaseAnalysis | None:
    """A changing world's learning speed phase by phase at ``metric`` and ``threshold`` (see
    the module docstring); with ``fraction`` (the threshold is that fraction of the best final
    IQM, "auto") in a world whose walls change, at that fraction of each phase's best. None
    for a stationary world (``phase_steps`` 0), a budget of one phase, or a metric not recorded."""
    if data.phase_steps <= 0 or metric not in data.curves:
        return None
    edges = phase_edges(data.budget_steps, data.phase_steps)
    if len(edges) < 3:
        return None
    curves = data.curves_of(metric)
    relative = fraction if any(change in RELATIVE_CHANGES for change in data.phase_changes) else None
    levels, own = (phase_thresholds(curves, edges, relative, threshold) if relative is not None
                   else (np.full(len(edges) - 1, float(threshold)), None))  # fmt: skip
    limits = metrics.observed_until(data.runs, data.budget_steps)
    runs = {
        c.name: phase_times(curves[c.name], edges, levels,
                            np.asarray([limits[c.name, seed] for seed in curves[c.name].seeds], float))
        for c in data.conditions
    }  # fmt: skip
    base, others = runs[data.conditions[0].name], [runs[c.name] for c in data.conditions[1:]]
    first = compared([paired_phase_ratios(base, other, slice(0, 1)) for other in others], data.margin)
    relearning = compared([paired_phase_ratios(base, other, slice(1, None)) for other in others], data.margin)
    slopes = {name: log_slopes(found.capped()[:, 1:]) for name, found in runs.items()}
    changes = [_seed_differences(base.seeds, slopes[base.condition], o.seeds, slopes[o.condition]) for o in others]
    slope_p = [stats.signed_rank_p(change) if len(change) else 1.0 for change in changes]
    slope_holm = stats.holm(slope_p) if slope_p else np.zeros(0)
    rows = []
    for index, condition in enumerate(data.conditions):
        found = runs[condition.name]
        per_phase, areas, mean_relearning, slope = _summary(found)
        other = index - 1  # the condition's place among the compared ones
        rows.append(
            PhaseCondition(
                condition=condition.name,
                times=per_phase,
                areas=areas,
                first_reached=(int(found.reached[:, 0].sum()), int(found.known[:, 0].sum())),
                relearning=mean_relearning,
                relearning_reached=(int(found.reached[:, 1:].sum()), int(found.known[:, 1:].sum())),
                slope=slope,
                first_vs_baseline=first[other] if index else None,
                relearning_vs_baseline=relearning[other] if index else None,
                slope_change=stats.iqm_estimate(changes[other]) if index else None,
                slope_p=slope_p[other] if index else float("nan"),
                slope_p_holm=float(slope_holm[other]) if index else float("nan"),
            )
        )
    return PhaseAnalysis(
        metric, float(threshold), data.phase_steps, edges, rows, runs, levels, relative, own
    )
