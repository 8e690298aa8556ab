"""Changing worlds: a run's budget in phases, the world changing at each phase boundary.

A :class:`Schedule` (static, part of an agent's configuration) splits training into phases
of ``phase_steps`` env steps. Phase 0 is the world as configured; at the start of every
later phase the world changes in the declared ways (``changes``), without recompiling:

- ``actions``: the agent's action ``i`` is carried out as action ``actions[k][i]``, a
  derangement (every action changes meaning; with 3 relative actions, a rotation).
- ``observations``: the agent sees the world's observation with its numbers permuted by
  ``observations[k]`` (the 11 ``features``, or every number of a ``window`` or ``grid``), as
  in permuted-MNIST continual learning (Dohare et al. 2024). A supervised task's inputs
  are permuted the same way.
- ``labels`` (supervised classification only): every example's label ``y`` becomes
  ``actions[k][y]``, a derangement of the classes (a new label mapping; Kumar et al. 2023).
  It shares the ``actions`` row: the outputs change meaning, as an agent's actions do.
- ``rewards``: every reward the learner receives is multiplied by ``rewards[k]``, a scale
  drawn log-uniformly in [0.1, 10] (phase 0: 1). The score (food eaten) is the world's and
  does not change; what the critic or Q-network must predict does (its targets rescale).
- ``board``: the configured ``rows x cols`` is the largest board; each later phase plays on
  an active area of drawn size (rows and cols each from ``min_side`` to the configured
  ones) at a drawn place, never the previous phase's area; the cells outside it are walls.
- ``obstacles``: each later phase has its own obstacles inside the (active) board, a drawn
  pillar-lattice layout of ``obstacle_density`` as a level's (:func:`walls`).

A ``board`` or ``obstacles`` world keeps its walls in the episode (``SnakeConfig.changing_walls``,
which the agents set; the ``grid`` observation has the walls channel from phase 0 on): a new
episode starts in its phase's walls, an episode running across a phase boundary finishes in
the walls it started with.

The phase's tables are drawn on the host with NumPy from ``(seed, phase)`` while the program
is traced, so they are constants of the compiled program indexed by the traced phase (the
update count over the updates per phase, part of every agent's carry). They do not depend
on the run: every seed and condition of a study meets the same sequence of worlds, so their
comparison stays paired. A killed and resumed run is in the phase its update count says.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from regspeed.envs import snake
from regspeed.errors import ConfigError

CHANGES = ("actions", "observations", "labels", "board", "obstacles", "rewards")
WALL_CHANGES = ("board", "obstacles")  # changes that put walls in the world
SETTINGS = {"min_side": "board", "obstacle_density": "obstacles"}  # a change's own settings


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How the world changes during a run (hashable: it selects the compiled code).

    Attributes:
        phase_steps: env steps per phase; 0: the world never changes (a stationary run).
        changes: what changes at each phase boundary, some of :data:`CHANGES`.
        seed: draws the phases' permutations (the same for every run).
        min_side: ``board``: the least rows and cols of a phase's active area; 0 (the
            default): the least the snake needs, ``max(4, initial_length + 1)``.
        obstacle_density: ``obstacles``: the share of the board's cells that are obstacles
            in a later phase, on average, in (0, 0.25].
    """

    phase_steps: int = 0
    changes: tuple[str, ...] = ()
    seed: int = 0
    min_side: int = 0
    obstacle_density: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.phase_steps, int) or isinstance(self.phase_steps, bool) or self.phase_steps < 0:
            raise ConfigError("phase_steps", f"must be an integer >= 0, 0 for a world that never changes "
                              f"(got {self.phase_steps!r})")  # fmt: skip
        if not isinstance(self.changes, (tuple, list)) or not all(isinstance(c, str) for c in self.changes):
            raise ConfigError("changes", f"must be a list of changes, some of {', '.join(CHANGES)} "
                              f"(got {self.changes!r})")  # fmt: skip
        object.__setattr__(self, "changes", tuple(self.changes))  # a list (as TOML and JSON give) kept hashable
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
        whole = isinstance(self.min_side, int) and not isinstance(self.min_side, bool)
        if not whole or not (self.min_side == 0 or self.min_side >= 4):
            raise ConfigError("min_side", "must be an integer >= 4 (the smallest board), or 0 for the least the "
                              f"snake needs (got {self.min_side!r})")  # fmt: skip
        number = isinstance(self.obstacle_density, (int, float)) and not isinstance(self.obstacle_density, bool)
        if not number or not 0 < self.obstacle_density <= 0.25:
            raise ConfigError("obstacle_density", "must be in (0, 0.25]: obstacles stand on every other row and "
                              f"column (got {self.obstacle_density!r})")  # fmt: skip
        for setting, change in SETTINGS.items():
            if getattr(self, setting) != _DEFAULTS[setting] and change not in self.changes:
                raise ConfigError(setting, f'is a setting of the "{change}" change, which changes does not list')

    @property
    def changing(self) -> bool:
        """Whether the world changes at all."""
        return self.phase_steps > 0

    @property
    def changes_walls(self) -> bool:
        """Whether the world's walls change (``board`` or ``obstacles``)."""
        return any(change in WALL_CHANGES for change in self.changes)

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


