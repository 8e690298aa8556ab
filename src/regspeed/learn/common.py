"""What every RL trainer shares: continuous hyperparameters, PRNG keys per seed, training
episode statistics and the greedy evaluation on fixed episodes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from regspeed.envs import schedule, snake
from regspeed.learn import mechanisms
from regspeed.learn import regularizers as regs

Metrics = dict[str, jax.Array]
EVAL_SEED = 20_261_125  # fixed: every run and every evaluation plays the same episodes


@flax.struct.dataclass
class Hparams:
    """The continuous, vmappable knobs of a run."""

    learning_rate: jax.Array
    strength: jax.Array


def hparams(learning_rate: float = 1e-3, strength: float = 0.0) -> Hparams:
    """Hyperparameters as float32 arrays (stack several with ``jax.tree.map`` to vmap)."""
    return Hparams(jnp.asarray(learning_rate, jnp.float32), jnp.asarray(strength, jnp.float32))


def adam_optimizer(config: Any, hp: Hparams) -> optax.GradientTransformation:
    """Adam with global-norm clipping and the config's regularizer (``config`` has
    ``regularizer``, ``max_grad_norm`` and ``adam_eps``), as both RL trainers use it."""
    return regs.optimizer(
        config.regularizer, hp.learning_rate, hp.strength, base="adam", max_grad_norm=config.max_grad_norm,
        eps=config.adam_eps,
    )  # fmt: skip


class Perspective(NamedTuple):
    """How an agent meets the world in one phase of a changing world (:mod:`~regspeed.envs.schedule`):
    what it sees of an observation (or a batch of them), and which action of the world its
    action is. In a world that never changes, both are the identity. ``world``: where the
    walls change (``board``, ``obstacles``), the phase's walls that new episodes start in
    (pass it to ``snake.reset`` / ``snake.autoreset_step``); else None. ``reward``: the reward
    the learner receives for the world's (scaled where ``rewards`` change; else the identity:
    the score, food eaten, is the world's either way)."""

    see: Callable[[jax.Array], jax.Array]
    act: Callable[[jax.Array], jax.Array]
    world: snake.World | None = None
    reward: Callable[[jax.Array], jax.Array] = lambda reward: reward


def _unchanged(x: jax.Array) -> jax.Array:
    return x


@functools.lru_cache(maxsize=16)  # drawn on the host: once per configuration, not at every trace
def world_tables(config: Any) -> schedule.WorldTables | None:
    """The phases' permutations of an agent config's world (None: it never changes);
    ``config`` has ``schedule``, ``env``, ``total_updates`` and ``steps_per_update``."""
    found = config.schedule
    if not found.changing:
        return None
    phases = found.phases(config.total_updates, config.steps_per_update)
    size = int(np.prod(config.env.observation_shape))
    return schedule.tables(found, config.env.num_actions, size, phases)


@functools.lru_cache(maxsize=16)
def world_walls(config: Any) -> snake.World | None:
    """The phases' walls of an agent config's world, a leading axis of phases (None: its
    walls never change); ``config`` as for :func:`world_tables`."""
    found = config.schedule
    if not found.changes_walls:
        return None
    phases = found.phases(config.total_updates, config.steps_per_update)
    return snake.worlds(config.env, schedule.walls(found, config.env, phases))


def perspective(config: Any, update: jax.Array | int) -> Perspective:
    """The agent's :class:`Perspective` during the update numbered ``update`` (0-based)."""
    tables = world_tables(config)
    if tables is None:
        return Perspective(_unchanged, _unchanged)
    phase_updates = config.schedule.phase_updates(config.steps_per_update)
    phase = schedule.phase_of(jnp.asarray(update), phase_updates, len(tables.actions))
    shape = config.env.observation_shape
    walls = world_walls(config)
    changes = config.schedule.changes  # what does not change needs no table lookup (identity tables cost gathers)
    return Perspective(
        see=(lambda observation: schedule.seen(tables, phase, observation, shape))
        if "observations" in changes else _unchanged,
        act=(lambda action: schedule.carried_out(tables, phase, action)) if "actions" in changes else _unchanged,
        world=None if walls is None else snake.world_at(walls, phase),
        reward=(lambda reward: schedule.scaled(tables, phase, reward)) if "rewards" in changes else _unchanged,
    )


