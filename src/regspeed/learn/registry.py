"""Every learner, by name: the one list that makes a learner available to the command line,
studies (``task = "<name>"``) and benchmarks.

Adding a learner: write its module (see :mod:`regspeed.learn.ppo` and
``docs/ARCHITECTURE.md``), ending with ``LEARNERS = (Learner(...),)``, and add the module
to :data:`MODULES`.
"""

from __future__ import annotations

import importlib

from regspeed.errors import ConfigError
from regspeed.learn.learner import Learner

MODULES = (
    "regspeed.learn.ppo",
    "regspeed.learn.dqn",
    "regspeed.learn.supervised",
)


def _collect() -> dict[str, Learner]:
    found: dict[str, Learner] = {}
    for module in MODULES:
        for learner in importlib.import_module(module).LEARNERS:
            if learner.name in found:
                raise ValueError(f"two learners are named {learner.name!r}")
            found[learner.name] = learner
    return found


LEARNERS: dict[str, Learner] = _collect()


def names() -> list[str]:
    """The registered learners' names, in registry order."""
    return list(LEARNERS)


def get(name: str, field: str = "task") -> Learner:
    """The learner called ``name``; an unknown name is a :class:`ConfigError` on ``field``."""
    if name not in LEARNERS:
        raise ConfigError(field, f"unknown task {name!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[name]