MAX_PHASES = 10_000  # a run's phases: each phase's world is a table compiled into the program
MAX_TABLE_BYTES = 64 * 2**20  # all phases' tables together: constants of the compiled program
WALL_INTS_PER_CELL = 11  # a World's int32 per board cell and phase: walls, starts (4 headings x 2), free, rank


def phases_problem(found: Schedule, total_updates: int, steps_per_update: int, ints_per_phase: int = 0) -> str | None:
    """Why a run of ``total_updates`` meets too many phases of ``found`` for its tables (a
    problem of ``phase_steps``), or None: more than :data:`MAX_PHASES`, or tables of
    ``ints_per_phase`` int32 per phase over :data:`MAX_TABLE_BYTES`."""
    count = found.phases(total_updates, steps_per_update)
    fix = "make phases longer or the budget shorter"
    if count > MAX_PHASES:
        return (f"gives {count:,} phases over the budget, more than {MAX_PHASES:,} (each phase's world is a table "
                f"compiled into the program): {fix}")  # fmt: skip
    size = count * ints_per_phase * 4
    if size > MAX_TABLE_BYTES:
        return (f"gives {count:,} phases whose worlds' tables take {size / 2**20:,.0f} MiB, more than "
                f"{MAX_TABLE_BYTES // 2**20} MiB compiled into the program: {fix}")  # fmt: skip
    return None


def ints_per_phase(found: Schedule, observation_size: int, num_actions: int, num_cells: int) -> int:
    """How many int32 a snake's world tables hold per phase (an upper bound): the observation
    and action permutations, and with walls that change, :data:`WALL_INTS_PER_CELL` per cell."""
    walls = WALL_INTS_PER_CELL * num_cells if found.changes_walls else 0
    return observation_size + num_actions + 1 + walls


REWARD_SCALES = (0.1, 10.0)  # the ``rewards`` change's scales: log-uniform between these
_REWARDS = 0x5CA1E  # the random stream of a phase's reward scale, apart from its permutations' and walls'


class PhaseRow(NamedTuple):
    """One phase's world: the action permutation ``[num_actions]``, the observation
    permutation ``[observation_size]`` (both int32, identity in phase 0 and for what does not
    change) and the reward scale (1 in phase 0 and without the ``rewards`` change)."""

    actions: np.ndarray
    observations: np.ndarray
    reward: float


def phase_row(schedule: Schedule, num_actions: int, observation_size: int, phase: int) -> PhaseRow:
    """``phase``'s row of :func:`tables`, drawn from ``(schedule.seed, phase)`` alone (so a
    Gymnasium adapter draws only the phase it is in)."""
    actions, observations = np.arange(num_actions), np.arange(observation_size)
    if phase > 0:
        generator = np.random.default_rng([schedule.seed, phase])
        if "actions" in schedule.changes or "labels" in schedule.changes:
            actions = derangement(generator, num_actions)
        if "observations" in schedule.changes:
            observations = generator.permutation(observation_size)
    return PhaseRow(actions.astype(np.int32), observations.astype(np.int32), reward_scale(schedule, phase))


