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


# ------------------------------------------------------------------------ shrink and perturb

SHRINK = regs.Regularizer("shrink_perturb", period=3, perturb=0.5)
STRENGTH = 0.2  # the share shrunk away: the shrink factor is 0.8, the noise scale 0.5 * 0.2


def _by_hand(regularizer: regs.Regularizer, stepped, key: jax.Array, initial=PARAMS):
    """``a * stepped + b * noise`` on masked leaves, ``stepped`` elsewhere; the noise drawn as
    documented: the state's key split once, standard normals for all masked leaves at once,
    cut in flattening order, scaled by each leaf's initial std and shifted by its mean."""
    _, draw = jax.random.split(key)
    leaves, tree = jax.tree.flatten(stepped)
    selected = jax.tree.leaves(regs.mask(regularizer, stepped))
    normals = iter(jax.random.normal(draw, (sum(w.size for w, m in zip(leaves, selected, strict=True) if m),)).tolist())
    a, b = 1 - STRENGTH, regularizer.perturb * STRENGTH
    expected = []
    for w, w0, m in zip(leaves, jax.tree.leaves(initial), selected, strict=True):
        z = np.reshape([next(normals) for _ in range(w.size)], w.shape) if m else 0.0
        expected.append(a * w + b * (jnp.mean(w0) + jnp.std(w0) * z) if m else w)
    return tree.unflatten(expected)


def _without_shrink(state):
    """The baseline optimizer's state inside ours: the same chain less its last step."""
    return state._replace(inner_state=state.inner_state[:-1])


def _assert_leaves(a, b, exact: bool) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "regularizer",
    [SHRINK, regs.Regularizer("shrink_perturb", network="value", include_biases=True, include_norm_scales=True)],
    ids=["weights-period-3", "value-network-every-leaf-period-1"],
)
def test_shrink_perturb_every_period_steps_and_nothing_between(regularizer: regs.Regularizer) -> None:
    """Clipped Adam steps on a parameter-dependent gradient, each compared with the baseline
    optimizer's step from the same parameters and Adam state: between periods bit for bit the
    same; at the end of each period the masked leaves are ``a * w + b * noise`` of that step,
    the others exactly that step; the key moves on once per period."""
    ours = regs.optimizer(regularizer, 0.05, STRENGTH, max_grad_norm=0.5)
    baseline = regs.optimizer(regs.Regularizer(), 0.05, STRENGTH, max_grad_norm=0.5)
    selected = jax.tree.leaves(regs.mask(regularizer, PARAMS))
    assert not all(selected) and any(selected)
    params, state, key = PARAMS, ours.init(PARAMS), regs.noise_key(PARAMS)
    for step in range(1, 2 * regularizer.period + 1):
        grads = _task_grad(params)
        plain, _ = baseline.update(grads, _without_shrink(state), params)
        stepped = optax.apply_updates(params, plain)
        updates, state = ours.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        if step % regularizer.period:
            _assert_leaves(params, stepped, exact=True)
        else:
            _assert_leaves(params, _by_hand(regularizer, stepped, key), exact=False)
            for w, plain_w, m in zip(jax.tree.leaves(params), jax.tree.leaves(stepped), selected, strict=True):
                assert m or np.array_equal(w, plain_w)  # unmasked leaves: the base step only
                assert not m or w.size == 1 or not np.allclose(w, plain_w)  # (a constant leaf may sit still)
            key = jax.random.split(key)[0]
        assert np.array_equal(jax.random.key_data(state.inner_state[-1].key), jax.random.key_data(key))


