"""Double DQN on the JAX Snake world, following the Trainer contract (like :mod:`ppo`).

One *update* is: every environment takes ``rollout_steps`` epsilon-greedy steps into the
replay buffer, then (once ``learning_starts`` env steps are stored) ``gradient_steps``
minibatch steps of Double DQN (van Hasselt et al. 2016): the online network picks the next
action, the target network values it; Huber loss; global-norm gradient clipping; the
target network follows by hard copies every ``target_update_every`` updates (``tau = 1``)
or by Polyak averaging every update (``tau < 1``).

The replay buffer lives in the carry as JAX arrays: a ring over time of
``buffer_size // num_envs`` rows, one column per environment, so a run's buffer is vmapped
with it. Sampling is uniform over stored transitions. n-step returns read forward along an
environment's column and stop at the end of an episode. Termination (wall, body, win)
stops bootstrapping; truncation (starvation, time limit) bootstraps from the state reached
before the auto-reset (``TimeStep.final_observation``), which the buffer stores.

The module ends with its declaration as a learner (``LEARNERS``, see
:mod:`regspeed.learn.learner`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from regspeed.envs import schedule, snake
from regspeed.errors import ConfigError, refuse_non_finite
from regspeed.learn import common, mechanisms, nets, snake_agents
from regspeed.learn import regularizers as regs
from regspeed.learn.common import Hparams, Metrics
from regspeed.learn.common import hparams as hparams  # re-exported: dqn.hparams
from regspeed.learn.common import run_keys as run_keys  # re-exported: dqn.run_keys
from regspeed.learn.learner import Metric

DEFAULT_LEARNING_RATE = 5e-4  # the tuned default (README learning table)
MECHANISM_EVERY = 100  # updates between measurements of the representation (see mechanism_metrics)


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Static DQN settings (hashable: they select the compiled code).

    Defaults follow common Snake/Atari practice scaled to a 10 x 10 board; see the README's
    learning table for what they reach.
    """

    env: snake.SnakeConfig = dataclasses.field(default_factory=lambda: snake.SnakeConfig(observation="features"))
    network: nets.NetworkConfig = dataclasses.field(default_factory=nets.NetworkConfig)
    regularizer: regs.Regularizer = dataclasses.field(default_factory=regs.Regularizer)
    schedule: schedule.Schedule = dataclasses.field(default_factory=schedule.Schedule)  # a changing world
    num_envs: int = 16
    rollout_steps: int = 4  # env steps per environment per update
    gradient_steps: int = 2  # minibatch steps per update
    batch_size: int = 128
    buffer_size: int = 50_000  # transitions, over all environments
    learning_starts: int = 2_000  # env steps stored before learning begins
    gamma: float = 0.99
    n_step: int = 3
    tau: float = 1.0  # 1: hard copies every target_update_every updates; < 1: Polyak every update
    target_update_every: int = 100
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    exploration_fraction: float = 0.1  # of total_updates, over which epsilon decays linearly
    max_grad_norm: float = 10.0
    adam_eps: float = 1e-5
    total_updates: int = 1000  # the horizon of the exploration schedule
    eval_episodes: int = 32  # greedy evaluation: episodes, each at most eval_max_steps long
    eval_max_steps: int = 500

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        for name in (
            "num_envs",
            "rollout_steps",
            "gradient_steps",
            "batch_size",
            "buffer_size",
            "n_step",
            "target_update_every",
            "total_updates",
            "eval_episodes",
            "eval_max_steps",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"must be a positive integer (got {value!r})")
        if not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ConfigError("learning_starts", f"must be an integer >= 0 (got {self.learning_starts!r})")
        if self.buffer_size < self.batch_size:
            raise ConfigError(
                "buffer_size", f"must hold at least one batch of {self.batch_size} transitions (got {self.buffer_size})"
            )
        if self.buffer_rows < self.n_step + 1:
            raise ConfigError(
                "buffer_size",
                f"gives {self.buffer_rows} steps per environment; n_step = {self.n_step} needs more than that "
                f"(at least {(self.n_step + 1) * self.num_envs})",
            )
        for name in ("epsilon_start", "epsilon_end", "exploration_fraction", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, f"must be in [0, 1] (got {getattr(self, name)})")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError("tau", f"must be in (0, 1] (got {self.tau})")
        if self.max_grad_norm <= 0:
            raise ConfigError("max_grad_norm", f"must be > 0 (got {self.max_grad_norm})")
        if self.regularizer.network != "all":
            raise ConfigError("reg_network", "DQN has one network (the Q-network); use all")
        self.network.resolve_torso(self.env.observation_shape)  # observation/network mismatch
        regs.check_world(self.regularizer, self.schedule.changing)  # shrink_perturb at phase changes

    @property
    def buffer_rows(self) -> int:
        """Steps of each environment the ring buffer holds."""
        return self.buffer_size // self.num_envs

    @property
    def steps_per_update(self) -> int:
        """Env steps per update."""
        return self.num_envs * self.rollout_steps