class WorldTables(NamedTuple):
    """Each phase's action and observation permutations, ``[phases, n]`` (row 0: identity),
    and reward scales, ``[phases]`` (row 0: 1; None: 1 in every phase)."""

    actions: np.ndarray
    observations: np.ndarray
    rewards: np.ndarray | None = None


def tables(schedule: Schedule, num_actions: int, observation_size: int, phases: int) -> WorldTables:
    """Every phase's permutations (identity for what does not change) and reward scales, the
    rows of :func:`phase_row` stacked; deterministic in ``schedule.seed``, the same whatever
    the number of phases asked for."""
    rows = [phase_row(schedule, num_actions, observation_size, phase) for phase in range(phases)]
    return WorldTables(
        np.array([row.actions for row in rows], np.int32).reshape(phases, num_actions),
        np.array([row.observations for row in rows], np.int32).reshape(phases, observation_size),
        np.array([row.reward for row in rows], np.float32),
    )


def reward_scale(schedule: Schedule, phase: int) -> float:
    """What the ``rewards`` change multiplies the learner's rewards by in ``phase``: 1 in
    phase 0 and without the change, else ``10 ** u`` with ``u`` uniform in [-1, 1] (log-uniform
    in :data:`REWARD_SCALES`), drawn from ``(seed, phase)`` in a stream of its own, so adding
    the change leaves the phases' permutations as they were."""
    if phase == 0 or "rewards" not in schedule.changes:
        return 1.0
    low, high = np.log10(REWARD_SCALES)
    return float(10 ** np.random.default_rng([schedule.seed, phase, _REWARDS]).uniform(low, high))


