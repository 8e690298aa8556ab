"""Mechanism metrics (dormant units, feature srank, effective learning rate): by hand on
networks and matrices whose answers are known, in the learners, and in a study's store and
report."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny

from regspeed.learn import dqn, mechanisms, nets, registry, supervised
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import MECHANISM_METRICS

NAMES = [metric.name for metric in MECHANISM_METRICS]


def _torso_with_dead_units() -> tuple[nets.Torso, dict]:
    """A ReLU torso of 4 + 2 units on inputs in [0, 1]: units 0 and 1 add the inputs up,
    unit 2 is a constant 0.01 (alive, but dormant at tau = 0.025), unit 3's negative weights
    and bias keep it at 0 (dead); in the second layer, unit 1's bias keeps it at 0."""
    torso = nets.Torso(nets.NetworkConfig(hidden=(4, 2)), "mlp", use_dropout=False)
    kernel = np.zeros((3, 4), np.float32)
    kernel[:, :2], kernel[:, 3] = 1.0, -1.0
    params = {
        "Dense_0": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray([0.0, 0.0, 0.01, -0.5])},
        "Dense_1": {"kernel": jnp.full((4, 2), 0.1), "bias": jnp.asarray([1.0, -10.0])},
    }
    assert jax.tree.structure(params) == jax.tree.structure(
        torso.init(jax.random.key(0), jnp.zeros(3), 0.0, False)["params"]
    )
    return torso, params


def test_dormant_fraction_counts_the_dead_and_the_nearly_silent_units() -> None:
    torso, params = _torso_with_dead_units()
    x = jax.random.uniform(jax.random.key(1), (64, 3))
    activations = mechanisms.hidden_activations(torso, {"params": params}, x, 0.0, False)
    assert [a.shape for a in activations] == [(64, 4), (64, 2)]
    assert float(mechanisms.dormant_fraction(activations, 0.0)) == pytest.approx(2 / 6)  # the two dead units
    assert float(mechanisms.dormant_fraction(activations, 0.025)) == pytest.approx(3 / 6)  # and the 0.01 one
    metrics = mechanisms.representation(activations)
    assert float(metrics["dormant_fraction"]) == pytest.approx(2 / 6)
    assert float(metrics["dormant_fraction_0025"]) == pytest.approx(3 / 6)
    assert float(metrics["feature_srank"]) == 1  # one live unit in the last layer
    # sowing changes nothing: the plain forward pass gives the last layer's activations
    np.testing.assert_array_equal(torso.apply({"params": params}, x, 0.0, False), activations[-1])


def test_a_convolution_unit_is_a_channel_and_a_silent_layer_is_all_dormant() -> None:
    activation = np.ones((5, 3, 3, 4), np.float32)
    activation[..., 2] = 0.0  # one channel silent at every cell
    activation[1, 0, 0, 3] = 0.0  # one cell of another channel silent: not a dormant channel
    scores = np.asarray(mechanisms.unit_scores(jnp.asarray(activation)))
    assert scores[2] == 0 and (scores[[0, 1, 3]] > 0.9).all()
    silent = [jnp.zeros((5, 4)), jnp.ones((5, 4))]
    assert float(mechanisms.dormant_fraction(silent, 0.0)) == 0.5
    empty = mechanisms.representation([])
    assert all(np.isnan(float(value)) for value in empty.values())  # a linear model has no hidden layer


def test_cnn_torso_sows_its_convolutions_then_its_dense_layers() -> None:
    config = nets.NetworkConfig(hidden=(8,), cnn_channels=(4, 5))
    torso = nets.Torso(config, "cnn", use_dropout=False)
    x = jnp.ones((2, 3, 4, 4))
    params = torso.init(jax.random.key(0), x[0], 0.0, False)["params"]
    activations = mechanisms.hidden_activations(torso, {"params": params}, x, 0.0, False)
    assert [a.shape for a in activations] == [(2, 6, 6, 4), (2, 6, 6, 5), (2, 8)]


def test_srank_of_features_with_known_singular_values() -> None:
    rng = np.random.default_rng(0)
    left, _ = np.linalg.qr(rng.normal(size=(40, 6)))
    right, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    singular = np.asarray([50.0, 30.0, 15.0, 3.5, 1.0, 0.5])  # sum 100; top-k sums 50, 80, 95, 98.5, 99.5, 100
    features = jnp.asarray((left * singular) @ right.T, jnp.float32)
    assert float(mechanisms.srank(features)) == 5  # 99 of 100
    assert float(mechanisms.srank(features, delta=0.1)) == 3  # 90
    assert float(mechanisms.srank(features, delta=0.6)) == 1  # 40
    assert float(mechanisms.srank(jnp.ones((10, 4)))) == 1  # rank one
    assert float(mechanisms.srank(jnp.asarray(np.eye(8, dtype=np.float32)))) == 8  # all equal: 8 x 1 >= 7.92
    assert float(mechanisms.srank(jnp.zeros((10, 4)))) == 0


