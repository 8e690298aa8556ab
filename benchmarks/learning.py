"""Learning competence of PPO or DQN on Snake without regularization: how soon the agent gets good.

Trains ``--seeds`` runs of the default configuration (vmapped, one program), then reports
the IQM across seeds (with a 95% stratified bootstrap interval, scipy) of the mean
training-episode score, smoothed over ``--smooth`` updates, at a few budgets, and the first
env step at which that IQM curve reaches each threshold.

    .venv/bin/python benchmarks/learning.py                         # window obs, 2 M steps, 8 seeds
    .venv/bin/python benchmarks/learning.py --observation features --steps 500000
    .venv/bin/python benchmarks/learning.py --algo dqn --steps 300000 --thresholds 10 15   # features obs
    .venv/bin/python benchmarks/learning.py --algo dqn --observation grid --action-mode absolute \
        --set num_envs=64 rollout_steps=4 target_update_every=50 exploration_fraction=0.05  # replay ratio 1
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats as scipy_stats

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.analysis import metrics, stats
from regspeed.envs import render, snake
from regspeed.learn import driver as training
from regspeed.learn import registry
from regspeed.learn.learner import Request


def parse_override(item: str) -> tuple[str, bool | int | float]:
    """``field=value`` from the ``--set`` option: ``true`` / ``false``, else an int, else a
    float (the learner's tables are typed strictly, as a spec's are)."""
    field, _, value = item.partition("=")
    if value.lower() in ("true", "false"):
        return field, value.lower() == "true"
    try:
        return field, int(value)
    except ValueError:
        return field, float(value)


def main() -> None:
    """Train, then print the learning table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=("ppo", "dqn"))
    parser.add_argument("--observation", default=None, choices=snake.OBSERVATIONS, help="default: the agent's")
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--action-mode", default="relative", choices=snake.ACTION_MODES)
    parser.add_argument("--hidden", default="128,128")
    parser.add_argument("--lr", type=float, default=None, help="default: the agent's")
    parser.add_argument(
        "--smooth", type=int, default=None, help="updates in the trailing mean of each run's curve (ppo 5, dqn 50)"
    )
    parser.add_argument("--thresholds", type=float, nargs="*", default=[10.0, 25.0])
    parser.add_argument(
        "--budgets", type=int, nargs="*", default=[500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000]
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override fields of the agent's config"
    )
    args = parser.parse_args()

    learner = registry.get(f"snake-{args.algo}")
    overrides = dict(parse_override(item) for item in args.set)
    env = {"rows": args.rows, "cols": args.rows, "action_mode": args.action_mode}
    tables = {
        "env": env | ({"observation": args.observation} if args.observation else {}),
        "network": {"hidden": [int(h) for h in args.hidden.split(",")]},
        args.algo: overrides | ({"learning_rate": args.lr} if args.lr is not None else {}),
    }
    setup = learner.build(tables, Request(budget=args.steps))
    config, updates = setup.config, learner.total_updates(setup)
    steps_per_update = learner.steps_per_update(setup)
    console = Console()
    console.print(
        f"{args.algo.upper()}, no regularization, {render.describe(config.env)} (window {config.env.window_size}), "
        f"{args.seeds} seeds x {updates * steps_per_update:,} "
        f"steps, lr {setup.learning_rate:g}, hidden {args.hidden} {overrides or ''}; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    start = time.perf_counter()
    carry = learner.start(setup, range(args.seeds), [0.0] * args.seeds)

    def progress(report: training.ChunkReport) -> None:
        score = np.nanmean(np.asarray(report.metrics["score"]), axis=1)
        console.print(
            f"{report.updates_done * steps_per_update:>12,} steps, {time.perf_counter() - start:6.0f} s, "
            f"chunk mean score per seed {np.round(score, 1)}"
        )

    chunk = max(10, updates // 50)
    _, history = training.train(learner.trainer, config, carry, updates, chunk=chunk, on_chunk=progress)
    seconds = time.perf_counter() - start

    window = args.smooth or {"ppo": 5, "dqn": 50}[args.algo]
    curve = metrics.smooth(history.updates["score"], window)  # [seeds, updates]
    steps = np.arange(1, updates + 1) * steps_per_update
    iqm_curve = scipy_stats.trim_mean(np.nan_to_num(curve, nan=0.0), 0.25, axis=0)
    table = Table(title=f"IQM over {args.seeds} seeds of the mean training-episode score ({seconds:.0f} s)")
    for column in ("env steps", "IQM score", "95% CI", "min seed", "max seed"):
        table.add_column(column, justify="right")
    for budget in [b for b in args.budgets if b <= steps[-1]] + [int(steps[-1])]:
        index = int(np.searchsorted(steps, budget, side="right")) - 1
        values = np.nan_to_num(curve[:, index], nan=0.0)
        low, high = stats.iqm_interval(values)
        table.add_row(
            f"{steps[index]:,}",
            f"{stats.iqm(values):.1f}",
            f"[{low:.1f}, {high:.1f}]",
            f"{values.min():.1f}",
            f"{values.max():.1f}",
        )
    console.print(table)
    for threshold in args.thresholds:
        reached = np.flatnonzero(iqm_curve >= threshold)
        when = f"{steps[reached[0]]:,} env steps" if reached.size else f"not within {steps[-1]:,} env steps"
        console.print(f"IQM score reaches {threshold:g}: {when}")
    aggregate = args.seeds * updates * steps_per_update / seconds
    console.print(f"aggregate {aggregate:,.0f} env steps/s over {args.seeds} seeds, compilation included")


if __name__ == "__main__":
    main()