class QNetwork(nn.Module):
    """Action values from a torso and a linear head, as ``q/{torso,head}``."""

    network: nets.NetworkConfig
    torso_kind: str
    num_actions: int
    use_dropout: bool = False

    @nn.compact
    def __call__(self, observation: jax.Array, dropout_rate: jax.Array | float = 0.0, train: bool = False) -> jax.Array:
        """Q-values, [..., num_actions]."""
        return nets.Branch(
            self.network, self.torso_kind, self.use_dropout, self.num_actions, 1.0, with_torso=True, name="q"
        )(observation, dropout_rate, train)


def network(config: DQNConfig) -> QNetwork:
    """The Q-network of a configuration."""
    return QNetwork(
        network=config.network,
        torso_kind=config.network.resolve_torso(config.env.observation_shape),
        num_actions=config.env.num_actions,
        use_dropout=config.regularizer.kind == "dropout",
    )


@flax.struct.dataclass
class Replay:
    """Transitions as a ring over time: every array is [buffer_rows, num_envs, ...]."""

    observation: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array  # terminated or truncated
    reached: jax.Array  # observation of the state reached before any reset
    position: jax.Array  # next row to write
    filled: jax.Array  # rows holding data


@flax.struct.dataclass
class Carry:
    """Everything a run needs to continue: a checkpoint is exactly this pytree."""

    params: Any
    target_params: Any
    init_params: Any
    opt_state: Any
    replay: Replay
    env_state: snake.SnakeState
    observation: jax.Array
    key: jax.Array
    update: jax.Array
    hparams: Hparams


def init(config: DQNConfig, key: jax.Array, hp: Hparams) -> Carry:
    """A fresh run: network, target copy, optimizer, an empty buffer, environments."""
    key, net_key, env_key = jax.random.split(key, 3)
    params = network(config).init(net_key, jnp.zeros(config.env.observation_shape, jnp.float32))["params"]
    env_state = snake.reset_batch(config.env, env_key, config.num_envs)
    observation = jax.vmap(lambda s: snake.observe(config.env, s))(env_state)
    rows, envs, shape = config.buffer_rows, config.num_envs, config.env.observation_shape
    replay = Replay(
        observation=jnp.zeros((rows, envs, *shape), jnp.float32),
        action=jnp.zeros((rows, envs), jnp.int32),
        reward=jnp.zeros((rows, envs), jnp.float32),
        terminated=jnp.zeros((rows, envs), bool),
        done=jnp.zeros((rows, envs), bool),
        reached=jnp.zeros((rows, envs, *shape), jnp.float32),
        position=jnp.zeros((), jnp.int32),
        filled=jnp.zeros((), jnp.int32),
    )
    return Carry(
        params=params,
        target_params=params,
        init_params=params,
        opt_state=common.adam_optimizer(config, hp).init(params),
        replay=replay,
        env_state=env_state,
        observation=observation,
        key=key,
        update=jnp.zeros((), jnp.int32),
        hparams=hp,
    )


def epsilon(config: DQNConfig, update: jax.Array) -> jax.Array:
    """Exploration rate at an update: linear from start to end, then constant."""
    span = max(1.0, config.exploration_fraction * config.total_updates)
    progress = jnp.minimum(update.astype(jnp.float32) / span, 1.0)
    return config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)


