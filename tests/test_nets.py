"""Networks: shapes, parameter layout (the regularizer masks depend on it), dropout."""

from __future__ import annotations

import dataclasses

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny

from regspeed.errors import ConfigError
from regspeed.learn import mechanisms, nets, registry
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Request


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(3, 6, 5), (11,)])
def test_outputs_and_parameter_layout(shared: bool, shape: tuple[int, ...]) -> None:
    config = nets.NetworkConfig(hidden=(8, 8), cnn_channels=(4,), shared_torso=shared)
    net = nets.PolicyValueNet(config, config.resolve_torso(shape), num_actions=3)
    params = net.init(jax.random.key(0), jnp.zeros(shape))["params"]
    logits, value = net.apply({"params": params}, jnp.ones((7, *shape)))
    assert logits.shape == (7, 3) and value.shape == (7,)
    expected_top = {"torso", "policy", "value"} if shared else {"policy", "value"}
    assert set(params) == expected_top
    if not shared:
        assert set(params["policy"]) == {"torso", "head"}
    if len(shape) == 3:  # the cnn reads a wall channel beside the 3 observation channels
        torso = params["torso"] if shared else params["policy"]["torso"]
        assert torso["PatchConv3x3_0"]["Dense_0"]["kernel"].shape == (9 * 4, 4)
    # Near-uniform initial policy: the policy head is initialised with gain 0.01.
    assert float(jnp.abs(logits).max()) < 0.1


def test_dropout_with_a_traced_rate() -> None:
    x = jnp.ones((200, 50))
    same = jax.jit(nets.dropout)(x, jnp.asarray(0.0), jax.random.key(0))
    np.testing.assert_array_equal(same, x)
    dropped = np.asarray(jax.jit(nets.dropout)(x, jnp.asarray(0.25), jax.random.key(1)))
    assert abs((dropped == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(dropped[dropped != 0], 1 / 0.75, rtol=1e-6)
    rates = jnp.asarray([0.0, 0.5])
    batched = jax.vmap(lambda r: nets.dropout(x, r, jax.random.key(2)))(rates)
    assert (np.asarray(batched[0]) == 1).all() and abs((np.asarray(batched[1]) == 0).mean() - 0.5) < 0.02


def test_dropout_only_in_training_forward_passes() -> None:
    config = nets.NetworkConfig(hidden=(16,))
    net = nets.PolicyValueNet(config, "mlp", num_actions=3, use_dropout=True)
    variables = net.init(jax.random.key(0), jnp.zeros((11,)))
    x = jnp.ones((4, 11))
    acting = net.apply(variables, x, 0.5)
    np.testing.assert_array_equal(acting[0], net.apply(variables, x, 0.5)[0])
    training = net.apply(variables, x, 0.5, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.array_equal(np.asarray(acting[1]), np.asarray(training[1]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"hidden": ()}, "hidden"), ({"activation": "swish"}, "activation"), ({"torso": "rnn"}, "torso")],
)
def test_bad_network_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        nets.NetworkConfig(**kwargs)
    assert error.value.field == field


def test_cnn_needs_grid_observations() -> None:
    with pytest.raises(ConfigError, match=r"^torso: a cnn needs grid observations"):
        nets.NetworkConfig(torso="cnn").resolve_torso((11,))


def test_patch_convolution_is_a_same_padded_3x3_convolution() -> None:
    x = jax.random.normal(jax.random.key(0), (5, 6, 7, 4))
    layer = nets.PatchConv3x3(8)
    params = layer.init(jax.random.key(1), x)
    ours = layer.apply(params, x)
    dense = params["params"]["Dense_0"]
    conv = flax.linen.Conv(8, (3, 3), padding="SAME")
    reference = conv.apply({"params": {"kernel": dense["kernel"].reshape(3, 3, 4, 8), "bias": dense["bias"]}}, x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- LayerNorm


def _paths(params: dict) -> dict[str, jax.Array]:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(3, 6, 5), (11,)])
def test_layer_norm_adds_a_gain_and_bias_per_hidden_layer_and_nothing_else(shared: bool, shape: tuple) -> None:
    """With the option, each torso gains ``LayerNorm_i`` (convolutions first, then dense
    layers) and every other parameter is the one the network has without it (the same
    initial values: old checkpoints load into networks without the option)."""
    config = nets.NetworkConfig(hidden=(8, 6), cnn_channels=(4,), shared_torso=shared)
    kind = config.resolve_torso(shape)
    plain, normed = (
        _paths(nets.PolicyValueNet(c, kind, num_actions=3).init(jax.random.key(0), jnp.zeros(shape))["params"])
        for c in (config, dataclasses.replace(config, layer_norm=True))
    )
    added = {path: leaf for path, leaf in normed.items() if path not in plain}
    assert not any("LayerNorm" in path for path in plain)
    for path, leaf in plain.items():
        np.testing.assert_array_equal(normed[path], leaf)
    torsos = ["['torso']"] if shared else ["['policy']['torso']", "['value']['torso']"]
    widths = ([4] if kind == "cnn" else []) + [8, 6]
    expected = {
        f"{torso}['LayerNorm_{i}']['{leaf}']": (width,)
        for torso in torsos
        for i, width in enumerate(widths)
        for leaf in ("scale", "bias")
    }
    assert {path: leaf.shape for path, leaf in added.items()} == expected
    assert all(float(leaf.sum()) == (leaf.size if path.endswith("['scale']") else 0) for path, leaf in added.items())


