"""PPO on the JAX Snake world, following the Trainer contract.

- ``init(config, key, hparams) -> carry`` is pure; ``hparams`` holds the continuous knobs
  (learning rate, regularizer strength) as arrays so that runs can be vmapped over them
  and over seeds.
- ``advance(config, carry, n_updates) -> (carry, metrics)`` is a ``lax.scan`` over PPO
  updates; ``metrics`` has one row per update.
- ``evaluate(config, carry) -> metrics`` plays the greedy policy on a fixed set of
  evaluation episodes (the same for every run and every call).

Clipped PPO (Schulman et al. 2017) as in CleanRL / PureJaxRL: GAE, per-minibatch
advantage normalisation, clipped value loss, entropy bonus, global-norm gradient clipping,
linear learning-rate annealing. Bootstrapping: truncated episodes (starvation, time limit)
bootstrap from the value of the state reached before the auto-reset
(``TimeStep.final_observation``); terminated ones do not.

The module ends with its declaration as a learner (``LEARNERS``, see
:mod:`regspeed.learn.learner`): how it is built from tables, its metrics and memory estimate.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from regspeed.envs import schedule, snake
from regspeed.errors import ConfigError, refuse_non_finite
from regspeed.learn import common, mechanisms, nets, snake_agents
from regspeed.learn import regularizers as regs
from regspeed.learn.common import Hparams
from regspeed.learn.common import hparams as hparams  # re-exported: ppo.hparams
from regspeed.learn.common import run_keys as run_keys  # re-exported: ppo.run_keys
from regspeed.learn.learner import Metric

Metrics = dict[str, jax.Array]


DEFAULT_LEARNING_RATE = 1e-3  # the tuned default (README learning table)
MECHANISM_EVERY = 1  # updates between mechanism metrics: every one (about 1% of a PPO update)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Static PPO settings (hashable: they select the compiled code).

    The defaults are the tuned ones for a 10 x 10 board (see the README's learning table).
    """

    env: snake.SnakeConfig = dataclasses.field(
        default_factory=lambda: snake.SnakeConfig(observation="window", window_size=19)
    )
    network: nets.NetworkConfig = dataclasses.field(default_factory=nets.NetworkConfig)
    regularizer: regs.Regularizer = dataclasses.field(default_factory=regs.Regularizer)
    schedule: schedule.Schedule = dataclasses.field(default_factory=schedule.Schedule)  # a changing world
    num_envs: int = 64
    rollout_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    anneal_lr: bool = True
    total_updates: int = 1000  # the horizon of the learning-rate annealing
    eval_episodes: int = 32  # greedy evaluation: episodes, each at most eval_max_steps long
    eval_max_steps: int = 500
    runs_per_vmap: int = 0  # runs of a batch advanced in one vmap; 0: automatic (see vmap_group)

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        for name in (
            "num_envs", "rollout_steps", "epochs", "minibatches", "total_updates", "eval_episodes", "eval_max_steps"
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be a positive integer (got {value!r})")
        if not isinstance(self.runs_per_vmap, int) or self.runs_per_vmap < 0:
            raise ConfigError("runs_per_vmap", f"must be an integer >= 0, 0 for automatic (got {self.runs_per_vmap!r})")
        if self.batch_size % self.minibatches:
            raise ConfigError(
                "minibatches",
                f"must divide num_envs * rollout_steps = {self.batch_size} (got {self.minibatches})",
            )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, f"must be in [0, 1] (got {getattr(self, name)})")
        self.network.resolve_torso(self.env.observation_shape)  # observation/network mismatch
        regs.check_world(self.regularizer, self.schedule.changing)  # shrink_perturb at phase changes

    @property
    def batch_size(self) -> int:
        """Transitions per update."""
        return self.num_envs * self.rollout_steps

    @property
    def steps_per_update(self) -> int:
        """Env steps per update (the same as the batch size)."""
        return self.batch_size

    @property
    def vmap_group(self) -> int:
        """Runs of a batch advanced together in one vmap, the groups one after another (0: all
        at once).

        Automatic (``runs_per_vmap = 0``): on a CPU one run at a time, elsewhere all at once
        (a GPU needs the batch to be busy). On XLA:CPU vmapped runs lose: their products
        become batched matrix products, 2.5x slower than the same products one run after
        another (8 runs of the 128 x 128 MLP's forward and backward passes on 2,048 rows: 56
        against 138 GFLOP/s), and vmapped minibatch gathers of the ``window`` observation
        were 3x slower. 8 runs with ``features``: 122 k env steps/s one after another, 105 k
        vmapped, 108 k with only the rollouts vmapped (README "Training speed").
        """
        return self.runs_per_vmap or (1 if jax.default_backend() == "cpu" else 0)


