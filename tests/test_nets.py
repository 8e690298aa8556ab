"""Networks: shapes, parameter layout (the regularizer masks depend on it), dropout."""

from __future__ import annotations

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regspeed.errors import ConfigError
from regspeed.learn import nets


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
