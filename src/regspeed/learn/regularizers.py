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
- ``shrink_perturb`` (Ash and Adams 2020; Dohare et al. 2024): every ``period`` optimizer
  steps, after the step, the masked parameters become ``a * w + b * noise`` with the shrink
  factor ``a = 1 - strength`` and the noise scale ``b = perturb * strength``; ``noise`` is
  drawn from a Gaussian with each leaf's initial mean and standard deviation. The strength
  (swept, traced) is the share shrunk away, in [0, 1) (a shrink factor in (0, 1]); ``period``
  (an integer >= 0) and ``perturb`` (>= 0) are static fields. ``perturb = 1`` (the
  default) moves a fraction ``strength`` of the way towards a fresh draw from the initial
  distribution; 0 only shrinks. Any ``(a, b)`` with ``a < 1`` is ``strength = 1 - a``,
  ``perturb = b / (1 - a)``. At strength 0 the step's updates pass untouched (the
  baseline's, bit for bit, step by step). See :func:`shrink_perturb` for the noise and its
  key. ``period = 0``: instead of every ``period`` steps, once at each phase change of a
  changing world (:mod:`~regspeed.envs.schedule`; Dohare et al. 2024's reset at each new
  task): after the last optimizer step of phase ``k - 1``'s last update, so the first update
  of every phase ``k >= 1`` starts from the shrunk and perturbed network. The learner says
  which step that is (``update(..., phase_ends=...)``); a stationary world refuses it
  (:func:`check_world`).

The penalty kinds (``l1``, ``l2``, ``l2_init``, ``elastic``) act through the optimizer: the
first transformation of :func:`optimizer`'s chain, :func:`add_penalty_gradient`, adds the
penalty's gradient to the task gradient before clipping and Adam, exactly as adding
``penalty(...)`` to the loss would; the trainers differentiate the task loss only and report
the penalty's value as ``reg_loss``.

The mask chooses which parameters a penalty, decay or shrink-and-perturb touches: weights
only by default (Flax ``kernel`` and ``embedding`` leaves; biases and normalisation scales
excluded unless asked), and which network: ``all``, ``policy`` or ``value``, chosen by the
top-level name of the parameter tree (a shared top-level ``torso`` belongs to both).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.custom_batching import custom_vmap

from regspeed.errors import ConfigError, refuse_non_finite

KINDS = ("none", "l1", "l2", "weight_decay", "l2_init", "elastic", "dropout", "shrink_perturb")
NETWORKS = ("all", "policy", "value")
PENALTY_KINDS = ("l1", "l2", "l2_init", "elastic")  # the ones with a loss term (added as its gradient)
WEIGHT_NAMES = ("kernel", "embedding")
NEAR_ZERO = 1e-3
MAX_PERIOD = 2**31 - 1  # shrink_perturb's step counter is an int32
NOISE_SALT = 0x5EED  # the root of shrink_perturb's noise keys (each folded with a hash of the initial parameters)

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
        period: for ``shrink_perturb``, optimizer steps between two shrink-and-perturbs (PPO
            takes ``epochs * minibatches`` per update, DQN ``gradient_steps`` once learning
            has started, the supervised tasks one): a positive integer; 0: once at each
            phase change of a changing world, and never otherwise.
        perturb: for ``shrink_perturb``, the noise scale as a multiple of the strength, >= 0.
    """

    kind: str = "none"
    network: str = "all"
    include_biases: bool = False
    include_norm_scales: bool = False
    l1_ratio: float = 0.5
    period: int = 1
    perturb: float = 1.0

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        if self.kind not in KINDS:
            raise ConfigError("reg", f"unknown regularizer {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.network not in NETWORKS:
            raise ConfigError("reg_network", f"must be one of {', '.join(NETWORKS)} (got {self.network!r})")
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ConfigError("l1_ratio", f"must be in [0, 1] (got {self.l1_ratio})")
        if isinstance(self.period, bool) or not isinstance(self.period, int) or not 0 <= self.period <= MAX_PERIOD:
            raise ConfigError("reg_period", f"must be an integer from 0 (at each phase change) to {MAX_PERIOD} "
                              f"(got {self.period!r})")  # fmt: skip
        if not self.perturb >= 0:
            raise ConfigError("reg_perturb", f"must be >= 0 (got {self.perturb})")
        for field, value, default in (("reg_period", self.period, 1), ("reg_perturb", self.perturb, 1.0)):
            if self.kind != "shrink_perturb" and value != default:
                raise ConfigError(field, f"only shrink_perturb has one (the regularizer is {self.kind}); remove it")

    @property
    def at_phase_change(self) -> bool:
        """Whether it acts once at each phase change of a changing world (``shrink_perturb``
        with ``period = 0``) rather than every ``period`` optimizer steps."""
        return self.kind == "shrink_perturb" and self.period == 0


def check_world(regularizer: Regularizer, changing: bool) -> None:
    """Refuse a regularizer that acts at phase changes (``period = 0``) in a world that never
    changes (``changing`` false): it would never act."""
    if regularizer.at_phase_change and not changing:
        raise ConfigError("reg_period", "0 (shrink and perturb at each phase change) needs a changing world: give a "
                          "schedule (phase_steps and changes), or a period >= 1")  # fmt: skip


def check_strength(regularizer: Regularizer, strength: float) -> None:
    """Reject a strength that cannot be meant (raised before anything runs): a finite number
    >= 0; below 1 for ``dropout`` (the drop rate) and ``shrink_perturb`` (the share shrunk
    away: the shrink factor ``1 - strength`` must be in (0, 1])."""
    if not math.isfinite(strength) or strength < 0:
        raise ConfigError("strength", f"must be a finite number >= 0 (got {strength})")
    if regularizer.kind == "dropout" and not strength < 1:
        raise ConfigError("strength", f"a dropout rate must be in [0, 1) (got {strength})")
    if regularizer.kind == "shrink_perturb" and not strength < 1:
        raise ConfigError(
            "strength", f"must be in [0, 1): the weights are multiplied by 1 - strength, a shrink factor in (0, 1] "
            f"(got {strength})"
        )  # fmt: skip


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
    ``shrink_perturb`` the expected displacement of one shrink-and-perturb,
    ``strength * (w - perturb * mean(w0))`` on masked leaves (whether or not one is due); for
    ``none`` and ``dropout`` zeros. The trainers report its cosine with the task gradient.
    """
    if regularizer.kind in PENALTY_KINDS:
        return jax.grad(lambda p: penalty(regularizer, p, init_params, strength))(params)
    selected = mask(regularizer, params)
    if regularizer.kind == "weight_decay":
        return jax.tree.map(lambda w, m: strength * w if m else jnp.zeros_like(w), params, selected)
    if regularizer.kind == "shrink_perturb":
        return jax.tree.map(
            lambda w, w0, m: strength * (w - regularizer.perturb * jnp.mean(w0)) if m else jnp.zeros_like(w),
            params, init_params, selected,
        )  # fmt: skip
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