def test_shrink_perturb_at_phase_changes_acts_where_the_learner_says_a_phase_ends() -> None:
    """``period = 0``: the steps given ``phase_ends=False`` are the baseline's bit for bit, the
    one given ``True`` shrinks and perturbs (the key moves on once); without the flag it refuses
    (a learner without phases would silently never act), and the name says "phase"."""
    regularizer = regs.Regularizer("shrink_perturb", period=0, perturb=0.5)
    assert regularizer.at_phase_change and not SHRINK.at_phase_change
    ours = regs.optimizer(regularizer, 0.05, STRENGTH, max_grad_norm=0.5)
    baseline = regs.optimizer(regs.Regularizer(), 0.05, STRENGTH, max_grad_norm=0.5)
    params, state, key = PARAMS, ours.init(PARAMS), regs.noise_key(PARAMS)
    for ends in (False, False, True, False):
        grads = _task_grad(params)
        plain, _ = baseline.update(grads, _without_shrink(state), params)
        stepped = optax.apply_updates(params, plain)
        updates, state = ours.update(grads, state, params, phase_ends=jnp.asarray(ends))
        params = optax.apply_updates(params, updates)
        if ends:
            _assert_leaves(params, _by_hand(regularizer, stepped, key), exact=False)
            key = jax.random.split(key)[0]
        else:
            _assert_leaves(params, stepped, exact=True)
        assert np.array_equal(jax.random.key_data(state.inner_state[-1].key), jax.random.key_data(key))
    with pytest.raises(ValueError, match="phase_ends"):
        ours.update(GRADS, state, PARAMS)
    from regspeed.study import spec as spec_module

    assert spec_module.condition_name(regularizer, 0.2) == "shrink_perturb[period=phase,perturb=0.5]@0.2"


def test_shrink_perturb_noise_has_each_leafs_initial_mean_and_spread() -> None:
    """With ``w + u = 0`` and ``b = 1`` the parameters become the noise. For a leaf of n
    entries, n normal draws have a sample mean within sigma / sqrt(n) and a sample standard
    deviation within sigma / sqrt(2n) of the truth (one standard error); 5 standard errors
    are checked. A normal and a uniform kernel (the noise is Gaussian either way, with the
    initial mean and spread); constant biases (std 0) get their initial value back."""
    initial = {
        "Dense_0": {
            "kernel": 0.01 + 0.05 * jax.random.normal(jax.random.key(3), (300, 200)),
            "bias": jnp.full((200,), 0.3),
        },
        "Dense_1": {"kernel": 2.0 * jax.random.uniform(jax.random.key(4), (200, 100)), "bias": jnp.zeros(100)},
    }
    regularizer = regs.Regularizer("shrink_perturb", include_biases=True, perturb=4.0)
    transform = regs.shrink_perturb(regularizer, 0.25)  # b = perturb * strength = 1
    negated = jax.tree.map(jnp.negative, initial)
    updates, _ = transform.update(negated, transform.init(initial), initial)
    noise = optax.apply_updates(initial, updates)
    for name in ("Dense_0", "Dense_1"):
        w0, drawn = initial[name]["kernel"], noise[name]["kernel"]
        sigma, n = float(jnp.std(w0)), w0.size
        assert abs(float(jnp.std(drawn)) - sigma) < 5 * sigma / np.sqrt(2 * n)
        assert abs(float(jnp.mean(drawn)) - float(jnp.mean(w0))) < 5 * sigma / np.sqrt(n)
        np.testing.assert_allclose(noise[name]["bias"], initial[name]["bias"], atol=1e-6)
        correlation = float(jnp.corrcoef(drawn.ravel(), w0.ravel())[0, 1])
        assert abs(correlation) < 5 / np.sqrt(n)  # fresh draws, not the initial weights


