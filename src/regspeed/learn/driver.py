"""Driving a batch of vmapped runs through chunks: the loop between trainer and caller.

``train`` calls a trainer's ``advance`` in chunks (Chunked execution contract), runs the
greedy evaluation at chunk boundaries, stops runs whose numbers turned non-finite (their
recorded history is kept, the other runs are unaffected: vmapped runs share no values),
and hands every chunk to a callback (progress display, store, checkpoint).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from regspeed.errors import ConfigError


class Trainer(NamedTuple):
    """The batched, compiled entry points of a learner (see the Trainer contract), and the
    metrics whose non-finite values mean a run diverged."""

    init_batch: Callable[[Any, jax.Array, Any], Any]  # (config, keys, hparams) -> carry
    advance_batch: Callable[[Any, Any, int], tuple[Any, dict[str, jax.Array]]]  # (config, carry, n) -> ...
    evaluate_batch: Callable[[Any, Any], dict[str, jax.Array]]  # (config, carry) -> metrics per run
    finite_checks: tuple[str, ...] = ()


@dataclasses.dataclass
class History:
    """What a batch of runs recorded: per-update and per-evaluation metrics, runs first."""

    updates: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> [runs, updates]
    evaluations: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> [runs, evals]
    evaluated_at: list[int] = dataclasses.field(default_factory=list)  # update count of each evaluation
    failures: dict[int, str] = dataclasses.field(default_factory=dict)  # run index -> why it stopped

    def append_updates(self, metrics: dict[str, np.ndarray]) -> None:
        """Add a chunk of per-update metrics."""
        for name, values in metrics.items():
            previous = self.updates.get(name)
            self.updates[name] = values if previous is None else np.concatenate([previous, values], axis=1)

    def append_evaluation(self, at_update: int, metrics: dict[str, np.ndarray]) -> None:
        """Add one evaluation (one value per run)."""
        self.evaluated_at.append(at_update)
        for name, values in metrics.items():
            column = values[:, None]
            previous = self.evaluations.get(name)
            self.evaluations[name] = column if previous is None else np.concatenate([previous, column], axis=1)


@dataclasses.dataclass(frozen=True)
class ChunkReport:
    """Handed to the callback after every chunk."""

    updates_done: int
    total_updates: int
    metrics: dict[str, np.ndarray]  # this chunk's per-update metrics, [runs, chunk]
    evaluations: list[tuple[int, dict[str, np.ndarray]]]  # (at update, [runs] values) since the last report
    carry: Any
    newly_failed: dict[int, str]


def _non_finite_runs(metrics: dict[str, np.ndarray], checks: tuple[str, ...], updates_before: int) -> dict[int, str]:
    failed: dict[int, str] = {}
    for name in checks:
        if name not in metrics:
            continue
        bad = ~np.isfinite(metrics[name])
        for run in np.flatnonzero(bad.any(axis=1)):
            first = int(np.argmax(bad[run]))
            value = metrics[name][run, first]
            failed.setdefault(int(run), f"{name} became {value} at update {updates_before + first + 1}")
    return failed


def iterate(
    trainer: Trainer,
    config: Any,
    carry: Any,
    total_updates: int,
    chunk: int,
    eval_every: int = 0,
    history: History | None = None,
) -> Iterator[ChunkReport]:
    """Advance a batch of runs to ``total_updates`` updates (from wherever ``carry`` is),
    yielding a report after every chunk.

    Chunks end at multiples of ``chunk`` and of ``eval_every`` (when > 0), so that a run
    resumed from any chunk boundary sees exactly the same boundaries as an uninterrupted
    one. Evaluation runs at update 0 (if not recorded yet) and at every multiple of
    ``eval_every``. A report's carry is only valid until the next chunk starts (its
    buffers are donated to it).
    """
    if chunk < 1:
        raise ConfigError("chunk", f"must be a positive number of updates (got {chunk})")
    history = history if history is not None else History()
    done = int(np.asarray(jax.device_get(carry.update)).reshape(-1)[0])
    pending: list[tuple[int, dict[str, np.ndarray]]] = []
    if eval_every and done == 0 and not history.evaluated_at:
        pending.append((0, jax.device_get(trainer.evaluate_batch(config, carry))))
        history.append_evaluation(*pending[-1])
    while done < total_updates:
        boundary = min(total_updates, (done // chunk + 1) * chunk)
        if eval_every:
            boundary = min(boundary, (done // eval_every + 1) * eval_every)
        carry, metrics = trainer.advance_batch(config, carry, boundary - done)
        metrics = jax.device_get(metrics)
        found = _non_finite_runs(metrics, trainer.finite_checks, done)
        done = boundary
        newly_failed = {run: why for run, why in found.items() if run not in history.failures}
        history.failures.update(newly_failed)
        history.append_updates(metrics)
        if eval_every and done % eval_every == 0:
            pending.append((done, jax.device_get(trainer.evaluate_batch(config, carry))))
            history.append_evaluation(*pending[-1])
        yield ChunkReport(done, total_updates, metrics, pending, carry, newly_failed)
        pending = []


def train(
    trainer: Trainer,
    config: Any,
    carry: Any,
    total_updates: int,
    chunk: int,
    eval_every: int = 0,
    on_chunk: Callable[[ChunkReport], None] | None = None,
    history: History | None = None,
) -> tuple[Any, History]:
    """:func:`iterate` to the end, handing every report to ``on_chunk``; returns the final
    carry and the whole history."""
    history = history if history is not None else History()
    for report in iterate(trainer, config, carry, total_updates, chunk, eval_every, history):
        carry = report.carry
        if on_chunk is not None:
            on_chunk(report)
    return carry, history
