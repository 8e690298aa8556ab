"""What random numbers cost the learners on a CPU, before and after our two changes.

1. PPO's minibatch shuffle: ``jax.random.permutation`` against ``learn.common.permutation``
   (one sort of packed keys), 8 runs x 4 epochs of 8,192 transitions.
2. DQN (default configuration, 8 vmapped runs, learning every update) with JAX's own CPU
   lowering of threefry (a rolled loop) against the unrolled one ``regspeed.threefry_cpu``
   registers; both programs are checked to end in the same carry, bit for bit.

    .venv/bin/python benchmarks/random_costs.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dqn_throughput
import jax
import numpy as np
from jax._src.interpreters import mlir
from jax._src.random import threefry2x32
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed import threefry_cpu
from regspeed.learn import common

TRANSITIONS, RUNS, EPOCHS = 8192, 8, 4


def best_seconds(function: Callable, argument: object, repeats: int = 7) -> float:
    """Best time of one call of an already compiled ``function``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(argument))
        best = min(best, time.perf_counter() - start)
    return best


def compiled(function: Callable, argument: object) -> Callable:
    """``function`` jitted and compiled now (with the threefry lowering registered now)."""
    return jax.jit(function).lower(argument).compile()


def raw(tree: object) -> list[np.ndarray]:
    """Every leaf as a host array (keys as their data)."""
    as_data = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
    return [np.asarray(as_data(leaf)) for leaf in jax.tree.leaves(tree)]


def main() -> None:
    """Measure and print the table."""
    table = Table(title="random numbers on the CPU")
    for column in ("what", "before", "after", "ratio"):
        table.add_column(column, justify="left" if column == "what" else "right")
    keys = jax.random.split(jax.random.key(0), RUNS * EPOCHS)
    shuffles = {
        name: compiled(jax.vmap(lambda key, shuffle=shuffle: shuffle(key, TRANSITIONS)), keys)
        for name, shuffle in (("jax", jax.random.permutation), ("ours", common.permutation))
    }
    before, after = (best_seconds(shuffles[name], keys) for name in ("jax", "ours"))
    table.add_row(f"{RUNS * EPOCHS} shuffles of {TRANSITIONS:,}", f"{before * 1e3:.1f} ms", f"{after * 1e3:.1f} ms",
                  f"{before / after:.1f}x")  # fmt: skip

    config = dqn_throughput.CONFIG
    carry = dqn_throughput.LEARNER.start(dqn_throughput.SETUP, range(RUNS), [0.0] * RUNS)
    carry, _ = dqn_throughput.dqn.advance_batch(config, carry, -(-config.learning_starts // config.steps_per_update))
    updates = 200

    def advance(carry: object) -> object:
        return jax.vmap(lambda c: dqn_throughput.dqn.advance(config, c, updates))(carry)[0]

    mlir.register_lowering(threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_cpu_lowering_rule, platform="cpu")
    rolled = compiled(lambda c: advance(c), carry)
    threefry_cpu.unroll_on_cpu()
    unrolled = compiled(lambda c: advance(c), carry)
    same = all(np.array_equal(a, b) for a, b in zip(raw(rolled(carry)), raw(unrolled(carry)), strict=True))
    before, after = best_seconds(rolled, carry), best_seconds(unrolled, carry)
    steps = RUNS * updates * config.steps_per_update
    table.add_row(f"DQN, {RUNS} runs: env steps/s (same carry: {same})", f"{steps / before:,.0f}",
                  f"{steps / after:,.0f}", f"{before / after:.2f}x")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
