"""A study's answer as data: every condition compared with the baseline.

:func:`analyze` takes a study's data (:class:`~regspeed.study.results.StudyData`, as
``results.load`` reads it with its default metrics) and computes, with no I/O, per speed
metric (snake: training score and survival, and their greedy-evaluation versions):

- per condition: IQM (with interval) of final performance and of the normalised area
  under the curve;
- per threshold (from the spec, or "auto" from the best condition's final IQM) and
  condition: time-to-threshold as censored data, its Kaplan-Meier median, and against the
  baseline the log-rank p-value, the speed-up ratio with its interval, and the probability
  of improvement of the area under the curve;
- Holm's correction over every log-rank comparison of the study, and a verdict per
  comparison; the *primary* comparison of a condition is the first metric with thresholds
  at its middle threshold;
- the competing-objectives diagnostic: how the regularizer's gradient pointed relative to
  the task's (mean cosine over training, and the share of updates where it opposed it);
- the power of the study for each primary comparison.

Runs that have not finished (a partial study) or that failed are censored at the last step
they recorded, not at the budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from regspeed.analysis import metrics, stats
from regspeed.study.results import Condition, ConditionCurves, Run, StudyData


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval."""

    value: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class ConditionSummary:
    """One condition in one metric: final performance and area under the curve, per run and as IQMs."""

    condition: str
    kind: str
    strength: float
    runs: int
    complete: bool  # every run finished (or failed) and recorded the whole budget
    final: Interval  # IQM of final performance
    auc: Interval  # IQM of normalised area under the curve
    final_per_run: np.ndarray
    auc_per_run: np.ndarray


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Time to one threshold of one metric: a condition against the baseline."""

    metric: str
    threshold: float
    condition: str
    reached: int  # runs of the condition that reached it
    runs: int
    baseline_reached: int
    baseline_runs: int
    median_steps: float  # Kaplan-Meier median (inf if not reached by half)
    baseline_median_steps: float
    speedup: Interval  # baseline median / condition median (> 1: faster)
    p_value: float  # log-rank, uncorrected
    p_holm: float  # after Holm's correction over the study
    faster_direction: bool  # restricted mean time lower than the baseline's
    verdict: str
    auc_improvement: Interval  # P(condition's AUC > baseline's)


@dataclasses.dataclass(frozen=True)
class RunHealth:
    """How a condition's runs ended, beyond the thresholds they reached."""

    runs: int
    failed: int  # stopped early: a loss or the weights became non-finite
    frozen: int  # finished with weights that never changed (e.g. a strength so large that every update is zero)

    @property
    def all_broken(self) -> bool:
        """No run of the condition trained normally."""
        return self.runs > 0 and self.failed + self.frozen == self.runs


@dataclasses.dataclass(frozen=True)
class TimeToThresholdData:
    """Per condition and threshold: the censored times, for Kaplan-Meier plots."""

    metric: str
    threshold: float
    times: dict[str, metrics.TimeToThreshold]


@dataclasses.dataclass(frozen=True)
class Opposition:
    """How a condition's regularizer gradient pointed relative to the task gradient."""

    condition: str
    mean_cosine: float  # IQM over runs of the mean cosine over training
    opposing_share: float  # IQM over runs of the share of updates with cosine < 0


@dataclasses.dataclass(frozen=True)
class StudyAnalysis:
    """Everything the report shows."""

    name: str
    budget_steps: int
    step_unit: str
    conditions: list[Condition]  # study order; the first is the baseline
    seeds: int
    summaries: dict[str, list[ConditionSummary]]  # metric -> per condition
    thresholds: dict[str, list[float]]
    comparisons: list[Comparison]
    times: list[TimeToThresholdData]
    primary: dict[str, Comparison]  # condition -> its primary comparison
    power: stats.PowerStatement | None  # of the primary metric and threshold, from the baseline's times
    opposition: list[Opposition]
    incomplete: list[str]  # conditions with unfinished runs
    failed_runs: list[tuple[str, int, str]]  # condition, seed, error
    health: dict[str, RunHealth]  # condition -> how its runs ended (failed, frozen)
    metric_labels: dict[str, str]  # metric name -> human words (from the study data)

    def label(self, metric: str) -> str:
        """The metric in words (its name if it has none)."""
        return self.metric_labels.get(metric, metric)


