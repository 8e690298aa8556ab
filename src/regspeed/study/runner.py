"""Running a study: plan the runs into batches, execute them in chunks, store every chunk.

- **Plan.** Conditions x seeds become runs. Runs whose regularizer has the same static
  part (kind and mask) share compiled code and form a group; a group is split into
  batches small enough for ``execution.memory_cap_gb``. Within a batch, strength and seed
  are vmapped. The plan is stored with the study and never recomputed.
- **Execute.** :func:`execute_batch` is a generator that trains one batch from its last
  checkpoint and yields after every chunk (metrics, evaluations, the carry as arrays). The
  ``local`` backend iterates it in this process; the ``ray`` backend runs it as a Ray task
  (a streaming generator) per batch, several at once.
- **Store.** Only the driver writes: for every chunk, the checkpoint file first, then one
  transaction with the curves and progress (:meth:`Store.record_chunk`).
- **Resume.** A store is checked for damage (:meth:`Store.open`) before it is written again.
  Only a batch's latest checkpoint is kept, so an unfinished batch whose checkpoint is
  missing or unreadable restarts from scratch (its stored chunks removed in one
  transaction) with a warning; being deterministic from its seeds, it ends as it would have.
"""

from __future__ import annotations

import dataclasses
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

from regspeed import __version__
from regspeed.errors import ConfigError
from regspeed.learn import checkpoint
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs
from regspeed.safe_text import printable
from regspeed.study import files
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
    """One planned run: a condition at its strength, with one seed."""

    condition: str
    strength: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Batch:
    """Runs trained together by one compiled program: they share the regularizer's static
    part; strength and seed are vmapped."""

    regularizer: regs.Regularizer
    runs: tuple[Run, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study's batches, and the memory they were sized for."""

    batches: tuple[Batch, ...]
    memory_cap_gb: float
    largest_batch_estimate_gb: float


def plan(spec: Spec) -> Plan:
    """Conditions x seeds as batches: one group per static regularizer, cut into equal
    batches that fit ``execution.memory_cap_gb``."""
    learner = spec_module.learner_of(spec)
    groups: dict[regs.Regularizer, list[Run]] = {}
    for condition in spec_module.conditions(spec):
        runs = groups.setdefault(condition.regularizer, [])
        runs += [Run(condition.name, condition.strength, seed) for seed in spec.seed_list()]
    batches: list[Batch] = []
    cap = spec.execution.memory_cap_gb * 2**30
    largest = 0
    for regularizer, runs in groups.items():
        per_run = learner.bytes_per_run(spec_module.setup(spec, regularizer).config)
        most = max(1, int(cap // per_run))
        size = math.ceil(len(runs) / math.ceil(len(runs) / most))  # equal batches: fewer compiled shapes
        batches += [Batch(regularizer, tuple(runs[i : i + size])) for i in range(0, len(runs), size)]
        largest = max(largest, size * per_run)
    return Plan(tuple(batches), spec.execution.memory_cap_gb, largest / 2**30)


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
    carry = learner.start(setup, job.seeds, job.strengths)
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
            ray.init(address=options.get("address"), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(_execute_batch_list).options(
        num_returns="streaming", num_cpus=options.get("cpus_per_batch", 1), num_gpus=options.get("gpus_per_batch", 0)
    )
    results: queue.Queue[ChunkOutcome | BaseException | None] = queue.Queue()

    def consume(job: BatchJob) -> None:
        try:
            for reference in remote.remote(job, chunk_updates):
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


def _execute_batch_list(job: BatchJob, chunk_updates: int) -> Iterator[ChunkOutcome]:
    """The Ray task: import regspeed first (XLA flags), then run the batch."""
    import regspeed  # noqa: F401

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
    learner = spec_module.learner_of(spec)
    the_plan = plan(spec)
    conditions = [
        (c.name, c.regularizer.kind, c.strength, json.dumps(dataclasses.asdict(c.regularizer)))
        for c in spec_module.conditions(spec)
    ]
    planned = []
    batch_rows = []
    budget_steps = 0
    for batch_id, batch in enumerate(the_plan.batches):
        setup = spec_module.setup(spec, batch.regularizer)
        total = learner.total_updates(setup)
        budget_steps = max(budget_steps, total * learner.steps_per_update(setup))
        batch_rows.append((list(dict.fromkeys(run.condition for run in batch.runs)), total))
        planned += [
            store_module.PlannedRun(run.condition, run.seed, batch_id, position)
            for position, run in enumerate(batch.runs)
        ]
    facts = {"memory_cap_gb": the_plan.memory_cap_gb, "largest_batch_estimate_gb": the_plan.largest_batch_estimate_gb}
    meta = {
        "spec_toml": spec_text,
        "spec_json": json.dumps(normalized),
        "versions": json.dumps(software_versions()),
        "plan": json.dumps(facts),
        "budget_steps": str(budget_steps),  # the budget as trained: whole updates
        "step_unit": learner.step_unit,
        "speed_metrics": json.dumps(learner.speed_metrics),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return store_module.Store.create(folder, meta, conditions, batch_rows, planned)


def _jobs(spec: Spec, store: store_module.Store, warn: Callable[[str], None]) -> list[BatchJob]:
    """The unfinished batches, each from its last checkpoint (or from scratch, see :func:`_resume_point`)."""
    conditions = {c["name"]: c for c in store.conditions()}
    runs_by_batch: dict[int, list[store_module.RunRow]] = {}
    for run in store.runs():
        runs_by_batch.setdefault(run.batch, []).append(run)
    jobs = []
    batches = store.batches()
    for batch in batches:
        if batch.updates_done >= batch.total_updates:
            continue  # finished: its checkpoint is not needed (it may be gone)
        runs = sorted(runs_by_batch[batch.batch_id], key=lambda run: run.position)
        start = _resume_point(store, batch, len(batches), warn)
        jobs.append(
            BatchJob(
                batch_id=batch.batch_id,
                spec=spec.model_dump(mode="json"),
                regularizer=conditions[runs[0].condition]["regularizer"],
                seeds=[run.seed for run in runs],
                strengths=[conditions[run.condition]["strength"] for run in runs],
                start=start,
            )
        )
    return jobs


def _resume_point(
    store: store_module.Store, batch: store_module.BatchRow, batches: int, warn: Callable[[str], None]
) -> dict[str, np.ndarray] | None:
    """The checkpoint arrays an unfinished batch continues from, or None to start afresh.

    A missing or unreadable checkpoint cannot be replaced by an earlier one (only the latest
    is kept), so the batch restarts from scratch: its curves and progress are removed in one
    transaction, then the unreadable file (a crash between the two leaves it to
    :func:`_remove_stale_checkpoints`). Its runs are deterministic from their seeds, so it
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
    curves = {}
    chunk = next(iter(outcome.metrics.values())).shape[1]
    first = outcome.updates_done - chunk + 1
    update_steps = (np.arange(first, outcome.updates_done + 1) * outcome.steps_per_update).astype(np.int64)
    for name, values in outcome.metrics.items():
        keep = np.isfinite(values) & alive[:, None]
        positions, points = np.nonzero(keep)
        curves[name] = (positions, update_steps[points], values[positions, points].astype(np.float64))
    for at_update, evaluation in outcome.evaluations:  # a chunk can hold two: at update 0 and at its end
        for name, values in evaluation.items():
            keep = np.isfinite(values) & alive
            positions = np.flatnonzero(keep)
            steps = np.full(len(positions), at_update * outcome.steps_per_update, np.int64)
            found = (positions, steps, values[positions].astype(np.float64))
            if name in curves:
                found = tuple(np.concatenate(pair) for pair in zip(curves[name], found, strict=True))
            curves[name] = found
    return curves


ProgressCallback = Callable[[ChunkOutcome, int], None]  # (outcome, runs in its batch)


def run(
    spec: Spec,
    folder: Path,
    spec_text: str = "",
    backend: str = "local",
    backend_options: dict[str, Any] | None = None,
    on_start: Callable[[store_module.Store, list[BatchJob]], None] | None = None,
    on_chunk: ProgressCallback | None = None,
    warn: Callable[[str], None] = _print_warning,
) -> StudyOutcome:
    """Run (or resume) a study into ``folder``; returns how it ended.

    Holds the folder's lock throughout. Finished runs are never recomputed; unfinished
    batches continue from their last checkpoint, so that the stored results equal those
    of an uninterrupted run (a batch whose checkpoint is missing or unreadable restarts from
    scratch, told to ``warn``). A folder that is neither new, empty nor a study of ours is
    refused before anything is written, and a damaged store before it is written again.
    """
    if backend not in BACKENDS:
        raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    started = time.perf_counter()
    _refuse_foreign_folder(folder)
    files.refuse_unwritable(folder)
    with (
        files.writing_into(folder),
        store_module.locked(folder),
        _open_or_create(spec, folder, spec_text) as store,
    ):
        _remove_stale_checkpoints(store)
        jobs = _jobs(spec, store, warn)
        if on_start is not None:
            on_start(store, jobs)
        source = _local_outcomes if backend == "local" else _ray_outcomes
        alive = {job.batch_id: _alive(store, job.batch_id) for job in jobs}
        for job in jobs:
            store.start_batch(job.batch_id)
        for outcome in source(jobs, spec.execution.chunk_updates, backend_options or {}):
            _record(store, outcome, alive[outcome.batch_id])
            if on_chunk is not None:
                on_chunk(outcome, len(alive[outcome.batch_id]))
        runs = store.runs()
    return StudyOutcome(
        folder=folder,
        already_finished=not jobs,
        runs_total=len(runs),
        runs_failed=sum(run.status == "failed" for run in runs),
        seconds=time.perf_counter() - started,
    )


def _alive(store: store_module.Store, batch_id: int) -> np.ndarray:
    """Which positions of a batch have not failed (as stored)."""
    runs = sorted((run for run in store.runs() if run.batch == batch_id), key=lambda run: run.position)
    return np.asarray([run.status != "failed" for run in runs])


def _record(store: store_module.Store, outcome: ChunkOutcome, alive: np.ndarray) -> None:
    """Checkpoint file, then one transaction; then the previous checkpoint goes."""
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
