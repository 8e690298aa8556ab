"""Tasks a study can run, behind one interface, so that the runner never knows which it drives.

A task turns a validated spec into the static configuration of a batch (hashable: it
selects the compiled code), the batched continuous hyperparameters (vmapped), the PRNG keys
of its seeds, and the compiled :class:`~regspeed.training.Trainer`. New tasks add
themselves to :data:`REGISTRY` with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import pydantic

from regspeed.errors import ConfigError
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs
from regspeed.study.spec import Spec, describe_validation_error

Problems = list[tuple[str, str]]


class Task(Protocol):
    """What the runner needs from a task."""

    name: str
    speed_metrics: tuple[str, ...]  # curves (higher is better) whose learning speed a study measures
    step_unit: str  # what ``budget`` and the curves' step axis count, e.g. "env steps"
    trainer: training.Trainer

    def check(self, spec: Spec) -> Problems:
        """Problems in the task's part of the spec (``config``, ``budget``), as (path, message)."""
        ...

    def resolved_config(self, spec: Spec) -> dict[str, Any]:
        """The task's configuration with every default filled in, as plain JSON data."""
        ...

    def static_config(self, spec: Spec, regularizer: regs.Regularizer) -> Any:
        """The hashable configuration of a batch of runs with this regularizer."""
        ...

    def total_updates(self, static: Any) -> int:
        """Updates of each run."""
        ...

    def steps_per_update(self, static: Any) -> int:
        """Budget units (e.g. env steps) per update."""
        ...

    def hparams(self, spec: Spec, strengths: np.ndarray) -> Any:
        """Continuous hyperparameters of a batch, one row per run."""
        ...

    def run_keys(self, seeds: list[int]) -> jax.Array:
        """One PRNG key per seed (the same seed gives the same key in every condition)."""
        ...

    def bytes_per_run(self, static: Any) -> int:
        """A generous estimate of the device memory one run of a batch needs."""
        ...

    def episode(
        self,
        spec: Spec,
        regularizer: regs.Regularizer,
        carry: dict[str, np.ndarray],
        runs: int,
        position: int,
        seed: int,
        max_steps: int,
    ) -> tuple[Any, list[Any]]:
        """One greedy episode of run ``position`` of a batch checkpoint: (env config, states)."""
        ...


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Make a task available to specs as ``task = "<name>"``."""
    REGISTRY[task.name] = task
    return task


def _plain(value: Any) -> Any:
    """Dataclasses and tuples as JSON would give them back."""
    return json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value))


def _unknown_keys(table: dict[str, Any], kind: type, path: str) -> Problems:
    """Keys of a TOML table that are not fields of the dataclass it configures."""
    known = {field.name for field in dataclasses.fields(kind)}
    return [(f"{path}.{key}", "unknown key; remove it or check its spelling") for key in table if key not in known]


class ConfiguredTask:
    """What the tasks below share: a module with ``Hparams`` and ``run_keys``, a config
    dataclass with ``total_updates`` and ``steps_per_update``, and ``_build`` (in the
    subclass) that validates the spec's ``config`` into it."""

    module: Any

    def _build(self, spec: Spec, regularizer: regs.Regularizer) -> tuple[Any, float, Problems]:
        raise NotImplementedError

    def check(self, spec: Spec) -> Problems:
        """Problems in the task's part of the spec."""
        return self._build(spec, regs.Regularizer())[2]

    def _config(self, spec: Spec, regularizer: regs.Regularizer) -> tuple[Any, float]:
        config, learning_rate, problems = self._build(spec, regularizer)
        if problems:
            raise ConfigError(*problems[0])
        return config, learning_rate

    def static_config(self, spec: Spec, regularizer: regs.Regularizer) -> Any:
        """The configuration of a batch with this regularizer."""
        return self._config(spec, regularizer)[0]

    def total_updates(self, static: Any) -> int:
        """Updates of each run."""
        return static.total_updates

    def steps_per_update(self, static: Any) -> int:
        """Budget units per update."""
        return static.steps_per_update

    def hparams(self, spec: Spec, strengths: np.ndarray) -> Any:
        """Learning rate (the same for all runs) and strength per run."""
        learning_rate = self._config(spec, regs.Regularizer())[1]
        strengths = jnp.asarray(strengths, jnp.float32)
        return self.module.Hparams(jnp.full(strengths.shape, learning_rate, jnp.float32), strengths)

    def run_keys(self, seeds: list[int]) -> jax.Array:
        """One key per seed (the same seed gives the same key in every condition)."""
        return self.module.run_keys(seeds)


# ------------------------------------------------------------------- snake-ppo, snake-dqn


