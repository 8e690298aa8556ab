"""A study's answer as data: every condition compared with the baseline.

:func:`analyze` takes a study's data (:class:`~regspeed.study.results.StudyData`, as
``results.load`` reads it with its default metrics) and computes, with no I/O, per speed
metric (snake: training score and survival, and their greedy-evaluation versions):

- per condition: IQM (with interval) of final performance and of the normalised area
  under the curve;
- per threshold (from the spec, or "auto" from the best condition's final IQM) and
  condition: time-to-threshold as censored data (interpolated between recorded points),
  its Kaplan-Meier median, the probability of improvement of the area under the curve,
  and against the baseline the test of the seed pairs (each seed starts both conditions
  from the same network and environments): Wilcoxon's signed-rank test of the per-seed
  log time ratios (exact), the speed-up as their Hodges-Lehmann estimate with the exact
  interval that goes with the test, and the equivalence test against ``[analysis] margin``
  (two one-sided signed-rank tests). Conditions that share no seed with the baseline get
  the unpaired log-rank test and the ratio of Kaplan-Meier medians instead;
- Holm's correction over the conditions at each metric and threshold, and a verdict per
  comparison: faster, slower, equivalent or inconclusive. The *primary* family (the
  study's answer) is the first metric with thresholds at its middle threshold; the others
  are exploratory;
- the competing-objectives diagnostic: how the regularizer's gradient pointed relative to
  the task's (mean cosine over training, and the share of updates where it opposed it);
- the power of the primary comparisons, simulated from a model fitted to the study;
- in a changing world (``StudyData.phase_steps > 0``), learning speed phase by phase at the
  primary metric and threshold: first learning, relearning after each change and its trend
  (:mod:`~regspeed.analysis.phases`).

Runs that have not finished (a partial study) or that failed are censored at the last step
they recorded, not at the budget; a seed pair is compared up to the earlier of its two.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from regspeed.analysis import metrics, phases, sequential, stats
from regspeed.analysis.phases import PhaseAnalysis
from regspeed.analysis.stats import Interval
from regspeed.study.results import Condition, ConditionCurves, StudyData

PAIRED = "paired signed-rank"  # the conditions share seeds: common random numbers
UNPAIRED = "log-rank"  # no seed in common
PRIMARY, SECONDARY = "primary", "secondary"


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
    pairs: int  # seeds run in both (the paired test's sample; 0: no shared seeds, unpaired log-rank)
    test: str  # PAIRED or UNPAIRED
    speedup: Interval  # baseline time / condition time (> 1: faster); see the module docstring
    p_value: float  # difference test, uncorrected
    p_equivalence: float  # equivalence test (TOST) against the margin, uncorrected (1: not tested)
    family: str  # PRIMARY (the study's answer) or SECONDARY (exploratory)
    p_holm: float  # difference test after Holm's correction over the conditions at this metric and threshold
    p_equivalence_holm: float  # equivalence test, corrected likewise
    faster_direction: bool  # the test statistic leans towards the condition being faster
    verdict: str  # one of stats.VERDICTS
    auc_improvement: Interval  # P(condition's AUC > baseline's)

    @property
    def exploratory(self) -> bool:
        """A secondary comparison: reported, not part of the study's primary answer."""
        return self.family == SECONDARY


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
class Generalization:
    """Fitting vs generalization of one condition in a world with levels, at the end of
    training (the mean over the last 10% of the budget, IQM over runs): the greedy score on
    the training levels, on the held-out levels, and the gap between them; against the
    baseline, the change of the gap over the seeds both share (IQM of the per-seed
    differences, exact signed-rank p-value, Holm-corrected over the conditions)."""

    condition: str
    train: Interval
    test: Interval
    gap: Interval
    gap_change: Interval | None  # None for the baseline
    p_value: float
    p_holm: float


GAP_METRICS = ("train_levels_score", "test_levels_score", "levels_gap")
"""The curves :func:`generalization` reads."""


