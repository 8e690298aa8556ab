"""What a changing world costs a learner: a continual run against a stationary one.

For PPO (``features`` and ``window`` observations) and DQN (``features``), 8 runs in one
program each, timed in interleaved rounds (best of ``--rounds``; compilation excluded):
the stationary world, and a world whose actions and observations change every 2 updates
(``[config.schedule]``), so that every timed call crosses phase boundaries. Printed: env
steps/s of both and the continual run's cost over the stationary one (target: at most 10%).

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
CHANGES = ["actions", "observations"]


def programs(learner_name: str, observation: str, runs: int) -> dict[str, tuple]:
    """The stationary and the changing world's (config, carry), both compiled and warmed up."""
    learner = registry.get(learner_name)
    found = {}
    for name, schedule in (("stationary", None), ("changing every 2 updates", True)):
        tables: dict = {"env": {"observation": observation}}
        setup = learner.build(tables, Request(budget=10**9))
        if schedule:
            tables["schedule"] = {"phase_steps": 2 * setup.config.steps_per_update, "changes": CHANGES}
            setup = learner.build(tables, Request(budget=10**9))
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
    args = parser.parse_args()
    table = Table(title=f"a changing world against a stationary one ({args.runs} runs, {jax.devices()[0].device_kind})")
    for column in ("learner", "observation", "stationary env steps/s", "changing env steps/s", "cost"):
        table.add_column(column, justify="right")
    for learner_name, observation in CASES:
        found = rates(learner_name, observation, args.runs, args.updates, args.rounds)
        still, moving = found["stationary"], found["changing every 2 updates"]
        table.add_row(learner_name, observation, f"{still:,.0f}", f"{moving:,.0f}", f"{still / moving - 1:+.1%}")
    Console().print(table)


if __name__ == "__main__":
    main()
