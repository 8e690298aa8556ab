"""The report's evidence, rendered: its figures (from the analysis and the curves) and, for
a game, GIFs of trained runs playing (from the store's checkpoints; a run whose checkpoint is
missing or unreadable has no GIF, and the report says so)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from regspeed.analysis import progress
from regspeed.analysis.compare import StudyAnalysis
from regspeed.analysis.factors import MapAnalysis
from regspeed.envs import render
from regspeed.errors import ConfigError
from regspeed.report import plots, text
from regspeed.report.model import Animation, Figure, MapGrid
from regspeed.study import results
from regspeed.study.results import StudyData
from regspeed.study.spec import Factor
from regspeed.study.store import Store, UnreadableCheckpointError

SMOOTHED_CAPTION = "IQM over runs (smoothed with a trailing mean over 5% of the points) with a 95% bootstrap band."
DIAGNOSTICS = (  # metric, title, caption, line at zero
    ("weight_l2", "Weight L2 norm", "L2 norm of the regularized weights during training (IQM, 95% band).", False),
    ("near_zero_fraction", "Sparsity", "Fraction of weights with |w| < 1e-3 during training.", False),
    (
        "grad_cosine",
        "Do the objectives compete?",
        "Cosine between the task-loss gradient and the regularizer's gradient (or decay direction). "
        "Below 0 the regularizer pulls against the task; near 0 it is orthogonal to it.",
        True,
    ),
    (
        "levels_gap",
        "Generalization gap",
        "Greedy score on the training levels minus on held-out levels, during training (IQM, 95% band). "
        "Above 0 the agent does better on the levels it trained on: it overfits them.",
        True,
    ),
    (
        "dormant_fraction",
        "Dead units",
        "Share of hidden units that are silent (mean |activation| exactly 0) on a batch of the update's data "
        "(IQM, 95% band). Dead units no longer learn: a sign of lost plasticity.",
        False,
    ),
    (
        "dormant_fraction_0025",
        "Dormant units",
        "Share of hidden units whose mean |activation| is at most 0.025 of their layer's mean (Sokar et al. "
        "2023's dormant neurons, tau = 0.025) on a batch of the update's data (IQM, 95% band).",
        False,
    ),
    (
        "feature_srank",
        "Feature rank",
        "Effective rank (srank, Kumar et al. 2021: singular values covering 99% of their sum) of the last hidden "
        "layer's features on a batch of up to 256 examples (IQM, 95% band). A falling rank is a network "
        "losing the capacity to represent new things.",
        False,
    ),
    (
        "effective_lr",
        "Effective learning rate",
        "Size of each update relative to the weights, ||w_after - w_before|| / ||w_before|| (IQM, 95% band): "
        "how fast the weights move, whatever the nominal learning rate; smaller weights (under weight decay, "
        "say) make the same step larger.",
        False,
    ),
)


def figures(data: StudyData, analysis: StudyAnalysis) -> list[Figure]:
    """The report's figures: learning curves of every speed metric, the Kaplan-Meier curves
    and the sensitivity to strength of the primary comparison, final performance, and the
    diagnostic curves the study recorded."""
    made = []
    forest = plots.speedup_forest(analysis, text.display_names(analysis))
    if forest is not None:
        made.append(Figure("The answer in one picture", _forest_caption(analysis), plots.to_png(forest), "summary"))
    made += [learning_curves(data, analysis, metric) for metric in analysis.summaries]
    made += relearning_figures(analysis)
    made += tuning_figures(data, analysis)
    km = plots.kaplan_meier(analysis)
    if km is not None:
        first = next(iter(analysis.primary.values()))
        made.append(
            Figure(
                "Time to threshold (Kaplan-Meier)",
                f"Share of runs that have not yet reached {first.metric} {first.threshold:g}; runs that never "
                "reach it stay in the curve up to the budget (censored). Lower and further left is faster.",
                plots.to_png(km),
            )
        )
    primary_metric = _primary_metric(analysis)
    if primary_metric in analysis.summaries:
        made.append(
            Figure(
                "Sensitivity to strength",
                "Left: final performance (IQM, 95% CI) against strength, baseline band in grey. "
                "Right: speed-up to the primary threshold (> 1 is faster).",
                plots.to_png(plots.sensitivity(analysis, primary_metric)),
            )
        )
        made.append(
            Figure(
                "Final performance",
                "IQM over runs of the mean over the last 10% of the budget, with 95% bootstrap intervals.",
                plots.to_png(plots.final_intervals(analysis, primary_metric)),
            )
        )
    for metric, title, caption, zero in DIAGNOSTICS:
        if metric in data.curves:
            curve = plots.curves_by_kind(analysis, data.curves_of(metric), metric, True, zero, data.phase_steps)
            made.append(Figure(title, caption + _boundaries_caption(data), plots.to_png(curve)))
    return made


def learning_curves(data: StudyData, analysis: StudyAnalysis, metric: str) -> Figure:
    """The learning curves of one metric, one panel per regularizer kind (in a changing world
    with the phase boundaries marked)."""
    smooth = not metric.startswith("eval")
    curve = plots.curves_by_kind(analysis, data.curves_of(metric), metric, smooth, phase_steps=data.phase_steps)
    caption = SMOOTHED_CAPTION + _boundaries_caption(data)
    return Figure(f"Learning curves: {data.label(metric)}", caption, plots.to_png(curve), "curves")


def _boundaries_caption(data: StudyData) -> str:
    """What a curve figure of a changing world adds: its phase boundaries (nothing in a stationary world)."""
    if data.phase_steps <= 0:
        return ""
    return (
        f" Dotted vertical lines: the world changes (every {data.phase_steps:,} {data.step_unit}); the smoothing "
        "restarts at each change."
    )


def relearning_figures(analysis: StudyAnalysis) -> list[Figure]:
    """A changing world's per-phase figure (none for a stationary world)."""
    drawn = plots.phase_curves(analysis, text.display_names(analysis))
    if drawn is None or analysis.phases is None:
        return []
    caption = (
        f"Phase by phase, each condition's {analysis.step_unit} from the phase's start to "
        f"{text.phase_threshold_words(analysis)} (left; lower is faster; a phase that never got there counts as "
        "its length, the dotted line) and the area under the phase's curve (right; higher is better): IQM over "
        "runs with 95% bootstrap intervals. Phase 0 is first learning; a line rising from phase 1 on is "
        "relearning getting slower each time the world changes."
    )
    return [Figure("Relearning: phase by phase", caption, plots.to_png(drawn), "relearning")]


