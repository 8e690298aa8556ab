"""Supervised tasks: data with known structure, validation, and that the models learn."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regspeed.errors import ConfigError
from regspeed.learn import regularizers as regs
from regspeed.learn import supervised


def test_modadd_data_covers_every_pair_once_with_the_right_labels() -> None:
    config = supervised.SupervisedConfig(task="modadd", modulus=11, train_fraction=0.4)
    x_train, y_train, x_test, y_test = supervised.dataset(config)
    pairs = np.concatenate([x_train, x_test])
    assert len(x_train) == config.train_size == round(0.4 * 121)
    assert len({tuple(p) for p in pairs.tolist()}) == 121  # a partition of all pairs
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), pairs.sum(axis=1) % 11)


def test_linreg_inputs_have_the_requested_condition_number() -> None:
    config = supervised.SupervisedConfig(task="linreg", inputs=8, train_samples=200_000, condition_number=1000.0)
    x_train = supervised.dataset(config)[0]
    eigenvalues = np.linalg.eigvalsh(np.cov(x_train.T))
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(1000.0, rel=0.05)


def test_data_is_a_pure_function_of_the_configuration() -> None:
    config = supervised.SupervisedConfig(task="teacher", train_samples=50, test_samples=20)
    first, again = supervised.dataset(config), supervised.dataset(dataclasses.replace(config, hidden=(8,)))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = supervised.dataset(dataclasses.replace(config, data_seed=1))
    assert not np.array_equal(first[0], other[0])
    digits = supervised.dataset(supervised.SupervisedConfig(task="digits", train_fraction=0.5))
    assert digits[0].shape == (898, 64) and digits[2].shape == (899, 64) and set(digits[1].tolist()) == set(range(10))


def _train(config: supervised.SupervisedConfig, learning_rate: float, strength: float = 0.0) -> dict:
    hp = jax.tree.map(lambda x: jnp.broadcast_to(x, (2,)), supervised.hparams(learning_rate, strength))
    carry = supervised.init_batch(config, supervised.run_keys([0, 1]), hp)
    _, metrics = supervised.advance_batch(config, carry, config.total_updates)
    return jax.device_get(metrics)


@pytest.mark.slow
def test_linear_regression_fits_and_digits_are_learned() -> None:
    linreg = supervised.SupervisedConfig(
        task="linreg",
        inputs=8,
        train_samples=256,
        test_samples=256,
        condition_number=10.0,
        hidden=(),
        total_updates=300,
    )
    metrics = _train(linreg, 0.05)
    assert metrics["train_r2"][:, 0].max() < 0.5 and metrics["test_r2"][:, -1].min() > 0.95
    digits = supervised.SupervisedConfig(task="digits", hidden=(32,), train_fraction=0.5, batch_size=128,
                                         total_updates=150)  # fmt: skip
    metrics = _train(digits, 3e-3)
    assert metrics["test_accuracy"][:, -1].min() > 0.85
    np.testing.assert_array_equal(metrics["step"][0], np.arange(1, 151))


def test_l2_shrinks_the_weights_of_a_linear_model() -> None:
    config = supervised.SupervisedConfig(
        task="linreg", inputs=8, train_samples=256, test_samples=64, condition_number=10.0, hidden=(),
        total_updates=200, optimizer="sgd", regularizer=regs.Regularizer("l2"),
    )  # fmt: skip
    plain, ridge = _train(config, 0.05, 0.0), _train(config, 0.05, 1.0)
    assert ridge["weight_l2"][:, -1].max() < plain["weight_l2"][:, -1].min()
    assert (ridge["grad_cosine"][:, -1] < 0).all()  # at the ridge optimum the two gradients oppose


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": "mnist"}, "task"),
        ({"modulus": 1}, "modulus"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"batch_size": 100_000}, "batch_size"),
        ({"condition_number": 0.5}, "condition_number"),
        ({"regularizer": regs.Regularizer("l2", network="policy")}, "reg_network"),
    ],
)
def test_bad_settings_name_the_option(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        supervised.SupervisedConfig(**change)
    assert caught.value.field == field


def test_ridge_optimum_solves_the_normal_equations_and_progress_reaches_one() -> None:
    config = supervised.SupervisedConfig(
        task="linreg", inputs=6, train_samples=128, test_samples=32, condition_number=10.0, hidden=(),
        total_updates=400, optimizer="sgd", regularizer=regs.Regularizer("l2"),
    )  # fmt: skip
    x, y, _, _ = supervised.dataset(config)
    w, b = supervised.ridge_optimum(config, jnp.asarray(0.5))
    # the gradient of the ridge objective vanishes at the optimum
    residual = x @ np.asarray(w) + float(b) - y
    np.testing.assert_allclose(x.T @ residual / len(y) + 0.5 * np.asarray(w), 0.0, atol=1e-4)
    np.testing.assert_allclose(residual.mean(), 0.0, atol=1e-4)
    metrics = _train(config, 0.05, 0.5)
    assert metrics["optimum_progress"][:, 0].max() < 0.9 and metrics["optimum_progress"][:, -1].min() > 0.9999
    nonlinear = dataclasses.replace(config, hidden=(8,))
    assert np.isnan(_train(nonlinear, 0.05)["optimum_progress"]).all()  # defined for linear models only


SPEC = """
name = "sup"
task = "linreg"
seeds = 2
budget = 200
[config]
inputs = 6
train_samples = 128
test_samples = 32
condition_number = 10.0
hidden = []
optimizer = "sgd"
learning_rate = 0.05
[[regularizers]]
kind = "l2"
strengths = [0.5]
[thresholds]
optimum_progress = [0.99]
"""


def test_supervised_tasks_are_study_tasks_with_clear_errors() -> None:
    from regspeed.learn import registry
    from regspeed.study import spec as spec_module

    spec = spec_module.parse(SPEC)
    learner = registry.get("linreg")
    assert learner.speed_metrics == ("optimum_progress", "train_r2", "test_r2") and learner.step_unit == "updates"
    config = spec_module.setup(spec, spec_module.conditions(spec)[1].regularizer).config
    assert config.total_updates == 200 and config.regularizer.kind == "l2" and config.hidden == ()
    assert registry.get("modadd").speed_metrics == ("train_accuracy", "test_accuracy")
    for change, problem in (
        (("inputs = 6", "inputs = 6\nmodulus = 1"), ("config.modulus", "must be an integer >= 2 (got 1)")),
        (("inputs = 6", "inputs = 6\ntrain_fraction = 1.5"), ("config.train_fraction", "must be in (0, 1) (got 1.5)")),
        (("inputs = 6", "inputs = 6\nlayers = 2"), ("config.layers", "unknown key; remove it or check its spelling")),
        (('task = "linreg"', 'task = "mnist"'), ("task", "unknown task 'mnist'; choose one of")),
    ):
        with pytest.raises(spec_module.SpecError) as caught:
            spec_module.parse(SPEC.replace(*change))
        path, message = caught.value.problems[0]
        assert path == problem[0] and message.startswith(problem[1]), caught.value.problems