def test_layer_norm_normalizes_each_hidden_layer_before_its_activation() -> None:
    config = nets.NetworkConfig(hidden=(32, 16), activation="tanh", layer_norm=True)
    torso = nets.Torso(config, "mlp", use_dropout=False)
    x = 5.0 * jax.random.normal(jax.random.key(0), (10, 7)) + 3.0
    params = torso.init(jax.random.key(1), x[0], 0.0, False)["params"]
    for activation in mechanisms.hidden_activations(torso, {"params": params}, x, 0.0, False):
        normalized = np.arctanh(np.clip(np.asarray(activation, np.float64), -1 + 1e-7, 1 - 1e-7))
        np.testing.assert_allclose(normalized.mean(axis=-1), 0.0, atol=1e-4)
        np.testing.assert_allclose(normalized.std(axis=-1), 1.0, atol=2e-3)


def test_norm_gains_are_regularized_only_when_asked_and_are_not_weights() -> None:
    config = nets.NetworkConfig(hidden=(8,), layer_norm=True)
    params = nets.PolicyValueNet(config, "mlp", num_actions=3).init(jax.random.key(0), jnp.zeros(11))["params"]
    paths = list(_paths(params))

    def selected(regularizer: regs.Regularizer) -> set[str]:
        chosen = jax.tree.leaves(regs.mask(regularizer, params))
        return {path for path, is_chosen in zip(paths, chosen, strict=True) if is_chosen}

    kernels = {path for path in paths if path.endswith("['kernel']")}
    scales = {path for path in paths if path.endswith("['scale']")}
    norm_biases = {path for path in paths if "LayerNorm" in path and path.endswith("['bias']")}
    assert len(scales) == len(norm_biases) == 2
    assert selected(regs.Regularizer("l2")) == kernels
    assert selected(regs.Regularizer("l2", include_norm_scales=True)) == kernels | scales
    with_biases = selected(regs.Regularizer("l2", include_biases=True))
    assert norm_biases <= with_biases and not scales & with_biases
    assert selected(regs.Regularizer("weight_decay", network="policy", include_norm_scales=True)) == {
        path for path in kernels | scales if path.startswith("['policy']")
    }
    # the weight statistics and the penalties read the kernels alone
    doubled = jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf * 2 if jax.tree_util.keystr(path) in scales else leaf, params
    )
    assert float(regs.weight_statistics(doubled)["weight_l2"]) == float(regs.weight_statistics(params)["weight_l2"])
    strength = jnp.asarray(0.1)
    l2 = regs.Regularizer("l2")
    assert float(regs.penalty(l2, doubled, params, strength)) == float(regs.penalty(l2, params, params, strength))
    with_scales = regs.Regularizer("l2", include_norm_scales=True)
    gained = regs.penalty(with_scales, doubled, params, strength) - regs.penalty(with_scales, params, params, strength)
    assert float(gained) == pytest.approx(0.1 / 2 * (4 - 1) * 2 * 8)  # two gains of 8 ones, doubled


def test_the_default_network_learns_exactly_as_before_the_option() -> None:
    """Golden numbers of the tiny PPO run (seed 0), recorded with the code before LayerNorm
    and the mechanism metrics existed: the default's initial parameters and first two
    updates are unchanged."""
    learner, setup, carry = tiny.start("snake-ppo", [0, 1], [0.0, 1e-2])
    assert not setup.config.network.layer_norm
    first = lambda tree: jax.tree.map(lambda x: np.asarray(x[0], np.float64), tree)  # noqa: E731
    assert sum(np.abs(leaf).sum() for leaf in jax.tree.leaves(first(carry.params))) == pytest.approx(
        146.27072639433118, rel=1e-6
    )
    _, metrics = learner.trainer.advance_batch(setup.config, carry, 2)
    golden = {
        "policy_loss": [-0.001491650938987732, -0.0008840232621878386],
        "value_loss": [0.4695891737937927, 0.36708545684814453],
        "weight_l2": [6.705294132232666, 6.7052764892578125],
        "grad_norm": [0.7087581157684326, 0.5023036003112793],
    }
    for name, values in golden.items():
        np.testing.assert_allclose(np.asarray(metrics[name][0]), values, rtol=1e-4, atol=1e-7, err_msg=name)


def _layer_norm_setup(name: str, network: dict) -> tuple:
    tables, budget = tiny.TABLES[name]
    tables = tables | {"network": tables["network"] | network | {"layer_norm": True}}
    if network.get("torso") == "cnn":
        tables = tables | {"env": tables["env"] | {"observation": "grid"}}
    learner = registry.get(name)
    setup = learner.build(tables, Request(budget, regs.Regularizer("weight_decay"), **tiny.EVALUATION))
    return learner, setup, learner.start(setup, [0, 1], np.asarray([0.0, 0.1], np.float32))


@pytest.mark.parametrize(
    "name, network",
    [
        pytest.param("snake-ppo", {"shared_torso": True}, marks=pytest.mark.slow),
        pytest.param("snake-ppo", {}, marks=pytest.mark.slow),
        pytest.param("snake-ppo", {"torso": "cnn"}, marks=pytest.mark.slow),
        pytest.param("snake-dqn", {}, marks=pytest.mark.slow),
    ],
)
def test_agents_learn_with_layer_norm(name: str, network: dict) -> None:
    """Separate and shared torsos, MLP and CNN, PPO and DQN: every torso has its gains, they
    are trained (they leave 1), the numbers stay finite."""
    learner, setup, carry = _layer_norm_setup(name, network)
    carry, metrics = learner.trainer.advance_batch(setup.config, carry, 10 if name == "snake-dqn" else 2)
    scales = [leaf for path, leaf in _paths(carry.params).items() if path.endswith("['scale']")]
    assert scales and all(np.asarray(leaf).shape[0] == 2 for leaf in scales)
    assert any(not np.allclose(np.asarray(leaf), 1.0) for leaf in scales)
    assert all(np.isfinite(np.asarray(metrics[m])).all() for m in ("weight_l2", "reg_loss"))