def test_srank_is_measured_on_the_first_sample_rows() -> None:
    rows = mechanisms.SAMPLE_ROWS
    features = np.ones((rows + 4, 4), np.float32)  # rank one in the first rows, four with the rest
    features[rows:] = np.eye(4)
    assert float(mechanisms.representation([jnp.asarray(features)])["feature_srank"]) == 1
    assert float(mechanisms.srank(jnp.asarray(features))) > 1


def test_effective_lr_is_one_sgd_step_over_the_weight_norm_by_hand() -> None:
    """A teacher MLP, one full-batch SGD step: ||w1 - w0|| = lr ||grad_w||, over the kernels
    only (the biases move too, and are left out)."""
    setup = tiny.setup("teacher", regularizer=regs.Regularizer())
    config = dataclasses.replace(setup.config, optimizer="sgd")
    carry = supervised.init(config, jax.random.key(0), supervised.hparams(setup.learning_rate, 0.0))
    carry = carry.replace(update=jnp.asarray(supervised.MECHANISM_EVERY - 1))  # the next update is measured
    _, metrics = jax.jit(supervised.update, static_argnums=0)(config, carry)
    x, y, _, _ = (jnp.asarray(a) for a in supervised.dataset(config))
    model = supervised.Model(config)
    grad = jax.grad(lambda p: ((model.apply({"params": p}, x) - y) ** 2).mean() / 2)(carry.params)

    def norm(tree: dict) -> float:
        return float(np.sqrt(sum((np.asarray(tree[layer]["kernel"], np.float64) ** 2).sum() for layer in tree)))

    expected = setup.learning_rate * norm(grad) / norm(carry.params)
    assert float(metrics["effective_lr"]) == pytest.approx(expected, rel=1e-5)
    assert np.abs(np.asarray(grad["out"]["bias"])).sum() > 0  # the biases did move


def test_every_measures_on_multiples_of_the_period_only_also_vmapped() -> None:
    def measure(x: jax.Array) -> dict[str, jax.Array]:
        return {"sum": x.sum()}

    xs, updates = jnp.ones((4, 3)), jnp.asarray([3, 4, 6, 0])
    every = jax.jit(jax.vmap(lambda update, x: mechanisms.every(3, update, measure, x)))
    np.testing.assert_array_equal(every(updates, xs)["sum"], [3.0, np.nan, 3.0, 3.0])
    assert np.isnan(float(jax.jit(lambda x: mechanisms.every(3, jnp.asarray(5), measure, x))(xs[0])["sum"]))
    assert float(mechanisms.every(1, jnp.asarray(5), measure, xs[0])["sum"]) == 3.0


def test_dqn_measures_every_few_updates() -> None:
    config = tiny.setup("snake-dqn").config
    params = dqn.network(config).init(jax.random.key(0), jnp.zeros(config.env.observation_shape))["params"]
    moved = jax.tree.map(lambda w: w * 0.5, params)  # an update that took the weights from w to 1.5 w
    after = jax.tree.map(lambda w: w * 1.5, params)
    observations = jax.random.uniform(jax.random.key(1), (16, *config.env.observation_shape))
    measure = jax.jit(dqn.mechanism_metrics, static_argnums=0)
    due = measure(config, moved, after, observations, jnp.asarray(dqn.MECHANISM_EVERY))
    skipped = measure(config, moved, after, observations, jnp.asarray(dqn.MECHANISM_EVERY + 1))
    assert set(due) == set(skipped) == set(NAMES)
    assert all(np.isfinite(float(value)) for value in due.values())
    assert all(np.isnan(float(value)) for value in skipped.values())
    assert float(due["effective_lr"]) == pytest.approx(0.5)


