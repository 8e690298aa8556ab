"""Reading a study's results: the read API the analysis and the report work from, and exports.

:func:`load` reads a store once into :class:`StudyData`: plain data and NumPy arrays, so
everything above this layer (``analysis``, ``report``) computes without the store.
``curves(store, metric)`` gives, per condition, an array ``[runs, points]`` on the union of
the steps any run recorded (NaN where a run has no value), which is also the shape
rliable expects once a task axis is added: ``[runs, tasks, points]``.

Nothing is computed from a damaged store: :meth:`Store.open` runs its integrity check and
:meth:`Store.curve` verifies the curves against their checksums; either failing is one
"damaged" error. Curves never depend on checkpoints: only :func:`episode` needs one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from regspeed.errors import ConfigError
from regspeed.study import files
from regspeed.study.store import RunRow, Store, UnreadableCheckpointError, read_checkpoint

if TYPE_CHECKING:
    import pandas

FORMATS = ("csv", "npz")
DEFAULT_SPEED_METRICS = ("score", "steps", "eval_score", "eval_steps")  # stores that do not record theirs
DIAGNOSTIC_METRICS = ("weight_l2", "near_zero_fraction", "grad_cosine")  # drawn by the report when recorded


@dataclasses.dataclass(frozen=True)
class ConditionCurves:
    """One metric of one condition: ``values[run, point]`` at ``steps[point]``."""

    condition: str
    seeds: list[int]
    steps: np.ndarray
    values: np.ndarray


@dataclasses.dataclass(frozen=True)
class Condition:
    """A condition of the study: its name (e.g. ``l2@0.001``), regularizer kind and strength,
    and the regularizer's full settings."""

    name: str
    kind: str
    strength: float
    regularizer: dict


@dataclasses.dataclass(frozen=True)
class Run:
    """A run as far as it got: ``progress`` is its updates done as a fraction of its batch's."""

    condition: str
    seed: int
    status: str  # pending, running, finished or failed
    progress: float
    error: str | None


@dataclasses.dataclass(frozen=True)
class StudyData:
    """Everything the analysis and the report read of a study, as plain data and arrays."""

    name: str
    task: str
    budget_steps: int  # as trained; a store that does not record it: the largest step recorded
    step_unit: str
    speed_metrics: tuple[str, ...]
    thresholds: dict[str, list[float] | str]  # as the spec asks: metric -> levels, or "auto"
    margin: float  # equivalence margin of the verdicts (spec [analysis])
    looks: tuple[int, ...]  # seeds per condition at each look (one look unless the study is sequential)
    conditions: list[Condition]  # study order; the first is the baseline
    runs: list[Run]  # by condition (study order), then seed
    curves: dict[str, list[ConditionCurves]]  # metric -> per condition (study order), recorded metrics only
    wall_seconds: float  # training time of all batches together
    versions: dict[str, str]  # software and machine
    spec_toml: str
    metric_labels: dict[str, str]  # metric name -> human words
    watchable: bool  # a game whose trained runs can be watched (``episode``) and turned into GIFs
    progress_metric: str  # what the learner's progress is shown by (and a game's best run chosen by)

    def label(self, metric: str) -> str:
        """The metric in words (its name if it has none)."""
        return self.metric_labels.get(metric, metric)

    def curves_of(self, metric: str) -> dict[str, ConditionCurves]:
        """Condition name -> its curves of ``metric`` (empty if the metric was not loaded or recorded)."""
        return {curve.condition: curve for curve in self.curves.get(metric, [])}


@dataclasses.dataclass(frozen=True)
class LearnerFacts:
    """What the study's learner declares that the analysis and report use."""

    metric_labels: dict[str, str]
    watchable: bool
    progress_metric: str


def learner_facts(store: Store) -> LearnerFacts:
    """The declarations of the study's learner (an unknown task: labels by name, not watchable,
    progress by its first speed metric)."""
    from regspeed.learn import registry

    meta = store.meta()
    learner = registry.LEARNERS.get(json.loads(meta["spec_json"]).get("task", ""))
    if learner is None:
        return LearnerFacts({}, False, _speed_metrics(meta)[0])
    return LearnerFacts(learner.labels(), learner.play is not None, learner.progress_metric)