@dataclasses.dataclass(frozen=True)
class StudyAnalysis:
    """Everything the report shows."""

    name: str
    margin: float  # equivalence margin: speed-ups within [1/margin, margin] are "equivalent"
    budget_steps: int
    step_unit: str
    conditions: list[Condition]  # study order; the first is the baseline
    seeds: int
    summaries: dict[str, list[ConditionSummary]]  # metric -> per condition
    thresholds: dict[str, list[float]]
    comparisons: list[Comparison]
    times: list[TimeToThresholdData]
    primary: dict[str, Comparison]  # condition -> its primary comparison
    power: stats.PowerStatement | None  # of the primary comparisons, from a model fitted to the study
    opposition: list[Opposition]
    incomplete: list[str]  # conditions with unfinished runs
    failed_runs: list[tuple[str, int, str]]  # condition, seed, error
    health: dict[str, RunHealth]  # condition -> how its runs ended (failed, frozen)
    metric_labels: dict[str, str]  # metric name -> human words (from the study data)
    sequential: sequential.SequentialOutcome | None  # looks and decisions of a sequential study
    auto_thresholds: tuple[str, ...]  # metrics whose thresholds are "auto" (fractions of the best final IQM)
    game: bool  # the learner plays a game (a snake), rather than fitting data
    generalization: list[Generalization] = dataclasses.field(default_factory=list)  # a world with levels: per condition
    phases: PhaseAnalysis | None = None  # a changing world: learning speed phase by phase (None: stationary)

    def label(self, metric: str) -> str:
        """The metric in words (its name if it has none)."""
        return self.metric_labels.get(metric, metric)


