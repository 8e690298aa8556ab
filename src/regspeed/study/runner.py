"""Running a study: plan the runs into batches, execute them in chunks, store every chunk.

- **Plan.** Conditions x seeds become runs. Runs that share compiled code form a group: the
  same learner configuration (its regularizer's static part, kind and mask, included), the
  same number of updates and evaluation. Runs of different cells of a study with factors
  share it where the cells' settings differ only in traced values: the learning rate (a
  tuning candidate, a ``learning_rate`` factor, or what a tuned condition kept). A group is
  split into batches small enough for ``execution.memory_cap_gb``. Within a batch, strength,
  learning rate and seed are vmapped. The plan is stored with the study and never recomputed.
- **Execute.** :func:`execute_batch` is a generator that trains one batch from its last
  checkpoint and yields after every chunk (metrics, evaluations, the carry as arrays). The
  ``local`` backend iterates it in this process; the ``ray`` backend runs it as a Ray task
  (a streaming generator) per batch, several at once.
- **Store.** Only the driver writes: for every chunk, the checkpoint file first, then one
  transaction with the curves and progress (:meth:`Store.record_chunk`).
- **Waves.** A sequential study (``execution.sequential``) is created with its first wave
  of seeds only. Once every planned batch has finished, the caller's ``next_wave`` says
  which regularized conditions need more seeds (the decision belongs to the analysis); the
  baseline and those conditions get the next :meth:`Spec.wave_seeds`, planned as above and
  added in one transaction (:meth:`Store.add_wave`), until it says none or ``max_seeds``
  is reached. The current look is the baseline's planned seeds over ``seeds``.
- **Resume.** A store is checked for damage (:meth:`Store.open`) before it is written again.
  Only a batch's latest checkpoint is kept, so an unfinished batch whose checkpoint is
  missing or unreadable restarts from scratch (its stored chunks removed in one
  transaction) with a warning; being deterministic from its seeds, it ends as it would have.
- **Live curves.** Unless turned off (``tensorboard=False``), each chunk's stored points are
  also appended, once its transaction has committed, to TensorBoard event files in
  ``FOLDER/tensorboard/<condition>/seed-<s>`` (:mod:`~regspeed.study.live`). A committed chunk
  is never recomputed, so a resumed study writes no step twice; a kill between commit and
  write loses at most that chunk's points in TensorBoard, never in the store. Turning it off
  changes no result: it is an argument, not part of the spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from regspeed import __version__, compile_cache
from regspeed.errors import ConfigError
from regspeed.learn import checkpoint
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs
from regspeed.safe_text import printable
from regspeed.study import files, live, results
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module
from regspeed.study.spec import Spec

BACKENDS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class BatchJob:
    """Everything needed to run one batch anywhere (picklable, for Ray)."""

    batch_id: int
    spec: dict[str, Any]  # the spec as validated data
    regularizer: dict[str, Any]  # fields of regs.Regularizer
    seeds: list[int]  # one per run, in batch order
    strengths: list[float]  # one per run, in batch order
    start: dict[str, np.ndarray] | None  # checkpoint arrays to resume from, or None
    learning_rates: list[float] | None = None  # one per run, in batch order; None: the spec's


@dataclasses.dataclass(frozen=True)
class ChunkOutcome:
    """What a batch reports after each chunk."""

    batch_id: int
    updates_done: int
    total_updates: int
    steps_per_update: int
    metrics: dict[str, np.ndarray]  # [runs, chunk]
    evaluations: list[tuple[int, dict[str, np.ndarray]]]
    carry: dict[str, np.ndarray]  # checkpoint arrays
    newly_failed: dict[int, str]
    seconds: float


@dataclasses.dataclass(frozen=True)
class StudyOutcome:
    """How a call of :func:`run` ended."""

    folder: Path
    already_finished: bool
    runs_total: int
    runs_failed: int
    seconds: float


# --------------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class Run:
    """One planned run: a condition (of cell ``cell``) at its strength, with one seed."""

    condition: str
    strength: float
    seed: int
    cell: int = 0


@dataclasses.dataclass(frozen=True)
class Batch:
    """Runs trained together by one compiled program: they share the regularizer's static
    part and the learner's configuration (``spec``: the first run's cell's, which builds
    it); strength, learning rate and seed are vmapped."""

    regularizer: regs.Regularizer
    runs: tuple[Run, ...]
    spec: Spec


@dataclasses.dataclass(frozen=True)
class Part:
    """Runs to plan: ``conditions`` of cell ``cell``, trained as ``spec`` says (the cell's
    spec, with the settings a tuned condition kept)."""

    cell: int
    spec: Spec
    conditions: list[spec_module.Condition]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study's batches, and the memory they were sized for."""

    batches: tuple[Batch, ...]
    memory_cap_gb: float
    largest_batch_estimate_gb: float


