"""Flax networks: an MLP and a small CNN torso, actor-critic heads, traced-rate dropout,
optional LayerNorm.

Parameter names are part of the contract with :mod:`regspeed.regularizers`: dense and
convolution weights are ``kernel`` leaves, LayerNorm gains ``scale`` leaves (never a
weight: regularized only with ``include_norm_scales``); the policy network lives under
``policy``, the value network under ``value``, and a shared torso under ``torso``.

Every hidden layer's activation (after the nonlinearity, before dropout) is sown into the
``intermediates`` collection (:func:`regspeed.learn.mechanisms.sow_hidden`): a no-op
unless a caller asks for that collection, which is how the mechanism metrics read them.

Dropout is written here rather than taken from ``flax.linen.Dropout`` because its rate must
be a traced value (it is a regularizer strength, vmapped across runs); Flax's compares the
rate with 0 in Python.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from regspeed.errors import ConfigError
from regspeed.learn import mechanisms

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}
TORSOS = ("auto", "mlp", "cnn")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Static network shape (hashable: it selects the compiled code).

    Attributes:
        hidden: sizes of the dense layers of each torso.
        activation: ``tanh``, ``relu`` or ``gelu``.
        torso: ``mlp``, ``cnn`` (for ``grid`` observations), or ``auto`` (cnn for 3-D
            observations, else mlp).
        cnn_channels: channels of the 3 x 3 convolutions of the cnn torso (before its
            dense layers).
        shared_torso: one torso feeding both heads, instead of separate networks.
        layer_norm: a LayerNorm (with gain and bias) between each hidden layer's affine map
            and its activation: after every dense layer of a torso, and after every
            convolution of the cnn torso, normalising each cell's channels (as ConvNeXt
            does: independent of the board size). Off, the network and its parameters are
            exactly those without the option.
    """

    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    torso: str = "auto"
    cnn_channels: tuple[int, ...] = (16, 32)
    shared_torso: bool = False
    layer_norm: bool = False

    def __post_init__(self) -> None:
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError("hidden", f"must be one or more positive layer sizes (got {self.hidden!r})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", f"must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})")
        if self.torso not in TORSOS:
            raise ConfigError("torso", f"must be one of {', '.join(TORSOS)} (got {self.torso!r})")
        if any(not isinstance(c, int) or c < 1 for c in self.cnn_channels):
            raise ConfigError("cnn_channels", f"must be positive channel counts (got {self.cnn_channels!r})")
        if not isinstance(self.layer_norm, bool):
            raise ConfigError("layer_norm", f"must be true or false (got {self.layer_norm!r})")

    def resolve_torso(self, observation_shape: Sequence[int]) -> str:
        """The torso to use for observations of this shape, checking they fit."""
        torso = self.torso if self.torso != "auto" else ("cnn" if len(observation_shape) == 3 else "mlp")
        if torso == "cnn" and len(observation_shape) != 3:
            raise ConfigError(
                "torso", f"a cnn needs grid observations (channels x rows x cols), got shape {tuple(observation_shape)}"
            )
        return torso


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout with a traced ``rate`` (rate 0 returns ``x`` exactly)."""
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, x.shape), x / keep, 0.0)


def _dense(features: int, scale: float, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros, name=name)


def patches_3x3(x: jax.Array) -> jax.Array:
    """Every cell's 3 x 3 neighbourhood (zero padded), [..., rows, cols, 9 * channels].

    Ordered (row offset, column offset, channel), as a 3 x 3 convolution kernel flattens.
    """
    rows, cols = x.shape[-3], x.shape[-2]
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
    shifted = [padded[..., dr : dr + rows, dc : dc + cols, :] for dr in range(3) for dc in range(3)]
    return jnp.concatenate(shifted, axis=-1)


class PatchConv3x3(nn.Module):
    """A 3 x 3, stride 1, zero-padded ("SAME") convolution computed as patches x matrix.

    The same function as ``nn.Conv(features, (3, 3), padding="SAME")`` (its kernel is this
    one reshaped to 3 x 3 x channels x features; tested), written as a dense layer over
    each cell's neighbourhood because XLA:CPU's convolutions (their gradients above all)
    are slow at these sizes: with ``nn.Conv`` two convolutions took 150 ms each of a 1 s PPO
    update on a 6 x 6 board, and the whole update ran 5x faster this way (measured).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolved features, [..., rows, cols, features]."""
        return nn.Dense(self.features, kernel_init=nn.initializers.orthogonal(np.sqrt(2)), name="Dense_0")(
            patches_3x3(x)
        )


class Torso(nn.Module):
    """Dense layers (after 3 x 3 convolutions for a cnn), each followed by LayerNorm (when
    ``network.layer_norm``), the activation and, when ``use_dropout``, dropout at the traced
    rate. Each activation is sown (before dropout) for the mechanism metrics.

    Parameters: ``PatchConv3x3_i``, ``Dense_i`` and, with LayerNorm, ``LayerNorm_i`` (the
    convolutions' first, then the dense layers'), each with ``scale`` and ``bias``.
    """

    network: NetworkConfig
    kind: str  # "mlp" or "cnn"
    use_dropout: bool

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rate: jax.Array, train: bool) -> jax.Array:
        """Features of a batch of observations (dropout only when ``train``)."""
        act = ACTIVATIONS[self.network.activation]

        def hidden(h: jax.Array) -> jax.Array:
            """An affine map's output through (LayerNorm,) the activation (and dropout)."""
            if self.network.layer_norm:
                h = nn.LayerNorm()(h)
            h = act(h)
            mechanisms.sow_hidden(self, h)
            if self.use_dropout and train:
                return dropout(h, dropout_rate, self.make_rng("dropout"))
            return h

        if self.kind == "cnn":
            # channels x rows x cols -> rows x cols x channels, plus a wall channel so that
            # zero padding is not mistaken for free cells at the border.
            h = jnp.moveaxis(x, -3, -1)
            h = jnp.pad(h, [(0, 0)] * (h.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
            wall = np.pad(np.zeros(x.shape[-2:], np.float32), 1, constant_values=1.0)[..., None]
            h = jnp.concatenate([h, jnp.broadcast_to(wall, (*h.shape[:-1], 1))], axis=-1)
            for channels in self.network.cnn_channels:
                h = hidden(PatchConv3x3(channels)(h))
            x = h.reshape(*h.shape[:-3], -1)
        else:
            x = x.reshape(*x.shape[: x.ndim - 1], -1) if x.ndim > 1 else x
        for size in self.network.hidden:
            x = hidden(_dense(size, np.sqrt(2))(x))
        return x


class Branch(nn.Module):
    """One network's own part: its torso (unless shared) and its output layer ``head``."""

    network: NetworkConfig
    torso_kind: str
    use_dropout: bool
    features: int
    head_scale: float
    with_torso: bool

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rate: jax.Array, train: bool) -> jax.Array:
        """This network's output (logits or value) from observations or shared features."""
        if self.with_torso:
            x = Torso(self.network, self.torso_kind, self.use_dropout, name="torso")(x, dropout_rate, train)
        return _dense(self.features, self.head_scale, name="head")(x)


class PolicyValueNet(nn.Module):
    """Actor-critic: action logits and a state value, from separate or shared torsos.

    Parameters: ``policy/{torso,head}`` and ``value/{torso,head}``, or with a shared torso
    ``torso``, ``policy/head`` and ``value/head``. Orthogonal initialisation as is standard
    for PPO: gain sqrt(2) in torsos, 0.01 on the policy head (near-uniform initial policy),
    1 on the value head.
    """

    network: NetworkConfig
    torso_kind: str
    num_actions: int
    use_dropout: bool = False

    def setup(self) -> None:
        """The shared torso (if any) and the two branches, named as the masks expect."""
        shared = self.network.shared_torso
        if shared:
            self.torso = Torso(self.network, self.torso_kind, self.use_dropout)
        branch = functools.partial(Branch, self.network, self.torso_kind, self.use_dropout, with_torso=not shared)
        self.policy = branch(features=self.num_actions, head_scale=0.01)
        self.value = branch(features=1, head_scale=1.0)

    def _features(self, observation: jax.Array, dropout_rate: jax.Array | float, train: bool) -> jax.Array:
        if self.network.shared_torso:
            return self.torso(observation, dropout_rate, train)
        return observation

    def __call__(
        self, observation: jax.Array, dropout_rate: jax.Array | float = 0.0, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """Action logits and state values."""
        x = self._features(observation, dropout_rate, train)
        return self.policy(x, dropout_rate, train), self.value(x, dropout_rate, train)[..., 0]

    def logits(self, observation: jax.Array) -> jax.Array:
        """Action logits alone (acting: no dropout, and no value network to run)."""
        return self.policy(self._features(observation, 0.0, False), 0.0, False)

    def values(self, observation: jax.Array) -> jax.Array:
        """State values alone (no dropout)."""
        return self.value(self._features(observation, 0.0, False), 0.0, False)[..., 0]