class ShrinkPerturbState(NamedTuple):
    """The state of :func:`shrink_perturb`."""

    count: jax.Array  # optimizer steps since the last period ended (int32, < period)
    key: jax.Array  # the noise's PRNG key, split at every shrink-and-perturb
    mean: Params  # each leaf's initial mean (a scalar per leaf)
    std: Params  # each leaf's initial standard deviation


@jax.jit  # one program per tree structure, not a compilation per operation when called eagerly
def noise_key(params: Params) -> jax.Array:
    """A PRNG key that is a pure function of the parameters' bits (:data:`NOISE_SALT` folded
    with an integer hash of all leaves): a run's noise follows from its initial network, so
    seed *s* draws the same noise in every condition, and a resumed run reads the key from
    its checkpointed optimizer state."""
    digest = jnp.uint32(0)
    for leaf in jax.tree.leaves(params):
        bits = jax.lax.bitcast_convert_type(jnp.asarray(leaf, jnp.float32), jnp.uint32).ravel()
        odd = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
        # integer arithmetic wraps exactly and its sums do not depend on the order of reduction
        digest = digest * jnp.uint32(0x01000193) ^ jnp.sum(bits * odd, dtype=jnp.uint32)
    return jax.random.fold_in(jax.random.key(NOISE_SALT), digest)


@custom_vmap
def in_any_run(flag: jax.Array) -> jax.Array:
    """``flag`` itself; under ``vmap``, whether it holds in any run of the batch, unbatched."""
    return flag


@in_any_run.def_vmap
def _in_any_run_vmap(axis_size: int, in_batched: list[bool], flag: jax.Array) -> tuple[jax.Array, bool]:
    (batched,) = in_batched
    return (jnp.any(flag) if batched else flag), False


def _due(regularizer: Regularizer, count: jax.Array, strength: jax.Array, phase_ends: jax.Array) -> jax.Array:
    """Whether the step that brought the counter to ``count`` ends with a shrink-and-perturb:
    at the end of every period, or with ``period = 0`` where the step ends a phase."""
    scheduled = phase_ends if regularizer.at_phase_change else count == 0
    return jnp.asarray(scheduled) & (strength > 0)