def map_figures(
    data: list[StudyData], answer_map: MapAnalysis, grid: MapGrid
) -> tuple[list[Figure], list[list[Figure]]]:
    """The figures of a study with factors: the verdict map (``summary``) and the speed-up
    against each factor with more than one value (``factors``); and each cell's key learning
    curves (its primary metric's), nothing more, so that the report stays small at any size."""
    names = text.map_names(answer_map)
    made = [
        Figure(
            "The answer map",
            _map_caption(answer_map, grid),
            plots.to_png(plots.verdict_map(grid, answer_map.margin)),
            "summary",
        )
    ]
    for factor in answer_map.varying:
        figure = plots.effect_by_factor(answer_map, factor, names)
        if figure is not None:
            made.append(Figure(f"The speed-up against {factor.name}", _factor_caption(answer_map, factor),
                               plots.to_png(figure), "factors"))  # fmt: skip
    per_cell = []
    for cell_data, cell in zip(data, answer_map.cells, strict=True):
        analysis = cell.analysis
        metric = _primary_metric(analysis) or next(iter(analysis.summaries), None)
        shown = [learning_curves(cell_data, analysis, metric)] if metric in analysis.summaries else []
        per_cell.append(shown + relearning_figures(analysis) + tuning_figures(cell_data, analysis))
    return made, per_cell


def tuning_figures(data: StudyData, analysis: StudyAnalysis) -> list[Figure]:
    """A tuned study's tuning curves (none for a study without tuning)."""
    if data.tuning is None:
        return []
    label = data.label(data.tuning.metric)
    drawn = plots.tuning_curves(data.tuning, text.display_names(analysis), plots.condition_colours(analysis), label)
    caption = (
        f"Each condition's score on the tuning seeds at each candidate: the mean (line) and each seed (dots); "
        f"the ring marks the candidate it kept and was evaluated with. {text.tuning_criterion(data.tuning, label)}"
    )
    return [Figure("Tuning", caption, plots.to_png(drawn), "tuning")]


