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

import collections
import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from regspeed.errors import ConfigError
from regspeed.study import files
from regspeed.study.store import (
    BatchRow,
    CellRow,
    CurveArrays,
    RunRow,
    Store,
    UnreadableCheckpointError,
    read_checkpoint,
)

if TYPE_CHECKING:
    import pandas

FORMATS = ("csv", "npz")
DEFAULT_SPEED_METRICS = ("score", "steps", "eval_score", "eval_steps")  # stores that do not record theirs
DIAGNOSTIC_METRICS = (  # drawn when recorded (report/evidence.py: DIAGNOSTICS)
    "weight_l2",
    "near_zero_fraction",
    "grad_cosine",
    "levels_gap",
    "dormant_fraction",
    "dormant_fraction_0025",
    "feature_srank",
    "effective_lr",
)


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
    cell: str = "all"  # the label of the cell (a combination of factor values) this data is of
    tuning: TuningChoice | None = None  # a tuned study: what its tuning chose, of this cell only (one in cells)
    phase_steps: int = 0  # a changing world ([config.schedule]): steps (budget units) per phase; 0: stationary
    phase_changes: tuple[str, ...] = ()  # what changes at each phase boundary ([config.schedule] changes)

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


def learner_facts(store: Store, task: str | None = None) -> LearnerFacts:
    """The declarations of the study's learner (or of ``task``'s: a cell's; an unknown task:
    labels by name, not watchable, progress by its first speed metric)."""
    from regspeed.learn import registry

    meta = store.meta()
    learner = registry.LEARNERS.get(task or json.loads(meta["spec_json"]).get("task", ""))
    if learner is None:
        return LearnerFacts({}, False, _speed_metrics(meta)[0])
    return LearnerFacts(learner.labels(), learner.play is not None, learner.progress_metric)


@dataclasses.dataclass(frozen=True)
class TunedCondition:
    """One condition's tuning in one cell: its score at each candidate, one per tuning seed
    (None where the run failed or recorded nothing), and the candidate it keeps."""

    condition: str
    scores: list[list[float | None]]  # [candidate][tuning seed]
    chosen: int


@dataclasses.dataclass(frozen=True)
class CellTuning:
    """The tuning of one cell of a tuned study: each of its conditions, in study order."""

    label: str
    conditions: list[TunedCondition]


@dataclasses.dataclass(frozen=True)
class TuningChoice:
    """What a tuned study's tuning runs chose: by ``criterion`` (``auc`` or ``final``) of
    ``metric`` on the tuning ``seeds``, a candidate (settings, e.g. ``{"learning_rate":
    0.001}``) for each condition of each cell. Stored with the study (meta ``tuning``)."""

    criterion: str
    metric: str
    seeds: list[int]
    candidates: list[dict[str, Any]]
    cells: list[CellTuning]

    def values(self, cell: int, condition: str) -> dict[str, Any]:
        """The settings ``condition`` of ``cell`` is evaluated with."""
        tuned = next(c for c in self.cells[cell].conditions if c.condition == condition)
        return self.candidates[tuned.chosen]

    def to_json(self) -> str:
        """As stored."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TuningChoice:
        """As :meth:`to_json` wrote it."""
        data = json.loads(text)
        cells_ = [CellTuning(c["label"], [TunedCondition(**t) for t in c["conditions"]]) for c in data.pop("cells")]
        return cls(**data, cells=cells_)


def tuning(store: Store) -> TuningChoice | None:
    """A tuned study's choice (None: not a tuned study, or still tuning)."""
    stored = store.meta().get("tuning")
    return None if stored is None else TuningChoice.from_json(stored)


def tuning_pending(store: Store) -> bool:
    """A tuned study whose tuning runs have not all finished: nothing to evaluate yet."""
    meta = store.meta()
    return "tuning" not in meta and json.loads(meta["spec_json"]).get("tuning") is not None


def read_once(store: Store) -> Any:
    """``store`` with its whole-study reads kept: :func:`load` of one cell reads every run
    and each metric's curves of the whole study, so loading every cell through it reads
    them once instead of once per cell."""
    return _ReadOnce(store)