def _shrunk_and_perturbed(
    regularizer: Regularizer, strength: jax.Array, due: jax.Array, params: Params, updates: optax.Updates,
    state: ShrinkPerturbState, normals: jax.Array,
) -> optax.Updates:  # fmt: skip
    """Updates that take masked leaves to ``a * (w + u) + b * noise`` where ``due``, and leave
    every other leaf (and every leaf where not due) at ``w + u``. ``normals``: standard
    normals for all masked leaves, cut in flattening order."""
    flat, tree = jax.tree_util.tree_flatten_with_path(params)
    shrink, scale = 1 - strength, regularizer.perturb * strength
    moved, offset = [], 0
    for (path, w), u, mean, std in zip(
        flat, tree.flatten_up_to(updates), tree.flatten_up_to(state.mean), tree.flatten_up_to(state.std), strict=True
    ):
        if _selected(regularizer, path):
            noise = mean + std * normals[offset : offset + w.size].reshape(w.shape).astype(w.dtype)
            u = jnp.where(due, shrink * (w + u) + scale * noise - w, u)
            offset += w.size
        moved.append(u)
    return tree.unflatten(moved)


def shrink_perturb(regularizer: Regularizer, strength: jax.Array | float) -> optax.GradientTransformationExtraArgs:
    """An Optax transformation that shrinks and perturbs the masked parameters every
    ``regularizer.period`` steps: last in a chain, the step's parameters ``w + u`` become
    ``(1 - strength) * (w + u) + perturb * strength * noise``. ``update`` needs ``params``.
    With ``period = 0`` it acts only on a step whose ``update`` is given ``phase_ends=True``
    (a traced bool; an extra argument that :func:`optimizer`'s chain passes through): the
    last optimizer step of a phase that another phase follows.

    The noise is Gaussian with each leaf's initial mean and standard deviation, measured by
    ``init(params)`` and kept in the state: Optax sees no initializers, and Flax's (variance
    scaling, orthogonal) give every entry of a leaf the same spread, so this is the initial
    distribution's scale; constant leaves (biases, norm scales) get their initial value
    back. The key starts as :func:`noise_key` of the initial parameters and lives in the
    state (checkpointed with the carry); each shrink-and-perturb splits it once and draws
    standard normals for all masked leaves at once (one PRNG call, cut in flattening order).

    Only the draw, the costly part (about 10x an Adam step on a CPU), is inside a
    ``lax.cond`` whose other branch returns zeros; the combination is an elementwise
    ``where`` that XLA fuses with the step. Between periods an Adam step on PPO's default
    network then costs 1.16x the baseline's (a ``cond`` around the whole update: 1.5x, its
    operands and results copied), about 1% of a PPO update
    (``benchmarks/shrink_perturb_cost.py``). Under ``vmap`` a batched predicate would turn
    the ``cond`` into a ``select`` that draws every step, so the ``cond`` is taken when any
    run of the batch is due (:func:`in_any_run`), and each run's ``where`` keeps its own
    result.
    """
    if regularizer.kind != "shrink_perturb":
        raise ValueError(f"shrink_perturb: the regularizer is {regularizer.kind!r}")

    def init_fn(params: Params) -> ShrinkPerturbState:
        return ShrinkPerturbState(
            count=jnp.zeros((), jnp.int32),
            key=noise_key(params),
            mean=jax.tree.map(lambda w: jnp.mean(w).astype(w.dtype), params),
            std=jax.tree.map(lambda w: jnp.std(w).astype(w.dtype), params),
        )

    def update_fn(
        updates: optax.Updates, state: ShrinkPerturbState, params: Params | None = None,
        phase_ends: jax.Array | bool | None = None, **extra_args: Any,
    ) -> tuple[optax.Updates, ShrinkPerturbState]:  # fmt: skip
        if params is None:
            raise ValueError("shrink_perturb needs the parameters: call update(updates, state, params)")
        if phase_ends is None and regularizer.at_phase_change:  # a learner without phases would never shrink
            raise ValueError("shrink_perturb with period 0 acts at phase changes: call update(..., phase_ends=flag)")
        period = regularizer.period
        count = (state.count + 1) % period if period else state.count  # never overflows, however long the run
        ends = jnp.asarray(False if phase_ends is None else phase_ends)
        due = _due(regularizer, count, jnp.asarray(strength), ends)
        size = sum(w.size for w in _masked_leaves(regularizer, params))

        def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
            key, normals_key = jax.random.split(key)
            return key, jax.random.normal(normals_key, (size,))

        def skip(key: jax.Array) -> tuple[jax.Array, jax.Array]:
            return key, jnp.zeros((size,))

        key, normals = jax.lax.cond(in_any_run(due), draw, skip, state.key)
        updates = _shrunk_and_perturbed(regularizer, strength, due, params, updates, state, normals)
        return updates, state._replace(count=count, key=jnp.where(due, key, state.key))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
    (``weight_decay`` only), scale by ``-learning_rate``, shrink and perturb every ``period``
    steps (``shrink_perturb`` only, :func:`shrink_perturb`; with ``period = 0`` where
    ``update(..., phase_ends=True)``, the learner's flag); for Adam with weight decay this
    is exactly ``optax.adamw``, for a penalty kind it is the optimizer on the penalised loss.
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
        if regularizer.kind == "shrink_perturb":
            parts.append(shrink_perturb(regularizer, strength))
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
