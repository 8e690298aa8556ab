"""Threefry unrolled on the CPU (regspeed.threefry_cpu) draws the very bits JAX's rolled
lowering draws: numbers do not depend on which lowering compiled a program."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from jax._src.interpreters import mlir
from jax._src.random import threefry2x32

from regspeed import threefry_cpu
from regspeed.envs import snake  # noqa: F401  (importing the world registers the unrolled lowering)


@contextlib.contextmanager
def rolled_lowering() -> Iterator[None]:
    """JAX's own CPU lowering (a rolled loop) while the block runs."""
    mlir.register_lowering(threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_cpu_lowering_rule, platform="cpu")
    try:
        yield
    finally:
        assert threefry_cpu.unroll_on_cpu()


def draws(seed: jax.Array) -> list[jax.Array]:
    """What the trainers draw: splits, bits, uniforms, integers, a categorical sample."""
    key = jax.random.key(seed)
    a, b, c, d = jax.random.split(key, 4)
    return [
        jax.random.key_data(jax.random.split(a, 3)),
        jax.random.bits(b, (5,), jnp.uint32),
        jax.random.uniform(c, (7,)),
        jax.random.randint(d, (6,), 0, 11),
        jax.random.categorical(a, jnp.log(jnp.asarray([0.2, 0.3, 0.5])), shape=(9,)),
    ]


@functools.cache
def compiled_draws() -> tuple[Callable, Callable]:
    """:func:`draws` compiled once with each lowering: (unrolled, rolled)."""
    seed = jax.ShapeDtypeStruct((), jnp.int32)
    unrolled = jax.jit(draws).lower(seed).compile()
    with rolled_lowering():
        rolled = jax.jit(lambda s: draws(s)).lower(seed).compile()  # a new function: lowered again
    return unrolled, rolled


@given(st.integers(0, 2**31 - 1))
def test_unrolled_threefry_draws_the_same_bits_as_the_rolled_loop(seed: int) -> None:
    unrolled, rolled = compiled_draws()
    for x, y in zip(unrolled(np.int32(seed)), rolled(np.int32(seed)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_unrolled_lowering_is_registered_and_used() -> None:
    assert threefry_cpu.unroll_on_cpu()
    text = jax.jit(lambda k: jax.random.bits(k, (4,), jnp.uint32)).lower(jax.random.key(0)).as_text()
    assert "while" not in text  # JAX's CPU lowering is a while loop over the rounds
    with rolled_lowering():
        text = jax.jit(lambda k: jax.random.bits(k, (3,), jnp.uint32)).lower(jax.random.key(0)).as_text()
    assert "while" in text
