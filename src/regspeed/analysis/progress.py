"""How far a study got and how its runs did, from its data: the progress table that
``regspeed status`` prints (and ``regspeed study`` at its end), and a condition's best run."""

from __future__ import annotations

import dataclasses

import numpy as np

from regspeed.analysis import metrics, stats
from regspeed.errors import ConfigError
from regspeed.study.results import StudyData


@dataclasses.dataclass(frozen=True)
class ConditionProgress:
    """Progress and end results of one condition."""

    condition: str
    runs: int
    finished: int
    failed: int
    progress: float  # fraction of the condition's updates done
    final: dict[str, float]  # speed metric -> IQM over runs of final performance (NaN: not recorded)


def table(data: StudyData) -> list[ConditionProgress]:
    """One row per condition (study order): runs finished / failed, progress, and the IQM of
    final performance in each speed metric."""
    rows = []
    for condition in data.conditions:
        members = [run for run in data.runs if run.condition == condition.name]
        final = {}
        for metric in data.speed_metrics:
            curve = data.curves_of(metric).get(condition.name)
            finals = (
                metrics.final_performance(curve.steps, curve.values, data.budget_steps)
                if curve is not None
                else np.full(len(members), np.nan)
            )
            final[metric] = stats.iqm(finals)
        rows.append(
            ConditionProgress(
                condition=condition.name,
                runs=len(members),
                finished=sum(run.status == "finished" for run in members),
                failed=sum(run.status == "failed" for run in members),
                progress=float(np.mean([run.progress for run in members])) if members else 0.0,
                final=final,
            )
        )
    return rows


def best_seed(data: StudyData, condition: str, metric: str = "score") -> int:
    """The seed of ``condition`` with the highest final performance in ``metric`` (its first
    seed when no run has one, e.g. the metric was not recorded)."""
    names = [c.name for c in data.conditions]
    if condition not in names:
        raise ConfigError("condition", f"no condition {condition!r}; choose one of {', '.join(names)}")
    seeds = [run.seed for run in data.runs if run.condition == condition]
    curve = data.curves_of(metric).get(condition)
    if curve is None:
        return seeds[0]
    finals = metrics.final_performance(curve.steps, curve.values, data.budget_steps)
    return curve.seeds[int(np.nanargmax(finals))] if np.isfinite(finals).any() else curve.seeds[0]