def load(store: Store, metrics: tuple[str, ...] | None = None) -> StudyData:
    """Read a study once: its facts, runs and the curves of ``metrics`` that were recorded
    (default: the speed metrics and the report's diagnostic curves)."""
    from regspeed.study import spec as spec_module

    meta = store.meta()
    spec = json.loads(meta["spec_json"])
    filled = spec_module.with_added_defaults(spec)
    runs = store.runs()
    conditions = store.conditions()
    batches = store.batches()
    speed_metrics = _speed_metrics(meta)
    wanted = (*speed_metrics, *DIAGNOSTIC_METRICS) if metrics is None else metrics
    recorded = set(store.metric_names())
    curves_by_metric = {
        metric: _curves(store.curve(metric), runs, conditions) for metric in dict.fromkeys(wanted) if metric in recorded
    }
    totals = {batch.batch_id: batch.total_updates for batch in batches}
    facts = learner_facts(store)
    return StudyData(
        name=spec.get("name", "study"),
        task=spec.get("task", ""),
        budget_steps=int(meta.get("budget_steps") or 0) or _largest_step(curves_by_metric),
        step_unit=meta.get("step_unit", "env steps"),
        speed_metrics=speed_metrics,
        thresholds=dict(spec.get("thresholds") or {}),
        margin=float(filled["analysis"]["margin"]),
        looks=tuple(spec_module.validate(filled).looks())
        if filled["execution"]["sequential"]
        else (int(spec.get("seeds") or 0),),
        conditions=[Condition(c["name"], c["kind"], c["strength"], c["regularizer"]) for c in conditions],
        runs=[
            Run(run.condition, run.seed, run.status, min(1.0, run.updates_done / max(1, totals[run.batch])), run.error)
            for run in runs
        ],
        curves=curves_by_metric,
        wall_seconds=sum(batch.wall_seconds for batch in batches),
        versions=json.loads(meta.get("versions", "{}")),
        spec_toml=meta.get("spec_toml", ""),
        metric_labels=facts.metric_labels,
        watchable=facts.watchable,
        progress_metric=facts.progress_metric,
    )


def speed_metrics(store: Store) -> tuple[str, ...]:
    """The metrics whose learning speed the study measures (its task's), in the task's order."""
    return _speed_metrics(store.meta())


def _speed_metrics(meta: dict[str, str]) -> tuple[str, ...]:
    return tuple(json.loads(meta["speed_metrics"])) if "speed_metrics" in meta else DEFAULT_SPEED_METRICS


def _largest_step(curves_by_metric: dict[str, list[ConditionCurves]]) -> int:
    """The last step any loaded curve reached (at least 1)."""
    return max((int(c.steps[-1]) for per in curves_by_metric.values() for c in per if len(c.steps)), default=1)


def curves(store: Store, metric: str) -> list[ConditionCurves]:
    """Per condition (study order), the metric's curves of all runs on a common step axis."""
    return _curves(store.curve(metric), store.runs(), store.conditions())


def _curves(
    by_run: dict[int, tuple[np.ndarray, np.ndarray]], runs: list[RunRow], conditions: list[dict]
) -> list[ConditionCurves]:
    """One metric's ``run_id -> (steps, values)`` as arrays per condition on the union of steps."""
    steps = np.unique(np.concatenate([s for s, _ in by_run.values()])) if by_run else np.zeros(0, np.int64)
    result = []
    for condition in [c["name"] for c in conditions]:
        members = [run for run in runs if run.condition == condition]
        values = np.full((len(members), len(steps)), np.nan)
        for row, run in enumerate(members):
            if run.run_id in by_run:
                run_steps, run_values = by_run[run.run_id]
                values[row, np.searchsorted(steps, run_steps)] = run_values
        result.append(ConditionCurves(condition, [run.seed for run in members], steps, values))
    return result


def export(store: Store, path: Path, format: str, metric: str = "score") -> Path:
    """Write the curves to ``path``: ``csv`` (long form, every metric) or ``npz`` (one metric,
    rliable-shaped ``[runs, 1, points]`` per condition, plus its ``steps`` axis). The file is
    replaced atomically and never written through a symbolic link (one at ``path`` is refused);
    it is streamed into a temporary file, so a store found damaged midway leaves ``path`` as it was."""
    if format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)} (got {format!r})")
    files.refuse_link(path, "out")
    files.refuse_unwritable(path.parent)
    if format == "csv":
        names = {run.run_id: (run.condition, run.seed) for run in store.runs()}
        with files.replacing(path, "out", text=True) as file:
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
    with files.replacing(path, "out") as file:
        np.savez(file, steps=per_condition[0].steps, **arrays)
    return path


def _condition_names(store: Store) -> list[str]:
    return [c["name"] for c in store.conditions()]