def _censoring_steps(runs: list[Run], budget: int) -> dict[tuple[str, int], float]:
    """Per (condition, seed): the step up to which the run was observed."""
    return {
        (run.condition, run.seed): float(budget) if run.status == "finished" else budget * run.progress for run in runs
    }


def analyze(data: StudyData) -> StudyAnalysis:
    """Compute the whole comparison of a study from its data."""
    conditions = data.conditions
    budget = data.budget_steps
    observed = _censoring_steps(data.runs, budget)
    unfinished = {run.condition for run in data.runs if run.status in ("pending", "running")}
    incomplete = [c.name for c in conditions if c.name in unfinished]
    wanted_thresholds = data.thresholds or {data.speed_metrics[0]: "auto"}  # none set: auto on the first
    summaries: dict[str, list[ConditionSummary]] = {}
    thresholds: dict[str, list[float]] = {}
    comparisons: list[Comparison] = []
    times: list[TimeToThresholdData] = []
    baseline = conditions[0].name
    for metric in [m for m in data.speed_metrics if m in data.curves]:
        curves = data.curves_of(metric)
        summaries[metric] = [_summary(c, curves[c.name], budget, incomplete) for c in conditions]
        wanted = wanted_thresholds.get(metric)
        if wanted is None:
            continue
        if wanted == "auto":
            best = max((s.final.value for s in summaries[metric] if np.isfinite(s.final.value)), default=np.nan)
            wanted = metrics.auto_thresholds(best)
        thresholds[metric] = list(wanted)
        for threshold in thresholds[metric]:
            per_condition = {}
            for name, curve in curves.items():
                ttt = metrics.steps_to_threshold(curve.steps, curve.values, threshold, budget)
                limits = np.asarray([observed[name, seed] for seed in curve.seeds])
                reached = ttt.reached & (ttt.steps <= limits)
                per_condition[name] = metrics.TimeToThreshold(threshold, np.where(reached, ttt.steps, limits), reached)
            times.append(TimeToThresholdData(metric, threshold, per_condition))
            base = per_condition[baseline]
            base_auc = next(s for s in summaries[metric] if s.condition == baseline).auc_per_run
            for summary in summaries[metric][1:]:
                other = per_condition[summary.condition]
                comparisons.append(_compare(metric, threshold, summary, other, base, base_auc, budget))
    adjusted = stats.holm([c.p_value for c in comparisons]) if comparisons else []
    comparisons = [
        dataclasses.replace(c, p_holm=float(p), verdict=stats.verdict(float(p), c.faster_direction))
        for c, p in zip(comparisons, adjusted, strict=True)
    ]
    primary = _primary(comparisons, thresholds)
    seeds = max((sum(r.condition == baseline for r in data.runs)), 1)
    return StudyAnalysis(
        name=data.name,
        budget_steps=budget,
        step_unit=data.step_unit,
        conditions=conditions,
        seeds=seeds,
        summaries=summaries,
        thresholds=thresholds,
        comparisons=comparisons,
        times=times,
        primary=primary,
        power=_power(times, thresholds, primary, baseline, len(comparisons)),
        opposition=_opposition(data.curves_of("grad_cosine"), conditions[1:]) if "grad_cosine" in data.curves else [],
        incomplete=incomplete,
        failed_runs=[(r.condition, r.seed, r.error or "") for r in data.runs if r.status == "failed"],
        health=_health(data),
        metric_labels=data.metric_labels,
    )


def _summary(condition: Condition, curve: ConditionCurves, budget: int, incomplete: list[str]) -> ConditionSummary:
    final = metrics.final_performance(curve.steps, curve.values, budget)
    auc = metrics.area_under_curve(curve.steps, curve.values, budget)
    return ConditionSummary(
        condition=condition.name,
        kind=condition.kind,
        strength=condition.strength,
        runs=len(curve.seeds),
        complete=condition.name not in incomplete,
        final=Interval(stats.iqm(final), *stats.iqm_interval(final)),
        auc=Interval(stats.iqm(auc), *stats.iqm_interval(auc)),
        final_per_run=final,
        auc_per_run=auc,
    )