class _ReadOnce:
    KEPT = frozenset({"meta", "cells", "conditions", "runs", "batches", "metric_names", "curve_arrays"})

    def __init__(self, store: Store) -> None:
        self._store = store
        self._kept: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name not in self.KEPT:
            return found

        def kept(*args: Any) -> Any:
            key = (name, *args)
            if key not in self._kept:
                self._kept[key] = found(*args)
            return self._kept[key]

        return kept


def cells(store: Store) -> list[str]:
    """The labels of a study's cells, in order (``["all"]`` for a study without factors)."""
    return [cell.label for cell in store.cells()]


def load(store: Store, metrics: tuple[str, ...] | None = None, cell: int = 0) -> StudyData:
    """Read one cell of a study once (a study without factors has one, 0): its facts, runs
    and the curves of ``metrics`` that were recorded (default: its speed metrics and the
    report's diagnostic curves)."""
    from regspeed.study import spec as spec_module

    meta = store.meta()
    cell_row = _cell_row(store, cell)
    several = len(store.cells()) > 1
    spec = json.loads(cell_row.spec_json if several else meta["spec_json"])
    filled = spec_module.with_added_defaults(spec)
    every_run = store.runs()
    runs = [run for run in every_run if run.cell == cell]
    conditions = [condition for condition in store.conditions() if condition["cell"] == cell]
    in_cell = {run.batch for run in runs}
    batches = [batch for batch in store.batches() if batch.batch_id in in_cell]  # some may hold other cells' runs too
    cell_metrics, cell_budget = _cell_facts(spec) if several else (_speed_metrics(meta), 0)
    speed_metrics = cell_metrics
    wanted = (*speed_metrics, *DIAGNOSTIC_METRICS) if metrics is None else metrics
    recorded = set(store.metric_names())
    curves_by_metric = {}
    for metric in dict.fromkeys(wanted):
        if metric in recorded:
            arrays = store.curve_arrays(metric)
            curves_by_metric[metric] = _curves(_of_runs(arrays, runs) if several else arrays, runs, conditions)
    totals = {batch.batch_id: batch.total_updates for batch in batches}
    facts = learner_facts(store, spec.get("task"))
    budget = cell_budget if several else int(meta.get("budget_steps") or 0)
    return StudyData(
        name=spec.get("name", "study"),
        task=spec.get("task", ""),
        budget_steps=budget or _largest_step(curves_by_metric),
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
        wall_seconds=_cell_wall_seconds(every_run, batches, cell),
        versions=json.loads(meta.get("versions", "{}")),
        spec_toml=meta.get("spec_toml", ""),
        metric_labels=facts.metric_labels,
        watchable=facts.watchable,
        progress_metric=facts.progress_metric,
        cell=cell_row.label,
        tuning=_cell_tuning(meta, cell),
        phase_steps=_phase_steps(spec),
        phase_changes=_phase_changes(spec),
    )


def _cell_wall_seconds(runs: list[RunRow], batches: list[BatchRow], cell: int) -> float:
    """The training time of a cell's runs: each batch's time shared out by its runs (a batch
    may hold runs of several cells)."""
    sizes = collections.Counter(run.batch for run in runs)
    of_cell = collections.Counter(run.batch for run in runs if run.cell == cell)
    return sum(batch.wall_seconds * of_cell[batch.batch_id] / max(1, sizes[batch.batch_id]) for batch in batches)


def _phase_steps(spec: dict[str, Any]) -> int:
    """A changing world's phase length in budget units, from a stored spec (0: stationary)."""
    schedule = (spec.get("config") or {}).get("schedule") or {}
    steps = schedule.get("phase_steps", 0) if isinstance(schedule, dict) else 0
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 0


def _phase_changes(spec: dict[str, Any]) -> tuple[str, ...]:
    """What a changing world's stored spec changes at each boundary (empty: stationary)."""
    schedule = (spec.get("config") or {}).get("schedule") or {}
    changes = schedule.get("changes", ()) if isinstance(schedule, dict) and _phase_steps(spec) else ()
    return tuple(str(change) for change in changes) if isinstance(changes, list | tuple) else ()