def test_shrink_perturb_at_strength_zero_is_the_baseline() -> None:
    """Strength 0 (shrink factor 1, no noise): the step returns its input updates bit for bit,
    alone, and jitted and vmapped beside a run that shrinks; step by step the whole
    optimizer's parameters equal the baseline's bit for bit. (Compiled into one program with
    its learner, the last bit may differ from the baseline's program, as for every kind at
    strength 0: XLA fuses the two chains differently.)"""
    regularizer = regs.Regularizer("shrink_perturb", include_biases=True)
    transform = regs.shrink_perturb(regularizer, 0.0)
    updates, state = transform.update(GRADS, transform.init(PARAMS), PARAMS)
    _assert_leaves(updates, GRADS, exact=True)

    def step(strength):
        transform = regs.shrink_perturb(regularizer, strength)
        return transform.update(GRADS, transform.init(PARAMS), PARAMS)[0]

    both = jax.jit(jax.vmap(step))(jnp.array([0.0, 0.5]))
    _assert_leaves(jax.tree.map(lambda x: x[0], both), GRADS, exact=True)
    assert not np.allclose(both["policy"]["Dense_0"]["kernel"][1], GRADS["policy"]["Dense_0"]["kernel"])
    ours = regs.optimizer(regularizer, 0.05, 0.0, max_grad_norm=0.5)
    baseline = regs.optimizer(regs.Regularizer(), 0.05, 0.0, max_grad_norm=0.5)
    params, reference = PARAMS, PARAMS
    state, reference_state = ours.init(PARAMS), baseline.init(PARAMS)
    for _ in range(3):
        updates, state = ours.update(_task_grad(params), state, params)
        params = optax.apply_updates(params, updates)
        updates, reference_state = baseline.update(_task_grad(reference), reference_state, reference)
        reference = optax.apply_updates(reference, updates)
        _assert_leaves(params, reference, exact=True)


def test_shrink_perturb_vmapped_runs_each_keep_their_own_period() -> None:
    """Under vmap the noise is drawn when any run is due; a run that is not due, or has
    strength 0, is untouched, and each run equals itself run alone."""
    transform = regs.optimizer(SHRINK, 0.05, STRENGTH, base="sgd")

    def run(strength, offset):
        state = transform.init(PARAMS)
        state.hyperparams["strength"] = strength
        state = state._replace(inner_state=(*state.inner_state[:-1], state.inner_state[-1]._replace(count=offset)))
        params, trajectory = PARAMS, []
        for _ in range(3):
            updates, state = transform.update(GRADS, state, params)
            params = optax.apply_updates(params, updates)
            trajectory.append(params)
        return trajectory

    strengths, offsets = jnp.array([0.2, 0.2, 0.0, 0.5]), jnp.array([0, 1, 0, 2], jnp.int32)
    together = jax.jit(jax.vmap(run))(strengths, offsets)
    for i in range(4):
        alone = jax.jit(run)(strengths[i], offsets[i])
        _assert_leaves(jax.tree.map(lambda x, i=i: x[i], together), alone, exact=False)
    kernel = np.asarray([[t["policy"]["Dense_0"]["kernel"][i, 0, 0] for t in together] for i in range(4)])
    plain = 3.0 - 0.05 * 0.3 * np.arange(1, 4)  # SGD on a constant gradient
    moved = ~np.isclose(kernel, plain[None, :], rtol=1e-6)
    # shrunk first at step 3 (offset 0), 2 (offset 1), never (strength 0), 1 (offset 2)
    assert [int(np.argmax(row)) if row.any() else -1 for row in moved] == [2, 1, -1, 0]


def test_shrink_perturb_key_is_a_function_of_the_initial_parameters() -> None:
    same = regs.noise_key(jax.tree.map(jnp.copy, PARAMS))
    assert np.array_equal(jax.random.key_data(regs.noise_key(PARAMS)), jax.random.key_data(same))
    other = regs.noise_key(jax.tree.map(lambda w: w + 1e-3, PARAMS))
    assert not np.array_equal(jax.random.key_data(regs.noise_key(PARAMS)), jax.random.key_data(other))


