"""The report's words: the answer, one sentence per comparison, the tables' cells, the
setup and the caveats, written from the analysis (and, for the setup, the study's data)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from regspeed.analysis import factors, metrics
from regspeed.analysis.compare import Comparison, Interval, Opposition, RunHealth, StudyAnalysis
from regspeed.analysis.factors import CellAnalysis, MapAnalysis
from regspeed.analysis.phases import PhaseComparison
from regspeed.analysis.stats import ALPHA, SEEDS_GRID, VERDICTS
from regspeed.study.results import Condition, StudyData, TuningChoice
from regspeed.study.spec import value_text

QUESTION = "Does L1/L2 regularization make a neural network learn faster?"
VERDICT_HEADER = ["condition", "verdict", "speed-up [95% CI]", "p (Holm)", "reached", "final [95% CI]", "P(AUC better)"]
COMPARISON_HEADER = [
    "condition",
    "metric",
    "threshold",
    "verdict",
    "speed-up [95% CI]",
    "p",
    "p (Holm)",
    "p equiv. (Holm)",
    "reached",
    "median",
]


def number(value: float, digits: int = 3) -> str:
    """A value to ``digits`` significant digits; ``-`` when missing, ``never`` when infinite."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def steps(value: float) -> str:
    """A time to threshold in budget units, or ``not reached``."""
    return "not reached" if math.isinf(value) else f"{value:,.0f}"


def ratio(comparison: Comparison) -> str:
    """The speed-up with its interval, or why there is none."""
    speedup, interval = speedup_parts(comparison)
    return f"{speedup} {interval}" if interval else speedup


NEVER_REACHED, ONLY_THIS = "never reached", "only this condition reached it"


def speedup_parts(comparison: Comparison) -> tuple[str, str]:
    """The speed-up (``1.2x``) and its interval (``[1.1, 1.3]``), or why there is none (no interval)."""
    interval = comparison.speedup
    if comparison.reached == 0:
        return NEVER_REACHED, ""
    if math.isinf(interval.value) or comparison.baseline_reached == 0:
        return ONLY_THIS, ""

    def bound(value: float) -> str:
        return "inf" if math.isinf(value) else number(value, 2)

    return f"{number(interval.value, 2)}x", f"[{bound(interval.low)}, {bound(interval.high)}]"


KIND_WORDS = {
    "none": "no regularization",
    "l1": "L1",
    "l2": "L2",
    "weight_decay": "weight decay",
    "l2_init": "L2 to the initial weights",
    "elastic": "elastic net",
    "dropout": "dropout",
    "shrink_perturb": "shrink and perturb",
}
LEVEL_WORDS = {0.25: "a quarter of", 0.5: "half of", 0.75: "three quarters of"}


def strength_words(strength: float) -> str:
    """A strength as people write it: ``1e-3``, ``3e-4``, ``0.1``, ``1``."""
    if strength != 0 and abs(strength) <= 0.01:
        mantissa, exponent = f"{strength:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{strength:g}"


def _qualifiers(condition: Condition) -> str | None:
    """The qualifiers of a name like ``l1[policy,biases]@1e-05`` (``policy,biases``; empty
    without any), or None for a name not of that pattern."""
    found = re.fullmatch(rf"{re.escape(condition.kind)}(?:\[([^\]]*)\])?@.*", condition.name)
    return None if found is None else (found.group(1) or "")


def kind_words(condition: Condition) -> str:
    """A condition's regularizer in words, with its qualifiers (``L2 (policy)``)."""
    qualifiers = _qualifiers(condition)
    words = KIND_WORDS.get(condition.kind, condition.kind)
    return f"{words} ({qualifiers.replace(',', ', ')})" if qualifiers else words


def people_name(condition: Condition) -> str:
    """A condition as people write it: ``L2 1e-3``, ``weight decay 0.1``, ``baseline`` (a
    name not of the study's own pattern stays as it is)."""
    if condition.kind == "none":
        return "baseline"
    if _qualifiers(condition) is None:
        return condition.name
    return f"{kind_words(condition)} {strength_words(condition.strength)}"


def display_names(analysis: StudyAnalysis) -> dict[str, str]:
    """Condition name -> how the report shows it (:func:`people_name`; a condition whose
    people name another one shares keeps its own name)."""
    people = {condition.name: people_name(condition) for condition in analysis.conditions}
    counts = {label: list(people.values()).count(label) for label in people.values()}
    return {name: label if counts[label] == 1 else name for name, label in people.items()}


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _strengths_phrase(kind: str, chosen: list[float], tried: list[float]) -> str:
    """Which strengths of a kind: all of them, a top range, a bottom range, or a list."""
    if chosen == tried and len(tried) > 1:
        return f"{kind} at every strength tried"
    if len(chosen) > 1 and chosen == tried[-len(chosen) :]:
        return f"{kind} from {strength_words(chosen[0])}"
    if len(chosen) > 1 and chosen == tried[: len(chosen)]:
        return f"{kind} up to {strength_words(chosen[-1])}"
    return _join([f"{kind} {strength_words(strength)}" for strength in chosen])


def _verdict_phrase(analysis: StudyAnalysis, verdict: str) -> str | None:
    """The conditions with ``verdict``, grouped by regularizer: ``L1 from 1e-4 and L2 1e-2``."""
    compared = [condition for condition in analysis.conditions[1:] if condition.name in analysis.primary]
    return _conditions_phrase(compared, {c.name for c in compared if analysis.primary[c.name].verdict == verdict})


def _conditions_phrase(compared: list[Condition], chosen: set[str]) -> str | None:
    """The ``chosen`` ones of the ``compared`` conditions, grouped by regularizer (None if none)."""
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for condition in compared:
        chosen_strengths, tried = groups.setdefault(kind_words(condition), ([], []))
        tried.append(condition.strength)
        if condition.name in chosen:
            chosen_strengths.append(condition.strength)
    if len(groups) > 1 and all(picked == tried for picked, tried in groups.values()):
        return "every regularizer tried"
    phrases = [_strengths_phrase(k, sorted(c), sorted(t)) for k, (c, t) in groups.items() if c]
    return _join(phrases) if phrases else None