def _compare(
    metric: str,
    threshold: float,
    summary: ConditionSummary,
    other: metrics.TimeToThreshold,
    base: metrics.TimeToThreshold,
    base_auc: np.ndarray,
    budget: int,
) -> Comparison:
    ratio = stats.speedup(base.steps, base.reached, other.steps, other.reached)
    low, high = stats.speedup_interval(base.steps, base.reached, other.steps, other.reached)
    rmst_other = stats.restricted_mean_time(other.steps, other.reached, budget)
    rmst_base = stats.restricted_mean_time(base.steps, base.reached, budget)
    return Comparison(
        metric=metric,
        threshold=threshold,
        condition=summary.condition,
        reached=int(other.reached.sum()),
        runs=len(other.steps),
        baseline_reached=int(base.reached.sum()),
        baseline_runs=len(base.steps),
        median_steps=stats.median_time(other.steps, other.reached),
        baseline_median_steps=stats.median_time(base.steps, base.reached),
        speedup=Interval(ratio, low, high),
        p_value=stats.logrank_p(other.steps, other.reached, base.steps, base.reached),
        p_holm=float("nan"),
        faster_direction=rmst_other < rmst_base,
        verdict="",
        auc_improvement=Interval(
            stats.probability_of_improvement(summary.auc_per_run, base_auc),
            *stats.probability_of_improvement_interval(summary.auc_per_run, base_auc),
        ),
    )


def _primary(comparisons: list[Comparison], thresholds: dict[str, list[float]]) -> dict[str, Comparison]:
    """Per condition: the first metric with thresholds, at its middle threshold."""
    if not thresholds:
        return {}
    metric = next(iter(thresholds))
    levels = thresholds[metric]
    if not levels:
        return {}
    middle = levels[len(levels) // 2]
    return {c.condition: c for c in comparisons if c.metric == metric and c.threshold == middle}


def _power(
    times: list[TimeToThresholdData],
    thresholds: dict[str, list[float]],
    primary: dict[str, Comparison],
    baseline: str,
    tests: int,
) -> stats.PowerStatement | None:
    """Power of the primary comparison, at the Bonferroni level alpha / tests (the level
    Holm's correction demands of the most significant comparison)."""
    if not primary:
        return None
    first = next(iter(primary.values()))
    data = next(t for t in times if t.metric == first.metric and t.threshold == first.threshold)
    base = data.times[baseline]
    if not base.reached.any():
        return None
    return stats.power_statement(base.steps, base.reached, stats.ALPHA / max(1, tests))


def _opposition(cosines: dict[str, ConditionCurves], conditions: list[Condition]) -> list[Opposition]:
    """Per regularized condition: how its regularizer's gradient pointed relative to the task's."""
    found = []
    for condition in conditions:
        curve = cosines.get(condition.name)
        if curve is None or not np.isfinite(curve.values).any():
            continue
        with np.errstate(invalid="ignore"):
            means = np.nanmean(curve.values, axis=1)
            finite = np.isfinite(curve.values)
            shares = np.where(finite, curve.values < 0, False).sum(axis=1) / np.maximum(1, finite.sum(axis=1))
        found.append(Opposition(condition.name, stats.iqm(means), stats.iqm(shares)))
    return found


def _health(data: StudyData) -> dict[str, RunHealth]:
    """Per condition: runs that failed, and finished runs whose weights never moved (their
    recorded ``weight_l2`` is the same at every point: frozen, e.g. by an overflowing penalty)."""
    weights = data.curves_of("weight_l2")
    health = {}
    for condition in data.conditions:
        members = [run for run in data.runs if run.condition == condition.name]
        curve = weights.get(condition.name)
        frozen = 0
        if curve is not None:
            rows = {seed: row for seed, row in zip(curve.seeds, curve.values, strict=True)}
            for run in members:
                values = rows.get(run.seed, np.zeros(0))
                values = values[np.isfinite(values)]
                frozen += run.status == "finished" and len(values) > 1 and bool(np.all(values == values[0]))
        health[condition.name] = RunHealth(len(members), sum(run.status == "failed" for run in members), frozen)
    return health