def _collect(config: DQNConfig, carry: Carry) -> tuple[Carry, Metrics]:
    """``rollout_steps`` epsilon-greedy steps in every environment, written to the buffer."""
    net = network(config)
    rate = epsilon(config, carry.update)
    view = common.perspective(config, carry.update)  # a changing world: this phase's (else the identity)

    def step(state: tuple, _: None) -> tuple[tuple, tuple]:
        env_state, observation, key, replay = state
        key, explore_key, random_key = jax.random.split(key, 3)
        seen = view.see(observation)
        greedy = jnp.argmax(net.apply({"params": carry.params}, seen), axis=-1)
        random = jax.random.randint(random_key, (config.num_envs,), 0, config.env.num_actions)
        action = jnp.where(jax.random.uniform(explore_key, (config.num_envs,)) < rate, random, greedy)
        world = view.world  # where the walls change: the phase's, that new episodes start in
        env_state, ts = jax.vmap(lambda s, a: snake.autoreset_step(config.env, s, a, world=world))(
            env_state, view.act(action)
        )
        row = replay.position
        replay = replay.replace(
            observation=replay.observation.at[row].set(seen),
            action=replay.action.at[row].set(action),
            reward=replay.reward.at[row].set(view.reward(ts.reward)),  # as the learner receives it
            terminated=replay.terminated.at[row].set(ts.terminated),
            done=replay.done.at[row].set(ts.terminated | ts.truncated),
            reached=replay.reached.at[row].set(view.see(ts.final_observation)),
            position=(row + 1) % config.buffer_rows,
            filled=jnp.minimum(replay.filled + 1, config.buffer_rows),
        )
        episode = (ts.terminated | ts.truncated, ts.episode_score, ts.episode_length, ts.episode_steps)
        return (env_state, ts.observation, key, replay), episode

    (env_state, observation, key, replay), episode = jax.lax.scan(
        step, (carry.env_state, carry.observation, carry.key, carry.replay), None, length=config.rollout_steps
    )
    carry = carry.replace(env_state=env_state, observation=observation, key=key, replay=replay)
    return carry, {**common.episode_metrics(*episode), "epsilon": rate}


def n_step_targets(config: DQNConfig, replay: Replay, rows: jax.Array, envs: jax.Array) -> dict[str, jax.Array]:
    """For sampled (row, env) starts: the n-step return, the state to bootstrap from and its
    discount (0 after a termination). A return stops at the first step that ends an episode."""
    offsets = jnp.arange(config.n_step)
    path = (rows[:, None] + offsets[None, :]) % config.buffer_rows  # [batch, n]
    rewards = replay.reward[path, envs[:, None]]
    done = replay.done[path, envs[:, None]]
    # still in the episode at step k: no episode end strictly before k
    alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(done[:, :1]), ~done[:, :-1]], axis=1), axis=1).astype(bool)
    discounts = config.gamma ** offsets.astype(jnp.float32)
    returns = jnp.sum(jnp.where(alive, rewards, 0.0) * discounts, axis=1)
    last = jnp.where(done.any(axis=1), jnp.argmax(done, axis=1), config.n_step - 1)  # index of the final step
    last_row = path[jnp.arange(len(rows)), last]
    terminated = replay.terminated[last_row, envs]
    return {
        "observation": replay.observation[rows, envs],
        "action": replay.action[rows, envs],
        "return": returns,
        "bootstrap": replay.reached[last_row, envs],
        "discount": jnp.where(terminated, 0.0, config.gamma ** (last + 1).astype(jnp.float32)),
    }


def _sample(config: DQNConfig, replay: Replay, key: jax.Array) -> dict[str, jax.Array]:
    """Uniform (row, env) starts among those whose n steps are all stored."""
    row_key, env_key = jax.random.split(key)
    usable = jnp.maximum(replay.filled - config.n_step + 1, 1)
    oldest = (replay.position - replay.filled) % config.buffer_rows
    offset = jax.random.randint(row_key, (config.batch_size,), 0, usable)
    rows = (oldest + offset) % config.buffer_rows
    envs = jax.random.randint(env_key, (config.batch_size,), 0, config.num_envs)
    return n_step_targets(config, replay, rows, envs)


