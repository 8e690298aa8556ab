"""Choosing each condition's settings from a tuned study's tuning runs.

A tuned study (``[tuning]`` in its spec) first runs every condition of every cell at
every candidate on its tuning seeds (:func:`regspeed.study.spec.tuning_study`). Each
condition of each cell then keeps the candidate with the best mean score of its runs on
the study's answer metric (:func:`regspeed.analysis.compare.answer_metric`): the
normalised area under the curve (``auc``, the default: fast *and* good) or the final value
(``final``). A candidate with a failed (diverged) tuning run loses to one without: it is
ranked by its failures first, then by its mean score, then by its order in the spec.
The choice is made once, stored with the study, and the evaluation runs use it.
"""

from __future__ import annotations

import numpy as np

from regspeed.analysis import compare, metrics
from regspeed.study import results
from regspeed.study import spec as spec_module
from regspeed.study.results import CellTuning, StudyData, TunedCondition, TuningChoice
from regspeed.study.spec import Spec
from regspeed.study.store import Store


def choose(store: Store, spec: Spec) -> TuningChoice:
    """The candidate each condition of each cell of ``spec`` (a tuned study) keeps, from the
    finished tuning runs in ``store`` (the study's tuning store)."""
    assert spec.tuning is not None
    options = spec_module.candidates(spec)
    once = results.read_once(store)
    cells: list[CellTuning] = []
    metric = ""
    for cell in spec_module.cells(spec):
        tuned = [results.load(once, cell=cell.index * len(options) + k) for k in range(len(options))]
        metric = compare.answer_metric(tuned[0]) or tuned[0].speed_metrics[0]
        scores = {c.name: [_scores(data, c.name, metric, spec.tuning.criterion) for data in tuned]
                  for c in spec_module.conditions(cell.spec)}  # fmt: skip
        cells.append(CellTuning(cell.label, [TunedCondition(name, s, best(s)) for name, s in scores.items()]))
    seeds = list(range(spec.tuning.first_seed, spec.tuning.first_seed + spec.tuning.seeds))
    return TuningChoice(spec.tuning.criterion, metric, seeds, options, cells)


def best(scores: list[list[float | None]]) -> int:
    """The candidate to keep, from each candidate's per-seed scores (None: a failed run):
    fewest failures, then the highest mean, then the first."""

    def rank(index: int) -> tuple[int, float, int]:
        values = [s for s in scores[index] if s is not None]
        mean = float(np.mean(values)) if values else -np.inf
        return (len(scores[index]) - len(values), -mean, index)

    return min(range(len(scores)), key=rank)


def _scores(data: StudyData, condition: str, metric: str, criterion: str) -> list[float | None]:
    """Per tuning seed, the score of ``condition``'s run: its area under the curve or final
    value of ``metric`` (None: failed, or nothing recorded)."""
    failed = {run.seed for run in data.runs if run.condition == condition and run.status == "failed"}
    seeds = sorted(run.seed for run in data.runs if run.condition == condition)
    curve = data.curves_of(metric).get(condition)
    if curve is None:
        return [None] * len(seeds)
    score = metrics.area_under_curve if criterion == "auc" else metrics.final_performance
    per_run = dict(zip(curve.seeds, score(curve.steps, curve.values, data.budget_steps), strict=True))
    return [None if seed in failed or not np.isfinite(per_run.get(seed, np.nan)) else float(per_run[seed])
            for seed in seeds]  # fmt: skip