def test_shrink_perturb_direction_and_chain() -> None:
    """The pull it reports is the expected displacement of one shrink-and-perturb; it is the
    last step of the chain and needs the parameters."""
    regularizer = regs.Regularizer("shrink_perturb", perturb=0.5)
    pull = regs.direction(regularizer, PARAMS, INIT, jnp.asarray(LAMBDA))
    np.testing.assert_allclose(pull["value"]["Dense_0"]["kernel"].ravel(), LAMBDA * (VALUE_K - 0.5 * 0.5), rtol=1e-6)
    assert float(jnp.abs(pull["value"]["Dense_0"]["bias"]).sum()) == 0.0
    assert float(regs.penalty(regularizer, PARAMS, INIT, jnp.asarray(LAMBDA))) == 0.0
    state = regs.optimizer(regularizer, 0.1, LAMBDA).init(PARAMS)
    assert len(state.inner_state) == 3 and isinstance(state.inner_state[-1], regs.ShrinkPerturbState)
    transform = regs.shrink_perturb(regularizer, LAMBDA)
    with pytest.raises(ValueError, match="needs the parameters"):
        transform.update(GRADS, transform.init(PARAMS))
    with pytest.raises(ValueError, match="the regularizer is 'l2'"):
        regs.shrink_perturb(regs.Regularizer("l2"), LAMBDA)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: regs.Regularizer("shrink_perturb", period=-1), "reg_period"),
        (lambda: regs.check_world(regs.Regularizer("shrink_perturb", period=0), changing=False), "reg_period"),
        (lambda: regs.Regularizer("shrink_perturb", period=2.5), "reg_period"),
        (lambda: regs.Regularizer("shrink_perturb", period=True), "reg_period"),
        (lambda: regs.Regularizer("shrink_perturb", period=2**31), "reg_period"),
        (lambda: regs.Regularizer("shrink_perturb", perturb=-0.1), "reg_perturb"),
        (lambda: regs.Regularizer("l2", period=10), "reg_period"),
        (lambda: regs.Regularizer("weight_decay", perturb=0.0), "reg_perturb"),
        (lambda: regs.check_strength(regs.Regularizer("shrink_perturb"), 1.0), "strength"),
        (lambda: regs.check_strength(regs.Regularizer("shrink_perturb"), -0.1), "strength"),
    ],
)
def test_shrink_perturb_bad_input_names_the_option(make, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        make()
    assert error.value.field == field


# ---------------------------------------------- shrink and perturb in specs, commands and learners

SP_SPEC = """
name = "sp"
task = "teacher"
seeds = 2
budget = 24
[config]
inputs = 6
train_samples = 64
test_samples = 32
hidden = [16]
teacher_hidden = [8]
[[regularizers]]
kind = "shrink_perturb"
strengths = [0.1]
period = 4
[evaluation]
every_updates = 8
[execution]
chunk_updates = 8
"""


def test_a_spec_names_shrink_perturb_by_its_static_fields() -> None:
    from regspeed.study import spec as spec_module

    spec = spec_module.parse(SP_SPEC)
    assert [c.name for c in spec_module.conditions(spec)] == ["none", "shrink_perturb[period=4]@0.1"]
    assert spec_module.conditions(spec)[1].regularizer == regs.Regularizer("shrink_perturb", period=4)
    both = SP_SPEC + '[[regularizers]]\nkind = "shrink_perturb"\nstrengths = [0.1]\nperturb = 0.5\n'
    assert [c.name for c in spec_module.conditions(spec_module.parse(both))][1:] == [
        "shrink_perturb[period=4]@0.1", "shrink_perturb[perturb=0.5]@0.1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("period = 4", "period = 0"), ("regularizers[0].period", "0 (shrink and perturb at each phase change) needs")),
        (("period = 4", "period = -1"), ("regularizers[0].period", "must be an integer from 0 (at each phase change)")),
        (("period = 4", "period = 2.5"), ("regularizers[0].period", "must be an integer (got 2.5)")),
        (("period = 4", "period = true"), ("regularizers[0].period", "must be an integer (got True)")),
        (("period = 4", "perturb = -1"), ("regularizers[0].perturb", "must be >= 0 (got -1.0)")),
        (("strengths = [0.1]", "strengths = [1.5]"), ("regularizers[0].strengths", "must be in [0, 1): the weights")),
        (('kind = "shrink_perturb"', 'kind = "l2"'), ("regularizers[0].period", "only shrink_perturb has one")),
    ],
)
def test_bad_shrink_perturb_settings_are_one_line_with_their_toml_path(
    change: tuple[str, str], problem: tuple[str, str]
) -> None:
    from regspeed.study import spec as spec_module

    assert change[0] in SP_SPEC
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(SP_SPEC.replace(*change))
    assert len(caught.value.problems) == 1
    path, message = caught.value.problems[0]
    assert path == problem[0] and message.startswith(problem[1]), caught.value.problems