def _task_loss(
    config: DQNConfig, params: Any, target_params: Any, batch: dict[str, jax.Array], rate: jax.Array, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Huber loss of Double DQN's n-step target."""
    net = network(config)
    q = net.apply({"params": params}, batch["observation"], rate, train=True, rngs={"dropout": key})
    q_taken = jnp.take_along_axis(q, batch["action"][:, None], axis=1)[:, 0]
    next_action = jnp.argmax(net.apply({"params": params}, batch["bootstrap"]), axis=-1)
    next_q = jnp.take_along_axis(net.apply({"params": target_params}, batch["bootstrap"]), next_action[:, None], 1)
    target = jax.lax.stop_gradient(batch["return"] + batch["discount"] * next_q[:, 0])
    loss = optax.huber_loss(q_taken, target).mean()
    return loss, {"q_loss": loss, "q_mean": q_taken.mean()}


def _learn(config: DQNConfig, carry: Carry) -> tuple[Carry, Metrics]:
    """``gradient_steps`` minibatch steps (skipped, parameters unchanged, before learning starts)."""
    optimizer = common.adam_optimizer(config, carry.hparams)
    regularizer, strength = config.regularizer, carry.hparams.strength
    rate = regs.dropout_rate(regularizer, strength)
    stored = carry.replay.filled * config.num_envs
    learning = (stored >= config.learning_starts) & (carry.replay.filled >= config.n_step)

    def gradient_step(state: tuple, step: jax.Array) -> tuple[tuple, tuple[Metrics, jax.Array]]:
        params, opt_state, key, moved = state
        key, sample_key, dropout_key = jax.random.split(key, 3)
        batch = _sample(config, carry.replay, sample_key)
        (_, parts), task_grad = jax.value_and_grad(_task_loss, argnums=1, has_aux=True)(
            config, params, carry.target_params, batch, rate, dropout_key
        )
        parts = {**parts, **regs.gradient_diagnostics(regularizer, task_grad, params, carry.init_params, strength)}
        # shrink_perturb with period 0: after the last step of a phase's last update (once learning has started)
        at_phase_change = common.phase_change_step(config, carry.update, step, config.gradient_steps)
        # the optimizer adds the penalty's gradient
        updates, new_opt_state = optimizer.update(task_grad, opt_state, params, **at_phase_change)
        new_params = optax.apply_updates(params, updates)
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(learning, new, old), (new_params, new_opt_state), (params, opt_state)
        )
        moved = jax.tree.map(lambda total, step: total + jnp.where(learning, step, 0.0), moved, updates)
        return (params, opt_state, key, moved), (parts, batch["observation"][: mechanisms.SAMPLE_ROWS])

    # ``moved`` sums the update's steps (for the effective learning rate): cheaper than
    # keeping the parameters from before the update alive through the loop.
    moved = jax.tree.map(jnp.zeros_like, carry.params)
    (params, opt_state, key, moved), (parts, sampled) = jax.lax.scan(
        gradient_step, (carry.params, carry.opt_state, carry.key, moved), jnp.arange(config.gradient_steps)
    )
    metrics = jax.tree.map(lambda x: jnp.where(learning, jnp.mean(x), jnp.nan), parts)
    update = carry.update + 1
    if config.tau < 1.0:
        target = optax.incremental_update(params, carry.target_params, config.tau)
    else:
        copy = update % config.target_update_every == 0
        target = jax.tree.map(lambda online, old: jnp.where(copy, online, old), params, carry.target_params)
    metrics["learning_rate"] = opt_state.hyperparams["learning_rate"]
    metrics["reg_loss"] = regs.penalty(regularizer, params, carry.init_params, strength)
    metrics.update(regs.weight_statistics(params))
    metrics.update(mechanism_metrics(config, moved, params, sampled[-1], update))
    return carry.replace(params=params, target_params=target, opt_state=opt_state, key=key, update=update), metrics