def phase_change_step(config: Any, update: jax.Array, step: jax.Array, steps: int) -> dict[str, jax.Array]:
    """The extra arguments of the optimizer's ``update`` for optimizer step ``step`` (of
    ``steps``) in the update numbered ``update``: ``phase_ends``, true on the last step of the
    last update of a phase that another follows, for a regularizer that acts at phase changes
    (``shrink_perturb`` with ``period = 0``); none for every other regularizer."""
    if not config.regularizer.at_phase_change:
        return {}
    phase_updates = config.schedule.phase_updates(config.steps_per_update)
    ends = schedule.ends_phase(update, phase_updates, config.total_updates)
    return {"phase_ends": ends & (step == steps - 1)}


def in_world(view: Perspective, choose: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """``choose`` (what the agent sees -> its actions) as the world meets it: the world's
    observations in, the world's actions out."""
    return lambda observation: view.act(choose(view.see(observation)))


def run_keys(seeds: list[int] | np.ndarray) -> jax.Array:
    """One PRNG key per seed."""
    return jnp.stack([jax.random.key(int(seed)) for seed in seeds])


def permutation(key: jax.Array, n: int, rounds: int = 2) -> jax.Array:
    """A random permutation of ``0 .. n - 1`` (int32): a shuffle by sorting random keys, as
    ``jax.random.permutation`` does, with each element's position packed into the low bits
    of its key so that XLA sorts one array of integers instead of two arrays with a
    comparator: 5-10x faster on CPU (``benchmarks/random_costs.py``), where
    ``jax.random.permutation`` was 13% of PPO's time.

    A key's high ``32 - ceil(log2 n)`` bits are random; equal random parts keep their
    current order, which the second round's fresh bits make as random as the first
    round's ("rounds", as in ``jax.random.permutation``). Beyond 2^20 elements, fewer than
    12 random bits would be left: ``jax.random.permutation`` is used instead.
    """
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 20:
        return jax.random.permutation(key, n).astype(jnp.int32)
    low = jnp.uint32((1 << index_bits) - 1)
    order = jnp.arange(n, dtype=jnp.int32)
    for round_key in jax.random.split(key, rounds):
        random_part = jax.random.bits(round_key, (n,), jnp.uint32) & ~low
        position = jnp.sort(random_part | jnp.arange(n, dtype=jnp.uint32)) & low
        order = order[position.astype(jnp.int32)]
    return order


def episode_metrics(done: jax.Array, score: jax.Array, length: jax.Array, steps: jax.Array) -> Metrics:
    """Statistics of the training episodes that ended (``done``) during an update (NaN if none)."""
    count = done.sum()

    def mean(x: jax.Array) -> jax.Array:
        return jnp.where(count > 0, jnp.where(done, x, 0).sum() / jnp.maximum(count, 1), jnp.nan)

    return {
        "episodes": count,
        "score": mean(score.astype(jnp.float32)),
        "max_score": jnp.where(count > 0, jnp.where(done, score, 0).max(), -1).astype(jnp.float32),
        "length": mean(length.astype(jnp.float32)),
        "steps": mean(steps.astype(jnp.float32)),
    }


def evaluation_levels(env: snake.SnakeConfig, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The level seeds a greedy evaluation plays in a world with levels: the training set
    (the first ``min(levels, episodes)`` training levels; with ``levels = 0``, ``episodes``
    random levels, fixed by :data:`EVAL_SEED`) and the held-out set (``episodes`` seeds from
    ``held_out_level_offset``), uint32 each."""
    if env.levels:
        training = env.level_seed_offset + np.arange(min(env.levels, episodes))
    else:  # computed when the program is traced: host NumPy, not JAX
        training = np.random.default_rng(EVAL_SEED).integers(0, snake.LEVEL_SEEDS, episodes)
    held_out = env.held_out_level_offset + np.arange(episodes)
    return training.astype(np.uint32), held_out.astype(np.uint32)


def greedy_evaluation(
    env: snake.SnakeConfig,
    episodes: int,
    max_steps: int,
    choose: Callable[[jax.Array], jax.Array],
    world: snake.World | None = None,
) -> Metrics:
    """Play ``choose`` (observations -> actions) on ``episodes`` fixed episodes for at most
    ``max_steps`` steps. Reports the mean score, length and steps of each environment's
    first episode; an episode still running at ``max_steps`` counts with what it had
    reached (censored).

    In a world with levels the fixed episodes are the training levels of
    :func:`evaluation_levels` (``eval_*`` and ``train_levels_*``), and the held-out levels
    are played too (``test_levels_score`` and ``test_levels_steps``); ``levels_gap`` is the
    training levels' score minus the held-out levels' score. With changing walls the episodes
    start in ``world`` (the same fixed draws, among its walls).
    """
    if not env.has_levels:
        states = snake.reset_batch(env, jax.random.key(EVAL_SEED), episodes, world)
        return _evaluation_metrics(_first_episodes(env, states, max_steps, choose, world))
    training, held_out = evaluation_levels(env, episodes)
    on_training = _first_episodes(env, _level_states(env, training), max_steps, choose)
    on_held_out = _first_episodes(env, _level_states(env, held_out), max_steps, choose)
    metrics = _evaluation_metrics(on_training)
    for prefix, played in (("train_levels", on_training), ("test_levels", on_held_out)):
        metrics[f"{prefix}_score"] = played.score.mean(dtype=jnp.float32)
        metrics[f"{prefix}_steps"] = played.steps.mean(dtype=jnp.float32)
    metrics["levels_gap"] = metrics["train_levels_score"] - metrics["test_levels_score"]
    return metrics


class _Played(NamedTuple):
    """The first episode of each evaluation environment, as far as it went."""

    finished: jax.Array
    score: jax.Array
    length: jax.Array
    steps: jax.Array


def _level_states(env: snake.SnakeConfig, levels: np.ndarray) -> snake.SnakeState:
    """Fresh episodes on the given levels, one each."""
    keys = jax.random.split(jax.random.key(EVAL_SEED), len(levels))
    return jax.vmap(lambda level, key: snake.reset_to_level(env, level, key))(jnp.asarray(levels), keys)


def _first_episodes(
    env: snake.SnakeConfig,
    states: snake.SnakeState,
    max_steps: int,
    choose: Callable[[jax.Array], jax.Array],
    world: snake.World | None = None,
) -> _Played:
    """Play ``choose`` from ``states`` for ``max_steps`` steps, keeping each environment's
    first episode (later ones start in ``world``)."""
    episodes = states.length.shape[0]
    observation = jax.vmap(lambda s: snake.observe(env, s))(states)
    zero = jnp.zeros(episodes, jnp.int32)

    def step(state: tuple, _: None) -> tuple[tuple, None]:
        env_state, observation, finished, score, length, steps = state
        env_state, ts = jax.vmap(lambda s, a: snake.autoreset_step(env, s, a, final_observation=False, world=world))(
            env_state, choose(observation)
        )
        live = ~finished
        score = jnp.where(live, ts.episode_score, score)
        length = jnp.where(live, ts.episode_length, length)
        steps = jnp.where(live, ts.episode_steps, steps)
        finished = finished | ts.terminated | ts.truncated
        return (env_state, ts.observation, finished, score, length, steps), None

    initial = (states, observation, jnp.zeros(episodes, bool), zero, zero, zero)
    (_, _, finished, score, length, steps), _ = jax.lax.scan(step, initial, None, length=max_steps)
    return _Played(finished, score, length, steps)


def _evaluation_metrics(played: _Played) -> Metrics:
    """The ``eval_*`` metrics of played episodes."""
    return {
        "eval_score": played.score.mean(dtype=jnp.float32),
        "eval_max_score": played.score.max().astype(jnp.float32),
        "eval_length": played.length.mean(dtype=jnp.float32),
        "eval_steps": played.steps.mean(dtype=jnp.float32),
        "eval_finished": played.finished.mean(dtype=jnp.float32),
    }


def greedy_episode(
    env: snake.SnakeConfig,
    key: jax.Array,
    max_steps: int,
    choose: Callable[[jax.Array], jax.Array],
    world: snake.World | None = None,
) -> tuple[snake.SnakeState, jax.Array]:
    """One environment played by ``choose`` (one observation -> action) for ``max_steps``
    steps: the state before each step, and whether that step ended the episode (every
    episode starting in ``world``, with changing walls)."""

    def step(state: snake.SnakeState, _: None) -> tuple[snake.SnakeState, tuple]:
        observation = snake.observe(env, state)
        following, ts = snake.autoreset_step(env, state, choose(observation), final_observation=False, world=world)
        return following, (state, ts.terminated | ts.truncated)

    _, (states, done) = jax.lax.scan(step, snake.reset(env, key, world), None, length=max_steps)
    return states, done


def compiled(
    init: Callable[[Any, jax.Array, Any], Any],
    advance: Callable[[Any, Any, int], tuple[Any, Metrics]],
    evaluate: Callable[[Any, Any], Metrics],
    vmap_group: Callable[[Any], int] = lambda config: 0,
) -> tuple[Callable, Callable, Callable]:
    """A trainer's batched, compiled entry points ``(init_batch, advance_batch,
    evaluate_batch)`` from its per-run ``init(config, key, hparams)``,
    ``advance(config, carry, n)`` and ``evaluate(config, carry)``; ``config`` is static.

    ``init_batch`` initialises runs one after another (``lax.map``), not vmapped: with 20
    or more runs, batched QR decompositions (orthogonal initialisation) deadlock jaxlib
    0.10.2's CPU LAPACK thread pool; it is a one-off cost of about a second.
    ``advance_batch`` vmaps over runs, or over groups of ``vmap_group(config)`` runs one
    group after another (``lax.map``; 0 means all runs in one group; a group of one run, or a
    batch of one, is not vmapped at all), and reuses the input carry's buffers (donated).
    """

    @functools.partial(jax.jit, static_argnums=0)
    def init_batch(config: Any, keys: jax.Array, hp: Any) -> Any:
        """``init`` for each run (keys and hparams with a leading run axis)."""
        if jax.default_backend() == "cpu":  # orthogonal initialisation runs QRs on jaxlib's LAPACK
            mechanisms.single_threaded_lapack()
        return jax.lax.map(lambda key_and_hp: init(config, *key_and_hp), (keys, hp))

    @functools.partial(jax.jit, static_argnums=(0, 2), donate_argnums=1)
    def advance_batch(config: Any, carry: Any, n_updates: int) -> tuple[Any, Metrics]:
        """``advance`` vmapped over runs (in groups when the config asks for it)."""
        runs = jax.tree.leaves(carry)[0].shape[0]
        group = vmap_group(config)
        if group == 1 or runs == 1:  # no vmap: XLA:CPU's batched products of one are slower than plain ones
            return jax.lax.map(lambda c: advance(config, c, n_updates), carry)
        if not group or group >= runs:
            return jax.vmap(lambda c: advance(config, c, n_updates))(carry)
        return jax.lax.map(lambda c: advance(config, c, n_updates), carry, batch_size=group)

    @functools.partial(jax.jit, static_argnums=0)
    def evaluate_batch(config: Any, carry: Any) -> Metrics:
        """``evaluate`` vmapped over runs."""
        return jax.vmap(lambda c: evaluate(config, c))(carry)

    return init_batch, advance_batch, evaluate_batch
