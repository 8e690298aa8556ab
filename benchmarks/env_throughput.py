"""Env steps per second of the Snake world, random actions, against Jumanji's Snake.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/env_throughput.py``). Every row is
measured in this run; the ratio column divides by Jumanji's Snake (``VmapAutoResetWrapper``,
same grid, same batch), the named baseline. Jumanji is optional (``pip install -e .[bench]``);
without it only our own numbers are printed.

Each measurement jits a ``lax.scan`` of ``n`` auto-resetting steps over the batch, with
uniformly random actions drawn inside the scan, runs it once to compile, then reports the
best of ``--repeats`` timed runs (the machine is shared and noisy; the best run is the one
least disturbed by other load).

A second table compares worlds with obstacles (``--obstacle-density``, 0.1 by default) to the
obstacle-free world at the batch sizes of ``--obstacle-batch-sizes`` (8192 by default; none
skips it): one row per ``--levels`` setting (0, a fresh random level every episode, and 100
training levels by default), with and without the final observation, the ratio dividing by
the obstacle-free world measured in the same run. Its runs are interleaved, repeat by
repeat, so that load which comes and goes weighs on every world alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from regspeed.envs import snake
from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv

BATCH_SIZES = (1, 64, 1024, 8192)
K = TypeVar("K")


def steps_for(batch_size: int) -> int:
    """Scan length: enough work per call that dispatch overhead does not dominate."""
    return max(50, 200_000 // batch_size) if batch_size > 1 else 5_000


def consume(observation: jax.Array) -> jax.Array:
    """A tiny function of every observation value, so the compiler cannot drop the
    observation computation (an agent reads all of it)."""
    return observation.astype(jnp.float32).sum() * 1e-9


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``run`` (after one warm-up call)."""
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(runs: dict[K, Callable[[], object]], repeats: int) -> dict[K, float]:
    """Best wall time of each of ``runs`` (after one warm-up call each), the runs interleaved
    within every repeat."""
    for run in runs.values():
        jax.block_until_ready(run())
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for label, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            best[label] = min(best[label], time.perf_counter() - start)
    return best


@functools.cache  # the obstacle table reuses the main table's compiled rollouts
def ours(config: snake.SnakeConfig, batch_size: int, n: int, final_observation: bool) -> Callable[[], object]:
    """A no-argument callable running ``n`` batched steps of our JAX Snake."""

    def rollout(state: snake.SnakeState, key: jax.Array) -> tuple[snake.SnakeState, jax.Array]:
        def body(carry, step_key):
            state, total = carry
            actions = jax.random.randint(step_key, (batch_size,), 0, config.num_actions)
            state, ts = jax.vmap(lambda s, a: snake.autoreset_step(config, s, a, final_observation=final_observation))(
                state, actions
            )
            read = consume(ts.observation) + (consume(ts.final_observation) if final_observation else 0.0)
            return (state, total + ts.reward.sum() + read), None

        (state, total), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, n))
        return state, total

    rollout = jax.jit(rollout)
    state = snake.reset_batch(config, jax.random.key(0), batch_size)
    key = jax.random.key(1)
    return lambda: rollout(state, key)


def jumanji_snake(rows: int, cols: int, batch_size: int, n: int) -> Callable[[], object] | None:
    """The same rollout on Jumanji's Snake, or None when Jumanji is not installed."""
    try:
        from jumanji.environments import Snake
        from jumanji.wrappers import VmapAutoResetWrapper
    except ImportError:
        return None
    env = VmapAutoResetWrapper(Snake(num_rows=rows, num_cols=cols))

    def rollout(state, key):
        def body(carry, step_key):
            state, total = carry
            actions = jax.random.randint(step_key, (batch_size,), 0, 4)
            state, timestep = env.step(state, actions)
            return (state, total + timestep.reward.sum() + consume(timestep.observation.grid)), None

        (state, total), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, n))
        return state, total

    rollout = jax.jit(rollout)
    state, _ = env.reset(jax.random.split(jax.random.key(0), batch_size))
    key = jax.random.key(1)
    return lambda: rollout(state, key)


def gym_python(config: snake.SnakeConfig, batch_size: int, n: int) -> Callable[[], object]:
    """Our Gymnasium adapter stepped from a Python loop (``Env`` at batch 1, else ``VectorEnv``)."""
    rng = np.random.default_rng(0)
    if batch_size == 1:
        env = SnakeEnv(config=config)
        env.reset(seed=0)

        def run() -> None:
            for _ in range(n):
                _, _, terminated, truncated, _ = env.step(int(rng.integers(config.num_actions)))
                if terminated or truncated:
                    env.reset()

        return run
    vec = SnakeVectorEnv(num_envs=batch_size, config=config)
    vec.reset(seed=0)

    def run_vec() -> None:
        for _ in range(n):
            vec.step(rng.integers(config.num_actions, size=batch_size))

    return run_vec


