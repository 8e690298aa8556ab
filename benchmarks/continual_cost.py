"""What a changing world costs a learner: a continual run against a stationary one.

For PPO (``features`` and ``window`` observations) and DQN (``features``), 8 runs in one
program each, timed in interleaved rounds (best of ``--rounds``; compilation excluded):
the stationary world, and worlds that change every 2 updates (``[config.schedule]``), so
that every timed call crosses phase boundaries: the actions and observations, the rewards,
and the walls (board and obstacles). Printed: env steps/s of each and each changing world's
cost over the stationary one (target: at most 10%).

    .venv/bin/python benchmarks/continual_cost.py
    .venv/bin/python benchmarks/continual_cost.py --rounds 9 --updates 4
"""

from __future__ import annotations

import argparse
import time

import jax
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.learn import registry
from regspeed.learn.learner import Request

CASES = (("snake-ppo", "features"), ("snake-ppo", "window"), ("snake-dqn", "features"))
UPDATES = 1_000  # each run's budget in updates (500 phases; a timing needs (rounds + 1) x updates of them)
WORLDS = {
    "stationary": [],
    "actions + observations": ["actions", "observations"],
    "rewards": ["rewards"],
    "board + obstacles": ["board", "obstacles"],
}  # what changes every 2 updates


def programs(learner_name: str, observation: str, runs: int) -> dict[str, tuple]:
    """Each world's (learner, config, carry): the stationary one and those of :data:`WORLDS`."""
    learner = registry.get(learner_name)
    found = {}
    for name, changes in WORLDS.items():
        tables: dict = {"env": {"observation": observation}}
        per_update = learner.build(tables, Request(budget=10**6)).config.steps_per_update
        budget = UPDATES * per_update  # a world's tables hold every phase of the budget: keep them few
        setup = learner.build(tables, Request(budget=budget))
        if changes:
            tables["schedule"] = {"phase_steps": 2 * per_update, "changes": changes}
            setup = learner.build(tables, Request(budget=budget))
        carry = learner.start(setup, list(range(runs)), [0.0] * runs)
        found[name] = (learner, setup.config, carry)
    return found


def rates(learner_name: str, observation: str, runs: int, updates: int, rounds: int) -> dict[str, float]:
    """Aggregate env steps/s of each world, best of ``rounds`` interleaved calls."""
    found = programs(learner_name, observation, runs)
    for name, (learner, config, carry) in found.items():
        carry, metrics = learner.trainer.advance_batch(config, carry, updates)  # compiles, warms up
        jax.block_until_ready(metrics)
        found[name] = (learner, config, carry)
    best = dict.fromkeys(found, float("inf"))
    for _ in range(rounds):  # interleaved: a busy moment of the machine hits both alike
        for name, (learner, config, carry) in found.items():
            start = time.perf_counter()
            carry, metrics = learner.trainer.advance_batch(config, carry, updates)
            jax.block_until_ready(metrics)
            best[name] = min(best[name], time.perf_counter() - start)
            found[name] = (learner, config, carry)
    steps = {name: runs * updates * config.steps_per_update for name, (_, config, _) in found.items()}
    return {name: steps[name] / seconds for name, seconds in best.items()}


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--updates", type=int, default=4, help="updates per timed call (phases of 2 updates)")
    parser.add_argument("--rounds", type=int, default=5)
    names = [f"{learner}:{observation}" for learner, observation in CASES]
    parser.add_argument("--case", action="append", choices=names, help="measure only these (default: all)")
    args = parser.parse_args()
    table = Table(title=f"a changing world against a stationary one ({args.runs} runs, {jax.devices()[0].device_kind})")
    for column in ("learner", "observation", "world", "env steps/s", "cost over stationary"):
        table.add_column(column, justify="right")
    for learner_name, observation in CASES:
        if args.case and f"{learner_name}:{observation}" not in args.case:
            continue
        found = rates(learner_name, observation, args.runs, args.updates, args.rounds)
        still = found["stationary"]
        for name, rate in found.items():
            cost = "" if name == "stationary" else f"{still / rate - 1:+.1%}"
            table.add_row(learner_name, observation, name, f"{rate:,.0f}", cost)
    Console().print(table)


if __name__ == "__main__":
    main()
