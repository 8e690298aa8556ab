"""Each regularizer against a hand computation on a small parameter tree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from regspeed.errors import ConfigError
from regspeed.learn import regularizers as regs

# Two networks and a shared torso, with Flax's leaf names.
PARAMS = {
    "torso": {"Dense_0": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([0.1, -0.1])}},
    "policy": {"Dense_0": {"kernel": jnp.array([[3.0], [-1.0]]), "bias": jnp.array([2.0])}},
    "value": {
        "Dense_0": {"kernel": jnp.array([[-4.0], [0.0005]]), "bias": jnp.array([1.0])},
        "LayerNorm_0": {"scale": jnp.array([1.5]), "bias": jnp.array([0.0])},
    },
}
INIT = jax.tree.map(lambda w: w * 0 + 0.5, PARAMS)
TORSO_K = np.array([1.0, -2.0, 0.5, 0.0])
POLICY_K = np.array([3.0, -1.0])
VALUE_K = np.array([-4.0, 0.0005])
ALL_K = np.concatenate([TORSO_K, POLICY_K, VALUE_K])
LAMBDA = 0.1


def test_mask_selects_weights_of_the_chosen_network() -> None:
    all_weights = regs.mask(regs.Regularizer("l2"), PARAMS)
    assert all_weights["policy"]["Dense_0"] == {"kernel": True, "bias": False}
    assert all_weights["value"]["LayerNorm_0"] == {"scale": False, "bias": False}
    policy = regs.mask(regs.Regularizer("l2", network="policy"), PARAMS)
    assert policy["torso"]["Dense_0"]["kernel"] and policy["policy"]["Dense_0"]["kernel"]
    assert not policy["value"]["Dense_0"]["kernel"]
    everything = regs.mask(regs.Regularizer("l2", include_biases=True, include_norm_scales=True), PARAMS)
    assert all(jax.tree.leaves(everything))


@pytest.mark.parametrize(
    ("regularizer", "expected"),
    [
        (regs.Regularizer("none"), 0.0),
        (regs.Regularizer("l1"), LAMBDA * np.abs(ALL_K).sum()),
        (regs.Regularizer("l2"), LAMBDA / 2 * (ALL_K**2).sum()),
        (regs.Regularizer("l2", network="value"), LAMBDA / 2 * ((TORSO_K**2).sum() + (VALUE_K**2).sum())),
        (regs.Regularizer("l2", include_biases=True), LAMBDA / 2 * ((ALL_K**2).sum() + 0.01 + 0.01 + 4 + 1 + 0)),
        (regs.Regularizer("l2_init"), LAMBDA / 2 * ((ALL_K - 0.5) ** 2).sum()),
        (
            regs.Regularizer("elastic", l1_ratio=0.25),
            LAMBDA * (0.25 * np.abs(ALL_K).sum() + 0.75 / 2 * (ALL_K**2).sum()),
        ),
        (regs.Regularizer("weight_decay"), 0.0),
        (regs.Regularizer("dropout"), 0.0),
    ],
    ids=lambda x: getattr(x, "kind", ""),
)
def test_penalty_value(regularizer: regs.Regularizer, expected: float) -> None:
    value = regs.penalty(regularizer, PARAMS, INIT, jnp.asarray(LAMBDA))
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_penalty_gradients_by_hand() -> None:
    strength = jnp.asarray(LAMBDA)
    grad = jax.grad(lambda p: regs.penalty(regs.Regularizer("l1"), p, INIT, strength))(PARAMS)
    np.testing.assert_allclose(grad["policy"]["Dense_0"]["kernel"].ravel(), LAMBDA * np.sign(POLICY_K))
    assert float(grad["policy"]["Dense_0"]["bias"][0]) == 0.0
    grad = jax.grad(lambda p: regs.penalty(regs.Regularizer("l2_init"), p, INIT, strength))(PARAMS)
    np.testing.assert_allclose(grad["value"]["Dense_0"]["kernel"].ravel(), LAMBDA * (VALUE_K - 0.5), rtol=1e-6)
    direction = regs.direction(regs.Regularizer("weight_decay"), PARAMS, INIT, strength)
    np.testing.assert_allclose(direction["torso"]["Dense_0"]["kernel"].ravel(), LAMBDA * TORSO_K)
    assert float(jnp.abs(direction["torso"]["Dense_0"]["bias"]).sum()) == 0.0


def _one_step(transform: optax.GradientTransformation, grads, params=PARAMS):
    state = transform.init(params)
    updates, _ = transform.update(grads, state, params)
    return optax.apply_updates(params, updates)


GRADS = jax.tree.map(lambda w: jnp.full_like(w, 0.3), PARAMS)


def test_weight_decay_is_adamw_and_l2_is_adam_on_the_penalised_loss() -> None:
    """Decoupled decay equals ``optax.adamw``; L2, fed the task gradient, equals Adam on the
    gradient plus lambda*w. The two differ, exactly as AdamW differs from Adam with an L2 term."""
    lr = 0.01
    wd = regs.Regularizer("weight_decay")
    ours_decay = _one_step(regs.optimizer(wd, lr, LAMBDA), GRADS)
    reference = _one_step(optax.adamw(lr, weight_decay=LAMBDA, mask=lambda p: regs.mask(wd, p)), GRADS)
    for a, b in zip(jax.tree.leaves(ours_decay), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    l2 = regs.Regularizer("l2")
    ours_l2 = _one_step(regs.optimizer(l2, lr, LAMBDA), GRADS)  # fed the task gradient: it adds the penalty's
    reference_l2 = _one_step(
        optax.adam(lr), jax.tree.map(lambda g, w, m: g + LAMBDA * w * m, GRADS, PARAMS, regs.mask(l2, PARAMS))
    )
    for a, b in zip(jax.tree.leaves(ours_l2), jax.tree.leaves(reference_l2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    # Under Adam the first step has magnitude lr per coordinate whatever the gradient, so
    # coupled L2 barely moves a large weight differently from a small one; decoupled decay
    # shrinks in proportion to the weight.
    w = float(PARAMS["value"]["Dense_0"]["kernel"][0, 0])  # -4.0, gradient 0.3
    decayed = float(ours_decay["value"]["Dense_0"]["kernel"][0, 0])
    coupled = float(ours_l2["value"]["Dense_0"]["kernel"][0, 0])
    assert decayed == pytest.approx(w - lr * 1.0 - lr * LAMBDA * w, rel=1e-5)
    assert coupled == pytest.approx(w - lr * np.sign(0.3 + LAMBDA * w), rel=1e-5)
    assert decayed != pytest.approx(coupled)


def _task_grad(params):
    """A task gradient that depends on the parameters, large enough for clipping to bite."""
    return jax.grad(lambda p: sum((((w - 1.0) * 3.0) ** 2).sum() for w in jax.tree.leaves(p)))(params)


def _reference_optimizer(regularizer: regs.Regularizer, lr: float, max_grad_norm: float, eps: float):
    """The chain without the penalty step, from Optax parts (the old formulation)."""
    parts = [optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam(eps=eps)]
    if regularizer.kind == "weight_decay":
        parts.append(optax.add_decayed_weights(LAMBDA, mask=lambda p: regs.mask(regularizer, p)))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


@pytest.mark.parametrize("kind", [*regs.PENALTY_KINDS, "weight_decay", "none"])
def test_penalty_in_the_chain_equals_the_penalty_added_to_the_task_gradient(kind: str) -> None:
    """Several clipped Adam steps: the optimizer fed the task gradient only gives the same
    parameters as the task gradient plus the penalty's gradient fed to the chain without the
    penalty step (how the trainers did it before)."""
    regularizer, lr, max_grad_norm, eps, strength = regs.Regularizer(kind), 0.05, 0.5, 1e-5, jnp.asarray(LAMBDA)
    ours = regs.optimizer(regularizer, lr, LAMBDA, max_grad_norm=max_grad_norm, eps=eps)
    reference = _reference_optimizer(regularizer, lr, max_grad_norm, eps)
    params, reference_params = PARAMS, PARAMS
    state, reference_state = ours.init(PARAMS), reference.init(PARAMS)
    for _ in range(5):
        updates, state = ours.update(_task_grad(params), state, params)
        params = optax.apply_updates(params, updates)
        penalty_grad = jax.grad(lambda p: regs.penalty(regularizer, p, PARAMS, strength))(reference_params)
        grad = jax.tree.map(jnp.add, _task_grad(reference_params), penalty_grad)
        assert float(optax.tree.norm(grad)) > 10 * max_grad_norm  # clipping acts on every step
        updates, reference_state = reference.update(grad, reference_state, reference_params)
        reference_params = optax.apply_updates(reference_params, updates)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference_params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    if kind == "l2_init":  # the anchor is the initial weights, from which the parameters moved
        assert float(regs.penalty(regularizer, params, PARAMS, strength)) > 1e-3


def test_only_penalty_kinds_have_the_penalty_step_and_only_l2_init_stores_weights() -> None:
    def leaves(kind: str) -> int:
        return len(jax.tree.leaves(regs.optimizer(regs.Regularizer(kind), 0.1, LAMBDA).init(PARAMS)))

    def chain_length(kind: str) -> int:
        return len(regs.optimizer(regs.Regularizer(kind), 0.1, LAMBDA).init(PARAMS).inner_state)

    assert {chain_length(kind) for kind in ("none", "dropout")} == {2}  # Adam, learning rate
    assert chain_length("weight_decay") == 3
    assert {chain_length(kind) for kind in regs.PENALTY_KINDS} == {3}
    assert {leaves(kind) for kind in ("none", "dropout", "weight_decay", "l1", "l2", "elastic")} == {leaves("none")}
    assert leaves("l2_init") == leaves("none") + len(jax.tree.leaves(PARAMS))
    stored = regs.optimizer(regs.Regularizer("l2_init"), 0.1, LAMBDA).init(INIT).inner_state[0].init_params
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(INIT), strict=True))


def test_penalty_step_needs_params_and_a_penalty_kind() -> None:
    transform = regs.add_penalty_gradient(regs.Regularizer("l2"), LAMBDA)
    with pytest.raises(ValueError, match="needs the parameters"):
        transform.update(GRADS, transform.init(PARAMS))
    with pytest.raises(ValueError, match="not one of"):
        regs.add_penalty_gradient(regs.Regularizer("weight_decay"), LAMBDA)


def test_penalty_strength_is_the_traced_hyperparameter() -> None:
    """The penalty uses the strength in the optimizer state: vmapped, and read at update time."""
    l2 = regs.Regularizer("l2")
    strengths = jnp.array([0.0, 0.1, 1.0])
    lr = 0.5

    def run(strength):
        return _one_step(regs.optimizer(l2, lr, strength, base="sgd"), GRADS)["policy"]["Dense_0"]["kernel"][0, 0]

    np.testing.assert_allclose(jax.jit(jax.vmap(run))(strengths), 3.0 - lr * (0.3 + strengths * 3.0), rtol=1e-6)
    transform = regs.optimizer(l2, lr, 0.0, base="sgd")
    state = transform.init(PARAMS)
    state.hyperparams["strength"] = jnp.asarray(1.0)
    updates, _ = transform.update(GRADS, state, PARAMS)
    assert float(updates["policy"]["Dense_0"]["kernel"][0, 0]) == pytest.approx(-lr * (0.3 + 3.0), rel=1e-6)


def test_gradient_diagnostics_are_the_norm_and_the_cosine_with_the_direction() -> None:
    strength = jnp.asarray(LAMBDA)
    for kind in ("l2_init", "weight_decay", "none"):
        regularizer = regs.Regularizer(kind)
        diagnostics = regs.gradient_diagnostics(regularizer, GRADS, PARAMS, INIT, strength)
        pull = regs.direction(regularizer, PARAMS, INIT, strength)
        assert float(diagnostics["grad_norm"]) == pytest.approx(float(optax.tree.norm(GRADS)))
        assert float(diagnostics["grad_cosine"]) == pytest.approx(float(regs.cosine(GRADS, pull)))
    assert float(regs.gradient_diagnostics(regs.Regularizer("none"), GRADS, PARAMS, INIT, strength)["grad_cosine"]) == 0


def test_sgd_decay_and_traced_strength_vmap() -> None:
    """The strength is a traced value: one vmapped program runs several strengths."""
    wd = regs.Regularizer("weight_decay")
    strengths = jnp.array([0.0, 0.1, 1.0])
    lr = 0.5

    def run(strength):
        return _one_step(regs.optimizer(wd, lr, strength, base="sgd"), GRADS)["policy"]["Dense_0"]["kernel"][0, 0]

    stepped = jax.jit(jax.vmap(run))(strengths)
    np.testing.assert_allclose(stepped, 3.0 - lr * (0.3 + strengths * 3.0), rtol=1e-6)


def test_learning_rate_lives_in_state_and_can_be_annealed() -> None:
    transform = regs.optimizer(regs.Regularizer("none"), 0.1, 0.0, base="sgd")
    state = transform.init(PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    updates, _ = transform.update(GRADS, state, PARAMS)
    assert float(optax.tree.norm(updates)) == 0.0


def test_statistics_and_cosine() -> None:
    stats = regs.weight_statistics(PARAMS)
    assert float(stats["weight_l1"]) == pytest.approx(np.abs(ALL_K).sum())
    assert float(stats["weight_l2"]) == pytest.approx(np.sqrt((ALL_K**2).sum()))
    assert float(stats["near_zero_fraction"]) == pytest.approx(2 / 8)  # 0.0 and 0.0005
    assert float(regs.cosine(PARAMS, PARAMS)) == pytest.approx(1.0)
    assert float(regs.cosine(PARAMS, jax.tree.map(jnp.negative, PARAMS))) == pytest.approx(-1.0)
    assert float(regs.cosine(PARAMS, jax.tree.map(jnp.zeros_like, PARAMS))) == 0.0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: regs.Regularizer("l3"), "reg"),
        (lambda: regs.Regularizer("l2", network="critic"), "reg_network"),
        (lambda: regs.Regularizer("elastic", l1_ratio=1.5), "l1_ratio"),
        (lambda: regs.check_strength(regs.Regularizer("l2"), -1e-4), "strength"),
        (lambda: regs.check_strength(regs.Regularizer("dropout"), 1.0), "strength"),
    ],
)
def test_bad_input_names_the_option(make, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        make()
    assert error.value.field == field
