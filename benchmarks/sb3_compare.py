"""Running Stable-Baselines3 in its best use of this machine's cores (benchmark helper).

A worker is a function ``worker(threads, *arguments, queue)`` that trains SB3 with
``threads`` torch threads and puts ``(env steps per second, share of time stepping the
environment)`` on ``queue``. SB3 is run as one process using every core, then as one
single-threaded process per core (aggregate), and both rows go into the table.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

from rich.table import Table


def timed_learn(model: Any, env: Any, warmup_steps: int, timesteps: int, queue: Any) -> None:
    """Train ``model`` for ``warmup_steps`` untimed, then ``timesteps`` timed; put
    (env steps/s, share of that time ``env`` spent stepping) on ``queue``."""
    model.learn(warmup_steps)
    env.env_seconds = 0.0
    start = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    queue.put((timesteps / seconds, env.env_seconds / seconds))


def _pinned(core: int | None, worker: Callable, *arguments: object) -> None:
    """Run ``worker`` on one core only (``None``: wherever the OS puts it)."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    worker(*arguments)


def run_workers(worker: Callable, arguments: tuple, processes: int, threads: int) -> tuple[float, float]:
    """(aggregate steps/s, mean env share) of ``processes`` concurrent workers; with one
    worker per core, each is pinned to its core (measured: SB3 on one pinned core runs
    faster, and JAX's environment step in it 1.4x faster, than unpinned)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = processes > 1 and threads == 1 and processes <= len(cores)
    started = [
        context.Process(target=_pinned, args=(cores[i] if pin else None, worker, threads, *arguments, queue))
        for i in range(processes)
    ]
    for process in started:
        process.start()
    results = [queue.get() for _ in started]
    for process in started:
        process.join()
    return sum(rate for rate, _ in results), sum(share for _, share in results) / len(results)


def add_rows(
    table: Table,
    algorithm: str,
    worker: Callable,
    arguments: tuple,
    one_run: float,
    eight_runs: float,
    target: float,
    ceiling: float,
) -> None:
    """SB3 rows (ratio against our single run), our 8-run aggregate over SB3's best, and
    the most any learner could reach over SB3's best (``ceiling``: env steps/s at the
    machine's matmul peak)."""
    try:
        import stable_baselines3  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        table.add_row(f"Stable-Baselines3 {algorithm}", "n/a", "", "install the bench extra")
        return
    cores = os.cpu_count() or 1
    best = 0.0
    for processes, threads in ((1, cores), (cores, 1)):
        rate, share = run_workers(worker, arguments, processes, threads)
        label = f"SB3 {algorithm}, {processes} process(es) x {threads} thread(s)"
        table.add_row(label, f"{rate:,.0f}", f"{rate / one_run:.2f}x", f"env stepping {share:.0%} of its time")
        best = max(best, rate)
    table.add_row("regspeed 8 runs / best SB3", "", f"{eight_runs / best:.1f}x", f"target >= {target:g}x")
    table.add_row("matmul-peak ceiling / best SB3", "", f"{ceiling / best:.1f}x", "the most XLA's products allow")
