"""Changing worlds: a run's budget in phases, the world changing at each phase boundary.

A :class:`Schedule` (static, part of an agent's configuration) splits training into phases
of ``phase_steps`` env steps. Phase 0 is the world as configured; at the start of every
later phase the world changes in the declared ways (``changes``), without recompiling:

- ``actions``: the agent's action ``i`` is carried out as action ``actions[k][i]``, a
  derangement (every action changes meaning; with 3 relative actions, a rotation).
- ``observations``: the agent sees the world's observation with its numbers permuted by
  ``observations[k]`` (the 11 ``features``, or every number of a ``window`` or ``grid``), as
  in permuted-MNIST continual learning (Dohare et al. 2024).

The phase's tables are drawn on the host with NumPy from ``(seed, phase)`` while the program
is traced, so they are constants of the compiled program indexed by the traced phase (the
update count over the updates per phase, part of every agent's carry). They do not depend
on the run: every seed and condition of a study meets the same sequence of worlds, so their
comparison stays paired. A killed and resumed run is in the phase its update count says.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from regspeed.errors import ConfigError

CHANGES = ("actions", "observations")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How the world changes during a run (hashable: it selects the compiled code).

    Attributes:
        phase_steps: env steps per phase; 0: the world never changes (a stationary run).
        changes: what changes at each phase boundary, some of :data:`CHANGES`.
        seed: draws the phases' permutations (the same for every run).
    """

    phase_steps: int = 0
    changes: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.phase_steps, int) or isinstance(self.phase_steps, bool) or self.phase_steps < 0:
            raise ConfigError("phase_steps", f"must be an integer >= 0, 0 for a world that never changes "
                              f"(got {self.phase_steps!r})")  # fmt: skip
        unknown = [change for change in self.changes if change not in CHANGES]
        if unknown:
            raise ConfigError("changes", f"unknown change {unknown[0]!r}; choose from {', '.join(CHANGES)}")
        if len(set(self.changes)) != len(self.changes):
            raise ConfigError("changes", f"lists a change twice (got {list(self.changes)})")
        if self.phase_steps and not self.changes:
            raise ConfigError("changes", f"give what changes every {self.phase_steps} env steps, e.g. "
                              '["observations"] (or phase_steps = 0 for a world that never changes)')  # fmt: skip
        if self.changes and not self.phase_steps:
            raise ConfigError("phase_steps", "give the env steps per phase for the changes to happen")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError("seed", f"must be an integer from 0 to 2^32 - 1 (got {self.seed!r})")

    @property
    def changing(self) -> bool:
        """Whether the world changes at all."""
        return self.phase_steps > 0

    def phase_updates(self, steps_per_update: int) -> int:
        """Updates per phase; a phase must be a whole number of updates."""
        if self.phase_steps % steps_per_update:
            whole = (self.phase_steps // steps_per_update + 1) * steps_per_update
            raise ConfigError("phase_steps", f"must be a whole number of updates ({steps_per_update:,} env steps "
                              f"each; got {self.phase_steps:,}): e.g. {whole:,}")  # fmt: skip
        return self.phase_steps // steps_per_update

    def phases(self, total_updates: int, steps_per_update: int) -> int:
        """How many phases a run of ``total_updates`` meets (1 for a stationary world)."""
        if not self.changing:
            return 1
        return -(-total_updates // self.phase_updates(steps_per_update))


class WorldTables(NamedTuple):
    """Each phase's action and observation permutations, ``[phases, n]`` (row 0: identity)."""

    actions: np.ndarray
    observations: np.ndarray


def tables(schedule: Schedule, num_actions: int, observation_size: int, phases: int) -> WorldTables:
    """Every phase's permutations (identity for what does not change); deterministic in
    ``schedule.seed``, the same whatever the number of phases asked for."""
    actions = np.tile(np.arange(num_actions), (phases, 1))
    observations = np.tile(np.arange(observation_size), (phases, 1))
    for phase in range(1, phases):
        generator = np.random.default_rng([schedule.seed, phase])
        if "actions" in schedule.changes:
            actions[phase] = derangement(generator, num_actions)
        if "observations" in schedule.changes:
            observations[phase] = generator.permutation(observation_size)
    return WorldTables(actions.astype(np.int32), observations.astype(np.int32))


def derangement(generator: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` that moves every element (n >= 2)."""
    while True:
        permutation = generator.permutation(n)
        if not np.any(permutation == np.arange(n)):
            return permutation


def phase_of(update: jax.Array, phase_updates: int, phases: int) -> jax.Array:
    """The phase of the update numbered ``update`` (0-based; the last phase goes on)."""
    return jnp.minimum(update // phase_updates, phases - 1)


def carried_out(world: WorldTables, phase: jax.Array, action: jax.Array) -> jax.Array:
    """The world's action for the agent's ``action`` in ``phase``."""
    return jnp.asarray(world.actions)[phase][action]


def seen(world: WorldTables, phase: jax.Array, observation: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """What the agent sees of the world's ``observation`` (one of ``shape``, or a batch of
    them) in ``phase``."""
    batch = observation.shape[: observation.ndim - len(shape)]
    flat = observation.reshape(*batch, -1)
    return jnp.take(flat, jnp.asarray(world.observations)[phase], axis=-1).reshape(observation.shape)