def analyze(data: StudyData) -> StudyAnalysis:
    """Compute the whole comparison of a study from its data."""
    conditions = data.conditions
    budget = data.budget_steps
    unfinished = {run.condition for run in data.runs if run.status in ("pending", "running")}
    incomplete = [c.name for c in conditions if c.name in unfinished]
    wanted_thresholds = data.thresholds or {data.speed_metrics[0]: "auto"}  # none set: auto on the first
    summaries: dict[str, list[ConditionSummary]] = {}
    thresholds: dict[str, list[float]] = {}
    comparisons: list[Comparison] = []
    times: list[TimeToThresholdData] = []
    ratios: list[stats.PairedRatios] = []  # of the primary comparisons, for the power model
    baseline = conditions[0].name
    primary_metric = answer_metric(data)
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
        middle = thresholds[metric][len(thresholds[metric]) // 2] if thresholds[metric] else None
        for threshold in thresholds[metric]:
            found = metrics.condition_times(data, metric, threshold)
            per_condition = {name: ttt for name, (ttt, _) in found.items()}
            seeds = {name: run_seeds for name, (_, run_seeds) in found.items()}
            times.append(TimeToThresholdData(metric, threshold, per_condition))
            base_auc = next(s for s in summaries[metric] if s.condition == baseline).auc_per_run
            family = PRIMARY if metric == primary_metric and threshold == middle else SECONDARY
            base = per_condition[baseline]
            for summary in summaries[metric][1:]:
                other = per_condition[summary.condition]
                shared = _aligned(base, seeds[baseline], other, seeds[summary.condition])
                described = dataclasses.replace(
                    _compare(metric, threshold, summary, other, base, base_auc), family=family
                )
                tested, paired = _test(described, base, other, shared, data.margin, budget)
                comparisons.append(tested)
                if family == PRIMARY and paired is not None:
                    ratios.append(paired)
    comparisons = _corrected(comparisons)
    looks = sequential.outcome(data)
    if looks is not None:
        comparisons = [_decided_sequentially(c, looks) if c.family == PRIMARY else c for c in comparisons]
    primary = {c.condition: c for c in comparisons if c.family == PRIMARY}
    seeds_run = max((sum(r.condition == baseline for r in data.runs)), 1)
    return StudyAnalysis(
        name=data.name,
        margin=data.margin,
        budget_steps=budget,
        step_unit=data.step_unit,
        conditions=conditions,
        seeds=seeds_run,
        summaries=summaries,
        thresholds=thresholds,
        comparisons=comparisons,
        times=times,
        primary=primary,
        power=_power(times, primary, baseline, ratios, budget),
        opposition=_opposition(data.curves_of("grad_cosine"), conditions[1:]) if "grad_cosine" in data.curves else [],
        incomplete=incomplete,
        failed_runs=[(r.condition, r.seed, r.error or "") for r in data.runs if r.status == "failed"],
        health=_health(data),
        metric_labels=data.metric_labels,
        sequential=looks,
        auto_thresholds=tuple(m for m in thresholds if wanted_thresholds.get(m) == "auto"),
        game=data.watchable,
        generalization=generalization(data),
        phases=_phases(data, primary_metric, thresholds),
    )


def answer_metric(data: StudyData) -> str | None:
    """The metric of the study's answer (its primary comparisons): the first speed metric
    recorded that has thresholds (none set: "auto" on the first speed metric)."""
    wanted_thresholds = data.thresholds or {data.speed_metrics[0]: "auto"}
    return next((m for m in data.speed_metrics if m in data.curves and m in wanted_thresholds), None)


def answer_only(data: StudyData) -> StudyData:
    """The study without the curves of its other speed metrics (kept: the answer's metric, the
    diagnostics and the level curves): :func:`analyze` of it gives the same primary
    comparisons, power and health, without the exploratory families (what a study with
    factors reports of each cell)."""
    kept = answer_metric(data)
    curves = {m: c for m, c in data.curves.items() if m == kept or m not in data.speed_metrics or m in GAP_METRICS}
    return dataclasses.replace(data, curves=curves)


def generalization(data: StudyData) -> list[Generalization]:
    """Every condition's fitting vs generalization (:class:`Generalization`), the baseline
    first; empty unless the study recorded the level curves (a world with levels)."""
    if any(metric not in data.curves for metric in GAP_METRICS):
        return []
    budget = data.budget_steps
    finals = {}
    for metric in GAP_METRICS:
        curves = data.curves_of(metric)
        finals[metric] = {
            c.name: (np.asarray(curves[c.name].seeds), metrics.final_performance(curves[c.name].steps,
                     curves[c.name].values, budget)) for c in data.conditions
        }  # fmt: skip
    base_seeds, base_gap = finals["levels_gap"][data.conditions[0].name]
    changes, p_values = [], []
    for condition in data.conditions[1:]:
        seeds, gap = finals["levels_gap"][condition.name]
        _, in_base, in_other = np.intersect1d(base_seeds, seeds, return_indices=True)
        difference = gap[in_other] - base_gap[in_base]
        difference = difference[np.isfinite(difference)]
        changes.append(stats.iqm_estimate(difference))
        p_values.append(stats.signed_rank_p(difference) if len(difference) else 1.0)
    adjusted = stats.holm(p_values) if p_values else np.asarray([])
    result = []
    for index, condition in enumerate(data.conditions):
        values = {metric: stats.iqm_estimate(finals[metric][condition.name][1]) for metric in GAP_METRICS}
        compared = index > 0
        result.append(
            Generalization(
                condition=condition.name,
                train=values["train_levels_score"],
                test=values["test_levels_score"],
                gap=values["levels_gap"],
                gap_change=changes[index - 1] if compared else None,
                p_value=p_values[index - 1] if compared else float("nan"),
                p_holm=float(adjusted[index - 1]) if compared else float("nan"),
            )
        )
    return result


def _phases(data: StudyData, metric: str | None, thresholds: dict[str, list[float]]) -> PhaseAnalysis | None:
    """A changing world's per-phase learning speed at the primary family's metric and middle
    threshold (:func:`phases.analyze`; "auto": the middle fraction, of each phase's best where
    the walls change); None for a stationary world or without a threshold."""
    levels = thresholds.get(metric or "", [])
    if metric is None or not levels:
        return None
    auto = (data.thresholds or {metric: "auto"}).get(metric) == "auto"
    fraction = metrics.AUTO_LEVELS[len(metrics.AUTO_LEVELS) // 2] if auto else None
    return phases.analyze(data, metric, levels[len(levels) // 2], fraction)


def _decided_sequentially(comparison: Comparison, looks: sequential.SequentialOutcome) -> Comparison:
    """A primary comparison of a sequential study: its verdict and p-values are those of the
    look that decided it (scaled to compare with alpha); still open, it is inconclusive so far."""
    decision = looks.decisions.get(comparison.condition)
    if decision is None:
        return dataclasses.replace(comparison, verdict="inconclusive")
    return dataclasses.replace(
        comparison, verdict=decision.verdict, p_holm=decision.p_difference, p_equivalence_holm=decision.p_equivalence
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
) -> Comparison:
    """The descriptive part of a comparison (runs, medians, AUC); :func:`_test` adds the test."""
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
        pairs=0,
        test="",
        speedup=Interval(float("nan"), float("nan"), float("nan")),
        p_value=float("nan"),
        p_equivalence=float("nan"),
        family="",
        p_holm=float("nan"),
        p_equivalence_holm=float("nan"),
        faster_direction=False,
        verdict="",
        auc_improvement=Interval(
            stats.probability_of_improvement(summary.auc_per_run, base_auc),
            *stats.probability_of_improvement_interval(summary.auc_per_run, base_auc),
        ),
    )


def _aligned(
    base: metrics.TimeToThreshold, base_seeds: np.ndarray, other: metrics.TimeToThreshold, other_seeds: np.ndarray
) -> tuple[metrics.TimeToThreshold, metrics.TimeToThreshold]:
    """The runs of both conditions on the seeds they share, in the same order."""
    _, in_base, in_other = np.intersect1d(base_seeds, other_seeds, return_indices=True)
    pick = lambda t, i: metrics.TimeToThreshold(t.threshold, t.steps[i], t.reached[i])  # noqa: E731
    return pick(base, in_base), pick(other, in_other)


def _test(
    comparison: Comparison,
    base: metrics.TimeToThreshold,
    other: metrics.TimeToThreshold,
    shared: tuple[metrics.TimeToThreshold, metrics.TimeToThreshold],
    margin: float,
    budget: int,
) -> tuple[Comparison, stats.PairedRatios | None]:
    """The test of a comparison (and its paired ratios): paired on the seeds both conditions
    ran (the study's common random numbers: :func:`stats.paired_test`); when they share no
    seed, the unpaired log-rank test, the ratio of Kaplan-Meier medians with a bootstrap
    interval and the direction of the restricted mean times (no equivalence test)."""
    shared_base, shared_other = shared
    if len(shared_base.steps):
        ratios = stats.paired_ratios(shared_base.steps, shared_base.reached, shared_other.steps, shared_other.reached)
        test = stats.paired_test(ratios, margin)
        low, high = np.exp(test.interval)
        found = dataclasses.replace(
            comparison,
            pairs=test.pairs,
            test=PAIRED,
            speedup=Interval(test.speedup, float(low), float(high)),
            p_value=test.p_difference,
            p_equivalence=test.p_equivalence,
            faster_direction=test.faster_direction,
        )
        return found, ratios
    found = dataclasses.replace(
        comparison,
        test=UNPAIRED,
        speedup=Interval(
            stats.speedup(base.steps, base.reached, other.steps, other.reached),
            *stats.speedup_interval(base.steps, base.reached, other.steps, other.reached),
        ),
        p_value=stats.logrank_p(other.steps, other.reached, base.steps, base.reached),
        p_equivalence=1.0,
        faster_direction=stats.restricted_mean_time(other.steps, other.reached, budget)
        < stats.restricted_mean_time(base.steps, base.reached, budget),
    )
    return found, None


def _corrected(comparisons: list[Comparison]) -> list[Comparison]:
    """Holm's correction of both tests within each family, and the verdicts. A family is
    the conditions compared at one threshold of one metric: the primary family (the study's
    answer) pays only for its own comparisons, and each secondary (exploratory) one too."""
    corrected = list(comparisons)
    families = dict.fromkeys((c.metric, c.threshold) for c in comparisons)
    for metric, threshold in families:
        members = [i for i, c in enumerate(comparisons) if (c.metric, c.threshold) == (metric, threshold)]
        differences = stats.holm([comparisons[i].p_value for i in members])
        equivalences = stats.holm([comparisons[i].p_equivalence for i in members])
        for i, p, q in zip(members, differences, equivalences, strict=True):
            c = comparisons[i]
            corrected[i] = dataclasses.replace(
                c,
                p_holm=float(p),
                p_equivalence_holm=float(q),
                verdict=stats.verdict(float(p), c.faster_direction, float(q)),
            )
    return corrected


def _power(
    times: list[TimeToThresholdData],
    primary: dict[str, Comparison],
    baseline: str,
    ratios: list[stats.PairedRatios],
    budget: int,
) -> stats.PowerStatement | None:
    """Power of the primary comparisons, simulated from a model fitted to this study (the
    baseline's censored times, the seed pairs' spread pooled over the primary comparisons),
    at the level Holm's correction demands of the most significant of them (alpha / their number)."""
    if not primary or not ratios:
        return None
    first = next(iter(primary.values()))
    data = next(t for t in times if t.metric == first.metric and t.threshold == first.threshold)
    base = data.times[baseline]
    model = stats.fit_time_model(base.steps, base.reached, stats.pooled_pair_sd(ratios), budget)
    if model is None:
        return None
    return stats.power_statement(model, first.pairs, stats.ALPHA / len(primary))


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