def threshold_words(analysis: StudyAnalysis) -> str:
    """What the primary comparisons measure, in words."""
    first = next(iter(analysis.primary.values()))
    where = _auto_level(analysis)
    where = f" ({where} the best condition's final value)" if where else ""
    label = analysis.label(first.metric)
    return f"the {analysis.step_unit} a run needs to reach a {label} of {first.threshold:g}{where}"


def _auto_level(analysis: StudyAnalysis) -> str | None:
    """``half of`` where the primary threshold is "auto" (a share of the best final value), else None."""
    first = next(iter(analysis.primary.values()))
    levels = analysis.thresholds.get(first.metric, [])
    if first.metric not in analysis.auto_thresholds or first.threshold not in levels:
        return None
    return LEVEL_WORDS.get(metrics.AUTO_LEVELS[levels.index(first.threshold)])


def answer(analysis: StudyAnalysis) -> str:
    """The answer in a few plain sentences: what made learning faster, slower, what made no
    practical difference and what these seeds cannot tell, then what was measured."""
    if not analysis.primary:
        return "No thresholds were set for any metric, so learning speed was not compared."
    subject = "the snake" if analysis.game else "the network"
    if analysis.phases is not None:  # a changing world: relearning is the answer, first learning beside it
        sentences = _phase_answer(analysis, subject)
        if analysis.phases.per_phase:
            said = (f"learning speed here is the {analysis.step_unit} a run needs from each phase's start to "
                    f"{phase_threshold_words(analysis)}, the run's start the first time")  # fmt: skip
        else:
            said = (f"learning speed here is {threshold_words(analysis)}, from the run's start the first time and "
                    "from each change's start for relearning")  # fmt: skip
        return _sentences([*sentences, f"{said}."])
    primary = list(analysis.primary.values())
    sentences = []
    faster = _verdict_phrase(analysis, "faster")
    if faster:
        best = max(c.speedup.value for c in primary if c.verdict == "faster")
        sentences.append(f"{faster} made {subject} learn faster (up to {best:.2g}x as fast).")
    else:
        sentences.append(f"No regularizer made {subject} learn faster.")
    slower = _verdict_phrase(analysis, "slower")
    if slower:
        slow = [c for c in primary if c.verdict == "slower"]
        reached = [1 / c.speedup.value - 1 for c in slow if c.reached and c.baseline_reached and c.speedup.value > 0]
        parts = [f"up to {max(reached):.0%} more {analysis.step_unit}"] if reached else []
        parts += ["or it never got there"] if any(c.reached == 0 for c in slow) else []
        sentences.append(f"{slower} made it slower" + (f": {', '.join(parts)}." if parts else "."))
    equivalent = _verdict_phrase(analysis, "equivalent")
    if equivalent:
        sentences.append(f"{equivalent} changed the time by less than {analysis.margin - 1:.0%}.")
    inconclusive = _verdict_phrase(analysis, "inconclusive")
    if inconclusive:
        sentences.append(f"For {inconclusive}, {analysis.seeds} seeds cannot tell{_too_few(analysis.seeds)}.")
    sentences.append(f"Learning speed here is {threshold_words(analysis)}.")
    return _sentences(sentences)


def _sentences(sentences: list[str]) -> str:
    """Sentences joined, each starting with a capital."""
    return " ".join(sentence[0].upper() + sentence[1:] for sentence in sentences)


def _phase_answer(analysis: StudyAnalysis, subject: str) -> list[str]:
    """A changing world's answer from its phase-by-phase comparisons: which regularizers made
    relearning after each change faster, slower, no different or could not tell, then the
    same for the first learning (phase 0; not the whole run's time, whose smoothing and
    threshold crossing may fall in any phase)."""
    found = analysis.phases
    assert found is not None
    relearning = {row.condition: row.relearning_vs_baseline for row in found.conditions[1:]}
    first = {row.condition: row.first_vs_baseline for row in found.conditions[1:]}
    return [
        *_family_sentences(analysis, relearning, f"after the world changed, {{}} made {subject} relearn", "relearning"),
        *_family_sentences(analysis, first, f"the first time, {{}} made {subject} learn", "first learning"),
    ]


def _family_sentences(
    analysis: StudyAnalysis, against: dict[str, PhaseComparison | None], lead: str, what: str
) -> list[str]:
    """One family's verdicts in words: ``lead`` (a template for the conditions) faster or
    not, then slower, equivalent and inconclusive, grouped by regularizer."""
    compared = [c for c in analysis.conditions[1:] if against.get(c.name) is not None]

    def phrase(verdict: str) -> str | None:
        return _conditions_phrase(compared, {c.name for c in compared if against[c.name].verdict == verdict})

    sentences = []
    if faster := phrase("faster"):
        best = max(against[c.name].speedup.value for c in compared if against[c.name].verdict == "faster")
        sentences.append(f"{lead.format(faster)} faster (up to {best:.2g}x as fast).")
    else:
        sentences.append(f"{lead.format('no regularizer')} detectably faster.")
    if slower := phrase("slower"):
        sentences.append(f"{slower} made {what} slower.")
    if equivalent := phrase("equivalent"):
        sentences.append(f"{equivalent} changed the time of {what} by less than {analysis.margin - 1:.0%}.")
    if inconclusive := phrase("inconclusive"):
        sentences.append(f"for {inconclusive}, {analysis.seeds} seeds cannot tell whether {what} changed.")
    return sentences


def _too_few(seeds: int) -> str:
    """Why so few seeds cannot tell, or nothing."""
    return " (the paired test needs 6 or more to reach p < 0.05)" if seeds < 6 else ""


def _family_size(comparison: Comparison, analysis: StudyAnalysis) -> int:
    """How many comparisons share this one's Holm correction (its metric and threshold)."""
    return sum((c.metric, c.threshold) == (comparison.metric, comparison.threshold) for c in analysis.comparisons)