@flax.struct.dataclass
class Carry:
    """Everything a run needs to continue: a checkpoint is exactly this pytree."""

    params: Any
    init_params: Any  # w0, for l2_init and for diagnostics
    opt_state: Any
    env_state: snake.SnakeState  # batched over num_envs
    observation: jax.Array  # batched over num_envs
    key: jax.Array
    update: jax.Array  # int32, updates done
    hparams: Hparams


def network(config: PPOConfig) -> nets.PolicyValueNet:
    """The actor-critic network of a configuration."""
    return nets.PolicyValueNet(
        network=config.network,
        torso_kind=config.network.resolve_torso(config.env.observation_shape),
        num_actions=config.env.num_actions,
        use_dropout=config.regularizer.kind == "dropout",
    )


def init(config: PPOConfig, key: jax.Array, hp: Hparams) -> Carry:
    """A fresh run: initial parameters, optimizer state and a batch of environments."""
    key, net_key, env_key = jax.random.split(key, 3)
    dummy = jnp.zeros(config.env.observation_shape, jnp.float32)
    params = network(config).init(net_key, dummy)["params"]
    env_state = snake.reset_batch(config.env, env_key, config.num_envs)
    observation = jax.vmap(lambda s: snake.observe(config.env, s))(env_state)
    return Carry(
        params=params,
        init_params=params,
        opt_state=common.adam_optimizer(config, hp).init(params),
        env_state=env_state,
        observation=observation,
        key=key,
        update=jnp.zeros((), jnp.int32),
        hparams=hp,
    )


@flax.struct.dataclass
class _Transition:
    observation: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array  # value of the state reached (before any reset)
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    episode_score: jax.Array
    episode_length: jax.Array
    episode_steps: jax.Array


def _rollout(config: PPOConfig, carry: Carry) -> tuple[Carry, _Transition]:
    """Act for ``rollout_steps`` in every environment, then value every state at once.

    Acting needs only the policy network; the values of the observed states and of the
    states reached (the bootstrap targets) are computed after the loop in two large
    batches, where matrix products are far more efficient than 64 rows at a time.
    """
    net = network(config)
    variables = {"params": carry.params}
    view = common.perspective(config, carry.update)  # a changing world: this phase's (else the identity)

    def step(state: tuple, _: None) -> tuple[tuple, tuple]:
        env_state, observation, key = state
        key, action_key = jax.random.split(key)
        seen = view.see(observation)
        logits = net.apply(variables, seen, method=net.logits)
        action = jax.random.categorical(action_key, logits)
        log_prob = jax.nn.log_softmax(logits)[jnp.arange(config.num_envs), action]
        world = view.world  # where the walls change: the phase's, that new episodes start in
        env_state, ts = jax.vmap(lambda s, a: snake.autoreset_step(config.env, s, a, world=world))(
            env_state, view.act(action)
        )
        record = (seen, view.see(ts.final_observation), action, log_prob, ts)
        return (env_state, ts.observation, key), record

    (env_state, observation, key), (observations, reached, actions, log_probs, ts) = jax.lax.scan(
        step, (carry.env_state, carry.observation, carry.key), None, length=config.rollout_steps
    )
    # Where the episode did not end, the reached state is the next observation, so the
    # reached states' values are every transition's bootstrap target.
    flat = lambda x: x.reshape(config.batch_size, *config.env.observation_shape)  # noqa: E731
    values = net.apply(variables, flat(observations), method=net.values).reshape(config.rollout_steps, -1)
    next_values = net.apply(variables, flat(reached), method=net.values).reshape(config.rollout_steps, -1)
    transitions = _Transition(
        observation=observations,
        action=actions,
        log_prob=log_probs,
        value=values,
        next_value=next_values,
        reward=view.reward(ts.reward),  # a changing world's ``rewards``: scaled (else the world's)
        terminated=ts.terminated,
        done=ts.terminated | ts.truncated,
        episode_score=ts.episode_score,
        episode_length=ts.episode_length,
        episode_steps=ts.episode_steps,
    )
    return carry.replace(env_state=env_state, observation=observation, key=key), transitions


def _advantages(config: PPOConfig, t: _Transition) -> tuple[jax.Array, jax.Array]:
    """GAE over a rollout (time-major); returns advantages and value targets."""
    not_terminated = 1.0 - t.terminated.astype(jnp.float32)
    not_done = 1.0 - t.done.astype(jnp.float32)
    deltas = t.reward + config.gamma * t.next_value * not_terminated - t.value

    def backward(next_advantage: jax.Array, xs: tuple) -> tuple[jax.Array, jax.Array]:
        delta, continues = xs
        advantage = delta + config.gamma * config.gae_lambda * continues * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + t.value