def _cell_tuning(meta: dict[str, str], cell: int) -> TuningChoice | None:
    """A tuned study's choice for one cell (its ``cells`` holds that cell only)."""
    if "tuning" not in meta:
        return None
    choice = TuningChoice.from_json(meta["tuning"])
    return dataclasses.replace(choice, cells=[choice.cells[cell]])


def _cell_row(store: Store, cell: int) -> CellRow:
    found = {row.cell_id: row for row in store.cells()}
    if cell not in found:
        raise ConfigError("cell", f"the study has cells 0 .. {len(found) - 1} (got {cell})")
    return found[cell]


def _cell_facts(spec: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """A cell's speed metrics and its budget as trained (whole updates, in its step unit),
    from its stored spec, validated once."""
    from regspeed.learn import regularizers as regs
    from regspeed.study import spec as spec_module

    validated = spec_module.validate(spec_module.with_added_defaults(spec))
    learner = spec_module.learner_of(validated)
    setup = spec_module.setup(validated, regs.Regularizer())
    return learner.speed_metrics_of(setup), learner.total_updates(setup) * learner.steps_per_update(setup)


def _of_runs(arrays: CurveArrays, runs: list[RunRow]) -> CurveArrays:
    """The arrays of ``runs`` only (one cell's), in the same layout."""
    keep = np.isin(arrays.runs, np.asarray([run.run_id for run in runs], np.int64))
    counts = np.diff(arrays.offsets)
    values_kept = np.repeat(keep, counts)
    offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(arrays.offsets.dtype)
    steps = arrays.steps[values_kept]
    return CurveArrays(arrays.runs[keep], offsets, steps, arrays.values[values_kept], np.unique(steps))


def speed_metrics(store: Store) -> tuple[str, ...]:
    """The metrics whose learning speed the study measures (its task's), in the task's order."""
    return _speed_metrics(store.meta())


def _speed_metrics(meta: dict[str, str]) -> tuple[str, ...]:
    return tuple(json.loads(meta["speed_metrics"])) if "speed_metrics" in meta else DEFAULT_SPEED_METRICS


def _largest_step(curves_by_metric: dict[str, list[ConditionCurves]]) -> int:
    """The last step any loaded curve reached (at least 1)."""
    return max((int(c.steps[-1]) for per in curves_by_metric.values() for c in per if len(c.steps)), default=1)


def curves(store: Store, metric: str, cell: int = 0) -> list[ConditionCurves]:
    """Per condition (study order) of a cell, the metric's curves of its runs on a common step axis."""
    _cell_row(store, cell)
    runs = [run for run in store.runs() if run.cell == cell]
    conditions = [condition for condition in store.conditions() if condition["cell"] == cell]
    arrays = store.curve_arrays(metric)
    return _curves(_of_runs(arrays, runs) if len(store.cells()) > 1 else arrays, runs, conditions)


def _curves(arrays: CurveArrays, runs: list[RunRow], conditions: list[dict]) -> list[ConditionCurves]:
    """One metric's arrays as a table per condition on the union of its steps (NaN where a
    run has no value), rows in the order of ``runs``."""
    steps = arrays.axis
    table = np.full((len(runs), len(steps)), np.nan)
    if len(arrays.runs):
        row_of = {run.run_id: row for row, run in enumerate(runs)}
        rows = np.asarray([row_of[run] for run in arrays.runs.tolist()], np.int64)
        counts = np.diff(arrays.offsets)
        if (counts == len(steps)).all():  # every run has a value at every step (steps ascending: the axis)
            table[rows] = arrays.values.reshape(len(rows), len(steps))
        else:
            table[np.repeat(rows, counts), np.searchsorted(steps, arrays.steps)] = arrays.values
    result = []
    for condition in [c["name"] for c in conditions]:
        members = np.asarray([row for row, run in enumerate(runs) if run.condition == condition], np.int64)
        contiguous = len(members) and members[-1] - members[0] == len(members) - 1
        values = table[members[0] : members[-1] + 1] if contiguous else table[members]  # one table, viewed
        result.append(ConditionCurves(condition, [runs[row].seed for row in members.tolist()], steps, values))
    return result


def export(store: Store, path: Path, format: str, metric: str = "score", cell: int = 0) -> Path:
    """Write the curves to ``path``: ``csv`` (long form, every metric; a study with factors
    has a first column ``cell``) or ``npz`` (one metric of cell ``cell``, rliable-shaped
    ``[runs, 1, points]`` per condition, plus its ``steps`` axis). The file is replaced
    atomically and never written through a symbolic link (one at ``path`` is refused); it is
    streamed into a temporary file, so a store found damaged midway leaves ``path`` as it was."""
    if format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)} (got {format!r})")
    files.refuse_link(path, "out")
    files.refuse_unwritable(path.parent)
    if format == "csv":
        _export_csv(store, path)
        return path
    if metric not in store.metric_names():
        raise ConfigError("metric", f"no values of {metric!r}; choose one of {', '.join(store.metric_names())}")
    per_condition = curves(store, metric, cell)
    arrays = {curve.condition: curve.values[:, None, :] for curve in per_condition}
    if "steps" in arrays:
        raise ConfigError("metric", "a condition is named 'steps', which the npz format reserves")
    with files.replacing(path, "out") as file:
        np.savez(file, steps=per_condition[0].steps, **arrays)
    return path