def obstacle_worlds(config: snake.SnakeConfig, density: float, levels: list[int]) -> dict[str, snake.SnakeConfig]:
    """The obstacle-free world ``config`` (first) and the worlds with obstacles compared with it
    (``levels=0``: a fresh random level every episode)."""
    worlds = {"obstacle-free": config}
    for count in levels:
        label = f"obstacles {density:g}, levels={count}"
        worlds[label] = dataclasses.replace(config, obstacle_density=density, levels=count)
    return worlds


def obstacle_table(config: snake.SnakeConfig, args: argparse.Namespace) -> Table:
    """Env steps per second of the worlds with obstacles and their ratio to the obstacle-free world."""
    table = Table(
        title=f"with obstacles: env steps per second (best of {args.repeats}, interleaved); "
        "ratio = / the obstacle-free world, same batch, same final observation, same run"
    )
    for column in ("batch", "world", "final obs", "steps/s", "ratio"):
        table.add_column(column, justify="left" if column == "world" else "right")
    worlds = obstacle_worlds(config, args.obstacle_density, args.levels)
    for batch_size in args.obstacle_batch_sizes:
        n = steps_for(batch_size)
        runs = {
            (label, final): ours(world, batch_size, n, final)
            for final in (False, True)
            for label, world in worlds.items()
        }
        times = best_times(runs, args.repeats)
        for (label, final), seconds in times.items():
            ratio = times["obstacle-free", final] / seconds
            table.add_row(
                str(batch_size), label, "yes" if final else "no", f"{batch_size * n / seconds:,.0f}", f"{ratio:.2f}"
            )
        table.add_section()
    return table


def main() -> None:
    """Print the table of env steps per second and ratios to Jumanji, then that of the worlds with obstacles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=list(BATCH_SIZES))
    parser.add_argument("--observation", default="grid", choices=snake.OBSERVATIONS)
    parser.add_argument(
        "--obstacle-batch-sizes",
        type=int,
        nargs="*",
        default=[8192],
        help="batch sizes of the table of worlds with obstacles (none: skip it)",
    )
    parser.add_argument("--obstacle-density", type=float, default=0.1, help="obstacle density of that table")
    parser.add_argument(
        "--levels",
        type=int,
        nargs="*",
        default=[0, 100],
        help="its worlds with obstacles: training levels of each (0: a fresh random level every episode)",
    )
    args = parser.parse_args()
    config = snake.SnakeConfig(rows=args.rows, cols=args.cols, observation=args.observation)
    console = Console()
    console.print(
        f"Snake {args.rows}x{args.cols}, observation {args.observation}, random actions; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.local_device_count()} device(s)"
    )
    table = Table(title="env steps per second (best of repeats); ratio = / Jumanji Snake at the same batch")
    for column in ("batch", "implementation", "steps/s", "ratio"):
        table.add_column(column, justify="right" if column != "implementation" else "left")
    for batch_size in args.batch_sizes:
        n = steps_for(batch_size)
        rows: list[tuple[str, float]] = []
        baseline_run = jumanji_snake(args.rows, args.cols, batch_size, n)
        baseline = batch_size * n / best_time(baseline_run, args.repeats) if baseline_run else None
        if baseline is not None:
            rows.append(("Jumanji Snake (baseline)", baseline))
        for final in (True, False):
            label = "regspeed JAX" + (" + final obs" if final else "")
            rows.append((label, batch_size * n / best_time(ours(config, batch_size, n, final), args.repeats)))
        python_n = max(1, min(n, 20_000 // batch_size)) if batch_size > 1 else 2_000
        rows.append(
            (
                "regspeed Gymnasium, Python loop",
                batch_size * python_n / best_time(gym_python(config, batch_size, python_n), 1),
            )
        )
        for label, rate in rows:
            ratio = f"{rate / baseline:.2f}x" if baseline else "n/a"
            table.add_row(str(batch_size), label, f"{rate:,.0f}", ratio)
        table.add_section()
    console.print(table)
    if args.obstacle_batch_sizes:
        console.print(obstacle_table(config, args))


if __name__ == "__main__":
    main()