class SnakeAgent(ConfiguredTask):
    """An RL agent on the JAX Snake world: ``snake-ppo`` (:mod:`regspeed.learn.ppo`) or
    ``snake-dqn`` (:mod:`regspeed.agents.dqn`).

    ``config`` has three tables: ``env`` (fields of ``SnakeConfig``), ``network`` (of
    ``NetworkConfig``) and ``ppo`` / ``dqn`` (of ``PPOConfig`` / ``DQNConfig``, plus
    ``learning_rate``); omitted fields keep the agent config's defaults. ``budget`` is in
    env steps.
    """

    speed_metrics = ("score", "steps", "eval_score", "eval_steps")
    step_unit = "env steps"
    study_fields = ("env", "network", "regularizer", "total_updates", "eval_envs", "eval_steps")

    def __init__(self, algo: str) -> None:
        import importlib

        self.algo = algo
        self.name = f"snake-{algo}"
        self.module = importlib.import_module(f"regspeed.learn.{algo}")
        self.config_class = getattr(self.module, {"ppo": "PPOConfig", "dqn": "DQNConfig"}[algo])
        self.trainer = training.Trainer(self.module.init_batch, self.module.advance_batch, self.module.evaluate_batch)

    def _build(self, spec: Spec, regularizer: regs.Regularizer) -> tuple[Any, float, Problems]:
        """(agent config or None, learning rate, problems)."""
        from regspeed.envs import snake
        from regspeed.learn import nets

        algo = self.algo
        defaults = self.config_class()
        problems: Problems = []
        table = dict(spec.config)
        for key in sorted(set(table) - {"env", "network", algo}):
            problems.append(
                (f"config.{key}", f"unknown table; {self.name} takes config.env, config.network, config.{algo}")
            )
        parts: dict[str, Any] = {}
        for part, kind in (("env", snake.SnakeConfig), ("network", nets.NetworkConfig)):
            given = table.get(part, {})
            if not isinstance(given, dict):
                problems.append((f"config.{part}", "must be a table"))
                continue
            unknown = _unknown_keys(given, kind, f"config.{part}")
            if unknown:
                problems += unknown
                continue
            try:
                parts[part] = pydantic.TypeAdapter(kind).validate_python(_plain(getattr(defaults, part)) | given)
            except pydantic.ValidationError as error:
                problems += describe_validation_error(error, ("config", part))
        ppo_table = dict(table.get(algo, {})) if isinstance(table.get(algo, {}), dict) else None
        if ppo_table is None:
            return None, 0.0, [*problems, (f"config.{algo}", "must be a table")]
        learning_rate = ppo_table.pop("learning_rate", self.module.DEFAULT_LEARNING_RATE)
        if not isinstance(learning_rate, int | float) or not (math.isfinite(learning_rate) and learning_rate > 0):
            problems.append((f"config.{algo}.learning_rate", f"must be a number > 0 (got {learning_rate!r})"))
        for key in sorted(set(ppo_table) & set(self.study_fields)):
            problems.append((f"config.{algo}.{key}", "set by the study (budget, [evaluation], [[regularizers]])"))
            ppo_table.pop(key)
        problems += _unknown_keys(ppo_table, self.config_class, f"config.{algo}")
        if problems:
            return None, 0.0, problems
        sizes = [ppo_table.get(name, getattr(defaults, name)) for name in ("num_envs", "rollout_steps")]
        valid_sizes = all(isinstance(size, int) and size > 0 for size in sizes)
        updates = spec.budget // math.prod(sizes) if valid_sizes else 1
        try:
            config = pydantic.TypeAdapter(self.config_class).validate_python(
                ppo_table
                | {
                    "env": parts["env"],
                    "network": parts["network"],
                    "regularizer": regularizer,
                    "total_updates": max(1, updates),
                    "eval_envs": spec.evaluation.episodes,
                    "eval_steps": spec.evaluation.max_steps,
                }
            )
        except pydantic.ValidationError as error:
            for path, message in describe_validation_error(error, ("config", algo)):
                if path in (f"config.{algo}.torso", f"config.{algo}.observation"):  # observation/network mismatch
                    path = "config.network.torso"
                elif path == f"config.{algo}.reg_network":  # e.g. dqn has one network
                    path = "regularizers.network"
                problems.append((path, message))
            return None, float(learning_rate), problems
        if updates < 1:
            problems.append(
                (
                    "budget",
                    f"must be at least one update = num_envs x rollout_steps = {config.steps_per_update} env steps "
                    f"(got {spec.budget})",
                )
            )
        return config, float(learning_rate), problems

    def resolved_config(self, spec: Spec) -> dict[str, Any]:
        """env, network and ppo tables with all defaults (regularizer and budget excluded)."""
        config, learning_rate = self._config(spec, regs.Regularizer())
        ppo_fields = {
            field.name: getattr(config, field.name)
            for field in dataclasses.fields(config)
            if field.name not in self.study_fields
        }
        return _plain(
            {
                "env": dataclasses.asdict(config.env),
                "network": dataclasses.asdict(config.network),
                self.algo: ppo_fields | {"learning_rate": learning_rate},
            }
        )

    def bytes_per_run(self, static: Any) -> int:
        """Rollout buffers, parameters with optimizer state, minibatch activations, envs."""
        agent = self.module
        observation = math.prod(static.env.observation_shape)
        shapes = jax.eval_shape(
            lambda key: agent.network(static).init(key, jnp.zeros(static.env.observation_shape)),
            jax.random.key(0),
        )
        parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
        width = sum(static.network.hidden)
        if static.network.resolve_torso(static.env.observation_shape) == "cnn":
            width += sum(static.network.cnn_channels) * static.env.rows * static.env.cols
        if self.algo == "dqn":  # the replay buffer dominates: observations and reached states
            batch = minibatch = static.batch_size
            rollout = static.buffer_size * (2 * observation + 4)
        else:
            batch = static.batch_size
            minibatch = batch // static.minibatches
            rollout = batch * (2 * observation + 16)
        learning = 4 * minibatch * (observation + 2 * width) + 2 * batch * width
        weights = 10 * parameters
        envs = static.num_envs * static.env.rows * static.env.cols * 3
        return int(1.5 * 4 * (rollout + learning + weights + envs))

    def episode(
        self,
        spec: Spec,
        regularizer: regs.Regularizer,
        carry: dict[str, np.ndarray],
        runs: int,
        position: int,
        seed: int,
        max_steps: int,
    ) -> tuple[Any, list[Any]]:
        """The greedy policy of one run of a batch checkpoint, playing one episode."""
        from regspeed.envs import play
        from regspeed.learn import checkpoint

        config = self.static_config(spec, regularizer)
        template = self.trainer.init_batch(config, self.run_keys([0] * runs), self.hparams(spec, np.zeros(runs)))
        restored = checkpoint.from_arrays(carry, template)
        params = jax.tree.map(lambda leaf: leaf[position], restored.params)
        states, done = self.module.greedy_episode(config, params, jax.random.key(seed), max_steps)
        return config.env, play.first_episode(states, done)