def _primary_metric(analysis: StudyAnalysis) -> str | None:
    """The metric of the study's answer (None without primary comparisons)."""
    return next(iter(analysis.primary.values())).metric if analysis.primary else None


def _map_caption(answer_map: MapAnalysis, grid: MapGrid) -> str:
    """What the verdict map shows, in words."""
    rows, columns = ("cells", "conditions") if grid.cells_as_rows else ("conditions", "cells")
    return (
        f"Each condition's primary comparison in each cell ({rows} as rows, {columns} as columns): the cell's "
        "verdict (Holm-corrected within the cell) as colour, the speed-up over the cell's own baseline (> 1 is "
        f"faster) and its 95% interval; 'equivalent' is within {answer_map.margin:g}x, light grey is "
        f"inconclusive. A thick border and {text.MAP_MARK} mark the verdicts that also hold after Holm's "
        "correction over the whole map."
    )


def _factor_caption(answer_map: MapAnalysis, factor: Factor) -> str:
    """What a figure of the speed-up against a factor shows, in words."""
    others = [other.name for other in answer_map.varying if other.name != factor.name]
    panels = f"one panel per combination of the other factors ({', '.join(others)})" if others else "one panel"
    return (
        f"The primary speed-up of each regularized condition over its cell's baseline (> 1 is faster), with its "
        f"95% interval, against {factor.name}; {panels}. A filled marker is a decisive verdict in its cell, an "
        f"open one inconclusive; the shaded band is 'within {answer_map.margin:g}x'. A condition that never "
        "reached the threshold in a cell (or that alone reached it) has no point there."
    )


def _forest_caption(analysis: StudyAnalysis) -> str:
    """What the summary figure shows, in words."""
    return (
        f"Speed-up of each condition over the baseline in {text.threshold_words(analysis)}: the baseline's time "
        "over the condition's, seed by seed (> 1 is faster), with its 95% interval; colour is the verdict, the "
        f"shaded band is 'within {analysis.margin:g}x' (no practical difference)."
    )


@dataclasses.dataclass(frozen=True)
class Animations:
    """The report's GIFs, and the runs whose GIF was left out (their checkpoint is missing or
    unreadable), as ``"<condition> (seed <n>)"``."""

    made: list[Animation]
    left_out: tuple[str, ...]


def animations(store: Store, data: StudyData, analysis: StudyAnalysis, max_steps: int = 300) -> Animations:
    """For a game: GIFs of the best run of the baseline and of each regularizer kind's best
    condition (by final performance in the learner's progress metric, the training score for
    Snake), playing the same evaluation episode greedily. A run not trained yet has none; a
    run whose checkpoint is missing or unreadable has none and is listed as left out."""
    measured = analysis.summaries
    metric = data.progress_metric if data.progress_metric in measured else next(iter(measured), None)
    if metric is None or not data.watchable:
        return Animations([], ())
    summaries = analysis.summaries[metric]
    chosen = [summaries[0]]
    for kind in dict.fromkeys(s.kind for s in summaries[1:]):
        of_kind = [s for s in summaries if s.kind == kind and np.isfinite(s.final.value)]
        if of_kind:
            chosen.append(max(of_kind, key=lambda s: s.final.value))
    made = []
    left_out = []
    for summary in chosen:
        seed = progress.best_seed(data, summary.condition, metric)
        try:
            env, states = results.episode(store, summary.condition, seed, 0, max_steps)
        except UnreadableCheckpointError:
            left_out.append(f"{summary.condition} (seed {seed})")
            continue
        except ConfigError:  # not trained yet (a partial study)
            continue
        buffer = io.BytesIO()
        render.save_gif(env, states, buffer, cell_pixels=12)
        score = int(states[-1].length) - env.initial_length
        made.append(
            Animation(
                f"{summary.condition} (seed {seed})",
                f"greedy policy, {len(states)} steps, score {score}",
                buffer.getvalue(),
            )
        )
    return Animations(made, tuple(left_out))