# ---------------------------------------------------------------------------- CSV text, many lines at once

CSV_PIECE = 1 << 16  # values formatted at once: their arrays stay in the CPU's caches
CSV_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _export_csv(store: Store, path: Path) -> None:
    """Every metric's values as CSV lines (:class:`CsvLines`), by metric, run and step, a piece
    at a time: the pieces formatted by :data:`CSV_THREADS` threads (NumPy works without
    Python's lock), written in order as they come, the next metric read meanwhile."""
    labels = {cell.cell_id: cell.label for cell in store.cells()}
    several = len(labels) > 1  # a study with factors: each line names its cell first
    names = {run.run_id: ((labels[run.cell],) if several else ()) + (run.condition, run.seed) for run in store.runs()}
    with files.replacing(path, "out") as file, ThreadPoolExecutor(CSV_THREADS) as pool:
        file.write(_csv_row([*(["cell"] if several else []), "condition", "seed", "metric", "step", "value"]))
        pending: collections.deque = collections.deque()
        for name in store.metric_names():
            arrays = store.curve_arrays(name)
            lines = CsvLines([_csv_row([*names[run], name, 0, 0])[:-5] for run in arrays.runs.tolist()])
            run_index = np.repeat(np.arange(len(arrays.runs)), np.diff(arrays.offsets))
            for start in range(0, len(run_index), CSV_PIECE):
                piece = slice(start, start + CSV_PIECE)
                pending.append(pool.submit(lines, run_index[piece], arrays.steps[piece], arrays.values[piece]))
                while len(pending) > 2 * CSV_THREADS:
                    file.write(pending.popleft().result())
        while pending:
            file.write(pending.popleft().result())


def _csv_row(fields: list[object]) -> bytes:
    """One CSV line as :mod:`csv` writes it (quoted where needed, ``\r\n``), as UTF-8."""
    text = io.StringIO()
    csv.writer(text).writerow(fields)
    return text.getvalue().encode()


