"""PPO: bootstrapping, the Trainer contract, resuming bit-identically, failures, learning."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regspeed.envs import snake
from regspeed.errors import ConfigError
from regspeed.learn import checkpoint, nets, ppo
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs

TINY = ppo.PPOConfig(
    env=snake.SnakeConfig(rows=5, cols=5, observation="features"),
    network=nets.NetworkConfig(hidden=(32,)),
    regularizer=regs.Regularizer("l2"),
    num_envs=8,
    rollout_steps=16,
    epochs=2,
    minibatches=2,
    total_updates=8,
    eval_episodes=4,
    eval_max_steps=30,
)
TRAINER = training.Trainer(ppo.init_batch, ppo.advance_batch, ppo.evaluate_batch)


def stacked(*hps: ppo.Hparams) -> ppo.Hparams:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hps)


def leaves_equal(a, b) -> bool:
    def raw(x):
        return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    return all(
        np.array_equal(np.asarray(raw(x)), np.asarray(raw(y)), equal_nan=True)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


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


def test_advance_reports_every_metric_per_update_and_per_run() -> None:
    carry = ppo.init_batch(TINY, ppo.run_keys([0, 1]), stacked(ppo.hparams(1e-3, 0.0), ppo.hparams(1e-3, 1e-2)))
    carry, metrics = ppo.advance_batch(TINY, carry, 2)
    expected = {
        "env_steps", "episodes", "score", "max_score", "length", "steps", "policy_loss", "value_loss", "entropy",
        "approx_kl", "clip_fraction", "grad_norm", "grad_cosine", "learning_rate", "reg_loss", "weight_l1",
        "weight_l2", "near_zero_fraction",
    }  # fmt: skip
    assert set(metrics) == expected
    assert all(np.shape(v) == (2, 2) for v in metrics.values())
    np.testing.assert_array_equal(np.asarray(metrics["env_steps"][0]), [128, 256])
    reg_loss = np.asarray(metrics["reg_loss"])
    assert (reg_loss[0] == 0).all() and (reg_loss[1] > 0).all()  # strength is per run
    cosine = np.asarray(metrics["grad_cosine"])
    assert (cosine[0] == 0).all() and (np.abs(cosine[1]) > 0).all() and (np.abs(cosine[1]) <= 1).all()
    lr = np.asarray(metrics["learning_rate"][0])
    np.testing.assert_allclose(lr, [1e-3, 1e-3 * (1 - 1 / 8)], rtol=1e-6)  # annealed linearly
    evaluation = ppo.evaluate_batch(TINY, carry)
    assert set(evaluation) == {"eval_score", "eval_max_score", "eval_length", "eval_steps", "eval_finished"}


def test_resumed_from_checkpoint_equals_uninterrupted(tmp_path) -> None:
    """2 updates, checkpoint, reload, 2 more == 4 updates straight, bit for bit."""
    hp = stacked(ppo.hparams(1e-3, 1e-3), ppo.hparams(3e-4, 0.0))
    keys = ppo.run_keys([5, 6])
    straight, straight_history = training.train(TRAINER, TINY, ppo.init_batch(TINY, keys, hp), 4, chunk=2, eval_every=2)

    first, history = training.train(TRAINER, TINY, ppo.init_batch(TINY, keys, hp), 2, chunk=2, eval_every=2)
    path = checkpoint.save(tmp_path / "carry.npz", first)
    restored = checkpoint.load(path, ppo.init_batch(TINY, ppo.run_keys([0, 0]), hp))
    assert leaves_equal(restored, first)
    resumed, history = training.train(TRAINER, TINY, restored, 4, chunk=2, eval_every=2, history=history)

    assert leaves_equal(resumed, straight)
    for name, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[name], values)
    for name, values in straight_history.evaluations.items():
        np.testing.assert_array_equal(history.evaluations[name], values)
    assert history.evaluated_at == [0, 2, 4]


def test_batched_runs_are_independent_and_a_failing_run_is_stopped_alone() -> None:
    """A run whose numbers blow up is reported; its batch-mate's results are bit for bit
    those it gets beside a healthy run."""
    good, bad = ppo.hparams(1e-3, 1e-3), ppo.hparams(1e-3, float("inf"))
    keys = ppo.run_keys([7, 8])
    mixed, history = training.train(TRAINER, TINY, ppo.init_batch(TINY, keys, stacked(good, bad)), 2, chunk=2)
    healthy, healthy_history = training.train(
        TRAINER, TINY, ppo.init_batch(TINY, keys, stacked(good, good)), 2, chunk=2
    )
    assert list(history.failures) == [1] and "became" in history.failures[1]
    assert healthy_history.failures == {}
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    assert leaves_equal(first(mixed.params), first(healthy.params))
    for name, values in history.updates.items():
        np.testing.assert_array_equal(values[0], healthy_history.updates[name][0])


def test_runs_advanced_in_groups_equal_runs_vmapped_together() -> None:
    """Grouping is an execution choice: 3 runs advanced 2 + 1 at a time (``lax.map`` over
    vmapped groups) end where the same 3 runs vmapped together end, to float rounding
    (batched and single products may sum in different orders)."""
    hp = stacked(ppo.hparams(1e-3, 1e-3), ppo.hparams(3e-4, 0.0), ppo.hparams(2e-3, 1e-2))
    keys = ppo.run_keys([1, 2, 3])
    together, together_metrics = ppo.advance_batch(TINY, ppo.init_batch(TINY, keys, hp), 2)
    grouped_config = dataclasses.replace(TINY, runs_per_vmap=2)
    grouped, grouped_metrics = ppo.advance_batch(grouped_config, ppo.init_batch(grouped_config, keys, hp), 2)
    for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(grouped.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grouped_metrics["episodes"], together_metrics["episodes"])
    assert ppo.PPOConfig().vmap_group == 1  # window observations: 36 MiB of rollout per run
    assert TINY.vmap_group == 0  # features: all runs in one vmap


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
