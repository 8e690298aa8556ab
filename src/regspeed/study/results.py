"""Reading a study's results: curves as arrays per condition, a summary, and exports.

``curves(store, metric)`` gives, per condition, an array ``[runs, points]`` on the union of
the steps any run recorded (NaN where a run has no value), which is also the shape
rliable expects once a task axis is added: ``[runs, tasks, points]``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from regspeed.analysis import metrics, stats
from regspeed.errors import ConfigError
from regspeed.study.store import CHECKPOINTS, Store

FORMATS = ("csv", "npz")


@dataclasses.dataclass(frozen=True)
class ConditionCurves:
    """One metric of one condition: ``values[run, point]`` at ``steps[point]``."""

    condition: str
    seeds: list[int]
    steps: np.ndarray
    values: np.ndarray


def curves(store: Store, metric: str) -> list[ConditionCurves]:
    """Per condition (study order), the metric's curves of all runs on a common step axis."""
    by_run = store.curve(metric)
    runs = store.runs()
    steps = np.unique(np.concatenate([s for s, _ in by_run.values()])) if by_run else np.zeros(0, np.int64)
    result = []
    for condition in [c["name"] for c in store.conditions()]:
        members = [run for run in runs if run.condition == condition]
        values = np.full((len(members), len(steps)), np.nan)
        for row, run in enumerate(members):
            if run.run_id in by_run:
                run_steps, run_values = by_run[run.run_id]
                values[row, np.searchsorted(steps, run_steps)] = run_values
        result.append(ConditionCurves(condition, [run.seed for run in members], steps, values))
    return result


@dataclasses.dataclass(frozen=True)
class ConditionSummary:
    """Progress and end results of one condition."""

    condition: str
    runs: int
    finished: int
    failed: int
    progress: float  # fraction of the condition's updates done
    final: dict[str, float]  # metric -> IQM over runs of final performance


def summary(store: Store, metric_names: tuple[str, ...] = ("score", "eval_score", "steps")) -> list[ConditionSummary]:
    """One row per condition: runs finished / failed, progress, IQM of final performance."""
    runs = store.runs()
    totals = {batch.batch_id: batch.total_updates for batch in store.batches()}
    budget_steps = int(store.meta().get("budget_steps", 0))
    tables = {}
    for metric in metric_names:
        tables[metric] = {curve.condition: curve for curve in curves(store, metric)}
        for curve in tables[metric].values():
            if len(curve.steps):
                budget_steps = max(budget_steps, int(curve.steps[-1]))
    rows = []
    for condition in [c["name"] for c in store.conditions()]:
        members = [run for run in runs if run.condition == condition]
        done = sum(min(run.updates_done, totals[run.batch]) for run in members)
        final = {}
        for metric in metric_names:
            curve = tables[metric].get(condition)
            if curve is None:
                final[metric] = float("nan")
            else:
                final[metric] = stats.iqm(metrics.final_performance(curve.steps, curve.values, budget_steps))
        rows.append(
            ConditionSummary(
                condition=condition,
                runs=len(members),
                finished=sum(run.status == "finished" for run in members),
                failed=sum(run.status == "failed" for run in members),
                progress=done / max(1, sum(totals[run.batch] for run in members)),
                final=final,
            )
        )
    return rows


def export(store: Store, path: Path, format: str, metric: str = "score") -> Path:
    """Write the curves to ``path``: ``csv`` (long form, every metric) or ``npz`` (one metric,
    rliable-shaped ``[runs, 1, points]`` per condition, plus its ``steps`` axis)."""
    if format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)} (got {format!r})")
    if format == "csv":
        names = {run.run_id: (run.condition, run.seed) for run in store.runs()}
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["condition", "seed", "metric", "step", "value"])
            for name in store.metric_names():
                for run_id, (steps, values) in store.curve(name).items():
                    condition, seed = names[run_id]
                    writer.writerows(
                        (condition, seed, name, step, f"{value:.9g}")
                        for step, value in zip(steps.tolist(), values.tolist(), strict=True)
                    )
        return path
    if metric not in store.metric_names():
        raise ConfigError("metric", f"no values of {metric!r}; choose one of {', '.join(store.metric_names())}")
    per_condition = curves(store, metric)
    arrays = {curve.condition: curve.values[:, None, :] for curve in per_condition}
    if "steps" in arrays:
        raise ConfigError("metric", "a condition is named 'steps', which the npz format reserves")
    np.savez(path, steps=per_condition[0].steps, **arrays)
    return path


def best_seed(store: Store, condition: str, metric: str = "score") -> int:
    """The seed of ``condition`` with the highest final performance in ``metric``."""
    budget = int(store.meta().get("budget_steps", 0))
    for curve in curves(store, metric):
        if curve.condition == condition:
            finals = metrics.final_performance(curve.steps, curve.values, budget or int(curve.steps[-1]))
            return curve.seeds[int(np.nanargmax(finals))] if np.isfinite(finals).any() else curve.seeds[0]
    raise ConfigError("condition", f"no condition {condition!r}; choose one of {', '.join(_condition_names(store))}")


def _condition_names(store: Store) -> list[str]:
    return [c["name"] for c in store.conditions()]


def episode(store: Store, condition: str, seed: int, episode_seed: int = 0, max_steps: int = 500) -> tuple:
    """One greedy episode of a trained run, from its batch's latest checkpoint:
    ``(env config, states)``."""
    from regspeed.learn.regularizers import Regularizer
    from regspeed.study import spec as spec_module
    from regspeed.study import tasks

    names = _condition_names(store)
    if condition not in names:
        raise ConfigError("condition", f"no condition {condition!r}; choose one of {', '.join(names)}")
    runs = store.runs()
    run = next((r for r in runs if r.condition == condition and r.seed == seed), None)
    if run is None:
        seeds = sorted(r.seed for r in runs if r.condition == condition)
        raise ConfigError("seed", f"{condition} has no seed {seed}; its seeds are {seeds}")
    batch = next(b for b in store.batches() if b.batch_id == run.batch)
    if batch.checkpoint is None:
        raise ConfigError("condition", f"{condition} seed {seed} has not trained yet; run the study first")
    spec = spec_module.validate(json.loads(store.meta()["spec_json"]))
    regularizer = Regularizer(**next(c["regularizer"] for c in store.conditions() if c["name"] == condition))
    with np.load(store.folder / CHECKPOINTS / batch.checkpoint) as data:
        arrays = dict(data)
    batch_size = sum(r.batch == run.batch for r in runs)
    task = tasks.REGISTRY[spec.task]
    return task.episode(spec, regularizer, arrays, batch_size, run.position, episode_seed, max_steps)