def why(comparison: Comparison, analysis: StudyAnalysis) -> str:
    """The test behind a verdict, in words: which test, on what, corrected over how many."""
    family = _family_size(comparison, analysis)
    over = f"Holm-corrected over the {family} conditions at this threshold" if family > 1 else "one comparison"
    margin = f"{analysis.margin:g}x"
    if comparison.test == "log-rank":
        return f"log-rank test p = {number(comparison.p_holm, 2)} ({over}; no shared seeds, so unpaired)"
    return (
        f"paired signed-rank test on {comparison.pairs} seeds: difference p = {number(comparison.p_holm, 2)}, "
        f"equivalence within {margin} p = {number(comparison.p_equivalence_holm, 2)} ({over})"
    )


def sentence(comparison: Comparison, analysis: StudyAnalysis) -> str:
    """The plain-language result of one comparison: the verdict, the size and why."""
    target = f"a {analysis.label(comparison.metric)} of {comparison.threshold:g}"
    details = (
        f"speed-up {ratio(comparison)}; median {steps(comparison.median_steps)} vs "
        f"{steps(comparison.baseline_median_steps)} {analysis.step_unit}; "
        f"{comparison.reached}/{comparison.runs} runs reached it"
    )
    margin = f"{analysis.margin:g}x"
    heads = {
        "faster": f"{comparison.condition} reached {target} sooner than the baseline",
        "slower": f"{comparison.condition} reached {target} later than the baseline, or never",
        "equivalent": f"{comparison.condition} reached {target} within {margin} of the baseline's time (equivalent)",
        "inconclusive": f"{comparison.condition}: inconclusive for the time to reach {target}: "
        f"neither a difference nor equivalence within {margin} is shown",
    }
    exploratory = " Exploratory (not the primary threshold)." if comparison.exploratory else ""
    return f"{heads[comparison.verdict]} ({details}); {why(comparison, analysis)}.{exploratory}"


def opposition_sentence(opposition: Opposition) -> str:
    """How strongly the regularizer's gradient opposed the task's."""
    return (
        f"{opposition.condition}: the regularizer's gradient pointed against the task's in "
        f"{opposition.opposing_share:.0%} of updates (mean cosine {opposition.mean_cosine:+.3f})."
    )


def verdict_summary(analysis: StudyAnalysis) -> str:
    """How the verdicts were reached and which condition got which, in one paragraph."""
    if not analysis.primary:
        return "No thresholds were set for any metric, so learning speed was not compared."
    first = next(iter(analysis.primary.values()))
    counts = {verdict: [c.condition for c in analysis.primary.values() if c.verdict == verdict] for verdict in VERDICTS}
    parts = [
        f"Measured as the {analysis.step_unit} needed to reach a "
        f"{analysis.label(first.metric)} of {first.threshold:g}, with {analysis.seeds} seeds per "
        f"condition (paired by seed) and Holm's correction over the {len(analysis.primary)} conditions:"
    ]
    named = {"equivalent": f"equivalent within {analysis.margin:g}x"}
    for verdict, names in counts.items():
        if names:
            parts.append(f"{named.get(verdict, verdict)}: {', '.join(names)}.")
    if not counts["faster"]:
        parts.append("No regularizer made learning detectably faster in this study.")
    return " ".join(parts)


def findings(analysis: StudyAnalysis) -> list[str]:
    """The answer's details: each condition's primary comparison, then how its regularizer's
    gradient pointed."""
    return [sentence(c, analysis) for c in analysis.primary.values()] + [
        opposition_sentence(o) for o in analysis.opposition
    ]


def verdict_title(analysis: StudyAnalysis) -> str:
    """What the verdict table compares."""
    first = next(iter(analysis.primary.values()), None)
    if first is None:
        return analysis.name
    whole = " over the whole run (the world changes: relearning below)" if analysis.phases is not None else ""
    return f"{analysis.name}: time to {first.metric} {first.threshold:g} vs baseline{whole}"


def health_note(health: RunHealth | None) -> str:
    """`` (2 failed, 1 frozen)`` after a reached count, or nothing when every run trained normally."""
    if health is None:
        return ""
    notes = [f"{count} {what}" for count, what in ((health.failed, "failed"), (health.frozen, "frozen")) if count]
    return f" ({', '.join(notes)})" if notes else ""


def broken_verdict(health: RunHealth | None) -> str:
    """The verdict cell of a condition none of whose runs trained normally (else empty)."""
    if health is None or not health.all_broken:
        return ""
    if not health.frozen:
        return "all runs failed"
    return "all runs frozen" if not health.failed else "all runs failed or frozen"


def verdict_rows(analysis: StudyAnalysis) -> list[list[str]]:
    """One row per condition (cells of :data:`VERDICT_HEADER`): its primary comparison and
    final performance."""
    first = next(iter(analysis.primary.values()), None)
    metric = first.metric if first else next(iter(analysis.summaries), None)
    summaries = {s.condition: s for s in analysis.summaries.get(metric, [])}
    shown = display_names(analysis)
    rows = []
    for condition in analysis.conditions:
        name = condition.name
        summary = summaries.get(name)
        final = (
            f"{number(summary.final.value)} [{number(summary.final.low)}, {number(summary.final.high)}]"
            if summary
            else "-"
        )
        label = shown[name] + ("" if name not in analysis.incomplete else " (incomplete)")
        comparison = analysis.primary.get(name)
        if comparison is None:
            rows.append([label, "baseline", "", "", "", final, ""])
            continue
        auc = comparison.auc_improvement
        health = analysis.health.get(name)
        rows.append(
            [
                label,
                broken_verdict(health) or comparison.verdict,
                ratio(comparison),
                number(comparison.p_holm, 2),
                f"{comparison.reached}/{comparison.runs}{health_note(health)}",
                final,
                f"{number(auc.value, 2)} [{number(auc.low, 2)}, {number(auc.high, 2)}]",
            ]
        )
    return rows


