"""Shared, compiled-once helpers for the test suite (JAX compile time dominates it), and the
suite's persistent compilation cache."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from regspeed import compile_cache
from regspeed.errors import ConfigError

# Compile once: the suite keeps JAX's compiled programs between sessions, through the same
# mechanism as the command line (regspeed.compile_cache), in a folder of its own beside the
# user's (~/.cache/regspeed/jax-tests/<machine type>: private to the user, apart per machine),
# so a second session, and the processes the tests start (kill-and-resume children, the CLI,
# the notebook's kernel, the installed wheel: they inherit the environment enable() sets),
# load what the first compiled. A cached program is the program compiled: every number is
# the same warm or cold. REGSPEED_COMPILE_CACHE set by the caller wins (off: a cold suite).
# Tests of the cache itself use folders of their own (tests/test_compile_cache.py).
TESTS_COMPILE_CACHE = compile_cache.default_base().with_name("jax-tests")
os.environ.setdefault(compile_cache.ENV, str(TESTS_COMPILE_CACHE))
try:
    compile_cache.enable()  # before JAX is imported: JAX reads the variables it sets
except ConfigError as refused:  # e.g. a read-only home: the suite runs, compiling everything
    print(f"conftest: compiled programs are not cached: {refused}", file=sys.stderr)
    compile_cache.enable(compile_cache.OFF)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from regspeed.envs import snake  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))  # for reference_snake

settings.register_profile(
    "regspeed",
    deadline=None,  # the first example of each config pays for compilation
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("regspeed")

# A few configurations cover the rules' branches; keeping them few bounds compile time.
CONFIGS = (
    snake.SnakeConfig(rows=4, cols=4, initial_length=2, starvation_limit=10),  # tight: wins and body hits
    snake.SnakeConfig(rows=5, cols=7, action_mode="absolute", initial_length=3, time_limit=25, observation="features"),
    snake.SnakeConfig(rows=6, cols=4, initial_length=1, observation="window", window_size=5, starvation_limit=7),
    snake.SnakeConfig(),
)
STEPS = 48


def _rollout(config: snake.SnakeConfig, key: jax.Array, actions: jax.Array):
    """Reset with ``key`` and take ``actions`` with auto-reset.

    Returns the states before every step and after the last one (leading axis T + 1) and
    the time steps (leading axis T).
    """
    return _steps_from(config, snake.reset(config, key), actions)


def _steps_from(config: snake.SnakeConfig, state: snake.SnakeState, actions: jax.Array):
    """The states (T + 1, the first included) and time steps (T) of auto-reset steps from ``state``."""

    def body(state, action):
        next_state, timestep = snake.autoreset_step(config, state, action)
        return next_state, (state, timestep)

    last, (states, timesteps) = jax.lax.scan(body, state, actions)
    states = jax.tree.map(lambda xs, x: jax.numpy.concatenate([xs, x[None]]), states, last)
    return states, timesteps


rollout = jax.jit(_rollout, static_argnums=0)


def _level_rollout(config: snake.SnakeConfig, level: jax.Array, key: jax.Array, actions: jax.Array):
    """:func:`rollout` from the start of level ``level`` (a world with levels); ``key`` draws
    the levels of the episodes after the first."""
    return _steps_from(config, snake.reset_to_level(config, level, key), actions)


level_rollout = jax.jit(_level_rollout, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def batched_rollout(config: snake.SnakeConfig, keys: jax.Array, actions: jax.Array):
    """:func:`rollout` vmapped over a batch of keys and action sequences."""
    return jax.vmap(lambda key, acts: _rollout(config, key, acts))(keys, actions)


def index(tree, i: int):
    """Element ``i`` along the leading axis of every leaf, as host arrays."""
    return jax.tree.map(
        lambda x: x[i] if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x[i]), tree
    )


def leaves_equal(a: object, b: object) -> bool:
    """Every leaf of two pytrees bit for bit (keys as their raw data, NaN equal to NaN)."""
    raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
    return all(
        np.array_equal(np.asarray(raw(x)), np.asarray(raw(y)), equal_nan=True)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_study's tiny study, run once, uninterrupted, in this process (shared by the
    study and report tests: each run costs two compilations)."""
    from test_study import TINY_SPEC, tiny_spec

    from regspeed.study import runner

    folder = tmp_path_factory.mktemp("tiny-study")
    outcome = runner.run(tiny_spec(), folder, TINY_SPEC)
    assert not outcome.already_finished and outcome.runs_total == 6 and outcome.runs_failed == 0
    return folder


def batch_zero_updates(folder: Path) -> int:
    """How far batch 0 of a running study has got (0 before its store exists or while it is busy)."""
    import contextlib
    import sqlite3

    from regspeed.study import store as store_module

    if not (folder / store_module.DATABASE).exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE, timeout=5)) as connection:
            return int(connection.execute("SELECT updates_done FROM batches WHERE batch_id = 0").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def kill_mid_batch(spec_path: Path, folder: Path, watched: Path | None = None) -> int:
    """Run ``regspeed study SPEC --out FOLDER`` in a child, freeze it once batch 0 (of the
    study in ``watched``, default FOLDER) has stored a chunk, then SIGKILL it; the updates
    batch 0 had stored when it froze."""
    watched = folder if watched is None else watched
    import signal
    import subprocess
    import time

    command = [sys.executable, "-m", "regspeed.cli", "study", str(spec_path), "--out", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while batch_zero_updates(watched) == 0:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the study made no progress"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGSTOP)  # freeze it, look, then kill it
        return batch_zero_updates(watched)
    finally:
        process.kill()
        process.wait()


@pytest.fixture(autouse=True, scope="module")
def _fresh_compiled_programs() -> object:
    """Each test module starts without the previous modules' compiled programs (they come back
    from the persistent compile cache when needed). The whole suite in one process otherwise
    holds every program it ever compiled; with about 800 tests that process crashed in the C++
    unwinder (libgcc_s) late in the run, while every module passed on its own."""
    yield
    jax.clear_caches()
