"""The tiny configuration of every registered learner, in one place: small enough to
compile and run in seconds, large enough that every branch of an update runs (PPO's
epochs and minibatches; DQN past ``learning_starts`` with a target copy; a hidden layer)."""

from __future__ import annotations

import numpy as np

from regspeed.learn import registry
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Learner, Request, Setup

TABLES: dict[str, tuple[dict, int]] = {  # learner -> (tables, budget in its step unit)
    "snake-ppo": (
        {
            "env": {"rows": 5, "cols": 5, "observation": "features"},
            "network": {"hidden": [32]},
            "ppo": {"num_envs": 8, "rollout_steps": 16, "epochs": 2, "minibatches": 2},
        },
        8 * 128,
    ),
    "snake-dqn": (
        {
            "env": {"rows": 6, "cols": 6, "observation": "features"},
            "network": {"hidden": [16]},
            "dqn": {
                "num_envs": 4, "rollout_steps": 2, "batch_size": 16, "buffer_size": 256, "learning_starts": 32,
                "n_step": 3, "target_update_every": 5,
            },
        },
        20 * 8,
    ),
    "linreg": ({"inputs": 6, "train_samples": 64, "test_samples": 32, "hidden": [], "condition_number": 100.0}, 20),
    "teacher": ({"inputs": 6, "train_samples": 64, "test_samples": 32, "hidden": [16], "teacher_hidden": [8]}, 20),
    "digits": ({"hidden": [16], "train_fraction": 0.5, "batch_size": 64}, 20),
    "modadd": ({"modulus": 7, "embedding": 8, "hidden": [16], "train_fraction": 0.5}, 20),
}
EVALUATION = {"eval_episodes": 4, "eval_max_steps": 30}


LEVELS = {"levels": 3, "obstacle_density": 0.1}  # a Snake world with levels and walls
CHANGING = {  # a world whose actions and observations change every 2 updates (a tiny PPO update is 128 env steps)
    "snake-ppo": {"phase_steps": 2 * 128, "changes": ["actions", "observations"], "seed": 3},
    "snake-dqn": {"phase_steps": 2 * 8, "changes": ["actions", "observations"], "seed": 3},
}


def setup(
    name: str,
    regularizer: regs.Regularizer | None = None,
    budget: int | None = None,
    env: dict | None = None,
    schedule: dict | None = None,
) -> Setup:
    """The tiny setup of learner ``name`` (regularizer ``l2`` unless given; ``env`` entries
    added to a Snake agent's env table; ``schedule``: its schedule table, a changing world)."""
    tables, tiny_budget = TABLES[name]
    if env:
        tables = tables | {"env": tables["env"] | env}
    if schedule:
        tables = tables | {"schedule": schedule}
    request = Request(budget or tiny_budget, regularizer or regs.Regularizer("l2"), **EVALUATION)
    return registry.get(name).build(tables, request)


def start(name: str, seeds: list[int], strengths: list[float], **options: object) -> tuple[Learner, Setup, object]:
    """The learner, its tiny setup and fresh carries of ``seeds`` at ``strengths``."""
    learner = registry.get(name)
    tiny = setup(name, **options)
    return learner, tiny, learner.start(tiny, seeds, np.asarray(strengths, np.float32))
