"""What shrink-and-perturb costs a learner, against the baseline in the same process.

Each learner's default configuration, ``--runs`` vmapped runs (vmap is where a batched
predicate would turn ``lax.cond`` into a ``select`` that draws noise every step), timed in
interleaved rounds (best of ``--rounds``; compilation excluded) for: the baseline
(``none``); ``shrink_perturb`` with a period longer than the measurement (the cost between
two shrink-and-perturbs: a counter and a predicate); ``shrink_perturb`` every optimizer step
(the cost of drawing the noise, the most it can cost); and ``weight_decay`` for scale.

    .venv/bin/python benchmarks/shrink_perturb_cost.py
    .venv/bin/python benchmarks/shrink_perturb_cost.py --learners snake-ppo --runs 8
    .venv/bin/python benchmarks/shrink_perturb_cost.py --step-only --rounds 20   # the optimizer step alone
"""

from __future__ import annotations

import argparse
import time

import jax
import optax
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.learn import registry
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Request

CONDITIONS = {
    "none": (regs.Regularizer(), 0.0),
    "shrink_perturb, between periods": (regs.Regularizer("shrink_perturb", period=regs.MAX_PERIOD), 1e-3),
    "shrink_perturb, every step": (regs.Regularizer("shrink_perturb", period=1), 1e-3),
    "weight_decay": (regs.Regularizer("weight_decay"), 1e-3),
}
BUDGETS = {"snake-ppo": 10**9, "snake-dqn": 10**9}  # env steps; the supervised tasks count updates


def seconds_per_call(learner_name: str, runs: int, updates: int, rounds: int) -> dict[str, float]:
    """Best seconds of one ``advance_batch`` call of ``updates`` updates, per condition."""
    learner = registry.get(learner_name)
    programs = {}
    for name, (regularizer, strength) in CONDITIONS.items():
        setup = learner.build({}, Request(budget=BUDGETS.get(learner_name, 10**6), regularizer=regularizer))
        carry = learner.start(setup, list(range(runs)), [strength] * runs)
        carry, metrics = learner.trainer.advance_batch(setup.config, carry, updates)  # compiles, warms up
        jax.block_until_ready(metrics)
        programs[name] = (setup.config, carry)
    best = dict.fromkeys(CONDITIONS, float("inf"))
    for _ in range(rounds):  # interleaved, so that a busy moment of the machine hits every condition alike
        for name, (config, carry) in programs.items():
            start = time.perf_counter()
            carry, metrics = learner.trainer.advance_batch(config, carry, updates)
            jax.block_until_ready(metrics)
            best[name] = min(best[name], time.perf_counter() - start)
            programs[name] = (config, carry)
    return best


def optimizer_step_seconds(learner_name: str, runs: int, steps: int, rounds: int) -> dict[str, float]:
    """Best seconds per optimizer step alone (``steps`` steps in a ``lax.scan``, ``runs``
    vmapped) on the learner's default network, with a fixed gradient: the step's own cost,
    without the learner's work around it."""
    learner = registry.get(learner_name)
    programs = {}
    for name, (regularizer, strength) in CONDITIONS.items():
        setup = learner.build({}, Request(budget=BUDGETS.get(learner_name, 10**6), regularizer=regularizer))
        carry = learner.start(setup, list(range(runs)), [strength] * runs)
        optimizer = regs.optimizer(regularizer, 1e-3, strength)

        def run(params, state, optimizer=optimizer):
            def step(pair, _):
                params, state = pair
                updates, state = optimizer.update(jax.tree.map(lambda w: 1e-3 * w, params), state, params)
                return (optax.apply_updates(params, updates), state), None

            return jax.lax.scan(step, (params, state), None, length=steps)[0]

        program = jax.jit(jax.vmap(run))
        states = jax.vmap(optimizer.init)(carry.params)
        jax.block_until_ready(program(carry.params, states))
        programs[name] = (program, carry.params, states)
    best = dict.fromkeys(CONDITIONS, float("inf"))
    for _ in range(rounds):
        for name, (program, params, states) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(params, states))
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    """Time every learner asked for and print the ratios to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", nargs="+", default=["snake-ppo", "snake-dqn", "digits", "teacher"])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--updates", type=int, default=0, help="per timed call (0: 4 for Snake, 200 supervised)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--step-only", action="store_true", help="time the optimizer step alone, not the learner")
    args = parser.parse_args()
    if args.step_only:
        step_table(args)
        return
    title = f"shrink-and-perturb cost: {args.runs} vmapped runs, best of {args.rounds} ({jax.devices()[0]})"
    table = Table(title=title)
    table.add_column("learner")
    for name in CONDITIONS:
        table.add_column(name, justify="right")
    for learner_name in args.learners:
        updates = args.updates or (4 if learner_name.startswith("snake") else 200)
        best = seconds_per_call(learner_name, args.runs, updates, args.rounds)
        base = best["none"]
        cells = [f"{1e3 * base / updates:.2f} ms/update"]
        cells += [f"{best[name] / base:.3f}x" for name in list(CONDITIONS)[1:]]
        table.add_row(learner_name, *cells)
    Console().print(table)


def step_table(args: argparse.Namespace) -> None:
    """The optimizer step alone: microseconds per step and the ratios to the baseline's."""
    table = Table(title=f"optimizer step alone: {args.runs} vmapped runs, best of {args.rounds} ({jax.devices()[0]})")
    table.add_column("network of")
    for name in CONDITIONS:
        table.add_column(name, justify="right")
    for learner_name in args.learners:
        best = optimizer_step_seconds(learner_name, args.runs, 100, args.rounds)
        base = best["none"]
        cells = [f"{1e6 * best[name]:.0f} us" + ("" if name == "none" else f" ({best[name] / base:.2f}x)")
                 for name in CONDITIONS]  # fmt: skip
        table.add_row(learner_name, *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
