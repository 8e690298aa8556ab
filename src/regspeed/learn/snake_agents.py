"""What the Snake agents (PPO, DQN) share as learners: how their configuration is built
from tables, their metrics, their memory estimate and watching them play.

Tables: ``env`` (fields of :class:`~regspeed.envs.snake.SnakeConfig`), ``network`` (of
:class:`~regspeed.learn.nets.NetworkConfig`) and one named after the algorithm (``ppo``,
``dqn``: fields of its config dataclass, plus ``learning_rate``). Omitted keys keep the
agent config's defaults, except that a ``window`` observation without ``window_size`` sees
the whole board (``2 * max(rows, cols) - 1``). The budget counts env steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regspeed.envs import play as play_module
from regspeed.envs import schedule, snake
from regspeed.errors import ConfigError, ConfigProblemsError
from regspeed.learn import nets
from regspeed.learn.driver import Trainer
from regspeed.learn.learner import (
    MECHANISM_METRICS,
    REGULARIZATION_METRICS,
    Learner,
    Metric,
    Request,
    Setup,
    finite_checks,
)
from regspeed.learn.tables import Problems, Tables, learning_rate, plain, set_by_caller, unknown_keys, validated

CALLER_FIELDS = ("env", "network", "schedule", "regularizer", "total_updates", "eval_episodes", "eval_max_steps")
"""Fields of an agent's config that its other tables or the caller's :class:`Request` set."""

EPISODE_METRICS = (
    Metric("env_steps", "env steps", "env steps"),
    Metric("episodes", "training episodes ended"),
    Metric("score", "training score (food per episode)", "food"),
    Metric("max_score", "best training score", "food"),
    Metric("length", "snake length at the end of training episodes", "cells"),
    Metric("steps", "survival (steps per training episode)", "steps"),
    Metric("eval_score", "greedy evaluation score", "food"),
    Metric("eval_max_score", "best greedy evaluation score", "food"),
    Metric("eval_length", "snake length at the end of greedy evaluation", "cells"),
    Metric("eval_steps", "greedy evaluation survival", "steps"),
    Metric("eval_finished", "share of greedy evaluation episodes that ended"),
    Metric("train_levels_score", "greedy score on training levels", "food"),
    Metric("test_levels_score", "greedy score on held-out levels", "food"),
    Metric("train_levels_steps", "greedy survival on training levels", "steps"),
    Metric("test_levels_steps", "greedy survival on held-out levels", "steps"),
    Metric("levels_gap", "generalization gap (training minus held-out levels' score)", "food", higher_is_better=False),
    *REGULARIZATION_METRICS,
    *MECHANISM_METRICS,
)
"""The metrics every Snake agent reports (the ``*_levels_*`` ones in a world with levels);
each agent adds its losses."""

SPEED_METRICS = ("score", "steps", "eval_score", "eval_steps")
LEVEL_SPEED_METRICS = ("test_levels_score", "train_levels_score", "test_levels_steps", "train_levels_steps")
"""Held-out first: with thresholds on both, a study's answer is about levels never trained on."""
LEVEL_METRICS = (*LEVEL_SPEED_METRICS, "levels_gap")
"""Reported only in a world with levels."""


def speed_metrics(config: Any) -> tuple[str, ...]:
    """The learning-speed curves a configuration produces: the level ones only in a world
    with levels."""
    return SPEED_METRICS + (LEVEL_SPEED_METRICS if config.env.has_levels else ())


