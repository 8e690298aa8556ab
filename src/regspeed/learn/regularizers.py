"""Regularizers: the one place where they are defined.

A regularizer has a static part, :class:`Regularizer` (its kind and mask; it selects the
compiled code), and a *strength*, a traced scalar that can be vmapped across runs.

- ``none``: nothing (the baseline); the strength is ignored.
- ``l1``: the penalty ``strength * sum |w|``.
- ``l2``: the penalty ``strength / 2 * sum w**2`` (coupled: its gradient passes through
  Adam's preconditioner).
- ``weight_decay``: decoupled decay, ``w -= lr * strength * w`` after the optimizer's
  scaling (``optax.adamw`` semantics).
- ``l2_init``: the penalty ``strength / 2 * sum (w - w0)**2``, towards the initial weights.
- ``elastic``: the penalty ``strength * (l1_ratio * sum |w| + (1 - l1_ratio) / 2 * sum w**2)``.
- ``dropout``: dropout in the network (see :mod:`regspeed.nets`); the strength is the
  drop rate, in [0, 1).

The penalty kinds (``l1``, ``l2``, ``l2_init``, ``elastic``) act through the optimizer: the
first transformation of :func:`optimizer`'s chain, :func:`add_penalty_gradient`, adds the
penalty's gradient to the task gradient before clipping and Adam, exactly as adding
``penalty(...)`` to the loss would; the trainers differentiate the task loss only and report
the penalty's value as ``reg_loss``.

The mask chooses which parameters a penalty or decay touches: weights only by default
(Flax ``kernel`` and ``embedding`` leaves; biases and normalisation scales excluded unless
asked), and which network: ``all``, ``policy`` or ``value``, chosen by the top-level name
of the parameter tree (a shared top-level ``torso`` belongs to both).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from regspeed.errors import ConfigError, refuse_non_finite

KINDS = ("none", "l1", "l2", "weight_decay", "l2_init", "elastic", "dropout")
NETWORKS = ("all", "policy", "value")
PENALTY_KINDS = ("l1", "l2", "l2_init", "elastic")  # the ones with a loss term (added as its gradient)
WEIGHT_NAMES = ("kernel", "embedding")
NEAR_ZERO = 1e-3

Params = Any  # a pytree of arrays, as Flax makes them


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """The static part of a regularizer: which kind, on which parameters.

    Attributes:
        kind: one of :data:`KINDS`.
        network: ``all``, ``policy`` or ``value``.
        include_biases: also regularize ``bias`` leaves.
        include_norm_scales: also regularize normalisation ``scale`` leaves.
        l1_ratio: for ``elastic``, the share of the strength on the L1 term, in [0, 1].
    """

    kind: str = "none"
    network: str = "all"
    include_biases: bool = False
    include_norm_scales: bool = False
    l1_ratio: float = 0.5

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        if self.kind not in KINDS:
            raise ConfigError("reg", f"unknown regularizer {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.network not in NETWORKS:
            raise ConfigError("reg_network", f"must be one of {', '.join(NETWORKS)} (got {self.network!r})")
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ConfigError("l1_ratio", f"must be in [0, 1] (got {self.l1_ratio})")


def check_strength(regularizer: Regularizer, strength: float) -> None:
    """Reject a strength that cannot be meant (raised before anything runs)."""
    if not math.isfinite(strength) or strength < 0:
        raise ConfigError("strength", f"must be a finite number >= 0 (got {strength})")
    if regularizer.kind == "dropout" and not strength < 1:
        raise ConfigError("strength", f"a dropout rate must be in [0, 1) (got {strength})")


def _path_names(path: tuple) -> list[str]:
    return [str(getattr(key, "key", getattr(key, "name", key))) for key in path]


def _selected(regularizer: Regularizer, path: tuple) -> bool:
    names = _path_names(path)
    leaf = names[-1] if names else ""
    kind_ok = (
        leaf in WEIGHT_NAMES
        or (leaf == "bias" and regularizer.include_biases)
        or (leaf == "scale" and regularizer.include_norm_scales)
    )
    if regularizer.network == "all":
        return kind_ok
    top = names[1] if names[:1] == ["params"] and len(names) > 1 else names[0]
    return kind_ok and top in (regularizer.network, "torso")


def mask(regularizer: Regularizer, params: Params) -> Params:
    """A pytree of bools like ``params``: True where the regularizer acts."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _selected(regularizer, path), params)