def mechanism_metrics(
    config: DQNConfig, moved: Any, after: Any, observations: jax.Array, update: jax.Array
) -> Metrics:
    """An update's mechanism metrics (:mod:`~regspeed.learn.mechanisms`), on every
    :data:`MECHANISM_EVERY`-th update only (NaN on the others): one SVD of 128 features
    costs about as much as a whole default update, and even the other metrics' few small
    operations cost a few percent of one.

    Dormant units and srank: the online Q-network with the parameters after the update,
    without dropout, on ``observations``, the batch sampled by the update's last gradient
    step (its first 256; before ``learning_starts``, the initial network on the replay so
    far). Effective learning rate: the weights moved by the update's gradient steps
    (``moved``; 0 before learning starts) and after them.
    """
    net = network(config)

    def activations_of(observations: jax.Array) -> list[jax.Array]:
        return mechanisms.hidden_activations(net, {"params": after}, observations)

    return mechanisms.metrics(MECHANISM_EVERY, update, activations_of, observations, moved, after)


def update(config: DQNConfig, carry: Carry) -> tuple[Carry, Metrics]:
    """One update: collect, then learn."""
    carry, collected = _collect(config, carry)
    carry, learned = _learn(config, carry)
    return carry, {"env_steps": carry.update * config.steps_per_update, **collected, **learned}


def advance(config: DQNConfig, carry: Carry, n_updates: int) -> tuple[Carry, Metrics]:
    """``n_updates`` updates; metrics have a leading axis of length ``n_updates``."""
    return jax.lax.scan(lambda c, _: update(config, c), carry, None, length=n_updates)


def _greedy(config: DQNConfig, params: Any) -> Callable[[jax.Array], jax.Array]:
    net = network(config)
    return lambda observation: jnp.argmax(net.apply({"params": params}, observation), axis=-1)


def evaluate(config: DQNConfig, carry: Carry) -> Metrics:
    """The greedy policy on ``eval_episodes`` fixed episodes (see :func:`common.greedy_evaluation`)."""
    view = common.perspective(config, jnp.maximum(carry.update - 1, 0))  # the world of the last update
    choose = common.in_world(view, _greedy(config, carry.params))
    return common.greedy_evaluation(config.env, config.eval_episodes, config.eval_max_steps, choose, view.world)


# ----------------------------------------------------------------- batched, compiled


init_batch, advance_batch, evaluate_batch = common.compiled(init, advance, evaluate)


@functools.partial(jax.jit, static_argnums=(0, 3))
def greedy_episode(
    config: DQNConfig, params: Any, key: jax.Array, max_steps: int
) -> tuple[snake.SnakeState, jax.Array]:
    """One environment played by the greedy policy of ``params`` (one run's parameters)."""
    view = common.perspective(config, config.total_updates - 1)  # a changing world: its last phase
    choose = common.in_world(view, _greedy(config, params))
    return common.greedy_episode(config.env, key, max_steps, choose, view.world)


# ----------------------------------------------------------------- the learner


def bytes_per_run(config: DQNConfig) -> int:
    """The replay buffer (observations and reached states), parameters with optimizer and
    target copies, minibatch activations, environments."""
    sizes = snake_agents.footprint(config, network(config))
    replay = config.buffer_size * (2 * sizes.observation + 4)
    return snake_agents.bytes_estimate(sizes, replay, config.batch_size, config.batch_size)


LOSSES = (
    Metric("epsilon", "exploration rate"),
    # NaN until learning starts (no minibatch step yet), so not a divergence check
    Metric("q_loss", "Huber loss of the n-step Double DQN target", higher_is_better=False),
    Metric("q_mean", "mean Q-value of the actions taken"),
)

LEARNERS = (
    snake_agents.learner(
        "dqn",
        "Double DQN (n-step, replay in the carry) playing Snake",
        DQNConfig,
        DEFAULT_LEARNING_RATE,
        (init_batch, advance_batch, evaluate_batch),
        LOSSES,
        bytes_per_run,
        greedy_episode,
    ),
)