def plan(spec: Spec, conditions: list[spec_module.Condition] | None = None, seeds: list[int] | None = None) -> Plan:
    """Conditions x seeds of a study without factors (or of one cell) as batches
    (:func:`plan_parts`). By default every condition of the spec with the seeds of its
    first wave (:meth:`Spec.seed_list`); a later wave of a sequential study gives its own."""
    chosen = spec_module.conditions(spec) if conditions is None else conditions
    return plan_parts([Part(0, spec, chosen)], spec.seed_list() if seeds is None else seeds)


def plan_parts(parts: list[Part], seeds: list[int]) -> Plan:
    """The parts' conditions x ``seeds`` as batches: one group per compiled program
    (:func:`shared_program`), across parts (cells) where they share it, cut into equal
    batches that fit ``execution.memory_cap_gb`` (the first part's spec's). Runs keep the
    parts' order, then the conditions', then the seeds'."""
    execution = parts[0].spec.execution
    groups: dict[Any, tuple[Spec, regs.Regularizer, list[Run]]] = {}
    for part in parts:
        for condition in part.conditions:
            key = shared_program(part.spec, condition.regularizer)
            _, _, runs = groups.setdefault(key, (part.spec, condition.regularizer, []))
            runs += [Run(condition.name, condition.strength, seed, part.cell) for seed in seeds]
    batches: list[Batch] = []
    cap = execution.memory_cap_gb * 2**30
    largest = 0
    for spec, regularizer, runs in groups.values():
        per_run = spec_module.learner_of(spec).bytes_per_run(spec_module.setup(spec, regularizer).config)
        most = max(1, int(cap // per_run))
        size = math.ceil(len(runs) / math.ceil(len(runs) / most))  # equal batches: fewer compiled shapes
        batches += [Batch(regularizer, tuple(runs[i : i + size]), spec) for i in range(0, len(runs), size)]
        largest = max(largest, size * per_run)
    return Plan(tuple(batches), execution.memory_cap_gb, largest / 2**30)


def shared_program(spec: Spec, regularizer: regs.Regularizer) -> tuple:
    """What selects the compiled program of ``spec``'s runs with ``regularizer``: the task,
    the learner's static configuration (which holds the regularizer), its number of updates
    and the evaluation. The learning rate is not part of it: it is traced (:class:`common.Hparams`)."""
    setup = spec_module.setup(spec, regularizer)
    total = spec_module.learner_of(spec).total_updates(setup)
    return spec.task, setup.config, total, spec.evaluation.model_dump_json()


@dataclasses.dataclass(frozen=True)
class _PlanRows:
    """A plan as the store holds it: batches (condition names, total updates), their runs
    (which name the batches' numbers), and the budget as trained (whole updates, in steps)."""

    batches: list[store_module.PlannedBatch]
    runs: list[store_module.PlannedRun]
    budget_steps: int


def _plan_rows(the_plan: Plan, first_batch: int = 0) -> _PlanRows:
    """The store's rows of ``the_plan``, its batches numbered on from ``first_batch`` (a
    batch's cell: its first run's)."""
    planned = []
    batch_rows = []
    budget_steps = 0
    for batch_id, batch in enumerate(the_plan.batches, start=first_batch):
        learner = spec_module.learner_of(batch.spec)
        setup = spec_module.setup(batch.spec, batch.regularizer)
        total = learner.total_updates(setup)
        budget_steps = max(budget_steps, total * learner.steps_per_update(setup))
        batch_rows.append((list(dict.fromkeys(run.condition for run in batch.runs)), total, batch.runs[0].cell))
        planned += [
            store_module.PlannedRun(run.condition, run.seed, batch_id, position, run.cell)
            for position, run in enumerate(batch.runs)
        ]
    return _PlanRows(batch_rows, planned, budget_steps)


def software_versions() -> dict[str, str]:
    """Versions of what computes the numbers, and the machine."""
    import flax
    import jaxlib
    import optax

    return {
        "regspeed": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": str(os.cpu_count()),
    }


# ------------------------------------------------------------------------ execution


def execute_batch(job: BatchJob, chunk_updates: int) -> Iterator[ChunkOutcome]:
    """Train one batch from its start (fresh, or a checkpoint) to the end, chunk by chunk."""
    spec = spec_module.validate(job.spec)
    learner = spec_module.learner_of(spec)
    setup = spec_module.setup(spec, regs.Regularizer(**job.regularizer))
    carry = learner.start(setup, job.seeds, job.strengths, job.learning_rates)
    if job.start is not None:
        carry = checkpoint.from_arrays(job.start, carry, f"batch {job.batch_id}")
    total = learner.total_updates(setup)
    eval_every = spec.evaluation.every_updates
    started = time.perf_counter()
    for report in training.iterate(learner.trainer, setup.config, carry, total, chunk_updates, eval_every):
        arrays = checkpoint.to_arrays(report.carry)
        now = time.perf_counter()
        yield ChunkOutcome(
            batch_id=job.batch_id,
            updates_done=report.updates_done,
            total_updates=total,
            steps_per_update=learner.steps_per_update(setup),
            metrics=report.metrics,
            evaluations=report.evaluations,
            carry=arrays,
            newly_failed=report.newly_failed,
            seconds=now - started,
        )
        started = now


def _local_outcomes(jobs: list[BatchJob], chunk_updates: int, options: dict[str, Any]) -> Iterator[ChunkOutcome]:
    for job in jobs:
        yield from execute_batch(job, chunk_updates)


def _ray_outcomes(jobs: list[BatchJob], chunk_updates: int, options: dict[str, Any]) -> Iterator[ChunkOutcome]:
    """Each batch a Ray task (a streaming generator); results come back as they are made."""
    try:
        import ray
    except ImportError:
        missing = "ray is not installed: pip install 'regspeed[ray]', or use --backend local"
        raise ConfigError("backend", missing) from None
    if not ray.is_initialized():
        if (options.get("address") or os.environ.get("RAY_ADDRESS") or "local") == "local":
            _start_loopback_ray(ray)
        else:  # joins a cluster the user started (--address, or Ray's RAY_ADDRESS): it listens where they chose
            _join_ray(ray, options.get("address") or os.environ.get("RAY_ADDRESS", ""))
    remote = ray.remote(_execute_batch_list).options(
        num_returns="streaming", num_cpus=options.get("cpus_per_batch", 1), num_gpus=options.get("gpus_per_batch", 0)
    )
    results: queue.Queue[ChunkOutcome | BaseException | None] = queue.Queue()

    cache = compile_cache.setting()  # the workers use the driver's compiled-program cache

    def consume(job: BatchJob) -> None:
        try:
            for reference in remote.remote(job, chunk_updates, cache):
                results.put(ray.get(reference))
        except BaseException as error:  # handed to the driver, which raises it
            results.put(error)
        finally:
            results.put(None)

    threads = [threading.Thread(target=consume, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    remaining = len(threads)
    while remaining:
        item = results.get()
        if item is None:
            remaining -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item


def _join_ray(ray: Any, address: str) -> None:
    """Connect to a running Ray cluster. A cluster on this machine's loopback address is
    reached there: Ray on Linux would otherwise replace the loopback address by the machine's
    external one (see :func:`_start_loopback_ray`) and fail to reach a cluster that listens
    on loopback only."""
    from ray._private import ray_constants

    host = address.rsplit(":", 1)[0].strip("[]")
    cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
    if host in ("127.0.0.1", "localhost", "::1"):
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_switch


def _start_loopback_ray(ray: Any) -> None:
    """Start a new local Ray whose servers listen on loopback only; refuse (and stop it) if they would not.

    Ray binds its servers (GCS, raylet and object manager, workers' gRPC, agents, the autoscaler's
    metrics) to loopback when the node address is loopback, and to all interfaces otherwise. On
    Linux it replaces a loopback node address by the machine's external one unless
    ``ray_constants.ENABLE_RAY_CLUSTER`` is off (its macOS / Windows default; the environment
    variable behind it is read once, at import). No public setting exists, so the switch is off
    only while the node starts; Ray's processes get the address on their command lines.
    """
    import ipaddress

    from ray._private import ray_constants

    cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # "local": a new instance, never one that `ray start` left on this machine
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_switch
    node_address = ray.util.get_node_ip_address()
    try:
        loopback = ipaddress.ip_address(node_address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:  # a Ray version that ignores the switch: fail rather than expose the machine
        ray.shutdown()
        raise ConfigError(
            "backend",
            f"the local Ray started on {node_address}, not on loopback; "
            "start a cluster yourself (`ray start --head`) and pass --address",
        )


def _execute_batch_list(job: BatchJob, chunk_updates: int, cache: str | None = None) -> Iterator[ChunkOutcome]:
    """The Ray task: import regspeed first (XLA flags), use the driver's compile cache (this
    machine's subfolder of it), then run the batch."""
    import regspeed  # noqa: F401

    compile_cache.enable_in_worker(cache)
    yield from execute_batch(job, chunk_updates)


# ------------------------------------------------------------------------------ driver


def _open_or_create(spec: Spec, folder: Path, spec_text: str) -> store_module.Store:
    """The study's store: created with its plan, or opened after checking the spec is the same."""
    normalized = spec_module.normalized(spec)
    if store_module.exists(folder):
        with store_module.Store.open(folder) as store:  # checked for damage before anything else
            stored = json.loads(store.meta()["spec_json"])
        differences = spec_module.differences(stored, normalized)
        if differences:
            shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
            raise ConfigError(
                "spec",
                f"differs from the one {folder} was started with ({shown}); "
                "run it in another folder (--out) or restore the spec",
            )
        return store_module.Store.open(folder, writable=True, check=False)  # checked just above, under the lock
    cells = spec_module.cells(spec)
    conditions, cell_rows = [], []
    for cell in cells:
        conditions += [
            (c.name, c.regularizer.kind, c.strength, json.dumps(dataclasses.asdict(c.regularizer)), cell.index)
            for c in spec_module.conditions(cell.spec)
        ]
        cell_rows.append((cell.label, json.dumps(spec_module.normalized(cell.spec))))
    batches: list[store_module.PlannedBatch] = []
    runs: list[store_module.PlannedRun] = []
    largest = budget_steps = 0.0
    if spec.tuning is None:  # a tuned study's runs are planned once its tuning has chosen (_add_evaluation)
        the_plan = plan_parts([Part(c.index, c.spec, spec_module.conditions(c.spec)) for c in cells], spec.seed_list())
        rows = _plan_rows(the_plan)
        batches, runs = rows.batches, rows.runs
        largest, budget_steps = the_plan.largest_batch_estimate_gb, rows.budget_steps
    facts = {"memory_cap_gb": spec.execution.memory_cap_gb, "largest_batch_estimate_gb": largest}
    meta = {
        "spec_toml": spec_text,
        "spec_json": json.dumps(normalized),
        "versions": json.dumps(software_versions()),
        "plan": json.dumps(facts),
        "budget_steps": str(int(budget_steps)),  # the budget as trained: whole updates (the largest cell's)
        "step_unit": spec_module.learner_of(cells[0].spec).step_unit,
        "speed_metrics": json.dumps(spec_module.speed_metrics(cells[0].spec)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return store_module.Store.create(folder, meta, conditions, batches, runs, cell_rows)


Choose = Callable[[store_module.Store, Spec], results.TuningChoice]  # (tuning store, the tuned study)
CHOOSE_HINT = (
    "pass choose=tuning.choose (from regspeed.analysis import tuning), as `regspeed study` does"
)
TUNING = "tuning"  # a tuned study's tuning runs: a study of their own in this folder of the study's


def _add_evaluation(spec: Spec, store: store_module.Store, choice: results.TuningChoice) -> None:
    """Plan a tuned study's evaluation runs once its tuning has chosen: every condition of
    every cell with its chosen settings on the evaluation seeds (batched across cells and
    kept settings wherever they share a compiled program, :func:`plan_parts`), added with
    the choice in one transaction."""
    options = spec_module.candidates(spec)
    parts = []
    for cell in spec_module.cells(spec):
        chosen = {tuned.condition: tuned.chosen for tuned in choice.cells[cell.index].conditions}
        for index, values in enumerate(options):
            conditions = [c for c in spec_module.conditions(cell.spec) if chosen[c.name] == index]
            if conditions:
                parts.append(Part(cell.index, spec_module.with_values(cell.spec, values), conditions))
    the_plan = plan_parts(parts, spec.seed_list())
    rows = _plan_rows(the_plan)
    largest = the_plan.largest_batch_estimate_gb
    facts = {"memory_cap_gb": spec.execution.memory_cap_gb, "largest_batch_estimate_gb": largest}
    meta = {"plan": json.dumps(facts), "budget_steps": str(int(rows.budget_steps)), "tuning": choice.to_json()}
    store.add_wave(rows.batches, rows.runs, meta)


def _batch_specs(spec: Spec, store: store_module.Store) -> Callable[[int, str], dict[str, Any]]:
    """(cell, condition) -> the spec (as data) its batches run: its cell's, with the settings
    its tuning chose in a tuned study."""
    cells = spec_module.cells(spec)
    cell_specs = [cell.spec.model_dump(mode="json") for cell in cells]
    choice = results.tuning(store)
    if choice is None:
        return lambda cell, condition: cell_specs[cell]
    tuned = {
        (cell.index, c.name): spec_module.with_values(cell.spec, choice.values(cell.index, c.name))
        for cell in cells
        for c in spec_module.conditions(cell.spec)
    }
    return lambda cell, condition: tuned[cell, condition].model_dump(mode="json")


NextWave = Callable[[store_module.Store], list[str]]  # a sequential study: the conditions that need more seeds
NEXT_WAVE_HINT = (
    "pass next_wave=lambda store: sequential.next_wave(results.load(store)) "
    "(from regspeed.analysis import sequential; from regspeed.study import results), "
    "as `regspeed study` does"
)


def planned_seeds(store: store_module.Store) -> dict[str, int]:
    """Condition -> how many seeds are planned for it (all conditions, the baseline first)."""
    counts = {condition["name"]: 0 for condition in store.conditions()}
    for run in store.runs():
        counts[run.condition] += 1
    return counts


def _next_wave_plan(spec: Spec, store: store_module.Store, next_wave: NextWave) -> Plan | None:
    """The plan of a sequential study's next wave, or None when there is none: its last look
    (``max_seeds``) is planned, or ``next_wave`` names no condition. Called once every planned
    batch has finished; the conditions named must still be running (planned at the current
    look) and are taken in study order, so the plan does not depend on the order given."""
    looks = spec.looks()
    counts = planned_seeds(store)
    baseline, *others = spec_module.conditions(spec)
    look = counts[baseline.name] // spec.seeds  # looks planned so far
    if look >= len(looks):
        return None
    wanted = set(next_wave(store))
    problems = [_not_next(name, counts, baseline.name) for name in sorted(wanted)]
    if problems := [problem for problem in problems if problem is not None]:
        raise ValueError(f"next_wave named conditions that cannot have wave {look + 1}: " + "; ".join(problems))
    chosen = [condition for condition in others if condition.name in wanted]
    if not chosen:
        return None
    return plan(spec, [baseline, *chosen], spec.wave_seeds(look))


def _not_next(name: str, counts: dict[str, int], baseline: str) -> str | None:
    """Why a condition named by ``next_wave`` cannot have the next wave, or None if it can:
    the baseline is in every wave, and a condition that has stopped (fewer seeds planned than
    the baseline) gets no more."""
    if name == baseline:
        return f"{name!r} is the baseline, which is in every wave"
    if name not in counts:
        return f"{name!r} is not a condition of the study"
    if counts[name] < counts[baseline]:
        return f"{name!r} stopped at {counts[name]} seeds"
    return None


def _add_next_wave(spec: Spec, store: store_module.Store, next_wave: NextWave | None) -> bool:
    """Add a sequential study's next wave to the store (one transaction), if it has one
    (:func:`_next_wave_plan`); whether it did. Its batches are numbered on from the stored
    ones, and the plan's facts cover every wave (the largest batch of any)."""
    if next_wave is None or not spec.execution.sequential:
        return False
    the_plan = _next_wave_plan(spec, store, next_wave)
    if the_plan is None:
        return False
    meta = store.meta()
    facts = json.loads(meta["plan"])
    facts["largest_batch_estimate_gb"] = max(facts["largest_batch_estimate_gb"], the_plan.largest_batch_estimate_gb)
    rows = _plan_rows(the_plan, first_batch=len(store.batches()))
    budget_steps = max(int(meta["budget_steps"]), rows.budget_steps)
    store.add_wave(rows.batches, rows.runs, {"plan": json.dumps(facts), "budget_steps": str(budget_steps)})
    return True


def _jobs(
    spec: Spec, store: store_module.Store, warn: Callable[[str], None], board: live.Board | None = None
) -> list[BatchJob]:
    """The unfinished batches, each from its last checkpoint (or from scratch, see
    :func:`_resume_point`; a batch restarting from scratch has its runs' event files on
    ``board`` removed first)."""
    conditions = {(c["cell"], c["name"]): c for c in store.conditions()}
    spec_of = _batch_specs(spec, store)
    rate_of = _learning_rates(spec_of, conditions)
    labels = _run_labels(store)
    runs_by_batch: dict[int, list[store_module.RunRow]] = {}
    for run in store.runs():
        runs_by_batch.setdefault(run.batch, []).append(run)
    jobs = []
    batches = store.batches()
    for batch in batches:
        if batch.updates_done >= batch.total_updates:
            continue  # finished: its checkpoint is not needed (it may be gone)
        runs = sorted(runs_by_batch[batch.batch_id], key=lambda run: run.position)
        forget = functools.partial(_forget_live, board, [labels[run.run_id] for run in runs])
        start = _resume_point(store, batch, len(batches), warn, forget)
        jobs.append(
            BatchJob(
                batch_id=batch.batch_id,
                spec=spec_of(runs[0].cell, runs[0].condition),
                regularizer=conditions[runs[0].cell, runs[0].condition]["regularizer"],
                seeds=[run.seed for run in runs],
                strengths=[conditions[run.cell, run.condition]["strength"] for run in runs],
                start=start,
                learning_rates=[rate_of(run.cell, run.condition) for run in runs],
            )
        )
    return jobs


def _learning_rates(
    spec_of: Callable[[int, str], dict[str, Any]], conditions: dict[tuple[int, str], dict[str, Any]]
) -> Callable[[int, str], float]:
    """(cell, condition) -> the learning rate its runs train with (its batch may hold runs
    of other cells, trained at theirs)."""

    @functools.cache
    def rate(cell: int, condition: str) -> float:
        regularizer = regs.Regularizer(**conditions[cell, condition]["regularizer"])
        return spec_module.setup(spec_module.validate(spec_of(cell, condition)), regularizer).learning_rate

    return rate


def _run_labels(store: store_module.Store) -> dict[int, tuple[str, ...]]:
    """run id -> its folder on the live board: ``(<condition>, seed-<s>)``, below its cell's
    label in a study with factors."""
    cells = {cell.cell_id: cell.label for cell in store.cells()}
    several = len(cells) > 1
    return {
        run.run_id: ((live.folder_name(cells[run.cell]),) if several else ()) + live.run_folder(run.seed, run.condition)
        for run in store.runs()
    }


def _resume_point(
    store: store_module.Store,
    batch: store_module.BatchRow,
    batches: int,
    warn: Callable[[str], None],
    before_restart: Callable[[], None] = lambda: None,
) -> dict[str, np.ndarray] | None:
    """The checkpoint arrays an unfinished batch continues from, or None to start afresh.

    A missing or unreadable checkpoint cannot be replaced by an earlier one (only the latest
    is kept), so the batch restarts from scratch: ``before_restart`` runs (the runs' event
    files go: a crash after it restarts the batch again), its curves and progress are
    removed in one transaction, then the unreadable file (a crash between the two leaves it
    to :func:`_remove_stale_checkpoints`). Its runs are deterministic from their seeds, so it
    ends as it would have.
    """
    if batch.checkpoint is None:
        return None
    try:
        return store_module.read_checkpoint(store.folder, batch.checkpoint)
    except store_module.UnreadableCheckpointError as unreadable:
        names = ", ".join(batch.conditions)
        warn(
            printable(
                f"batch {batch.batch_id + 1}/{batches} ({names}) restarts from scratch: its checkpoint "
                f"{unreadable.name} {unreadable.reason}, and a study keeps only a batch's latest checkpoint; "
                "its stored curves are replaced as it reruns"
            )
        )
        before_restart()
        store.restart_batch(batch.batch_id)
        path = files.checkpoint_path(store.folder, batch.checkpoint)
        if path.is_symlink() or path.is_file():
            path.unlink()  # a link is removed itself, never its target
        return None


def _print_warning(message: str) -> None:
    """A warning for the user: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _remove_stale_checkpoints(store: store_module.Store) -> None:
    """Our checkpoint files (and partial ones) that the store does not name: a crash between
    file and transaction. Anything else in ``checkpoints`` is not ours and stays."""
    named = {batch.checkpoint for batch in store.batches()}  # checked names: batches() refuses others
    for path in files.checkpoint_folder(store.folder, create=True).iterdir():
        if files.is_own_checkpoint(path.name) and path.name not in named and (path.is_symlink() or path.is_file()):
            path.unlink()  # a link is removed itself, never its target


def _refuse_foreign_folder(folder: Path) -> None:
    """Refuse, before anything is written, a folder that is neither new, nor empty, nor a
    study store of ours (the store is opened read-only to check)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError("out", f"{folder} exists and is not a folder; choose a folder for the study")
    if store_module.exists(folder):
        store_module.Store.open(folder, check=False).close()  # a study of ours (damage: checked under the lock)
        return
    if foreign := files.foreign_entries(folder):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(
            "out", f"{folder} holds no study but other files ({shown}); choose a new or empty folder for the study"
        )


def _chunk_curves(outcome: ChunkOutcome, alive: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """metric -> (positions, steps, values) of the finite values of runs alive before this chunk."""
    return chunk_curves(outcome.metrics, outcome.evaluations, outcome.updates_done, outcome.steps_per_update, alive)


def chunk_curves(
    metrics: dict[str, np.ndarray],
    evaluations: list[tuple[int, dict[str, np.ndarray]]],
    updates_done: int,
    steps_per_update: int,
    alive: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What the store records of a chunk (and the live curves show): metric -> (positions,
    steps, values) of the finite values of the runs ``alive`` before it, from its per-update
    ``metrics`` ([runs, chunk], ending at ``updates_done``) and its ``evaluations``."""
    curves = {}
    chunk = next(iter(metrics.values())).shape[1]
    first = updates_done - chunk + 1
    update_steps = (np.arange(first, updates_done + 1) * steps_per_update).astype(np.int64)
    for name, values in metrics.items():
        keep = np.isfinite(values) & alive[:, None]
        positions, points = np.nonzero(keep)
        curves[name] = (positions, update_steps[points], values[positions, points].astype(np.float64))
    for at_update, evaluation in evaluations:  # a chunk can hold two: at update 0 and at its end
        for name, values in evaluation.items():
            keep = np.isfinite(values) & alive
            positions = np.flatnonzero(keep)
            steps = np.full(len(positions), at_update * steps_per_update, np.int64)
            found = (positions, steps, values[positions].astype(np.float64))
            if name in curves:
                found = tuple(np.concatenate(pair) for pair in zip(curves[name], found, strict=True))
            curves[name] = found
    return curves


ProgressCallback = Callable[[ChunkOutcome, int], None]  # (outcome, runs in its batch)
StartCallback = Callable[[store_module.Store, list[BatchJob]], None]  # (store, the jobs of a wave)
Source = Callable[[list[BatchJob], int, dict[str, Any]], Iterator[ChunkOutcome]]  # a backend's outcomes


def run(
    spec: Spec,
    folder: Path,
    spec_text: str = "",
    backend: str = "local",
    backend_options: dict[str, Any] | None = None,
    on_start: StartCallback | None = None,
    on_chunk: ProgressCallback | None = None,
    warn: Callable[[str], None] = _print_warning,
    next_wave: NextWave | None = None,
    tensorboard: bool = True,
    choose: Choose | None = None,
) -> StudyOutcome:
    """Run (or resume) a study into ``folder``; returns how it ended.

    Holds the folder's lock throughout. Finished runs are never recomputed; unfinished
    batches continue from their last checkpoint, so that the stored results equal those
    of an uninterrupted run (a batch whose checkpoint is missing or unreadable restarts from
    scratch, told to ``warn``). A folder that is neither new, empty nor a study of ours is
    refused before anything is written, and a damaged store before it is written again.

    A sequential study needs ``next_wave``: called with the store once every planned batch
    has finished, it names the regularized conditions that need the next wave of seeds
    (deterministic in the finished runs, so a resumed study asks again and gets the same
    answer). ``on_start`` is called with the jobs of each wave (once for other studies).

    ``tensorboard``: also write every stored chunk's points as TensorBoard event files in
    ``folder/tensorboard`` (see the module's "Live curves"); it changes no result.

    A tuned study (``[tuning]``) needs ``choose``: its tuning runs are a study of their own
    in ``folder/tuning`` (:func:`spec.tuning_study`), run first; once they have all
    finished, ``choose`` is called with their store and the spec and says which candidate
    each condition keeps, and the evaluation runs are planned with it (:func:`_add_evaluation`).
    """
    if backend not in BACKENDS:
        raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if spec.execution.sequential and next_wave is None:
        raise ConfigError(
            "execution.sequential", f"a sequential study decides its waves from its results: {NEXT_WAVE_HINT}"
        )
    if spec.tuning is not None and choose is None:
        why = "a tuned study chooses each condition's settings from its tuning runs"
        raise ConfigError("tuning", f"{why}: {CHOOSE_HINT}")
    started = time.perf_counter()
    _refuse_foreign_folder(folder)
    files.refuse_unwritable(folder)
    with (
        files.writing_into(folder),
        store_module.locked(folder),
        _open_or_create(spec, folder, spec_text) as store,
        live.Board(folder) if tensorboard else contextlib.nullcontext() as board,
    ):
        _remove_stale_checkpoints(store)
        source: Source = _local_outcomes if backend == "local" else _ray_outcomes
        options = backend_options or {}
        tuned = False
        if spec.tuning is not None and results.tuning(store) is None:
            study = spec_module.tuning_study(spec)
            arguments = (spec_text, backend, backend_options, on_start, on_chunk, warn)
            tuned = not run(study, folder / TUNING, *arguments, tensorboard=tensorboard).already_finished
            with store_module.Store.open(folder / TUNING) as tuning_store:
                _add_evaluation(spec, store, choose(tuning_store, spec))  # type: ignore[misc]
        worked = _run_wave(spec, store, source, options, on_start, on_chunk, warn, board) or tuned
        while _add_next_wave(spec, store, next_wave):
            _run_wave(spec, store, source, options, on_start, on_chunk, warn, board)
            worked = True
        runs = store.runs()
    return StudyOutcome(
        folder=folder,
        already_finished=not worked,
        runs_total=len(runs),
        runs_failed=sum(run.status == "failed" for run in runs),
        seconds=time.perf_counter() - started,
    )


def _run_wave(
    spec: Spec,
    store: store_module.Store,
    source: Source,
    options: dict[str, Any],
    on_start: StartCallback | None,
    on_chunk: ProgressCallback | None,
    warn: Callable[[str], None],
    board: live.Board | None = None,
) -> bool:
    """Run every unfinished batch to its end, storing each chunk (then showing it on
    ``board``, if any); whether there was one."""
    jobs = _jobs(spec, store, warn, board)
    alive = {job.batch_id: _alive(store, job.batch_id) for job in jobs}
    folders = _live_folders(store, alive) if board is not None else {}
    if board is not None:
        for parts in (parts for batch in folders.values() for parts in batch.values()):
            board.prepare(parts)  # a link in the way is refused before any training
    if on_start is not None:
        on_start(store, jobs)
    for job in jobs:
        store.start_batch(job.batch_id)
    for outcome in source(jobs, spec.execution.chunk_updates, options):
        curves = _record(store, outcome, alive[outcome.batch_id])
        if board is not None:
            _show_live(board, folders[outcome.batch_id], outcome, curves)
        if on_chunk is not None:
            on_chunk(outcome, len(alive[outcome.batch_id]))
    return bool(jobs)


def _live_folders(store: store_module.Store, alive: dict[int, np.ndarray]) -> dict[int, dict[int, tuple[str, ...]]]:
    """batch -> position -> run folder on the board (:func:`live.run_folder`), for the runs
    still alive in the batches given."""
    folders: dict[int, dict[int, tuple[str, ...]]] = {batch_id: {} for batch_id in alive}
    labels = _run_labels(store)
    for run in store.runs():
        if run.batch in alive and alive[run.batch][run.position]:
            folders[run.batch][run.position] = labels[run.run_id]
    return folders


def _show_live(
    board: live.Board, folders: dict[int, tuple[str, ...]], outcome: ChunkOutcome, curves: live.Curves
) -> None:
    """Append a stored chunk's curves to its runs' event files (opened on the batch's first
    chunk, closed after its last: one open file per run being trained)."""
    live.write({position: board.writer(parts) for position, parts in folders.items()}, curves)
    if outcome.updates_done >= outcome.total_updates:
        board.close(folders.values())


def _forget_live(board: live.Board | None, run_folders: list[tuple[str, ...]]) -> None:
    """Remove the event files of runs (their batch restarts from scratch)."""
    if board is not None:
        for parts in run_folders:
            board.forget(parts)


def _alive(store: store_module.Store, batch_id: int) -> np.ndarray:
    """Which positions of a batch have not failed (as stored)."""
    runs = sorted((run for run in store.runs() if run.batch == batch_id), key=lambda run: run.position)
    return np.asarray([run.status != "failed" for run in runs])


def _record(
    store: store_module.Store, outcome: ChunkOutcome, alive: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Checkpoint file, then one transaction; then the previous checkpoint goes. Returns the
    curves stored."""
    previous = next(batch.checkpoint for batch in store.batches() if batch.batch_id == outcome.batch_id)
    name = f"batch-{outcome.batch_id:04d}-update-{outcome.updates_done:07d}.npz"
    checkpoint.save(files.checkpoint_path(store.folder, name), outcome.carry)
    curves = _chunk_curves(outcome, alive)
    store.record_chunk(
        batch_id=outcome.batch_id,
        updates_done=outcome.updates_done,
        curves=curves,
        live_positions=np.flatnonzero(alive).tolist(),
        failures={run: why for run, why in outcome.newly_failed.items() if alive[run]},
        checkpoint=name,
        seconds=outcome.seconds,
        finished=outcome.updates_done >= outcome.total_updates,
    )
    for run in outcome.newly_failed:
        alive[run] = False
    if previous is not None and previous != name:
        files.checkpoint_path(store.folder, previous).unlink(missing_ok=True)
    return curves
