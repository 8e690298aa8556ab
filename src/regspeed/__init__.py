"""regspeed: does L1/L2 regularization make a neural network learn faster? Measured.

Importing the package registers the Gymnasium environment ``regspeed/Snake-v0``, so
``gymnasium.make("regspeed:regspeed/Snake-v0")`` works without importing anything else.
"""

from __future__ import annotations

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


_register_gymnasium_env()