def _losses(
    config: PPOConfig, params: Any, carry: Carry, batch: dict[str, jax.Array], dropout_key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """The task loss (PPO's, without the regularizer) and its parts."""
    logits, value = network(config).apply(
        {"params": params},
        batch["observation"],
        regs.dropout_rate(config.regularizer, carry.hparams.strength),
        train=True,
        rngs={"dropout": dropout_key},
    )
    log_probs = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_probs, batch["action"][:, None], axis=1)[:, 0]
    log_ratio = log_prob - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    advantage = batch["advantage"]
    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    policy_loss = -jnp.minimum(
        ratio * advantage, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * advantage
    ).mean()
    clipped_value = batch["value"] + jnp.clip(value - batch["value"], -config.clip_eps, config.clip_eps)
    value_loss = 0.5 * jnp.maximum((value - batch["target"]) ** 2, (clipped_value - batch["target"]) ** 2).mean()
    entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
    loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
    return loss, {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": ((ratio - 1) - log_ratio).mean(),
        "clip_fraction": (jnp.abs(ratio - 1) > config.clip_eps).mean(),
    }


def _learn(config: PPOConfig, carry: Carry, t: _Transition) -> tuple[Carry, Metrics]:
    """Epochs of minibatch updates on one rollout."""
    advantages, targets = _advantages(config, t)
    flat = {
        "observation": t.observation.reshape(config.batch_size, *config.env.observation_shape),
        "action": t.action.reshape(-1),
        "log_prob": t.log_prob.reshape(-1),
        "value": t.value.reshape(-1),
        "advantage": advantages.reshape(-1),
        "target": targets.reshape(-1),
    }
    optimizer = common.adam_optimizer(config, carry.hparams)
    opt_state = carry.opt_state
    if config.anneal_lr:
        remaining = 1.0 - carry.update.astype(jnp.float32) / config.total_updates
        annealed = carry.hparams.learning_rate * jnp.maximum(remaining, 0.0)
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": annealed})
    regularizer, strength = config.regularizer, carry.hparams.strength

    steps = config.epochs * config.minibatches  # optimizer steps per update

    def minibatch_step(state: tuple, xs: tuple[jax.Array, jax.Array]) -> tuple[tuple, Metrics]:
        params, opt_state, key, moved = state
        indices, step = xs
        key, dropout_key = jax.random.split(key)
        # Gathered here rather than as a permuted copy of the whole rollout per epoch: the
        # minibatch is still in cache when the forward and backward passes read it.
        batch = jax.tree.map(lambda x: x[indices], flat)
        (_, parts), task_grad = jax.value_and_grad(_losses, argnums=1, has_aux=True)(
            config, params, carry, batch, dropout_key
        )
        parts = {**parts, **regs.gradient_diagnostics(regularizer, task_grad, params, carry.init_params, strength)}
        at_phase_change = common.phase_change_step(config, carry.update, step, steps)  # shrink_perturb, period 0
        # the optimizer adds the penalty's gradient
        updates, opt_state = optimizer.update(task_grad, opt_state, params, **at_phase_change)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, key, jax.tree.map(jnp.add, moved, updates)), parts

    def epoch(state: tuple, first_step: jax.Array) -> tuple[tuple, tuple[Metrics, jax.Array]]:
        params, opt_state, key, moved = state
        key, shuffle_key = jax.random.split(key)
        order = common.permutation(shuffle_key, config.batch_size).reshape(config.minibatches, -1)
        numbered = (order, first_step + jnp.arange(config.minibatches))
        state, parts = jax.lax.scan(minibatch_step, (params, opt_state, key, moved), numbered)
        return state, (parts, order[-1, : mechanisms.SAMPLE_ROWS])

    # ``moved`` sums the update's steps (for the effective learning rate): cheaper than
    # keeping the parameters from before the update alive through the loops.
    moved = jax.tree.map(jnp.zeros_like, carry.params)
    (params, opt_state, key, moved), (parts, sampled) = jax.lax.scan(
        epoch, (carry.params, opt_state, carry.key, moved), jnp.arange(0, steps, config.minibatches)
    )
    metrics = jax.tree.map(jnp.mean, parts)
    metrics["learning_rate"] = opt_state.hyperparams["learning_rate"]
    metrics["reg_loss"] = regs.penalty(regularizer, params, carry.init_params, strength)
    metrics.update(regs.weight_statistics(params))
    observations = flat["observation"][sampled[-1]]
    metrics.update(mechanism_metrics(config, moved, params, observations, carry.update + 1))
    return carry.replace(params=params, opt_state=opt_state, key=key), metrics