def _masked_leaves(regularizer: Regularizer, params: Params) -> list[jax.Array]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [leaf for path, leaf in flat if _selected(regularizer, path)]


def penalty(regularizer: Regularizer, params: Params, init_params: Params, strength: jax.Array) -> jax.Array:
    """The loss term of a penalty kind (0 for ``none``, ``weight_decay`` and ``dropout``)."""
    if regularizer.kind not in PENALTY_KINDS:
        return jnp.zeros((), jnp.float32)
    leaves = _masked_leaves(regularizer, params)
    if regularizer.kind == "l2_init":
        anchors = _masked_leaves(regularizer, init_params)
        leaves = [w - w0 for w, w0 in zip(leaves, anchors, strict=True)]
    l1 = sum((jnp.abs(w).sum() for w in leaves), jnp.zeros(()))
    l2 = sum(((w * w).sum() for w in leaves), jnp.zeros(())) / 2
    if regularizer.kind == "l1":
        return strength * l1
    if regularizer.kind == "elastic":
        return strength * (regularizer.l1_ratio * l1 + (1 - regularizer.l1_ratio) * l2)
    return strength * l2  # l2, l2_init


def direction(regularizer: Regularizer, params: Params, init_params: Params, strength: jax.Array) -> Params:
    """The regularizer's pull on the parameters as a gradient-shaped pytree.

    For penalty kinds it is the penalty's gradient; for ``weight_decay`` the decay term
    ``strength * w`` on masked leaves (what AdamW subtracts, before the learning rate); for
    ``none`` and ``dropout`` zeros. The trainers report its cosine with the task gradient.
    """
    if regularizer.kind in PENALTY_KINDS:
        return jax.grad(lambda p: penalty(regularizer, p, init_params, strength))(params)
    selected = mask(regularizer, params)
    if regularizer.kind == "weight_decay":
        return jax.tree.map(lambda w, m: strength * w if m else jnp.zeros_like(w), params, selected)
    return jax.tree.map(jnp.zeros_like, params)


def dropout_rate(regularizer: Regularizer, strength: jax.Array) -> jax.Array:
    """The network's dropout rate: the strength for ``dropout``, else 0."""
    return strength if regularizer.kind == "dropout" else jnp.zeros((), jnp.float32)


class AddPenaltyGradientState(NamedTuple):
    """The state of :func:`add_penalty_gradient` for ``l2_init``: the weights it pulls towards."""

    init_params: Params


def add_penalty_gradient(regularizer: Regularizer, strength: jax.Array | float) -> optax.GradientTransformation:
    """An Optax transformation that adds the gradient of :func:`penalty` to the updates.

    First in a chain (before clipping and the optimizer's scaling) it is the same as adding
    ``penalty(...)`` to the loss. ``update`` needs ``params``. For ``l2_init`` the state
    holds the initial weights, captured by ``init(params)``; for the other penalty kinds it
    is empty. Only for :data:`PENALTY_KINDS`.
    """
    if regularizer.kind not in PENALTY_KINDS:
        raise ValueError(f"add_penalty_gradient: {regularizer.kind!r} is not one of {', '.join(PENALTY_KINDS)}")

    def init_fn(params: Params) -> AddPenaltyGradientState | optax.EmptyState:
        return AddPenaltyGradientState(init_params=params) if regularizer.kind == "l2_init" else optax.EmptyState()

    def update_fn(
        updates: optax.Updates, state: AddPenaltyGradientState | optax.EmptyState, params: Params | None = None
    ) -> tuple[optax.Updates, AddPenaltyGradientState | optax.EmptyState]:
        if params is None:
            raise ValueError("add_penalty_gradient needs the parameters: call update(updates, state, params)")
        anchors = state.init_params if regularizer.kind == "l2_init" else None  # only l2_init reads them
        penalty_grad = jax.grad(lambda p: penalty(regularizer, p, anchors, strength))(params)
        return jax.tree.map(jnp.add, updates, penalty_grad), state

    return optax.GradientTransformation(init_fn, update_fn)