def derangement(generator: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` that moves every element (n >= 2)."""
    while True:
        permutation = generator.permutation(n)
        if not np.any(permutation == np.arange(n)):
            return permutation


def phase_of(update: jax.Array, phase_updates: int, phases: int) -> jax.Array:
    """The phase of the update numbered ``update`` (0-based; the last phase goes on)."""
    return jnp.minimum(update // phase_updates, phases - 1)


def ends_phase(update: jax.Array, phase_updates: int, total_updates: int) -> jax.Array:
    """Whether the update numbered ``update`` (0-based) is the last of a phase that another
    phase follows (the run's last update is not: no phase follows it)."""
    following = jnp.asarray(update) + 1
    return (following % phase_updates == 0) & (following < total_updates)


def carried_out(world: WorldTables, phase: jax.Array, action: jax.Array) -> jax.Array:
    """The world's action for the agent's ``action`` in ``phase``."""
    return jnp.asarray(world.actions)[phase][action]


def scaled(world: WorldTables, phase: jax.Array, reward: jax.Array) -> jax.Array:
    """The reward the learner receives for the world's ``reward`` (any shape) in ``phase``."""
    if world.rewards is None:
        return reward
    return reward * jnp.asarray(world.rewards, reward.dtype)[phase]


def seen(world: WorldTables, phase: jax.Array, observation: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """What the agent sees of the world's ``observation`` (one of ``shape``, or a batch of
    them) in ``phase``."""
    batch = observation.shape[: observation.ndim - len(shape)]
    flat = observation.reshape(*batch, -1)
    return jnp.take(flat, jnp.asarray(world.observations)[phase], axis=-1).reshape(observation.shape)


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Schedule)}
_BOARD, _OBSTACLES = 1, 2  # the random streams of a phase's walls, apart from its permutations'


def table(found: Schedule) -> dict[str, Any]:
    """The schedule as a table (plain data), a change's own settings (:data:`SETTINGS`) only
    where ``changes`` lists the change, so that a table written before the change existed
    reads the same today."""
    data = {field.name: getattr(found, field.name) for field in dataclasses.fields(Schedule)}
    return {name: value for name, value in data.items() if SETTINGS.get(name, name) in (name, *found.changes)}


def check_world(found: Schedule, env: snake.SnakeConfig) -> None:
    """Refuse a ``board`` or ``obstacles`` change that the world ``env`` cannot take: a
    :class:`~regspeed.errors.ConfigError` naming the schedule's field."""
    if not found.changes_walls:
        return
    if env.has_levels:
        changes = " and ".join(change for change in found.changes if change in WALL_CHANGES)
        raise ConfigError("changes", f"{changes} need a world without levels: set the env's levels and "
                          "obstacle_density to 0 (--levels 0 --obstacle-density 0 on the command line; the "
                          "\"obstacles\" change brings obstacles)")  # fmt: skip
    if "board" not in found.changes:
        return
    needs = env.initial_length + 1
    if found.min_side > min(env.rows, env.cols):
        raise ConfigError("min_side", f"must be at most the configured board's rows and cols ({env.rows} x "
                          f"{env.cols}), the largest board (got {found.min_side})")  # fmt: skip
    if 0 < found.min_side < needs:
        raise ConfigError("min_side", f"must be at least initial_length + 1 = {needs}: the snake starts straight "
                          f"with room for a step ahead (got {found.min_side})")  # fmt: skip
    if least_side(found, env) == env.rows == env.cols:
        raise ConfigError("min_side", f"must be below rows and cols ({env.rows}) for the board to change "
                          f"(got {found.min_side or 'the least the snake needs'}), or a larger board")  # fmt: skip


def least_side(found: Schedule, env: snake.SnakeConfig) -> int:
    """The least rows and cols of a ``board`` phase's area: ``min_side``, or where it is 0 the
    least the snake of ``env`` needs (``max(4, initial_length + 1)``)."""
    return found.min_side or max(snake.MIN_SIZE, env.initial_length + 1)


Area = tuple[int, int, int, int]  # a board phase's active area: top, left, rows, cols


def walls(found: Schedule, env: snake.SnakeConfig, phases: int) -> np.ndarray:
    """Every phase's walls, bool[phases, rows * cols] row-major (phase 0: none, the world as
    configured); deterministic in ``found.seed``, the same whatever the number of phases asked
    for. ``board``: the cells outside the phase's active area; ``obstacles``: a pillar layout
    inside it (:func:`~regspeed.envs.snake.pillar_walls`). Rows of :func:`phase_walls`."""
    check_world(found, env)
    layouts = np.zeros((phases, env.num_cells), bool)
    previous = None
    for phase in range(1, phases):
        layouts[phase], previous = phase_walls(found, env, phase, previous)
    return layouts


def phase_walls(
    found: Schedule, env: snake.SnakeConfig, phase: int, previous: tuple[int, Area] | None = None
) -> tuple[np.ndarray, tuple[int, Area]]:
    """Row ``phase`` of :func:`walls` (bool[rows * cols]) drawn alone, and the ``(phase,
    area)`` to pass as ``previous`` for a later phase. The ``obstacles`` layout is drawn from
    ``(seed, phase)`` alone; a ``board`` phase's area from the one before it, so the areas are
    drawn on from ``previous`` (a phase at most ``phase`` and its area; None: from phase 0), a
    few integers a phase (what the Gymnasium adapters draw as their phase comes)."""
    known, area = previous if previous is not None and previous[0] <= phase else (0, (0, 0, env.rows, env.cols))
    if "board" in found.changes:
        for later in range(known + 1, phase + 1):
            area = next_area(found, env, area, np.random.default_rng([found.seed, later, _BOARD]))
    if phase == 0:
        return np.zeros(env.num_cells, bool), (0, area)
    layout = snake.area_walls(env, *area)
    if "obstacles" in found.changes:
        generator = np.random.default_rng([found.seed, phase, _OBSTACLES])
        layout = snake.pillar_walls(env, layout, found.obstacle_density, generator)
    return layout, (phase, area)


def next_area(
    found: Schedule, env: snake.SnakeConfig, previous: tuple[int, int, int, int], generator: np.random.Generator
) -> tuple[int, int, int, int]:
    """A phase's active area ``(top, left, rows, cols)``: rows and cols each uniform from
    :func:`least_side` to the board's, at a uniform place on the board, drawn again while it is the
    ``previous`` phase's area."""
    while True:  # ends: check_world refuses a board whose area cannot change (least_side = rows = cols)
        rows = int(generator.integers(least_side(found, env), env.rows + 1))
        cols = int(generator.integers(least_side(found, env), env.cols + 1))
        area = (int(generator.integers(0, env.rows - rows + 1)), int(generator.integers(0, env.cols - cols + 1)), rows,
                cols)  # fmt: skip
        if area != previous:
            return area
