"""Why PPO runs one run after another on a CPU, and why 75% of the matmul peak is hard with `features`.

Measured with XLA on this machine, best of 7 x 20 calls (compilation excluded):

1. the three products of a 128 x 128 dense layer's training step on a 2,048-row minibatch:
   forward ``x @ w``, input gradient ``dy @ w.T``, weight gradient ``x.T @ dy`` (which
   contracts over the 2,048 rows);
2. a bare MLP (11 -> 128 -> 128 -> 3, PPO's policy with ``features``) forward + backward on
   2,048 rows, for one run, and for 8 runs vmapped (XLA's batched products) or mapped one
   after another (``lax.map``).

    .venv/bin/python benchmarks/matmul_shapes.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)

ROWS, WIDTH, RUNS = 2048, 128, 8


def seconds(function: Callable, *arguments: object, calls: int = 20) -> float:
    """Best time of one call of the compiled ``function`` (best of 7 rounds of ``calls`` calls)."""
    compiled = jax.jit(function)
    jax.block_until_ready(compiled(*arguments))
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            result = compiled(*arguments)
        jax.block_until_ready(result)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


class MLP(nn.Module):
    """PPO's policy network with the ``features`` observation."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Dense(WIDTH)(x))
        x = nn.relu(nn.Dense(WIDTH)(x))
        return nn.Dense(3)(x)


def main() -> None:
    """Measure and print the table."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (ROWS, WIDTH))
    dy = jax.random.normal(jax.random.key(1), (ROWS, WIDTH))
    w = jax.random.normal(key, (WIDTH, WIDTH))
    table = Table(title=f"XLA on {jax.devices()[0].device_kind}: products of a {ROWS}-row minibatch")
    for column in ("what", "ms", "GFLOP/s"):
        table.add_column(column, justify="left" if column == "what" else "right")
    flops = 2 * ROWS * WIDTH * WIDTH
    for name, function in (
        ("forward x @ w", lambda x, y: x @ w),
        ("input gradient dy @ w.T", lambda x, y: y @ w.T),
        ("weight gradient x.T @ dy", lambda x, y: x.T @ y),
    ):
        took = seconds(function, x, dy)
        table.add_row(name, f"{took * 1e3:.3f}", f"{flops / took / 1e9:.0f}")
    features = jax.random.normal(key, (ROWS, 11))
    model = MLP()
    params = model.init(key, features)
    gradient = jax.grad(lambda p, x: (model.apply(p, x) ** 2).mean())
    step_flops = 6 * ROWS * (11 * WIDTH + WIDTH * WIDTH + WIDTH * 3)  # forward + backward: 3 forwards
    took = seconds(gradient, params, features)
    table.add_row("MLP 11-128-128-3 forward + backward, 1 run", f"{took * 1e3:.3f}", f"{step_flops / took / 1e9:.0f}")
    stacked = jax.tree.map(lambda a: jnp.stack([a] * RUNS), params)
    batch = jnp.stack([features] * RUNS)
    vmapped = jax.vmap(gradient)
    mapped = lambda p, x: jax.lax.map(lambda px: gradient(*px), (p, x))  # noqa: E731
    variants = ((f"the same, {RUNS} runs vmapped", vmapped), (f"the same, {RUNS} runs one after another", mapped))
    for name, function in variants:
        took = seconds(function, stacked, batch, calls=5)
        table.add_row(name, f"{took * 1e3:.3f}", f"{RUNS * step_flops / took / 1e9:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
