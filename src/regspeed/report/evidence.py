"""The report's evidence, rendered: its figures (from the analysis and the curves) and, for
a game, GIFs of trained runs playing (from the store's checkpoints; a run whose checkpoint is
missing or unreadable has no GIF, and the report says so)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from regspeed.analysis import progress
from regspeed.analysis.compare import StudyAnalysis
from regspeed.envs import render
from regspeed.errors import ConfigError
from regspeed.report import plots, text
from regspeed.report.model import Animation, Figure
from regspeed.study import results
from regspeed.study.results import StudyData
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
)


def figures(data: StudyData, analysis: StudyAnalysis) -> list[Figure]:
    """The report's figures: learning curves of every speed metric, the Kaplan-Meier curves
    and the sensitivity to strength of the primary comparison, final performance, and the
    diagnostic curves the study recorded."""
    made = []
    forest = plots.speedup_forest(analysis, text.display_names(analysis))
    if forest is not None:
        made.append(Figure("The answer in one picture", _forest_caption(analysis), plots.to_png(forest), "summary"))
    for metric in analysis.summaries:
        curve = plots.curves_by_kind(analysis, data.curves_of(metric), metric, smooth=not metric.startswith("eval"))
        made.append(Figure(f"Learning curves: {data.label(metric)}", SMOOTHED_CAPTION, plots.to_png(curve), "curves"))
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
    primary_metric = next(iter(analysis.primary.values())).metric if analysis.primary else None
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
            curve = plots.curves_by_kind(analysis, data.curves_of(metric), metric, True, zero)
            made.append(Figure(title, caption, plots.to_png(curve)))
    return made


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