def optimizer(
    regularizer: Regularizer,
    learning_rate: jax.Array | float,
    strength: jax.Array | float,
    *,
    base: str = "adam",
    max_grad_norm: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> optax.GradientTransformation:
    """The optimizer, with the regularizer built in: feed it the task gradient only.

    ``learning_rate`` and ``strength`` live in the optimizer state
    (``optax.inject_hyperparams``), so they can be traced, vmapped, checkpointed and
    annealed (set ``state.hyperparams["learning_rate"]``). The chain is: add the penalty's
    gradient (penalty kinds only, :func:`add_penalty_gradient`), clip the global gradient
    norm (optional), scale by Adam (or momentum SGD), add ``strength * w`` on masked weights
    (``weight_decay`` only), scale by ``-learning_rate``; for Adam with weight decay this is
    exactly ``optax.adamw``, for a penalty kind it is the optimizer on the penalised loss.
    Other kinds have no penalty step in the chain, so their states keep their structure.
    """
    if base not in ("adam", "sgd"):
        raise ConfigError("optimizer", f"must be adam or sgd (got {base!r})")

    def factory(learning_rate: jax.Array, strength: jax.Array) -> optax.GradientTransformation:
        parts: list[optax.GradientTransformation] = []
        if regularizer.kind in PENALTY_KINDS:
            parts.append(add_penalty_gradient(regularizer, strength))
        if max_grad_norm is not None:
            parts.append(optax.clip_by_global_norm(max_grad_norm))
        if base == "adam":
            parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
        elif momentum:
            parts.append(optax.trace(decay=momentum))
        if regularizer.kind == "weight_decay":
            parts.append(optax.add_decayed_weights(strength, mask=_mask_fn(regularizer)))
        parts.append(optax.scale_by_learning_rate(learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(factory)(learning_rate=learning_rate, strength=strength)


def _mask_fn(regularizer: Regularizer) -> Callable[[Params], Params]:
    return lambda params: mask(regularizer, params)


def weight_statistics(params: Params) -> dict[str, jax.Array]:
    """L1 and L2 norms of all weights (``kernel``/``embedding`` leaves) and the fraction of
    them with ``|w| < 1e-3``."""
    weights = _masked_leaves(Regularizer("l2"), params)
    count = sum(w.size for w in weights)
    return {
        "weight_l1": sum((jnp.abs(w).sum() for w in weights), jnp.zeros(())),
        "weight_l2": jnp.sqrt(sum(((w * w).sum() for w in weights), jnp.zeros(()))),
        "near_zero_fraction": sum(((jnp.abs(w) < NEAR_ZERO).sum() for w in weights), jnp.zeros(())) / count,
    }


def cosine(a: Params, b: Params) -> jax.Array:
    """Cosine between two gradient-shaped pytrees (0 where either is zero)."""
    dot = sum((jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)), jnp.zeros(()))
    norm = optax.tree.norm(a) * optax.tree.norm(b)
    return jnp.where(norm > 0, dot / jnp.where(norm > 0, norm, 1.0), 0.0)


def gradient_diagnostics(
    regularizer: Regularizer, task_grad: Params, params: Params, init_params: Params, strength: jax.Array
) -> dict[str, jax.Array]:
    """What the trainers report about a step's gradient: the task gradient's global norm
    (``grad_norm``) and its cosine with the regularizer's pull, :func:`direction`
    (``grad_cosine``), both at ``params``, the parameters before the step."""
    return {
        "grad_norm": optax.tree.norm(task_grad),
        "grad_cosine": cosine(task_grad, direction(regularizer, params, init_params, strength)),
    }
