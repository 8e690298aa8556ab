"""Gymnasium adapters over the JAX Snake world.

- :class:`SnakeEnv`, a ``gymnasium.Env`` registered as ``regspeed/Snake-v0`` (every
  :class:`~regspeed.envs.snake.SnakeConfig` field is a keyword argument, the level ones
  included: ``gymnasium.make("regspeed/Snake-v0", levels=5, obstacle_density=0.1,
  level_seed_offset=3)`` plays five levels with walls inside the board, which the ``grid``
  observation shows in a fourth channel and both renderings draw; render modes ``ansi``
  and ``rgb_array``). It passes ``gymnasium.utils.env_checker.check_env``, so
  Stable-Baselines3 and CleanRL-style scripts train on it unchanged.
- :class:`SnakeVectorEnv`, a ``gymnasium.vector.VectorEnv`` that steps the whole batch in
  one compiled call, with same-step auto-reset (``info["final_obs"]`` holds the
  observations reached before a reset, masked by ``info["_final_obs"]``).

Both compile once per configuration and share the compiled functions between instances.

A changing world (:mod:`~regspeed.envs.schedule`): ``schedule=Schedule(...)`` (or a dict of
its fields, e.g. ``gymnasium.make("regspeed/Snake-v0", schedule={"phase_steps": 100_000,
"changes": ["observations", "actions"], "seed": 0})``) changes the world every
``phase_steps`` env steps exactly as the JAX learners meet it: the same tables for the same
seed (:func:`~regspeed.envs.schedule.phase_row`, the rows of
:func:`~regspeed.envs.schedule.tables`), applied on the host, each phase's drawn as it
comes (an env holds two phases' rows however long it runs). Env steps count as the
learners count them, every environment's step, so a vector env of ``n`` environments
advances ``n`` per call (the whole call in the world of the env steps before it). The
counter lives as long as the env: ``reset`` starts an episode, not a new sequence of worlds.
What the agent gets is the phase's: the observation it will act on (after a step, in the
world of the next step), the reward of its step (scaled where ``rewards`` change), the
action mask of its own actions; ``info["final_obs"]`` is seen in the world of the step that
reached it, as the learners bootstrap. ``actions``, ``observations``, ``rewards``, ``board``
and ``obstacles`` change here (not ``labels``, a supervised task's); ``env.phase`` and
``env.env_steps`` say where it is.

Walls that change (``board``, ``obstacles``): the env's config gets ``changing_walls`` (as the
agents' does), so the ``grid`` observation has its walls channel from phase 0 on and the
observation space never changes. Each phase's walls are the learners' for the same seed
(the rows of :func:`~regspeed.envs.schedule.walls`, made into a
:class:`~regspeed.envs.snake.World` as :func:`~regspeed.learn.common.world_walls` does), drawn
as the phase comes (:func:`schedules.phase_walls`). A new episode starts in its phase's walls (``reset``
in the phase of the next step; a vector env's same-step reset in the phase of the step that
ended the episode); an episode running across a phase boundary finishes in the walls it
started with.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from regspeed.envs import render, snake
from regspeed.envs import schedule as schedules

GYM_CHANGES = ("actions", "observations", "rewards", *schedules.WALL_CHANGES)  # the changes the adapters make

# Static config first: the jit cache is keyed on it, so every instance with an equal config
# shares one compiled function.
# ``world``: the walls fresh episodes start in where they change (a traced World), else None.
_reset_batch = jax.jit(
    lambda config, keys, world=None: jax.vmap(lambda k: snake.reset(config, k, world))(keys), static_argnums=0
)


@functools.partial(jax.jit, static_argnums=0)
def _autoreset_batch(
    config: snake.SnakeConfig, states: snake.SnakeState, actions: jax.Array, world: snake.World | None = None
) -> tuple[snake.SnakeState, snake.TimeStep]:
    return jax.vmap(lambda s, a: snake.autoreset_step(config, s, a, world=world))(states, actions)


_observe_batch = jax.jit(lambda config, states: jax.vmap(lambda s: snake.observe(config, s))(states), static_argnums=0)


# SnakeEnv fetches everything Python needs after a reset or step as one float32 vector
# (one device-to-host transfer instead of eight): the observation, then these scalars,
# then the action mask.
_SCALARS = ("reward", "terminated", "truncated", "cause", "length", "steps")


def _pack(config: snake.SnakeConfig, state: snake.SnakeState, observation: jax.Array, *scalars: jax.Array) -> jax.Array:
    values = jnp.stack([jnp.asarray(v, jnp.float32) for v in scalars])
    mask = snake.action_mask(config, state).astype(jnp.float32)
    return jnp.concatenate([observation.reshape(-1), values, mask])


@functools.partial(jax.jit, static_argnums=0)
def _reset_packed(
    config: snake.SnakeConfig, key: jax.Array, world: snake.World | None = None
) -> tuple[snake.SnakeState, jax.Array]:
    state = snake.reset(config, key, world)
    running = snake.Cause.RUNNING
    return state, _pack(config, state, snake.observe(config, state), 0.0, False, False, running, state.length, 0)


@functools.partial(jax.jit, static_argnums=0)
def _step_packed(
    config: snake.SnakeConfig, state: snake.SnakeState, action: jax.Array
) -> tuple[snake.SnakeState, jax.Array]:
    state, ts = snake.step(config, state, action)
    packed = _pack(
        config, state, ts.observation, ts.reward, ts.terminated, ts.truncated, ts.cause, state.length, state.steps
    )
    return state, packed


def _make_config(config: snake.SnakeConfig | None, kwargs: dict[str, Any]) -> snake.SnakeConfig:
    if config is not None and kwargs:
        raise snake.ConfigError("config", f"give either config or keyword parameters, not both (got {sorted(kwargs)})")
    return config if config is not None else snake.to_config(**kwargs)


@dataclasses.dataclass
class Phases:
    """Where a Gymnasium env is in its changing world: the schedule, env steps so far (never
    reset by ``reset``) and the rows of the last two phases drawn (a step's and the next's;
    earlier ones are dropped, so an env holds two rows however long it runs); where the walls
    change (``env``, with ``changing_walls``), the last two phases' worlds likewise and the last
    area drawn."""

    schedule: schedules.Schedule
    num_actions: int
    observation_size: int
    env: snake.SnakeConfig | None = None
    env_steps: int = 0
    rows: dict[int, schedules.PhaseRow] = dataclasses.field(default_factory=dict)
    worlds: dict[int, snake.World] = dataclasses.field(default_factory=dict)
    area: tuple[int, schedules.Area] | None = None

    @property
    def phase(self) -> int:
        """The phase of the next env step."""
        return self.env_steps // self.schedule.phase_steps

    def row(self, phase: int) -> schedules.PhaseRow:
        """``phase``'s world, drawn by :func:`schedules.phase_row` (the rows of the learners'
        :func:`schedules.tables`) when first asked for."""
        if phase not in self.rows:
            drawn = schedules.phase_row(self.schedule, self.num_actions, self.observation_size, phase)
            self.rows = {**dict(list(self.rows.items())[-1:]), phase: drawn}  # the last row drawn before, and this
        return self.rows[phase]

    def world(self, phase: int) -> snake.World | None:
        """The walls an episode starting in ``phase`` starts in (on the device; None where the
        walls do not change), drawn by :func:`schedules.phase_walls` when first asked for."""
        if self.env is None:
            return None
        if phase not in self.worlds:
            layout, self.area = schedules.phase_walls(self.schedule, self.env, phase, self.area)
            drawn = snake.world_at(snake.worlds(self.env, layout[None]), 0)
            self.worlds = {**dict(list(self.worlds.items())[-1:]), phase: drawn}
        return self.worlds[phase]


SCHEDULE_FIELDS = tuple(field.name for field in dataclasses.fields(schedules.Schedule))


def _phases(
    found: schedules.Schedule | dict[str, Any] | None, config: snake.SnakeConfig
) -> tuple[snake.SnakeConfig, Phases | None]:
    """The env's config and the :class:`Phases` of a ``schedule`` argument (None: a world that
    never changes); where the schedule changes the walls, the config gets ``changing_walls``
    as the agents' does (after :func:`schedules.check_world`)."""
    if found is None:
        return config, None
    if isinstance(found, dict):
        unknown = [key for key in found if key not in SCHEDULE_FIELDS]
        if unknown:
            raise snake.ConfigError("schedule", f"unknown field {unknown[0]!r}; fields: {', '.join(SCHEDULE_FIELDS)}")
        found = schedules.Schedule(**found)  # its own checks name the field (a list of changes is kept as a tuple)
    if not isinstance(found, schedules.Schedule):
        raise snake.ConfigError("schedule", f"must be a Schedule or a dict of its fields (got {found!r})")
    unsupported = [change for change in found.changes if change not in GYM_CHANGES]
    if unsupported:
        raise snake.ConfigError("changes", f"the Gymnasium adapters change {', '.join(GYM_CHANGES)} "
                                f"(got {unsupported[0]!r})")  # fmt: skip
    if not found.changing:
        return config, None
    env = None
    if found.changes_walls:
        schedules.check_world(found, config)
        config = env = dataclasses.replace(config, changing_walls=True)
    return config, Phases(found, config.num_actions, int(np.prod(config.observation_shape)), env)


