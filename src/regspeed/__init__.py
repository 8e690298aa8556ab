"""regspeed: does L1/L2 regularization make a neural network learn faster? Measured.

Importing the package registers the Gymnasium environment ``regspeed/Snake-v0``, so
``gymnasium.make("regspeed:regspeed/Snake-v0")`` works without importing anything else.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

ENV_ID = "regspeed/Snake-v0"


def _register_gymnasium_env() -> None:
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="regspeed.envs.gym:SnakeEnv",
            vector_entry_point="regspeed.envs.gym:SnakeVectorEnv",
        )


def _avoid_xla_cpu_scheduler_hang() -> None:
    """Turn off XLA:CPU's concurrency-optimized scheduler (jaxlib 0.10.2).

    With it, some of our vmapped programs (e.g. PPO's ``init`` for 2 runs x 64
    environments with a 128 x 128 MLP) never finish: every worker thread idles while the
    caller waits for a result. Turning the scheduler off fixes it deterministically. The
    flag is read when JAX first starts its CPU backend, so it only takes effect if
    regspeed is imported before any JAX computation runs; a user's own XLA_FLAGS value for
    it wins.
    """
    flag = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
    current = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in current:
        os.environ["XLA_FLAGS"] = f"{current} {flag}".strip()


_avoid_xla_cpu_scheduler_hang()
_register_gymnasium_env()
