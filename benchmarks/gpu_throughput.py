"""Aggregate env steps/s on whatever device JAX has (meant for a GPU): PPO and DQN, many runs in one program.

PPO (default configuration, 64 envs x 128 steps, 4 epochs x 4 minibatches) with the
``features`` and ``window`` observations for 1, 64 and 512 vmapped runs; DQN (default
configuration, after ``learning_starts``) for 1 and 64 runs. Best of ``--repeats`` timed
calls after one that compiles; a size that does not fit the device's memory is reported
as such and the table goes on. The device is named in the title: put the table in the
README with it.

On a CUDA machine (``pip install -e '.[cuda]'`` first; ``make bench-gpu`` does both):

    .venv/bin/python benchmarks/gpu_throughput.py
    .venv/bin/python benchmarks/gpu_throughput.py --ppo-runs 1 8 --dqn-runs 1 8   # a CPU-sized check
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable

import dqn_throughput
import jax
import throughput
import train_throughput
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)


def ppo_rate(observation: str, runs: int, updates: int, repeats: int) -> float:
    """Aggregate env steps/s of ``runs`` PPO runs with ``observation`` (train_throughput's setup)."""
    setup = train_throughput.make_setup(observation)
    learner = train_throughput.LEARNER
    carry = learner.start(setup, range(runs), [0.0] * runs)
    return throughput.advance_rate(learner.trainer.advance_batch, setup.config, carry, updates, repeats)


def measured(rate: Callable[..., float], *arguments: object) -> str:
    """``rate(*arguments)`` as table text, or why it could not be measured."""
    start = time.perf_counter()
    try:
        value = rate(*arguments)
    except Exception as error:  # out of device memory is an XlaRuntimeError
        if "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower():
            return "out of memory"
        raise
    return f"{value:,.0f} ({time.perf_counter() - start:.0f} s)"


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppo-runs", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--dqn-runs", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--ppo-updates", type=int, default=3, help="PPO updates per timed call")
    parser.add_argument("--dqn-updates", type=int, default=200, help="DQN updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = jax.devices()[0]
    console = Console()
    title = f"aggregate env steps/s on {device.device_kind} ({device.platform}), jax {jax.__version__}"
    table = Table(title=title)
    for column in ("learner", "observation", "runs", "env steps/s (time to measure)"):
        table.add_column(column, justify="right")
    for observation in ("features", "window"):
        for runs in args.ppo_runs:
            rate = measured(ppo_rate, observation, runs, args.ppo_updates, args.repeats)
            table.add_row("PPO", observation, str(runs), rate)
    for runs in args.dqn_runs:
        table.add_row("DQN", "features", str(runs), measured(dqn_throughput.ours, runs, args.dqn_updates, args.repeats))
    console.print(table)
    console.print(f"peak host RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