class CsvLines:
    """CSV lines ``texts[run_index[i]] + f"{steps[i]},{values[i]:.9g}\r\n"``, many at a time:
    ``texts`` are their beginnings (``condition,seed,metric,`` as :mod:`csv` writes them).

    Called with the lines' run indexes, steps and values (from any thread), it gives their
    text, byte for byte what :mod:`csv` and Python's ``format`` write a line at a time, in
    about a sixth of the time. The nine significant digits of
    each value are found with NumPy (``value * 10**(8 - k)`` rounded, checked to be far from
    a tie: a value that is not, or is not finite, or has an exponent beyond 99, or a step
    that is negative or of more than 8 digits, is formatted by Python instead), and each
    line's text is laid out as two 64-bit words of characters (:data:`_LAYOUT`, per exponent
    and number of digits). The words are written at each line's offset, in an order where
    every byte a word writes beyond its line's end (at most 7) is written again by the next
    line's step and beginning, which come last."""

    def __init__(self, texts: list[bytes]) -> None:
        self.texts = texts
        self.lengths = np.asarray([len(text) for text in texts], np.int64)
        # each text as windows of the shortest's width, the last ending where the text ends
        self.width = int(self.lengths.min()) if texts else 1
        self.windows = [
            (
                np.minimum(self.width * window, self.lengths - self.width),
                np.frombuffer(
                    b"".join(text[min(self.width * window, len(text) - self.width) :][: self.width] for text in texts),
                    f"V{self.width}",
                ),
            )
            for window in range(-(-int(self.lengths.max(initial=1)) // self.width))
        ]
        self.whole = {}  # length -> (the texts of that length as one record each, the record of each text)
        for length in np.unique(self.lengths).tolist():
            of_length = np.flatnonzero(self.lengths == length)
            record = np.zeros(len(texts), np.int64)
            record[of_length] = np.arange(len(of_length))
            self.whole[length] = (np.frombuffer(b"".join(texts[i] for i in of_length.tolist()), f"V{length}"), record)

    def __call__(self, run_index: np.ndarray, steps: np.ndarray, values: np.ndarray) -> memoryview:
        if len(values) == 0:
            return memoryview(b"")
        if int(self.lengths.min()) < 7:  # too short to take what a line writes beyond its end
            return memoryview(_csv_lines_one_by_one(self.texts, run_index, steps, values))
        values = np.asarray(values, np.float64)
        steps = np.asarray(steps, np.int64)
        with np.errstate(all="ignore"):
            digits, exponents, fast = _significant_digits(values)
        first = digits // 100_000_000
        rest = digits - first * 100_000_000  # the other eight digits
        high = rest // 10_000
        low = rest - high * 10_000
        rest_text = np.take(_DIGITS4, high, mode="clip") | (np.take(_DIGITS4, low, mode="clip") << _U(32))
        zeros = np.take(_TRAILING_ZEROS4, low, mode="clip")
        zeros += (low == 0) * np.take(_TRAILING_ZEROS4, high, mode="clip")
        zero = values == 0
        key = np.where(fast & ~zero, (exponents + 99) * 10 + (9 - zeros), _ZERO_KEY)
        fast |= zero
        low_word, high_word, text_length = _text_words(first, rest_text, key)
        negative = np.signbit(values).astype(np.int64)
        step_length = np.ones(len(steps), np.int64)
        largest = int(steps.max())
        power = 10
        while power <= min(largest, 10**7):
            step_length += steps >= power
            power *= 10
        line_prefix = np.take(self.lengths, run_index)
        length = line_prefix + step_length + 1 + negative + text_length + 2
        slow = ~fast
        if largest >= 10**8 or int(steps.min()) < 0:
            slow |= (steps < 0) | (steps >= 10**8)
        slow_rows = np.flatnonzero(slow)
        slow_text = [
            f"{step},{value:.9g}\r\n".encode()
            for step, value in zip(steps[slow_rows].tolist(), values[slow_rows].tolist(), strict=True)
        ]
        if len(slow_rows):
            length[slow_rows] = line_prefix[slow_rows] + np.asarray([len(text) for text in slow_text])
            steps = np.where(slow, 0, steps)
        starts = np.cumsum(length)
        total = int(starts[-1])
        starts += _MARGIN - length
        out = bytearray(_MARGIN + total + 16)
        comma = starts + line_prefix + step_length
        text = comma + 1 + negative
        _at(out, "<u2")[comma] = np.take(_COMMA_SIGN, negative)  # "," then "-" (or a byte the text writes)
        words = _at(out, "<u8")
        words[text + 8 * (text_length > 6)] = high_word
        words[text] = low_word
        thousands = steps // 10_000  # the step's eight digits, zero-padded, ending at its comma
        words[comma - 8] = np.take(_DIGITS4, thousands, mode="clip") | (
            np.take(_DIGITS4, steps - thousands * 10_000, mode="clip") << _U(32)
        )
        shortest, longest = int(line_prefix.min()), int(line_prefix.max())
        if shortest == longest:  # usually: one record each
            table, record = self.whole[shortest]
            _at(out, f"V{shortest}")[starts] = np.take(table, np.take(record, run_index))
        else:  # windows of the shortest text's width, the last ending where each text ends
            beginnings = _at(out, f"V{self.width}")
            for window, (offsets, table) in enumerate(self.windows):
                beginnings[starts + np.take(offsets, run_index) if window else starts] = np.take(table, run_index)
        for row, line in zip(slow_rows.tolist(), slow_text, strict=True):
            begin = int(starts[row] + line_prefix[row])
            out[begin : begin + len(line)] = line
        return memoryview(out)[_MARGIN : _MARGIN + total]


def _csv_lines_one_by_one(prefixes: list[bytes], run_index: np.ndarray, steps: np.ndarray, values: np.ndarray) -> bytes:
    """:class:`CsvLines` in Python, a line at a time."""
    return b"".join(
        prefixes[run] + f"{step},{value:.9g}\r\n".encode()
        for run, step, value in zip(run_index.tolist(), steps.tolist(), values.tolist(), strict=True)
    )


def _significant_digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(digits, exponent, fast)``: each value's nine significant digits rounded to nearest
    (an integer from 10**8 to 10**9 - 1) and the decimal exponent of the first, where ``fast``
    (the value is finite, not zero, its exponent within 99, and the scaled value far from a
    tie, so that the rounding is the one of its exact binary value)."""
    size = np.abs(values)
    binary = (size.view(np.int64) >> 52) - 1023
    scale = 408 - ((binary * 78913) >> 18)  # 400 + 8 - floor(binary * log10(2)): off by one at most
    scaled = size * np.take(_POWERS, scale)
    scale += (scaled < 1e8).view(np.int8) - (scaled >= 1e9).view(np.int8)
    scaled = size * np.take(_POWERS, scale)  # in [1e8, 1e9), relative error below 3e-16
    whole = np.floor(scaled)
    fraction = scaled - whole
    digits = whole.astype(np.int64) + (fraction >= 0.5)
    carry = digits >= 1_000_000_000  # 999999999.5 and up: 1 followed by eight zeros, one exponent up
    digits -= carry * 900_000_000
    exponents = 408 - scale + carry
    fast = (np.abs(fraction - 0.5) >= 1e-5) & (digits >= 100_000_000) & (np.abs(exponents) <= 99)
    digits *= fast  # zero (whose text is "0") and those formatted by Python
    return digits, exponents, fast


def _text_words(first: np.ndarray, rest_text: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's text and ``\r\n`` as two little-endian 64-bit words of characters, and
    the text's length: its nine digits (``first`` and the eight characters ``rest_text``) laid
    out as :data:`_LAYOUT` says for its ``key``."""
    layout = {name: np.take(column, key) for name, column in _LAYOUT.items()}
    shift = layout["lead_bits"]  # "0.000" before the digits of 1e-4 <= |value| < 1
    low = layout["lead"] | ((48 + first).astype(_U) << shift) | (rest_text << (shift + _U(8)))
    high = rest_text >> (_U(56) - shift)
    moved = low & layout["after_point"]  # the digits after the decimal point's place: one character on
    low = (low & ~layout["after_point"]) | (moved << _U(8)) | layout["point_low"]
    high = (high << layout["high_shift"]) | (moved >> _U(56)) | layout["point_high"]
    low &= layout["shown_low"]  # no trailing zeros
    high &= layout["shown_high"]
    shift = layout["end_bits"]  # then "e-05" where written so, and "\r\n"
    low |= layout["end"] << shift
    high |= (layout["end"] >> (_U(64) - shift)) | (layout["end"] << (shift - _U(64)))
    return low, high, layout["length"].astype(np.int64)


def _layout() -> dict[str, np.ndarray]:
    """How ``f"{value:.9g}"`` lays out the nine significant digits of a value, per key
    ``(exponent + 99) * 10 + significant digits`` (a last key for zero): what comes before
    them ("0.00"), where the decimal point goes, how many are shown, and what comes after
    ("e+12", then ``\r\n``), as masks and characters of a 128-bit little-endian text."""
    columns: dict[str, list[int]] = {}

    def add(point: int, shown: int, lead: bytes, exponent: bytes) -> None:
        """Digits ``[0, point)`` before a point (none if ``shown <= point``), ``shown`` digits
        shown, ``lead`` before them and ``exponent`` after them."""
        dotted = shown > point
        text = len(lead) + shown + dotted
        for name, value in (
            ("point", ord(".") << (8 * point) if dotted else 0),
            ("shown", (1 << (8 * text)) - 1),
        ):
            columns.setdefault(f"{name}_low", []).append(value & _ALL_BITS)
            columns.setdefault(f"{name}_high", []).append((value >> 64) & _ALL_BITS)
        for name, value in (
            ("lead_bits", 8 * len(lead)),
            ("lead", int.from_bytes(lead, "little")),
            ("after_point", (_ALL_BITS << (8 * point)) & _ALL_BITS if dotted else 0),
            ("high_shift", 8 if dotted else 0),
            ("end_bits", 8 * text),
            ("end", int.from_bytes(exponent + b"\r\n", "little")),
            ("length", text + len(exponent)),
        ):
            columns.setdefault(name, []).append(value)

    for exponent in range(-99, 100):
        for significant in range(10):
            significant = max(significant, 1)
            if 0 <= exponent <= 8:  # 123.45
                add(exponent + 1, max(significant, exponent + 1), b"", b"")
            elif -4 <= exponent < 0:  # 0.0012345
                add(9, significant, b"0.000"[: 1 - exponent], b"")
            else:  # 1.2345e-05
                add(1, significant, b"", f"e{exponent:+03d}".encode())
    add(9, 1, b"", b"")  # zero: "0" (its digits are zeros)
    return {name: np.asarray(value, "<u8") for name, value in columns.items()}


_U = np.uint64
_ALL_BITS = 2**64 - 1
_MARGIN = 16  # bytes before the first line: what its step's word writes before it
_COMMA_SIGN = np.asarray([0x2C2C, 0x2D2C], "<u2")  # ",", then "-" if negative
_POWERS = np.asarray([float(f"1e{power}") for power in range(-400, 401)])  # correctly rounded
_DIGITS4 = np.asarray([int.from_bytes(f"{number:04d}".encode(), "little") for number in range(10_000)], "<u8")
_TRAILING_ZEROS4 = np.asarray(
    [4 if number == 0 else len(str(number)) - len(str(number).rstrip("0")) for number in range(10_000)], np.int64
)
_LAYOUT = _layout()
_ZERO_KEY = len(_LAYOUT["length"]) - 1


def _at(buffer: bytearray, dtype: str) -> np.ndarray:
    """``buffer`` as items of ``dtype`` starting at every byte (overlapping): an item written at
    index ``i`` is written at byte ``i``."""
    width = np.dtype(dtype).itemsize
    return np.ndarray(shape=(len(buffer) - width + 1,), dtype=dtype, buffer=buffer, strides=(1,))


def episode(
    store: Store, condition: str, seed: int, episode_seed: int = 0, max_steps: int = 500, cell: int = 0
) -> tuple:
    """One greedy episode of a trained run (of cell ``cell``), from its batch's latest
    checkpoint: ``(env config, states)``. A checkpoint that is missing, unreadable or not of
    this batch is :class:`UnreadableCheckpointError`."""
    import jax

    from regspeed.learn import checkpoint
    from regspeed.learn.regularizers import Regularizer
    from regspeed.study import spec as spec_module

    cell_row = _cell_row(store, cell)
    names = [c["name"] for c in store.conditions() if c["cell"] == cell]
    if condition not in names:
        raise ConfigError("condition", f"no condition {condition!r}; choose one of {', '.join(names)}")
    every_run = store.runs()
    runs = [r for r in every_run if r.cell == cell]
    run = next((r for r in runs if r.condition == condition and r.seed == seed), None)
    if run is None:
        seeds = sorted(r.seed for r in runs if r.condition == condition)
        raise ConfigError("seed", f"{condition} has no seed {seed}; its seeds are {seeds}")
    batch = next(b for b in store.batches() if b.batch_id == run.batch)
    if batch.checkpoint is None:
        raise ConfigError("condition", f"{condition} seed {seed} has not trained yet; run the study first")
    stored = cell_row.spec_json if len(store.cells()) > 1 else store.meta()["spec_json"]
    spec = spec_module.validate(json.loads(stored))
    learner = spec_module.learner_of(spec)
    if learner.play is None:
        raise ConfigError("study", f"{spec.task} is not a game: there is nothing to watch")
    regularizer = Regularizer(
        **next(c["regularizer"] for c in store.conditions() if c["name"] == condition and c["cell"] == cell)
    )
    setup = spec_module.setup(spec, regularizer)
    arrays = read_checkpoint(store.folder, batch.checkpoint)
    runs_in_batch = sum(r.batch == run.batch for r in every_run)  # a batch may hold other cells' runs too
    template = learner.start(setup, [0] * runs_in_batch, np.zeros(runs_in_batch))
    try:
        carry = checkpoint.from_arrays(arrays, template, f"batch {run.batch}")
    except (KeyError, ValueError) as error:  # a readable file, but not this batch's carry
        raise UnreadableCheckpointError(store.folder, batch.checkpoint, f"does not fit its batch ({error})") from None
    params = jax.tree.map(lambda leaf: leaf[run.position], carry.params)
    return learner.play(setup.config, params, jax.random.key(episode_seed), max_steps)


# ---------------------------------------------------------------------------- DataFrames (the `pandas` extra)

CELL = "all"  # the one cell of a study without factors
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
    no values is a :class:`ConfigError`. ``cell`` is the label of the run's cell (its factor
    values, ``board=6, algorithm=ppo``; :data:`CELL`, ``"all"``, in a study without factors).
    Needs pandas (``pip install 'regspeed[pandas]'``)."""
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
    runs = store.runs()  # by cell, condition (study order), then seed
    labels = {cell.cell_id: cell.label for cell in store.cells()}
    position = {run.run_id: index for index, run in enumerate(runs)}
    every = [store.curve_arrays(metric) for metric in wanted]
    # a segment: one run's values of one metric (steps ascending), ordered by run (study order), then metric
    segment_runs = np.concatenate([[position[run] for run in arrays.runs.tolist()] for arrays in every] or [[]])
    segment_metrics = np.concatenate([np.full(len(arrays.runs), index) for index, arrays in enumerate(every)] or [[]])
    counts = np.concatenate([np.diff(arrays.offsets) for arrays in every] or [[]]).astype(np.int64)
    sources = np.cumsum(counts) - counts  # where each segment starts in the metrics' arrays, joined
    order = np.lexsort((segment_metrics, segment_runs))
    sources, counts = sources[order], counts[order]
    gather = np.repeat(sources - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
    run_index = np.repeat(segment_runs[order].astype(np.int64), counts)
    metric_index = np.repeat(segment_metrics[order].astype(np.int64), counts)
    steps = np.concatenate([arrays.steps for arrays in every] or [np.zeros(0, np.int64)])[gather]
    values = np.concatenate([arrays.values for arrays in every] or [np.zeros(0)])[gather]
    columns = {
        "cell": np.asarray([labels[run.cell] for run in runs] or [CELL], dtype=object)[run_index],
        "condition": np.asarray([run.condition for run in runs] or [""], dtype=object)[run_index],
        "seed": np.asarray([run.seed for run in runs] or [0], dtype=np.int64)[run_index],
        "metric": np.asarray(wanted or [""], dtype=object)[metric_index],
        "step": steps.astype(np.int64),
        "value": values.astype(np.float64),
    }
    return pd.DataFrame(columns, columns=list(FRAME_COLUMNS))