def test_bad_shrink_perturb_settings_on_the_command_line_exit_2(tmp_path) -> None:
    from typer.testing import CliRunner

    from regspeed.cli import app

    path = tmp_path / "bad.toml"
    path.write_text(SP_SPEC.replace("period = 4", "period = 0"))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "regularizers[0].period: 0 (shrink and perturb at each phase change) needs a changing world" in result.output
    assert not (tmp_path / "out").exists()
    for flags, line in (
        (["--reg-period", "0"], "error: reg_period: 0 (shrink and perturb at each phase change) needs a changing"),
        (["--reg-period", "-1"], "error: reg_period: must be an integer from 0 (at each phase change) to 2147483647"),
        (["--reg-perturb", "-1"], "error: reg_perturb: must be >= 0 (got -1.0)"),
        (["--strength", "1"], "error: strength: must be in [0, 1): the weights are multiplied by 1 - strength"),
    ):
        result = CliRunner().invoke(app, ["train", "--reg", "shrink_perturb", *flags, "--out", str(tmp_path / "t")])
        assert result.exit_code == 2 and result.output.strip().startswith(line), result.output
        assert len(result.output.strip().splitlines()) == 1


def test_shrink_perturb_trains_a_learner_and_resumes_bit_identical(tmp_path) -> None:
    """Through the optimizer alone, with no learner code: a teacher run shrinks and perturbs
    (it moves away from the baseline), its batch-mate at strength 0 stays the baseline's run,
    and a checkpointed, resumed run ends bit for bit as an uninterrupted one (the noise key is
    in the carry)."""
    import tiny
    from test_learners import CHUNK, _resume_equals_uninterrupted

    regularizer = regs.Regularizer("shrink_perturb", period=3)
    learner, setup, carry = tiny.start("teacher", [0, 0], [0.0, 0.3], regularizer=regularizer)
    carry, metrics = learner.trainer.advance_batch(setup.config, carry, 2 * CHUNK)
    _, baseline_setup, baseline = tiny.start("teacher", [0], [0.0], regularizer=regs.Regularizer())
    baseline, baseline_metrics = learner.trainer.advance_batch(baseline_setup.config, baseline, 2 * CHUNK)
    for ours, plain in zip(jax.tree.leaves(carry.params), jax.tree.leaves(baseline.params), strict=True):
        np.testing.assert_allclose(ours[0], plain[0], rtol=1e-5, atol=1e-6)
    kernels = [w for w in jax.tree.leaves(carry.params) if w.ndim == 3]  # (run, inputs, outputs)
    assert kernels and all(not np.allclose(w[1], w[0], atol=1e-3) for w in kernels)
    np.testing.assert_allclose(metrics["train_loss"][0], baseline_metrics["train_loss"][0], rtol=1e-5)
    assert np.isfinite(np.asarray(metrics["train_loss"])).all()
    _resume_equals_uninterrupted("teacher", tmp_path, {"regularizer": regularizer})


@pytest.mark.slow
def test_a_ppo_study_with_shrink_perturb_runs_and_differs_from_the_baseline(tmp_path) -> None:
    from test_study import TINY_SPEC

    from regspeed.study import results, runner
    from regspeed.study import spec as spec_module
    from regspeed.study.store import Store

    text = TINY_SPEC.replace('kind = "l2"', 'kind = "shrink_perturb"\nperiod = 4').replace("[1e-3, 1e-2]", "[0.05]")
    outcome = runner.run(spec_module.parse(text), tmp_path / "sp", text)
    assert outcome.runs_failed == 0
    with Store.open(tmp_path / "sp") as store:
        baseline, shrunk = results.curves(store, "weight_l2")
    assert (baseline.condition, shrunk.condition) == ("none", "shrink_perturb[period=4]@0.05")
    assert baseline.values.shape == shrunk.values.shape and (shrunk.values[:, -1] < baseline.values[:, -1]).all()