def build(config_class: type, algo: str, default_learning_rate: float, tables: Tables, request: Request) -> Setup:
    """An agent's :class:`Setup` from its tables; every problem at once in a
    :class:`~regspeed.errors.ConfigProblemsError`, with paths relative to the tables."""
    defaults = config_class()
    problems: Problems = [
        (key, f"unknown table; snake-{algo} takes env, network, schedule and {algo}")
        for key in sorted(set(tables) - {"env", "network", "schedule", algo})
    ]
    parts: dict[str, Any] = {}
    for part, kind in (("env", snake.SnakeConfig), ("network", nets.NetworkConfig), ("schedule", schedule.Schedule)):
        given = tables.get(part, {})
        if not isinstance(given, dict):
            problems.append((part, "must be a table"))
            continue
        unknown = unknown_keys(given, kind, part)
        if unknown:
            problems += unknown
            continue
        data = plain(getattr(defaults, part)) | given
        if part == "env":
            data = _whole_board_window(data, given)
            if "changing_walls" in given:
                problems.append(("env.changing_walls", 'follows from the schedule\'s changes ("board", "obstacles"); '
                                 "remove it"))  # fmt: skip
        parts[part], found = validated(kind, data, (part,))
        problems += found
    problems += _changing_walls(parts)
    table = tables.get(algo, {})
    if not isinstance(table, dict):
        raise ConfigProblemsError([*problems, (algo, "must be a table")])
    table = dict(table)
    rate, found = learning_rate(table, default_learning_rate, f"{algo}.learning_rate")
    problems += found + set_by_caller(table, CALLER_FIELDS, algo) + unknown_keys(table, config_class, algo)
    if problems:
        raise ConfigProblemsError(problems)
    evaluation = {"eval_episodes": request.eval_episodes, "eval_max_steps": request.eval_max_steps}
    data = table | parts | {"regularizer": request.regularizer, "total_updates": 1}
    config, found = validated(config_class, data | {k: v for k, v in evaluation.items() if v is not None}, (algo,))
    if found:
        raise ConfigProblemsError([(_caller_path(algo, path), message) for path, message in found])
    try:
        config.env.check_held_out(config.eval_episodes)
    except ConfigError as error:
        raise ConfigProblemsError([(f"env.{error.field}", error.problem)]) from None
    updates = request.budget // config.steps_per_update
    if updates < 1:
        one_update = f"num_envs x rollout_steps = {config.steps_per_update} env steps"
        raise ConfigProblemsError([("budget", f"must be at least one update = {one_update} (got {request.budget})")])
    raise_schedule_problems(config.schedule, config.steps_per_update, updates, _ints_per_phase(config))
    return Setup(dataclasses.replace(config, total_updates=updates), rate)


def _changing_walls(parts: dict[str, Any]) -> Problems:
    """Where the schedule changes the walls (``board``, ``obstacles``), the env of ``parts``
    gets ``changing_walls`` (in place); the problems of a world that cannot take them."""
    env, found = parts.get("env"), parts.get("schedule")
    if env is None or found is None or not found.changes_walls:
        return []
    try:
        schedule.check_world(found, env)
    except ConfigError as error:
        return [(f"schedule.{error.field}", error.problem)]
    parts["env"] = dataclasses.replace(env, changing_walls=True)
    return []


def _ints_per_phase(config: Any) -> int:
    """How many int32 an agent config's world tables hold per phase (:func:`schedule.ints_per_phase`)."""
    env = config.env
    size = int(np.prod(env.observation_shape))
    return schedule.ints_per_phase(config.schedule, size, env.num_actions, env.num_cells)


def raise_schedule_problems(
    found: schedule.Schedule, steps_per_update: int, updates: int, ints_per_phase: int = 0
) -> None:
    """A changing world's phases must be whole updates, more than one must fit the budget,
    and their tables (``ints_per_phase`` int32 each) must fit the program."""
    if not found.changing:
        return
    if "labels" in found.changes:
        snake = ", ".join(change for change in schedule.CHANGES if change != "labels")
        raise ConfigProblemsError([("schedule.changes", "labels change in supervised classification tasks only; "
                                    f"a snake's world changes some of: {snake}")])  # fmt: skip
    try:
        phase_updates = found.phase_updates(steps_per_update)
    except ConfigError as error:
        raise ConfigProblemsError([(f"schedule.{error.field}", error.problem)]) from None
    if phase_updates >= updates:
        budget = f"{updates * steps_per_update:,} env steps"
        raise ConfigProblemsError([("schedule.phase_steps", f"must be shorter than the budget ({budget}) for the "
                                    "world to change; make phases shorter or the budget longer")])  # fmt: skip
    if problem := schedule.phases_problem(found, updates, steps_per_update, ints_per_phase):
        raise ConfigProblemsError([("schedule.phase_steps", problem)])


