"""PPO: bootstrapping, annealing, vmapped groups, learning, bad settings (the learner contract,
resume and failures are in test_learners.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import tiny
from conftest import leaves_equal

from regspeed.errors import ConfigError
from regspeed.learn import checkpoint, common, nets, ppo, registry
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs

TINY = tiny.setup("snake-ppo").config
TRAINER = registry.get("snake-ppo").trainer


def stacked(*hps: ppo.Hparams) -> ppo.Hparams:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hps)


def test_gae_bootstraps_on_truncation_not_on_termination() -> None:
    """One env, three steps: a truncation (bootstrap from the reached state's value, then
    a new episode), a normal step, a termination (no bootstrap)."""
    config = dataclasses.replace(TINY, gamma=0.9, gae_lambda=0.5)
    column = lambda *v: jnp.asarray(v, jnp.float32)[:, None]  # noqa: E731
    t = ppo._Transition(
        observation=jnp.zeros((3, 1, 11)),
        action=jnp.zeros((3, 1), jnp.int32),
        log_prob=jnp.zeros((3, 1)),
        value=column(1.0, 2.0, 3.0),
        next_value=column(10.0, 3.0, 50.0),  # 10: value of the truncated state
        reward=column(0.5, 1.0, -1.0),
        terminated=column(0, 0, 1).astype(bool),
        done=column(1, 0, 1).astype(bool),
        episode_score=jnp.zeros((3, 1), jnp.int32),
        episode_length=jnp.zeros((3, 1), jnp.int32),
        episode_steps=jnp.zeros((3, 1), jnp.int32),
    )
    advantages, targets = ppo._advantages(config, t)
    delta2 = -1.0 - 3.0  # terminated: the 50 is ignored
    delta1 = 1.0 + 0.9 * 3.0 - 2.0
    delta0 = 0.5 + 0.9 * 10.0 - 1.0  # truncated: bootstraps, and the next episode's advantage is cut
    expected = [delta0, delta1 + 0.45 * delta2, delta2]
    np.testing.assert_allclose(np.asarray(advantages[:, 0]), expected, atol=1e-5)  # float32 on magnitudes ~10
    np.testing.assert_allclose(np.asarray(targets[:, 0]), np.add(expected, [1.0, 2.0, 3.0]), atol=1e-5)


def test_env_steps_cosine_and_annealed_learning_rate_per_update() -> None:
    """(What every learner reports is checked in test_learners.py.)"""
    carry = ppo.init_batch(TINY, ppo.run_keys([0, 1]), stacked(ppo.hparams(1e-3, 0.0), ppo.hparams(1e-3, 1e-2)))
    carry, metrics = ppo.advance_batch(TINY, carry, 2)
    np.testing.assert_array_equal(np.asarray(metrics["env_steps"][0]), [128, 256])
    cosine = np.asarray(metrics["grad_cosine"])
    assert (cosine[0] == 0).all() and (np.abs(cosine[1]) > 0).all() and (np.abs(cosine[1]) <= 1).all()
    lr = np.asarray(metrics["learning_rate"][0])
    np.testing.assert_allclose(lr, [1e-3, 1e-3 * (1 - 1 / 8)], rtol=1e-6)  # annealed linearly


@pytest.mark.slow
def test_runs_learning_in_groups_equal_runs_vmapped_together() -> None:
    """Grouping is an execution choice: 3 runs learning one at a time (the default) or 2 + 1
    at a time (``lax.map`` over vmapped groups) end where the same 3 runs vmapped together
    end, to float rounding (batched and single products may sum in different orders), and
    each run where it ends alone."""
    hp = stacked(ppo.hparams(1e-3, 1e-3), ppo.hparams(3e-4, 0.0), ppo.hparams(2e-3, 1e-2))
    keys = ppo.run_keys([1, 2, 3])
    ends = {}
    for runs_per_vmap in (3, 2, 0):
        config = dataclasses.replace(TINY, runs_per_vmap=runs_per_vmap)
        ends[runs_per_vmap] = ppo.advance_batch(config, ppo.init_batch(config, keys, hp), 2)
    alone = ppo.advance_batch(TINY, ppo.init_batch(TINY, keys[2:], jax.tree.map(lambda x: x[2:], hp)), 2)
    together, together_metrics = ends[3]
    for carry, metrics in (ends[2], ends[0]):
        for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(carry.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(metrics["episodes"], together_metrics["episodes"])
    for a, b in zip(jax.tree.leaves(ends[0][0].params), jax.tree.leaves(alone[0].params), strict=True):
        np.testing.assert_allclose(np.asarray(a[2]), np.asarray(b[0]), rtol=1e-5, atol=1e-6)
    assert ppo.PPOConfig().vmap_group == 1 and TINY.vmap_group == 1  # automatic: one run at a time
    assert dataclasses.replace(TINY, runs_per_vmap=2).vmap_group == 2


@pytest.mark.slow
def test_learns_on_a_small_board() -> None:
    """Within 60 updates (15 k steps) on 5 x 5, the training score climbs well above where
    it started (a random policy's, about 0.2 food per episode)."""
    config = dataclasses.replace(TINY, regularizer=regs.Regularizer("none"), total_updates=60, num_envs=32)
    carry = ppo.init_batch(config, ppo.run_keys([0, 1]), stacked(ppo.hparams(3e-3), ppo.hparams(3e-3)))
    _, history = training.train(TRAINER, config, carry, 60, chunk=30)
    score = history.updates["score"]
    early, late = np.nanmean(score[:, :10]), np.nanmean(score[:, -10:])
    assert early < 0.4
    assert late > early + 0.6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"minibatches": 3}, "minibatches"),
        ({"num_envs": 0}, "num_envs"),
        ({"network": nets.NetworkConfig(torso="cnn")}, "torso"),
        ({"gamma": 1.5}, "gamma"),
        ({"runs_per_vmap": -1}, "runs_per_vmap"),
        ({"clip_eps": float("nan")}, "clip_eps"),
        ({"entropy_coef": float("inf")}, "entropy_coef"),
        ({"gae_lambda": float("nan")}, "gae_lambda"),
    ],
)
def test_bad_configuration_names_the_option(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        dataclasses.replace(TINY, **change)
    assert error.value.field == field


def test_checkpoint_refuses_another_configuration_and_never_leaves_a_partial_file(tmp_path, monkeypatch) -> None:
    hp = stacked(ppo.hparams(), ppo.hparams())
    carry = ppo.init_batch(TINY, ppo.run_keys([0, 1]), hp)
    path = checkpoint.save(tmp_path / "carry.npz", carry)
    wider = dataclasses.replace(TINY, network=nets.NetworkConfig(hidden=(64,)))
    with pytest.raises(ValueError, match="leaf"):
        checkpoint.load(path, ppo.init_batch(wider, ppo.run_keys([0, 1]), hp))

    def failing_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", failing_savez)
    with pytest.raises(OSError):
        checkpoint.save(path, carry)
    assert leaves_equal(checkpoint.load(path, carry), carry)  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carry.npz"]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 8192, 2**20 + 1])
def test_minibatch_shuffle_is_a_permutation(n: int) -> None:
    orders = jax.jit(jax.vmap(lambda key: common.permutation(key, n)))(jax.random.split(jax.random.key(n), 3))
    for order in np.asarray(orders):
        np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_minibatch_shuffle_is_uniform() -> None:
    """Every ordering of 4 elements equally often, and every element equally often at every
    position of 12 (chi-square tests over 24,000 shuffles)."""
    keys = jax.random.split(jax.random.key(0), 24_000)
    small = np.asarray(jax.jit(jax.vmap(lambda key: common.permutation(key, 4)))(keys))
    _, counts = np.unique(small @ (4 ** np.arange(4)), return_counts=True)
    assert len(counts) == 24 and scipy.stats.chisquare(counts).pvalue > 1e-3
    orders = np.asarray(jax.jit(jax.vmap(lambda key: common.permutation(key, 12)))(keys))
    where = np.zeros((12, 12))
    np.add.at(where, (np.broadcast_to(np.arange(12), orders.shape), orders), 1)
    assert scipy.stats.chisquare(where.ravel()).pvalue > 1e-3
