"""Timing and FLOP accounting shared by the trainer throughput benchmarks.

``advance_rate`` times a trainer's batched ``advance``; ``dense_macs`` and
``matmul_flops_per_second`` give the FLOP side.

XLA's cost analysis counts a loop body once, so training FLOPs are counted here from the
layer shapes instead, and compared with the dense-matmul FLOP/s measured in the same run
on the same shapes (the most the matrix products of training could reach here).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from rich.table import Table


def advance_rate(advance_batch: Callable, config: Any, carry: Any, updates: int, repeats: int) -> float:
    """Aggregate env steps/s of ``advance_batch(config, carry, updates)`` over the batch's
    runs: best of ``repeats`` timed calls after one that compiles (and warms up)."""
    runs = jax.tree.leaves(carry)[0].shape[0]
    carry, metrics = advance_batch(config, carry, updates)
    jax.block_until_ready(metrics)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        carry, metrics = advance_batch(config, carry, updates)
        jax.block_until_ready(metrics)
        best = min(best, time.perf_counter() - start)
    return runs * updates * config.steps_per_update / best


def dense_macs(params: dict) -> int:
    """Multiply-accumulates of one forward pass through every dense kernel of ``params``."""
    return sum(leaf.shape[0] * leaf.shape[1] for leaf in jax.tree.leaves(params) if leaf.ndim == 2)


def matmul_flops_per_second(rows: int, widths: Sequence[int], repeats: int, loops: int = 50) -> float:
    """Dense-matmul FLOP/s of ``rows`` x ``widths[i]`` @ ``widths[i]`` x ``widths[i + 1]`` products."""
    shapes = list(itertools.pairwise(widths))
    inputs = [jnp.full((rows, a), 0.01, jnp.float32) for a, _ in shapes]
    weights = [jnp.full((a, b), 0.01, jnp.float32) for a, b in shapes]

    @jax.jit
    def run(inputs: list[jax.Array], weights: list[jax.Array]) -> jax.Array:
        def body(_: int, acc: jax.Array) -> jax.Array:
            # Scaling by the carry keeps the compiler from hoisting the products out of the loop.
            return acc + sum(((x * (1 + acc * 1e-30)) @ w).sum() for x, w in zip(inputs, weights, strict=True))

        return jax.lax.fori_loop(0, loops, body, jnp.zeros(()))

    flops = loops * sum(2 * rows * a * b for a, b in shapes)
    jax.block_until_ready(run(inputs, weights))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(inputs, weights))
        best = min(best, time.perf_counter() - start)
    return flops / best


def add_rows(table: Table, flops_per_step: float, peak: float, one_run: float, eight_runs: float) -> float:
    """FLOP rows of a throughput table; returns the env steps/s the matmul peak allows."""
    ceiling = peak / flops_per_step
    table.add_row("FLOPs per env step", f"{flops_per_step / 1e6:.2f} M", "", "matrix products, from the layer shapes")
    table.add_row("dense matmul, same shapes", f"{peak / 1e9:.1f} GFLOP/s", "", "measured in this run")
    table.add_row(
        "fraction of matmul FLOP/s reached",
        f"{eight_runs * flops_per_step / peak:.0%}",
        "",
        f"8 runs: {eight_runs * flops_per_step / 1e9:.1f} GFLOP/s",
    )
    notes = "matrix products alone, at the peak"
    table.add_row("env steps/s at the matmul peak", f"{ceiling:,.0f}", f"{ceiling / one_run:.2f}x", notes)
    return ceiling