def mechanism_metrics(
    config: PPOConfig, moved: Any, after: Any, observations: jax.Array, update: jax.Array
) -> Metrics:
    """An update's mechanism metrics (:mod:`~regspeed.learn.mechanisms`), on every update
    (:data:`MECHANISM_EVERY`).

    Dormant units and srank: the policy network's torso (the shared one if shared) with the
    parameters after the update, without dropout, on ``observations``: the first 256 of the
    update's last minibatch, a uniform random sample of its rollout (all of it when the
    minibatch is smaller). Effective learning rate: both networks' weights moved by the
    whole update (``moved``, all its epochs and minibatches) and after it.
    """
    net = network(config)

    def activations_of(observations: jax.Array) -> list[jax.Array]:
        return mechanisms.hidden_activations(net, {"params": after}, observations, method=net.logits)

    return mechanisms.metrics(MECHANISM_EVERY, update, activations_of, observations, moved, after)


def update(config: PPOConfig, carry: Carry) -> tuple[Carry, Metrics]:
    """One PPO update: a rollout of ``rollout_steps`` in every environment, then learning."""
    carry, transitions = _rollout(config, carry)
    episode = common.episode_metrics(
        transitions.done, transitions.episode_score, transitions.episode_length, transitions.episode_steps
    )
    carry, metrics = _learn(config, carry, transitions)
    carry = carry.replace(update=carry.update + 1)
    return carry, {
        "env_steps": carry.update * config.steps_per_update,
        **episode,
        **metrics,
    }


def advance(config: PPOConfig, carry: Carry, n_updates: int) -> tuple[Carry, Metrics]:
    """``n_updates`` PPO updates; metrics have a leading axis of length ``n_updates``."""
    return jax.lax.scan(lambda c, _: update(config, c), carry, None, length=n_updates)


def evaluate(config: PPOConfig, carry: Carry) -> Metrics:
    """The greedy policy on ``eval_episodes`` fixed episodes (see :func:`common.greedy_evaluation`)."""
    net = network(config)

    def choose(observation: jax.Array) -> jax.Array:
        return jnp.argmax(net.apply({"params": carry.params}, observation, method=net.logits), axis=-1)

    view = common.perspective(config, jnp.maximum(carry.update - 1, 0))  # the world of the last update
    played = common.in_world(view, choose)
    return common.greedy_evaluation(config.env, config.eval_episodes, config.eval_max_steps, played, view.world)


# ----------------------------------------------------------------- batched, compiled


init_batch, advance_batch, evaluate_batch = common.compiled(
    init, advance, evaluate, vmap_group=lambda config: config.vmap_group
)


@functools.partial(jax.jit, static_argnums=(0, 3))
def greedy_episode(
    config: PPOConfig, params: Any, key: jax.Array, max_steps: int
) -> tuple[snake.SnakeState, jax.Array]:
    """One environment played by the greedy policy of ``params`` (one run's parameters)."""
    net = network(config)

    def choose(observation: jax.Array) -> jax.Array:
        return jnp.argmax(net.apply({"params": params}, observation, method=net.logits), axis=-1)

    view = common.perspective(config, config.total_updates - 1)  # a changing world: its last phase
    return common.greedy_episode(config.env, key, max_steps, common.in_world(view, choose), view.world)


# ----------------------------------------------------------------- the learner


def bytes_per_run(config: PPOConfig) -> int:
    """Rollout buffers, parameters with optimizer state, minibatch activations, environments."""
    sizes = snake_agents.footprint(config, network(config))
    rollout = config.batch_size * (2 * sizes.observation + 16)
    return snake_agents.bytes_estimate(sizes, rollout, config.batch_size, config.batch_size // config.minibatches)


LOSSES = (
    Metric("policy_loss", "policy loss", higher_is_better=False, check_finite=True),
    Metric("value_loss", "value loss", higher_is_better=False, check_finite=True),
    Metric("entropy", "policy entropy", "nats"),
    Metric("approx_kl", "approximate KL divergence of an update", higher_is_better=False),
    Metric("clip_fraction", "share of clipped probability ratios", higher_is_better=False),
)

LEARNERS = (
    snake_agents.learner(
        "ppo",
        "PPO (clipped, GAE) playing Snake",
        PPOConfig,
        DEFAULT_LEARNING_RATE,
        (init_batch, advance_batch, evaluate_batch),
        LOSSES,
        bytes_per_run,
        greedy_episode,
    ),
)