def per_metric(analysis: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every metric with thresholds, at its middle threshold, side by side
    (fitting vs generalization for supervised tasks; score vs survival for Snake)."""
    middles = {metric: levels[len(levels) // 2] for metric, levels in analysis.thresholds.items() if levels}
    found = {(c.condition, c.metric): c for c in analysis.comparisons if middles.get(c.metric) == c.threshold}
    header = ["condition", *(f"{metric} {level:g}" for metric, level in middles.items())]
    rows = []
    for condition in analysis.conditions[1:]:
        cells = [condition.name]
        for metric in middles:
            comparison = found.get((condition.name, metric))
            cells.append(f"{comparison.verdict}: {ratio(comparison)}" if comparison else "-")
        rows.append(cells)
    return header, rows


GENERALIZATION_HEADER = [
    "condition", "training levels", "held-out levels", "gap [95% CI]", "gap vs baseline [95% CI]", "p (Holm)"
]


def _interval(interval: Interval) -> str:
    return f"{number(interval.value, 2)} [{number(interval.low, 2)}, {number(interval.high, 2)}]"


def generalization_rows(analysis: StudyAnalysis) -> list[list[str]]:
    """Fitting vs generalization at the end of training, one row per condition (cells of
    :data:`GENERALIZATION_HEADER`): final greedy scores on training and held-out levels,
    the gap, and its change against the baseline."""
    shown = display_names(analysis)
    return [
        [
            shown.get(row.condition, row.condition),
            number(row.train.value, 2),
            number(row.test.value, 2),
            _interval(row.gap),
            "baseline" if row.gap_change is None else _interval(row.gap_change),
            "" if row.gap_change is None else number(row.p_holm, 2),
        ]
        for row in analysis.generalization
    ]


def generalization_sentence(analysis: StudyAnalysis) -> str | None:
    """What the gap between training and held-out levels says, in one sentence (None
    without levels)."""
    if not analysis.generalization:
        return None
    base = analysis.generalization[0]
    changed = [row for row in analysis.generalization[1:] if row.p_holm < 0.05 and row.gap_change is not None]
    narrower = [display_names(analysis).get(r.condition, r.condition) for r in changed if r.gap_change.value < 0]
    wider = [display_names(analysis).get(r.condition, r.condition) for r in changed if r.gap_change.value > 0]
    said = (
        f"At the end of training the baseline scores {number(base.train.value, 2)} on its training levels and "
        f"{number(base.test.value, 2)} on held-out levels (gap {number(base.gap.value, 2)})"
    )
    if not narrower and not wider:
        return said + "; no regularizer changed the gap detectably (Holm-corrected signed-rank tests)."
    parts = [f"narrowed by {_join(narrower)}" if narrower else "", f"widened by {_join(wider)}" if wider else ""]
    return said + "; the gap was " + " and ".join(part for part in parts if part) + " (Holm-corrected)."


RELEARNING_HEADER = [
    "condition",
    "first learning (phase 0) [95% CI]",
    "first: vs baseline",
    "relearning (mean of phases 1+) [95% CI]",
    "relearning speed-up [95% CI]",
    "verdict",
    "p (Holm)",
    "change per phase [95% CI]",
    "vs baseline: p (Holm)",
]
RELEARNING_VERDICT_COLUMN = RELEARNING_HEADER.index("verdict")


def _steps_interval(interval: Interval) -> str:
    """A time in budget units with its interval: ``1,240 [1,100 to 1,400]`` (``-`` when missing)."""
    if not np.isfinite(interval.value):
        return "-"
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return f"{interval.value:,.0f}"
    return f"{interval.value:,.0f} [{interval.low:,.0f} to {interval.high:,.0f}]"


def _per_phase(log_slope: float) -> str:
    """A slope of log time per phase as the change per phase: ``+12%``."""
    return "-" if not np.isfinite(log_slope) else f"{math.expm1(log_slope):+.0%}"


def trend_words(slope: Interval) -> str:
    """A trend across phases with its interval: ``+12% [+5%, +20%]`` (the change of the time per phase)."""
    if not np.isfinite(slope.value):
        return "-"
    if not (np.isfinite(slope.low) and np.isfinite(slope.high)):
        return _per_phase(slope.value)
    return f"{_per_phase(slope.value)} [{_per_phase(slope.low)}, {_per_phase(slope.high)}]"


def phase_speedup(comparison: PhaseComparison) -> str:
    """A per-phase speed-up with its interval: ``1.7x [1.6, 1.8]`` (``-`` without pairs)."""
    interval = comparison.speedup
    if not np.isfinite(interval.value):
        return "-"

    def bound(value: float) -> str:
        return "inf" if math.isinf(value) else number(value, 2)

    return f"{number(interval.value, 2)}x [{bound(interval.low)}, {bound(interval.high)}]"


def relearning_rows(analysis: StudyAnalysis) -> list[list[str]]:
    """One row per condition (cells of :data:`RELEARNING_HEADER`): the first learning and the
    mean relearning time, each against the baseline, and the trend across phases."""
    if analysis.phases is None:
        return []
    shown = display_names(analysis)
    rows = []
    for row in analysis.phases.conditions:
        reached, known = row.first_reached
        first = f"{_steps_interval(row.first)} ({reached}/{known} reached)"
        phases_reached, phases_known = row.relearning_reached
        relearning = f"{_steps_interval(row.relearning)} ({phases_reached}/{phases_known} phases reached)"
        trend = trend_words(row.slope)
        name = shown.get(row.condition, row.condition)
        first_cmp, again = row.first_vs_baseline, row.relearning_vs_baseline
        if first_cmp is None or again is None:
            rows.append([name, first, "baseline", relearning, "", "baseline", "", trend, ""])
            continue
        rows.append(
            [
                name,
                first,
                f"{first_cmp.verdict} {phase_speedup(first_cmp)}",
                relearning,
                phase_speedup(again),
                again.verdict,
                number(again.p_holm, 2),
                trend,
                number(row.slope_p_holm, 2),
            ]
        )
    return rows


def phase_threshold_words(analysis: StudyAnalysis, shown: int = 6) -> str:
    """What a changing world's phase times are measured to: the whole run's threshold, or
    (walls changing, "auto") a share of each phase's best with the first ``shown`` values."""
    found = analysis.phases
    assert found is not None
    label = analysis.label(found.metric)
    if not found.per_phase:
        return f"a {label} of {found.threshold:g}"
    values = ", ".join(f"{value:g}" for value in found.thresholds[:shown])
    more = ", ..." if found.count > shown else ""
    kept = [str(phase) for phase in np.flatnonzero(~found.own)]  # per-phase thresholds always say which are own
    fell_back = (f"; phase{'s' if len(kept) > 1 else ''} {_join(kept)}: no condition scored above 0 at its end, "
                 f"the whole run's {found.threshold:g}") if kept else ""  # fmt: skip
    return (f"{found.fraction:.0%} of the best condition's final {label} in that phase (the walls change, so "
            f"each phase allows a different score; phase by phase: {values}{more}{fell_back})")  # fmt: skip


def relearning_sentence(analysis: StudyAnalysis) -> str | None:
    """What relearning after the world changes says, in a few words: the design, who relearned
    faster (and whether it had learned faster the first time), who slower, and the baseline's
    trend across phases (None in a stationary world)."""
    found = analysis.phases
    if found is None:
        return None
    shown = display_names(analysis)
    said = (
        f"The world changed every {found.phase_steps:,} {analysis.step_unit} ({found.count} phases); a phase's time "
        f"is the {analysis.step_unit} from its start to {phase_threshold_words(analysis)}; a phase that never "
        "got there counts as its whole length"
    )
    compared = [row for row in found.conditions[1:] if row.relearning_vs_baseline is not None]
    faster = [row for row in compared if row.relearning_vs_baseline.verdict == "faster"]

    def named(rows: list) -> str:
        return _join([f"{shown.get(r.condition, r.condition)} "
                      f"({number(r.relearning_vs_baseline.speedup.value, 2)}x)" for r in rows])  # fmt: skip

    parts = []
    only_again = [row for row in faster if row.first_vs_baseline.verdict != "faster"]
    always = [row for row in faster if row.first_vs_baseline.verdict == "faster"]
    if only_again:
        parts.append(f"{named(only_again)} relearned faster than the baseline after the world changed, though "
                     "not detectably faster the first time")  # fmt: skip
    if always:
        parts.append(f"{named(always)} learned faster than the baseline both the first time and after each change")
    if not faster:
        parts.append("no regularizer made relearning detectably faster")
    slower = [row for row in compared if row.relearning_vs_baseline.verdict == "slower"]
    if slower:
        parts.append(f"{named(slower)} relearned slower")
    verdicts = "; ".join(parts) + " (Holm-corrected paired signed-rank tests, as for the verdicts)"
    base = found.conditions[0].slope
    if np.isfinite(base.low) and base.low > 0:
        verdicts += f"; the baseline took longer phase after phase, {trend_words(base)} per phase"
    elif np.isfinite(base.high) and base.high < 0:
        verdicts += f"; the baseline got faster phase after phase, {trend_words(base)} per phase"
    elif np.isfinite(base.value):
        verdicts += f"; the baseline's time showed no clear trend across phases ({trend_words(base)} per phase)"
    return f"{said}. {verdicts[:1].upper()}{verdicts[1:]}."


def candidate_label(candidate: dict[str, Any]) -> str:
    """A tuning candidate in words: ``learning_rate=0.001``."""
    return ", ".join(f"{knob}={value_text(value)}" for knob, value in candidate.items())


def tuning_table(tuning: TuningChoice, names: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a cell's tuning: each condition's mean score on the tuning seeds at
    each candidate (failed runs counted, not averaged), and the candidate it kept."""
    header = ["condition", *(candidate_label(c) for c in tuning.candidates), "kept"]
    rows = []
    for tuned in tuning.cells[0].conditions:
        entries = []
        for scores in tuned.scores:
            found = [s for s in scores if s is not None]
            failed = len(scores) - len(found)
            mean = number(float(np.mean(found)), 3) if found else "failed"
            entries.append(mean + (f" ({failed} failed)" if failed and found else ""))
        rows.append([names.get(tuned.condition, tuned.condition), *entries,
                     candidate_label(tuning.candidates[tuned.chosen])])  # fmt: skip
    return header, rows


def tuning_criterion(tuning: TuningChoice, label: str) -> str:
    """What a tuning score is, in a sentence."""
    if tuning.criterion == "auc":
        return f"The score is the area under the curve of {label}, as a time-average over the budget."
    return f"The score is the final value of {label} (its mean over the last 10% of the budget)."


def tuning_sentence(tuning: TuningChoice, names: dict[str, str], label: str) -> str:
    """How the settings were chosen, and what each condition kept, in a few sentences."""
    by = "area under its curve" if tuning.criterion == "auc" else "final value"
    seeds = f"seeds {tuning.seeds[0]} to {tuning.seeds[-1]}" if len(tuning.seeds) > 1 else f"seed {tuning.seeds[0]}"
    kept: dict[str, list[str]] = {}
    for tuned in tuning.cells[0].conditions:
        kept.setdefault(candidate_label(tuning.candidates[tuned.chosen]), []).append(
            names.get(tuned.condition, tuned.condition)
        )
    said = "; ".join(f"{_join(who)} kept {values}" for values, who in kept.items())
    said = said[:1].upper() + said[1:]
    return (
        f"Each condition was run at each of {len(tuning.candidates)} candidate settings on tuning {seeds} and kept "
        f"the one with the largest mean {by} of {label} (a setting with a failed run loses to one without); it "
        f"was then run and compared on the evaluation seeds, which it was not tuned on. {said}."
    )


def comparison_rows(analysis: StudyAnalysis) -> list[list[str]]:
    """Every comparison of the study (cells of :data:`COMPARISON_HEADER`)."""
    return [
        [
            c.condition,
            c.metric,
            f"{c.threshold:g}",
            c.verdict,
            ratio(c),
            number(c.p_value, 2),
            number(c.p_holm, 2),
            number(c.p_equivalence_holm, 2),
            f"{c.reached}/{c.runs}",
            steps(c.median_steps),
        ]
        for c in analysis.comparisons
    ]


def setup_lines(data: StudyData, analysis: StudyAnalysis) -> list[str]:
    """The study's design, the machine and software it ran on, and its thresholds."""
    return [
        f"Study `{analysis.name}`: {len(analysis.conditions)} conditions x {analysis.seeds} seeds, "
        f"budget {analysis.budget_steps:,} {analysis.step_unit} per run.",
        *_machine_lines(data.wall_seconds, data.versions),
        "Thresholds: "
        + "; ".join(f"{m}: {', '.join(f'{t:g}' for t in ts)}" for m, ts in analysis.thresholds.items())
        + ' ("auto" = 25/50/75% of the best condition\'s final IQM).',
        *filter(None, [sequential_line(analysis)]),
    ]


def _machine_lines(wall_seconds: float, versions: dict[str, str]) -> list[str]:
    """The training time, the machine and the software."""
    return [
        f"Trained for {wall_seconds / 60:.1f} minutes of wall time on {versions.get('device', '?')} "
        f"({versions.get('cpu_count', '?')} CPUs, {versions.get('platform', '?')}).",
        "Software: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("platform", "device", "cpu_count")),
    ]


def sequential_line(analysis: StudyAnalysis) -> str | None:
    """How a sequential study spent its seeds: looks, decisions and the runs saved."""
    looks = analysis.sequential
    if looks is None:
        return None
    seeds = ", ".join(str(n) for n in looks.looks)
    spent = ", ".join(f"{a:.2g}" for a in looks.spent)
    shown = display_names(analysis)
    decided = "; ".join(f"{shown[d.condition]} {d.verdict} at {d.seeds} seeds" for d in looks.decisions.values())
    runs = sum(health.runs for health in analysis.health.values())
    fixed = len(analysis.conditions) * looks.looks[-1]
    still = (
        f" Still open after look {looks.completed}: {', '.join(shown[n] for n in looks.open)}." if looks.open else ""
    )
    return (
        f"Sequential design: looks at {seeds} seeds per condition, alpha spent {spent} (Bonferroni over the "
        f"{len(analysis.conditions) - 1} primary comparisons). Decided: {decided or 'none yet'}.{still} "
        f"It ran {runs} of the {fixed} runs of the fixed design "
        f"({1 - runs / fixed:.0%} of its {analysis.step_unit} saved)."
    )


def caveats(analysis: StudyAnalysis, gifs_left_out: tuple[str, ...] = ()) -> list[str]:
    """What the numbers do not say: censoring, threshold dependence, scope, power, the runs
    that are unfinished or failed, and the GIFs left out (``"<condition> (seed <n>)"`` whose
    checkpoint is missing or unreadable)."""
    notes = [
        "Runs that never reached a threshold are right-censored at the budget (or at their last recorded step), "
        "not dropped; a median marked 'not reached' means fewer than half of the runs got there.",
        "Learning speed depends on the threshold: a regularizer can reach a low threshold sooner and a high one "
        "later. All thresholds are in the full comparison table; the verdict uses the middle one of the first "
        "metric, and the other thresholds and metrics are exploratory (each corrected over its own conditions).",
        "Times to a threshold are interpolated between recorded points on the smoothed curve. Each seed starts "
        "every condition from the same network and environments, so conditions are compared seed by seed "
        "(Wilcoxon's signed-rank test of the per-seed time ratios, exact at any number of seeds; with 5 seeds "
        "or fewer no difference can reach p < 0.05). 'Equivalent' means two one-sided tests showed the "
        f"speed-up within [1/{analysis.margin:g}, {analysis.margin:g}] (the spec's [analysis] margin); "
        "'inconclusive' means neither a difference nor equivalence was shown.",
        "Results hold for this budget, these strengths and this configuration; a longer budget can change "
        "final performance without changing early speed.",
    ]
    if analysis.phases is not None:
        notes.append(
            "Relearning (a changing world): each phase's time to its threshold is measured from the phase's start on "
            "that phase's points alone (the smoothing restarts at each change) and censored at the phase's end. In "
            "a seed's mean over the relearning phases a censored phase counts at its end, a lower bound: differences "
            "in relearning speed are understated, never overstated, and an interval is open where a phase was "
            "censored. The change per phase is the slope of log time over the relearning phases (phase 0, learned "
            "from a fresh network, is reported on its own)."
        )
        if analysis.phases.per_phase:
            notes.append(
                "Where the walls change, each phase's threshold is a share of that phase's best final value: a "
                "decline every condition shares (a best that falls phase after phase) does not lengthen the times; "
                "the per-phase areas under the curve show it."
            )
    if analysis.power is not None:
        power = analysis.power
        needed = power.seeds_for.get(1.2, -1)
        notes.append(
            f"Power: with {power.seeds} seeds per condition, at the level Holm's correction demands of the "
            f"strongest comparison (alpha = {power.alpha:.2g}), a speed-up of "
            f"{number(power.detectable_speedup)}x would be found with 80% probability; detecting 1.2x needs "
            + (f"{needed} seeds per condition." if needed > 0 else f"more than {SEEDS_GRID[-1]} seeds per condition.")
            + " (Simulated with the paired test from a model fitted to this study: log-normal times with the "
            "baseline's spread, censored at the budget, seed pairs as correlated as the study's.)"
        )
    if analysis.incomplete:
        notes.append(f"Incomplete conditions (runs still pending or running): {', '.join(analysis.incomplete)}.")
    for condition, seed, error in analysis.failed_runs:
        notes.append(f"Run {condition} seed {seed} failed: {error}. Its curves stop there.")
    if gifs_left_out:
        notes.append(
            f"No GIF of {', '.join(gifs_left_out)}: "
            + ("its batch's checkpoint is" if len(gifs_left_out) == 1 else "their batches' checkpoints are")
            + " missing or cannot be read (the curves and every number above come from the store, not from "
            "checkpoints)."
        )
    return notes


# ---------------------------------------------------------------------------- the answer map (a study with factors)

MAP_MARK = "*"  # after a cell's verdict that holds after the map-wide correction
MAP_CHANGES_LISTED = 3  # conditions whose verdict changes between cells, named in the answer (the rest counted)


def map_names(answer_map: MapAnalysis) -> dict[str, str]:
    """Condition name -> how the map shows it (:func:`display_names`, the same in every cell)."""
    names: dict[str, str] = {}
    for cell in answer_map.cells:
        names = display_names(cell.analysis) | names
    return names


def _verdicts_of(answer_map: MapAnalysis, name: str) -> dict[int, str]:
    """Cell index -> the verdict of ``name`` in that cell (cells where it was compared)."""
    found = answer_map.comparisons
    return {f.cell: f.comparison.verdict for f in found if f.comparison.condition == name}


def map_answer(answer_map: MapAnalysis) -> str:
    """The answer across the map in a few plain sentences: what was faster, slower or
    equivalent in every cell; where the answer changes with a factor (or from cell to cell);
    what the seeds cannot tell anywhere, and how many verdicts hold across the whole map;
    then what was measured."""
    if not answer_map.comparisons:
        return "No thresholds were set for any metric, so learning speed was not compared."
    first = answer_map.cells[0].analysis
    subject = "the snake" if first.game else "the network"
    verdicts = {c.name: _verdicts_of(answer_map, c.name) for c in answer_map.conditions}
    compared = [c for c in answer_map.conditions if verdicts[c.name]]
    same = {v: {n for n, found in verdicts.items() if found and set(found.values()) == {v}} for v in VERDICTS}
    sentences = []
    everywhere = []
    faster_ones = same["faster"]
    faster = _conditions_phrase(compared, faster_ones)
    if faster:
        best = max(f.comparison.speedup.value for f in answer_map.comparisons if f.comparison.condition in faster_ones)
        everywhere.append(f"{faster} made {subject} learn faster in every cell (up to {best:.2g}x as fast)")
    slower = _conditions_phrase(compared, same["slower"])
    if slower:
        everywhere.append(f"{slower} made {'it' if faster else subject + ' learn'} slower in every cell")
    equivalent = _conditions_phrase(compared, same["equivalent"])
    if equivalent:
        everywhere.append(f"{equivalent} changed the time by less than {answer_map.margin - 1:.0%} in every cell")
    if not any(f.comparison.verdict == "faster" for f in answer_map.comparisons):
        everywhere.insert(0, f"no regularizer made {subject} learn faster in any cell")
    if everywhere:
        sentences.append("; ".join(everywhere) + ".")
    changing = [c.name for c in compared if len(set(verdicts[c.name].values())) > 1]
    if changing:
        sentences.append(_changes_sentence(answer_map, changing))
    rest = []
    inconclusive = _conditions_phrase(compared, same["inconclusive"])
    if inconclusive:
        rest.append(f"for {inconclusive}, {first.seeds} seeds per cell cannot tell in any cell{_too_few(first.seeds)}")
    decisive = [f for f in answer_map.comparisons if f.comparison.verdict in factors.DECISIVE]
    if decisive:
        rest.append(
            f"{_holding(decisive)} after Holm's correction over all {len(answer_map.comparisons)} comparisons "
            f"of the map (marked {MAP_MARK})"
        )
    if rest:
        sentences.append("; ".join(rest) + ".")
    sentences.append(f"Learning speed here is {_map_threshold_words(answer_map)}.")
    if any(cell.analysis.phases is not None for cell in answer_map.cells):
        sentences.append("the world changes during the runs: these are the whole runs' times; each cell's "
                         "relearning after the changes is in its section.")  # fmt: skip
    return _sentences(sentences)


def _changes_sentence(answer_map: MapAnalysis, changing: list[str]) -> str:
    """Where the answer changes: with a factor (``The answer changes with board: L2 1e-3 was
    faster at board=5 and slower at board=6``), or from cell to cell; a few conditions named."""
    shown = map_names(answer_map)
    by_factor: dict[str | None, list[str]] = {}
    for name in changing[:MAP_CHANGES_LISTED]:
        factor, phrase = _change_phrase(answer_map, name, shown[name])
        by_factor.setdefault(factor, []).append(phrase)
    parts = [
        (f"the answer changes with {factor}: " if factor else "the answer changes from cell to cell for ")
        + "; ".join(phrases)
        for factor, phrases in by_factor.items()
    ]
    more = len(changing) - MAP_CHANGES_LISTED
    plural = "s change" if more > 1 else " changes"
    tail = f"; and {more} more condition{plural} between cells (see the map)" if more > 0 else ""
    return "; ".join(parts) + tail + "."


def _change_phrase(answer_map: MapAnalysis, name: str, shown: str) -> tuple[str | None, str]:
    """The factor that a condition's verdict follows, if one does (its verdict the same at
    each of the factor's values, whatever the other factors), and the change in words."""
    verdicts = _verdicts_of(answer_map, name)
    for factor in answer_map.varying:
        at: dict[str, set[str]] = {}
        for cell in answer_map.cells:
            if cell.index in verdicts and factor.name in cell.values:
                at.setdefault(value_text(cell.values[factor.name]), set()).add(verdicts[cell.index])
        if all(len(found) == 1 for found in at.values()) and len(set().union(*at.values())) > 1:
            values_of: dict[str, list[str]] = {}
            for value, (verdict,) in at.items():
                values_of.setdefault(verdict, []).append(value)
            said = [f"{verdict} at {factor.name}={_either(values)}" for verdict, values in values_of.items()]
            return factor.name, f"{shown} was {_join(said)}"
    found = list(verdicts.values())
    counts = sorted(((found.count(v), v) for v in VERDICTS if v in found), key=lambda c: -c[0])  # stable: ties in order
    (count, verdict), *others = counts
    parts = [f"{verdict} in {count} of {len(found)} cells", *(f"{v} in {n}" for n, v in others)]
    return None, f"{shown} ({', '.join(parts)})"


def _either(items: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _holding(decisive: list[factors.MapComparison]) -> str:
    """``all 4 decisive verdicts hold`` or ``3 of the 4 decisive verdicts hold``."""
    holding = sum(found.holds_across_map for found in decisive)
    return ("all" if holding == len(decisive) else f"{holding} of the") + f" {len(decisive)} decisive verdicts hold"


def _map_threshold_words(answer_map: MapAnalysis) -> str:
    """What the cells' primary comparisons measure: the same words in every cell, or each
    cell's own threshold."""
    analyses = [cell.analysis for cell in answer_map.cells if cell.analysis.primary]
    words = {threshold_words(analysis) for analysis in analyses}
    if len(words) == 1:
        return words.pop() + (" in every cell" if len(analyses) > 1 else "")
    first = analyses[0]
    metric = next(iter(first.primary.values())).metric
    level = _auto_level(first)
    where = f", {level} the best condition's final value in that cell" if level else ""
    return (
        f"the {first.step_unit} a run needs to reach its cell's threshold of {first.label(metric)}{where} "
        "(each cell's is in its section)"
    )


def map_family(answer_map: MapAnalysis) -> str:
    """The multiple comparisons of the map, stated: Holm within each cell (the verdicts
    shown), and Holm over the whole map (the mark)."""
    cells = len(answer_map.cells)
    total = len(answer_map.comparisons)
    per_cell = max((len(cell.analysis.primary) for cell in answer_map.cells), default=0)
    decisive = [f for f in answer_map.comparisons if f.comparison.verdict in factors.DECISIVE]
    said = (
        f"Each cell is a study of its own: its {per_cell} primary comparisons (each regularized condition "
        "against the cell's own baseline, at the primary threshold) are Holm-corrected over its conditions, and "
        f"those verdicts are what the map shows. The map holds {cells} cells and {total} primary comparisons; "
        "reading it as one answer (where was learning faster?) makes all of them at once, so they are also "
        f"Holm-corrected together, over the whole map (both tests, at alpha = {ALPHA:g}). "
    )
    if not decisive:
        return said + "No verdict is decisive in any cell, so the map-wide correction changes nothing."
    others = "" if all(f.holds_across_map for f in decisive) else (
        "; the others are evidence for their own cell, not for a claim across the map"
    )
    return said + f"{_holding(decisive)[0].upper()}{_holding(decisive)[1:]} after it (marked {MAP_MARK}){others}."


def map_title(answer_map: MapAnalysis) -> str:
    """What the verdict map compares."""
    primary = [c for cell in answer_map.cells for c in cell.analysis.primary.values()]
    if not primary:
        return answer_map.name
    thresholds = {c.threshold for c in primary}
    level = f" {primary[0].threshold:g}" if len(thresholds) == 1 else " (each cell's threshold)"
    return f"{answer_map.name}: time to {primary[0].metric}{level} vs each cell's baseline"


def cell_summary(cell: CellAnalysis) -> str:
    """A cell in one line: its label and how many conditions got each verdict."""
    analysis = cell.analysis
    counts = [(verdict, sum(c.verdict == verdict for c in analysis.primary.values())) for verdict in VERDICTS]
    said = ", ".join(f"{count} {verdict}" for verdict, count in counts if count) or "no comparisons"
    return f"{cell.label}: {said}" + (" (incomplete)" if analysis.incomplete else "")


def map_setup_lines(answer_map: MapAnalysis, data: list[StudyData]) -> list[str]:
    """The map's design (factors, cells, conditions, seeds, runs, budgets), machine and software."""
    first = answer_map.cells[0].analysis
    grid = " x ".join(f"{f.name} {', '.join(value_text(v) for v in f.values)}" for f in answer_map.factors)
    runs = sum(health.runs for cell in answer_map.cells for health in cell.analysis.health.values())
    budgets = sorted({cell.analysis.budget_steps for cell in answer_map.cells})
    budget = (
        f"budget {budgets[0]:,} {first.step_unit} per run"
        if len(budgets) == 1
        else f"budgets {budgets[0]:,} to {budgets[-1]:,} {first.step_unit} per run (each cell's in its section)"
    )
    return [
        f"Study `{answer_map.name}`: {len(answer_map.cells)} cells ({grid}), each {len(first.conditions)} "
        f"conditions x {first.seeds} seeds; {runs:,} runs in all, {budget}.",
        *_machine_lines(sum(d.wall_seconds for d in data), data[0].versions if data else {}),
    ]


def map_caveats(answer_map: MapAnalysis) -> list[str]:
    """What the map's numbers do not say, beyond each cell's caveats."""
    notes = [
        "Speed-ups are against each cell's own baseline, so they compare across cells; times to a threshold "
        "do not (a larger board or another algorithm changes what a score means and how fast any run gets "
        "there). A factor's effect on the baseline itself is in the cells' learning curves.",
        "A study with factors shows no GIFs: watch a trained run of a cell with `regspeed watch FOLDER --cell "
        "LABEL --condition NAME`.",
    ]
    thresholds = {
        (c.metric, c.threshold) for cell in answer_map.cells for c in cell.analysis.primary.values()
    }
    if len(thresholds) > 1:
        notes.insert(
            1,
            "The primary threshold differs between cells (each cell's \"auto\" thresholds come from its own best "
            "final value, or the metric's scale differs): each cell's is in its section.",
        )
    return notes