def episode(store: Store, condition: str, seed: int, episode_seed: int = 0, max_steps: int = 500) -> tuple:
    """One greedy episode of a trained run, from its batch's latest checkpoint:
    ``(env config, states)``. A checkpoint that is missing, unreadable or not of this batch
    is :class:`UnreadableCheckpointError`."""
    import jax

    from regspeed.learn import checkpoint
    from regspeed.learn.regularizers import Regularizer
    from regspeed.study import spec as spec_module

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
    learner = spec_module.learner_of(spec)
    if learner.play is None:
        raise ConfigError("study", f"{spec.task} is not a game: there is nothing to watch")
    regularizer = Regularizer(**next(c["regularizer"] for c in store.conditions() if c["name"] == condition))
    setup = spec_module.setup(spec, regularizer)
    arrays = read_checkpoint(store.folder, batch.checkpoint)
    runs_in_batch = sum(r.batch == run.batch for r in runs)
    template = learner.start(setup, [0] * runs_in_batch, np.zeros(runs_in_batch))
    try:
        carry = checkpoint.from_arrays(arrays, template, f"batch {run.batch}")
    except (KeyError, ValueError) as error:  # a readable file, but not this batch's carry
        raise UnreadableCheckpointError(store.folder, batch.checkpoint, f"does not fit its batch ({error})") from None
    params = jax.tree.map(lambda leaf: leaf[run.position], carry.params)
    return learner.play(setup.config, params, jax.random.key(episode_seed), max_steps)


# ---------------------------------------------------------------------------- DataFrames (the `pandas` extra)

CELL = "all"  # a study's one factor combination (studies have a single cell; factors will add more)
FRAME_COLUMNS = ("cell", "condition", "seed", "metric", "step", "value")


def pandas_module() -> ModuleType:
    """pandas, imported when first needed: it is the optional ``pandas`` extra, and its absence
    is a one-line :class:`ConfigError` saying how to install it."""
    try:
        import pandas
    except ImportError:
        raise ConfigError("pandas", "is not installed; install it with: pip install 'regspeed[pandas]'") from None
    return pandas


def to_pandas(source: Store | Path | str, metrics: Sequence[str] | None = None) -> pandas.DataFrame:
    """Every recorded point of a study as a long-form DataFrame, one row per point, with the
    columns ``cell, condition, seed, metric, step, value`` (:data:`FRAME_COLUMNS`), ordered by
    condition (study order), seed, metric and step.

    ``source`` is an open :class:`Store` or a study folder (opened read-only and closed again).
    ``metrics`` restricts the rows to those metrics (default: every recorded one); a metric with
    no values is a :class:`ConfigError`. ``cell`` is the study's factor combination: a study has
    a single cell today, so it is always :data:`CELL` (``"all"``); it is there so that code
    written now keeps working when studies get factors. Needs pandas (``pip install
    'regspeed[pandas]'``)."""
    pd = pandas_module()
    if isinstance(source, Store):
        return _points_frame(pd, source, metrics)
    with Store.open(Path(source)) as store:
        return _points_frame(pd, store, metrics)


def _points_frame(pd: ModuleType, store: Store, metrics: Sequence[str] | None) -> pandas.DataFrame:
    """:func:`to_pandas` of an open store."""
    recorded = store.metric_names()
    wanted = recorded if metrics is None else list(dict.fromkeys(metrics))
    unknown = [metric for metric in wanted if metric not in recorded]
    if unknown:
        raise ConfigError("metric", f"no values of {unknown[0]!r}; choose among {', '.join(recorded)}")
    runs = store.runs()  # by condition (study order), then seed
    position = {run.run_id: index for index, run in enumerate(runs)}
    parts = []  # per run and metric: run index, metric index, steps, values
    for index, metric in enumerate(wanted):
        for run_id, (run_steps, run_values) in store.curve(metric).items():
            points = len(run_steps)
            parts.append((np.full(points, position[run_id]), np.full(points, index), run_steps, run_values))
    run_index, metric_index, steps, values = (_joined(parts, i, dtype) for i, dtype in enumerate(_PART_DTYPES))
    order = np.lexsort((steps, metric_index, run_index))
    run_index, metric_index = run_index[order], metric_index[order]
    columns = {
        "cell": np.full(len(order), CELL, dtype=object),
        "condition": np.asarray([run.condition for run in runs] or [""], dtype=object)[run_index],
        "seed": np.asarray([run.seed for run in runs] or [0], dtype=np.int64)[run_index],
        "metric": np.asarray(wanted or [""], dtype=object)[metric_index],
        "step": steps[order],
        "value": values[order],
    }
    return pd.DataFrame(columns, columns=list(FRAME_COLUMNS))


_PART_DTYPES = (np.int64, np.int64, np.int64, np.float64)  # run index, metric index, step, value


def _joined(parts: list[tuple[np.ndarray, ...]], column: int, dtype: type) -> np.ndarray:
    """One column of the parts, concatenated (empty, of ``dtype``, when there are none)."""
    return np.concatenate([part[column] for part in parts]).astype(dtype) if parts else np.zeros(0, dtype)