def seen(row: schedules.PhaseRow, observation: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`schedules.seen` on the host in ``row``'s phase (NumPy in and out)."""
    batch = observation.shape[: observation.ndim - len(shape)]
    return observation.reshape(*batch, -1)[..., row.observations].reshape(observation.shape)


def carried_out(row: schedules.PhaseRow, action: Any) -> np.ndarray:
    """:func:`schedules.carried_out` on the host: the world's actions for the agent's in ``row``'s phase."""
    return row.actions[np.asarray(action, np.int64)].astype(np.int32)


def scaled(row: schedules.PhaseRow, reward: Any) -> np.ndarray:
    """:func:`schedules.scaled` on the host in ``row``'s phase, in float32 as the learners compute it
    (the scale rounded to float32 as in :func:`schedules.tables`)."""
    return np.asarray(reward, np.float32) * np.float32(row.reward)


def _observation_space(config: snake.SnakeConfig) -> spaces.Box:
    return spaces.Box(low=0.0, high=1.0, shape=config.observation_shape, dtype=np.float32)


def _key_from_generator(generator: np.random.Generator) -> jax.Array:
    return jax.random.key(int(generator.integers(0, 2**32, dtype=np.uint64)))


class _InPhases:
    """Where an adapter is in its changing world (``_phases``; None: a world that never changes)."""

    _phases: Phases | None

    @property
    def env_steps(self) -> int:
        """Env steps taken since the env was made, every environment's (a vector env's
        ``num_envs`` a call; 0 in a world that never changes)."""
        return 0 if self._phases is None else self._phases.env_steps

    @property
    def phase(self) -> int:
        """The phase of the next step (0 in a world that never changes)."""
        return 0 if self._phases is None else self._phases.phase


class SnakeEnv(_InPhases, gymnasium.Env):
    """One Snake episode at a time, stepped from Python.

    ``info`` carries ``score`` (food eaten), ``length``, ``steps``, ``cause`` (a
    :class:`~regspeed.envs.snake.Cause` name, ``running`` until the episode ends) and
    ``action_mask`` (absolute mode masks the reversal, which would be ignored); in a changing
    world (``schedule``, see the module's docstring) also ``phase``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 12}

    def __init__(
        self,
        render_mode: str | None = None,
        config: snake.SnakeConfig | None = None,
        schedule: schedules.Schedule | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.config, self._phases = _phases(schedule, _make_config(config, kwargs))
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise snake.ConfigError(
                "render_mode", f"must be one of {self.metadata['render_modes']} or None (got {render_mode!r})"
            )
        self.render_mode = render_mode
        self.observation_space = _observation_space(self.config)
        self.action_space = spaces.Discrete(self.config.num_actions)
        self._state: snake.SnakeState | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the same seed gives the same episode."""
        super().reset(seed=seed)
        world = None if self._phases is None else self._phases.world(self.phase)
        self._state, packed = _reset_packed(self.config, _key_from_generator(self.np_random), world)
        observation, _, _, _, info = self._unpack(np.asarray(packed))
        observation, _, info = self._as_seen(observation, 0.0, info, self.phase)
        return observation, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply one action (an int in ``action_space``)."""
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        phase = self.phase
        if self._phases is not None:
            action = carried_out(self._phases.row(phase), action)
            self._phases.env_steps += 1
        self._state, packed = _step_packed(self.config, self._state, np.int32(action))
        observation, reward, terminated, truncated, info = self._unpack(np.asarray(packed))
        observation, reward, info = self._as_seen(observation, reward, info, phase)
        return observation, reward, terminated, truncated, info

    def _as_seen(
        self, observation: np.ndarray, reward: float, info: dict[str, Any], phase: int
    ) -> tuple[np.ndarray, float, dict[str, Any]]:
        """The agent's view in a changing world: the reward of a step in ``phase``, the
        observation and action mask of the next step's phase."""
        if self._phases is None:
            return observation, reward, info
        following = self.phase
        row = self._phases.row(following)
        info = {**info, "phase": following, "action_mask": info["action_mask"][row.actions]}
        reward = float(scaled(self._phases.row(phase), reward))
        return seen(row, observation, self.config.observation_shape), reward, info

    def _unpack(self, packed: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        size = int(np.prod(self.config.observation_shape))
        observation = packed[:size].reshape(self.config.observation_shape)
        reward, terminated, truncated, cause, length, steps = packed[size : size + len(_SCALARS)]
        info = {
            "score": int(length) - self.config.initial_length,
            "length": int(length),
            "steps": int(steps),
            "cause": snake.Cause(int(cause)).name.lower(),
            "action_mask": packed[size + len(_SCALARS) :] > 0,
        }
        return observation, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> str | np.ndarray | None:
        """Text (``ansi``) or an RGB frame (``rgb_array``) of the current state."""
        if self._state is None or self.render_mode is None:
            return None
        if self.render_mode == "ansi":
            return render.to_text(self.config, self._state)
        return render.to_rgb(self.config, self._state)


class SnakeVectorEnv(_InPhases, gymnasium.vector.VectorEnv):
    """``num_envs`` Snake episodes stepped together in one compiled call (same-step reset).

    ``info`` holds, per environment, ``final_obs`` (masked by ``_final_obs``) and the ended
    episode's ``score``, ``length``, ``steps`` and ``cause`` (an int
    :class:`~regspeed.envs.snake.Cause`), all masked by ``_episode``. A changing world
    (``schedule``): see the module's docstring; a call counts ``num_envs`` env steps.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        render_mode: str | None = None,
        config: snake.SnakeConfig | None = None,
        schedule: schedules.Schedule | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise snake.ConfigError("num_envs", f"must be a positive integer (got {num_envs!r})")
        self.config, self._phases = _phases(schedule, _make_config(config, kwargs))
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = _observation_space(self.config)
        self.single_action_space = spaces.Discrete(self.config.num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._states: snake.SnakeState | None = None

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every environment; an int seed gives a reproducible batch."""
        if isinstance(seed, list):
            keys = jnp.stack([jax.random.key(s) for s in seed])
        else:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
            keys = jax.random.split(_key_from_generator(self._np_random), self.num_envs)
        world = None if self._phases is None else self._phases.world(self.phase)
        self._states = _reset_batch(self.config, keys, world)
        observations = np.asarray(_observe_batch(self.config, self._states))
        if self._phases is not None:
            observations = seen(self._phases.row(self.phase), observations, self.config.observation_shape)
        return observations, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every environment; ended episodes restart within the same call."""
        if self._states is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        # NumPy in, one writable NumPy copy per leaf out: jnp.asarray and jax.device_get
        # cost 30 and 45 us per call, as much as the compiled step itself (measured).
        actions, phase, world = np.asarray(actions, np.int32), self.phase, None
        if self._phases is not None:
            actions, world = carried_out(self._phases.row(phase), actions), self._phases.world(phase)
            self._phases.env_steps += self.num_envs
        self._states, timestep = _autoreset_batch(self.config, self._states, actions, world)
        ts = jax.tree.map(np.array, timestep)
        if self._phases is not None:
            ts = self._as_seen(ts, phase)
        done = ts.terminated | ts.truncated
        info = {
            "final_obs": ts.final_observation,
            "_final_obs": done,
            "episode": {
                "score": ts.episode_score,
                "length": ts.episode_length,
                "steps": ts.episode_steps,
                "cause": ts.cause,
            },
            "_episode": done,
        }
        return ts.observation, ts.reward, ts.terminated, ts.truncated, info

    def _as_seen(self, ts: snake.TimeStep, phase: int) -> snake.TimeStep:
        """A step's results as the agent gets them in a changing world: the reward and the
        reached states (``final_obs``) of the step's ``phase``, the observations of the next call's."""
        shape, row = self.config.observation_shape, self._phases.row(self.phase)
        stepped = self._phases.row(phase)
        return ts.replace(
            observation=seen(row, ts.observation, shape),
            final_observation=seen(stepped, ts.final_observation, shape),
            reward=scaled(stepped, ts.reward),
        )

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One RGB frame per environment (``rgb_array`` mode)."""
        if self._states is None or self.render_mode != "rgb_array":
            return None
        return tuple(
            render.to_rgb(self.config, jax.tree.map(lambda x, i=i: x[i], self._states)) for i in range(self.num_envs)
        )