def test_ppo_measures_its_policy_torso_every_update() -> None:
    """Chunks of 2 updates, as test_learners' (one compiled program)."""
    learner, setup, carry = tiny.start("snake-ppo", [0, 1], [0.0, 1e-2])
    _, metrics = learner.trainer.advance_batch(setup.config, carry, 2)
    metrics = {name: np.asarray(metrics[name]) for name in NAMES}
    assert all(np.isfinite(values).all() for values in metrics.values())
    dead, dormant = metrics["dormant_fraction"], metrics["dormant_fraction_0025"]
    assert ((dead >= 0) & (dead <= dormant) & (dormant <= 1)).all()
    assert ((metrics["feature_srank"] >= 1) & (metrics["feature_srank"] <= setup.config.network.hidden[-1])).all()
    assert (metrics["effective_lr"] > 0).all()  # (the ratio itself is checked by hand on a supervised step)


MECHANISM_STUDY = """
name = "mechanisms"
task = "teacher"
seeds = 2
budget = 200
[config]
inputs = 6
train_samples = 64
test_samples = 32
hidden = [16]
teacher_hidden = [8]
layer_norm = true
[[regularizers]]
kind = "weight_decay"
strengths = [0.1]
[execution]
chunk_updates = 100
"""


def test_a_study_stores_and_loads_the_mechanism_curves(tmp_path: Path) -> None:
    from regspeed.study import results, runner
    from regspeed.study import spec as spec_module
    from regspeed.study.store import Store

    outcome = runner.run(spec_module.parse(MECHANISM_STUDY), tmp_path / "study", MECHANISM_STUDY)
    assert outcome.runs_failed == 0
    with Store.open(tmp_path / "study") as store:
        assert set(NAMES) <= set(store.metric_names())
        data = results.load(store)
    assert set(NAMES) <= set(data.curves)
    for name in NAMES:  # every supervised.MECHANISM_EVERY updates: NaN between, not stored
        curve = data.curves_of(name)["none"]
        np.testing.assert_array_equal(curve.steps, [100, 200])
        assert np.isfinite(curve.values).all()
    assert data.label("feature_srank").startswith("effective rank")


@pytest.mark.slow  # the report's figures: about 10 s
def test_the_report_draws_the_mechanism_curves(tmp_path: Path) -> None:
    from regspeed.analysis import compare
    from regspeed.report import evidence
    from regspeed.study import results, runner
    from regspeed.study import spec as spec_module
    from regspeed.study.store import Store

    runner.run(spec_module.parse(MECHANISM_STUDY), tmp_path / "study", MECHANISM_STUDY)
    with Store.open(tmp_path / "study") as store:
        data = results.load(store)
    titles = [figure.title for figure in evidence.figures(data, compare.analyze(data))]
    assert {"Dead units", "Dormant units", "Feature rank", "Effective learning rate"} <= set(titles)


def test_every_learner_declares_the_mechanism_metrics() -> None:
    for name in registry.names():
        declared = [metric.name for metric in registry.get(name).metrics]
        assert set(NAMES) <= set(declared) and not any(registry.get(name).metric(m).check_finite for m in NAMES)


LAPACK_PROBE = """
import json, pathlib, sys, scipy.linalg.cython_lapack, threadpoolctl
def threads():
    blas = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    own = [lib for lib in blas if pathlib.Path(lib["filepath"]).parent.name.startswith("scipy")]
    return [lib["num_threads"] for lib in own or blas]
before = threads()
import jax, jax.numpy as jnp
from regspeed.learn import common, mechanisms
imported = threads()
if sys.argv[1] == "srank":
    jax.jit(mechanisms.srank).lower(jnp.ones((8, 4)))
else:
    init_batch, _, _ = common.compiled(lambda config, key, hp: hp, lambda c, x, n: (x, {}), lambda c, x: {})
    init_batch.lower(None, jax.random.split(jax.random.key(0), 2), jnp.zeros(2))
print(json.dumps([before, imported, threads()]))
"""


@pytest.mark.parametrize("traced", ["srank", "init"])
def test_the_lapack_under_jax_runs_on_one_thread(traced: str) -> None:
    """Importing regspeed leaves scipy's BLAS as it was; tracing the srank (an SVD) or a
    learner's initialisation (orthogonal initialisers: QRs) on the CPU limits it to one thread
    (jaxlib's LAPACK calls run on it): a decomposition inside a busy XLA program does not wait
    for OpenBLAS threads. In a fresh process, as a user's would be, whose BLAS starts 2 threads."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(OPENBLAS_NUM_THREADS="2", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", LAPACK_PROBE, traced], capture_output=True, text=True, timeout=120,
                          env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, imported, limited = json.loads(done.stdout.strip().splitlines()[-1])
    assert any(threads > 1 for threads in before), before  # else the test could not tell
    assert imported == before and limited == [1] * len(before)