register(SnakeAgent("ppo"))
register(SnakeAgent("dqn"))


# ---------------------------------------------------------------- supervised calibration


class Supervised(ConfiguredTask):
    """A supervised task of :mod:`regspeed.tasks.supervised` (``linreg``, ``teacher``,
    ``digits``, ``modadd``). ``config`` takes any field of ``SupervisedConfig`` (except
    ``task``, ``regularizer``, ``total_updates``) plus ``learning_rate``; ``budget`` is in
    updates (optimizer steps). Learning speed is measured for fitting (train accuracy or
    R^2) and for generalization (test) separately."""

    step_unit = "updates"
    study_fields = ("task", "regularizer", "total_updates")

    def __init__(self, task: str) -> None:
        from regspeed.learn import supervised

        self.name = task
        self.module = supervised
        self.trainer = training.Trainer(supervised.init_batch, supervised.advance_batch, supervised.evaluate_batch)
        quality = "accuracy" if task in supervised.CLASSIFICATION else "r2"
        self.speed_metrics = (f"train_{quality}", f"test_{quality}")
        if task == "linreg":  # how far each run is towards the optimum of its own objective
            self.speed_metrics = ("optimum_progress", *self.speed_metrics)

    def _build(self, spec: Spec, regularizer: regs.Regularizer) -> tuple[Any, float, Problems]:
        table = dict(spec.config)
        learning_rate = table.pop("learning_rate", self.module.DEFAULT_LEARNING_RATE)
        problems: Problems = []
        if not isinstance(learning_rate, int | float) or not (math.isfinite(learning_rate) and learning_rate > 0):
            problems.append(("config.learning_rate", f"must be a number > 0 (got {learning_rate!r})"))
        for key in sorted(set(table) & set(self.study_fields)):
            problems.append((f"config.{key}", "set by the study (task, budget, [[regularizers]])"))
            table.pop(key)
        problems += _unknown_keys(table, self.module.SupervisedConfig, "config")
        if problems:
            return None, 0.0, problems
        try:
            config = pydantic.TypeAdapter(self.module.SupervisedConfig).validate_python(
                table | {"task": self.name, "regularizer": regularizer, "total_updates": spec.budget}
            )
        except pydantic.ValidationError as error:
            found = describe_validation_error(error, ("config",))
            return (
                None,
                float(learning_rate),
                [
                    ("regularizers.network" if path == "config.reg_network" else path, message)
                    for path, message in found
                ],
            )
        return config, float(learning_rate), []

    def resolved_config(self, spec: Spec) -> dict[str, Any]:
        """Every field with its default filled in (regularizer and budget excluded)."""
        config, learning_rate = self._config(spec, regs.Regularizer())
        fields = {
            f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in self.study_fields
        }
        return _plain(fields | {"learning_rate": learning_rate})

    def bytes_per_run(self, static: Any) -> int:
        """Activations of the training and test sets, parameters with optimizer state."""
        x_train, _, x_test, _ = self.module.dataset(static)
        width = max((*static.hidden, static.embedding, 97))
        examples = len(x_train) + len(x_test)
        shapes = jax.eval_shape(
            lambda key: self.module.Model(static).init(key, jnp.asarray(x_train[:1])), jax.random.key(0)
        )
        parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
        return int(1.5 * 4 * (4 * examples * width + 10 * parameters))


for _name in ("linreg", "teacher", "digits", "modadd"):
    register(Supervised(_name))