def _whole_board_window(data: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A ``window`` observation with no ``window_size`` given sees the whole board."""
    rows, cols = data.get("rows"), data.get("cols")
    if data.get("observation") != "window" or "window_size" in given:
        return data
    if not (isinstance(rows, int) and isinstance(cols, int)):
        return data  # the rows / cols problem is reported by validation
    return data | {"window_size": 2 * max(rows, cols, 2) - 1}


def _caller_path(algo: str, path: str) -> str:
    """Problems the agent config finds in fields another table or the caller set."""
    if path in (f"{algo}.torso", f"{algo}.observation"):  # observation/network mismatch
        return "network.torso"
    if path == f"{algo}.reg_network":  # e.g. DQN has one network
        return "regularizer.network"
    if path == f"{algo}.reg_period":  # shrink_perturb at phase changes in a world that never changes
        return "regularizer.period"
    return path


def tables(algo: str, setup: Setup) -> Tables:
    """The ``env``, ``network``, ``<algo>`` (and in a changing world ``schedule``) tables of a
    setup, every default filled in."""
    config = setup.config
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in CALLER_FIELDS}
    own = fields | {"learning_rate": setup.learning_rate}
    env = {name: value for name, value in plain(config.env).items() if name != "changing_walls"}  # the schedule's
    found = {"env": env, "network": config.network, algo: own}
    if config.schedule.changing:  # a stationary world's tables stay as stores written before schedules hold them
        found["schedule"] = schedule.table(config.schedule)
    return plain(found)


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Sizes that set an agent's memory: floats per observation, parameters, the widest
    activations per example, and the environments' boards."""

    observation: int
    parameters: int
    width: int
    envs: int


def footprint(config: Any, network: Any) -> Footprint:
    """The :class:`Footprint` of an agent config whose network is ``network``."""
    shape = config.env.observation_shape
    shapes = jax.eval_shape(lambda key: network.init(key, jnp.zeros(shape)), jax.random.key(0))
    width = sum(config.network.hidden)
    if config.network.resolve_torso(shape) == "cnn":
        width += sum(config.network.cnn_channels) * config.env.rows * config.env.cols
    return Footprint(
        observation=math.prod(shape),
        parameters=sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)),
        width=width,
        envs=config.num_envs * config.env.rows * config.env.cols * 3,
    )


def bytes_estimate(sizes: Footprint, stored: int, batch: int, minibatch: int) -> int:
    """A generous estimate of one run's memory: ``stored`` floats of rollout or replay,
    a learning batch of ``batch`` examples in minibatches of ``minibatch``, parameters with
    their optimizer state, and the environments."""
    learning = 4 * minibatch * (sizes.observation + 2 * sizes.width) + 2 * batch * sizes.width
    return int(1.5 * 4 * (stored + learning + 10 * sizes.parameters + sizes.envs))


def player(
    greedy_episode: Callable[[Any, Any, jax.Array, int], tuple[snake.SnakeState, jax.Array]],
) -> Callable[[Any, Any, jax.Array, int], tuple[snake.SnakeConfig, list[snake.SnakeState]]]:
    """A learner's ``play``: one greedy episode of one run's parameters, as ``(env, states)``."""

    def play(config: Any, params: Any, key: jax.Array, max_steps: int) -> tuple[snake.SnakeConfig, list]:
        states, done = greedy_episode(config, params, key, max_steps)
        return config.env, play_module.first_episode(states, done)

    return play


def learner(
    algo: str,
    description: str,
    config_class: type,
    default_learning_rate: float,
    batched: tuple[Callable, Callable, Callable],
    losses: tuple[Metric, ...],
    bytes_per_run: Callable[[Any], int],
    greedy_episode: Callable[[Any, Any, jax.Array, int], tuple[snake.SnakeState, jax.Array]],
) -> Learner:
    """The :class:`Learner` ``snake-<algo>``: built from the ``env``, ``network`` and
    ``<algo>`` tables, its ``batched`` ``(init_batch, advance_batch, evaluate_batch)``,
    the episode metrics plus its ``losses``, budgets in env steps, and watchable."""
    metrics = (*losses, *EPISODE_METRICS)  # losses first: a divergence is reported by its loss
    return Learner(
        name=f"snake-{algo}",
        description=description,
        step_unit="env steps",
        trainer=Trainer(*batched, finite_checks(metrics)),
        metrics=metrics,
        speed_metrics=SPEED_METRICS + LEVEL_SPEED_METRICS,
        measured=speed_metrics,
        progress_metric="score",
        build=functools.partial(build, config_class, algo, default_learning_rate),
        tables=functools.partial(tables, algo),
        bytes_per_run=bytes_per_run,
        play=player(greedy_episode),
        learning_rate_key=f"{algo}.learning_rate",
    )
