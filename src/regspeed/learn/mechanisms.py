"""Mechanism metrics: what happens inside a network while it learns (plasticity).

Every learner reports, per update (:data:`regspeed.learn.learner.MECHANISM_METRICS`; NaN
on the updates it does not measure):

- ``dormant_fraction`` and ``dormant_fraction_0025`` (Sokar et al. 2023, "The dormant
  neuron phenomenon in deep reinforcement learning"): a hidden unit's score is its mean
  ``|activation|`` over a batch divided by the mean of those over its layer; a unit is
  dormant when its score is <= tau. The fraction of dormant units over all hidden layers
  together, for tau = 0 (units that are exactly silent: dead ReLUs) and tau = 0.025. A
  convolution's unit is a channel (its activation averaged over the batch and the cells).
- ``feature_srank`` (Kumar et al. 2021, "Implicit under-parameterization"): the effective
  rank of the last hidden layer's features over the batch, the smallest k whose top-k
  singular values sum to at least ``1 - 0.01`` of all of them. Computed on at most
  :data:`SAMPLE_ROWS` rows: an SVD of more would cost a noticeable share of an update.
- ``effective_lr``: the update's size relative to the weights,
  ``||w_after - w_before|| / ||w_before||`` over the weights only (``kernel`` and
  ``embedding`` leaves, those of ``weight_l2``; biases and LayerNorm gains excluded). The
  learners sum their optimizer steps' updates, ``moved = w_after - w_before``, and pass it
  with ``w_after``: keeping ``w_before`` alive through their optimization loops cost 5% of
  a PPO update (measured), the sum nothing measurable.

Hidden activations come from one mechanism: the networks sow each hidden layer's output
(after the nonlinearity, before dropout) into the ``intermediates`` collection with
:func:`sow_hidden`, and :func:`hidden_activations` applies a network asking for that
collection. Applied without it (every other forward pass), sowing does nothing, so the
training computation is unchanged.

Each learner (its ``mechanism_metrics``) says which batch and which parameters it measures
on, and how often (:func:`metrics`, :func:`every`): PPO every update; DQN and the
supervised tasks, whose updates are small, every few updates, NaN on the others, which the
store leaves out as it does every non-finite value.

Tracing an SVD on the CPU (:func:`srank`), or a learner's initialisation (its orthogonal
initialisers' QRs, ``common.compiled``), first limits the BLAS that jaxlib's CPU LAPACK runs
on to one thread, once per process: :func:`single_threaded_lapack`. Importing changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from regspeed.learn import regularizers as regs

Metrics = dict[str, jax.Array]

COLLECTION = "intermediates"
HIDDEN = "hidden"  # the name each hidden activation is sown under (a tuple, in layer order)
SAMPLE_ROWS = 256  # at most this many rows of a batch are measured
DORMANT_TAUS = {"dormant_fraction": 0.0, "dormant_fraction_0025": 0.025}
SRANK_DELTA = 0.01
REPRESENTATION_METRICS = (*DORMANT_TAUS, "feature_srank")


@functools.cache
def single_threaded_lapack() -> None:
    """Limit the BLAS under jaxlib's CPU LAPACK calls (scipy's) to one thread, for the rest of
    the process (the calls run inside compiled programs, later than any Python scope).

    jaxlib computes an SVD on the CPU with scipy's LAPACK, whose OpenBLAS starts threads of
    its own and busy-waits for them; called from inside XLA's thread pool on a busy machine
    they wait for cores that are not free. Measured on this 2-core machine at load 7: an SVD
    of 128 x 128 features took 53-79 ms with OpenBLAS's 2 threads and 3-4 ms with one (8
    vmapped: 1.1-1.4 s against 12 ms). At these sizes one thread is as fast as two on an
    idle machine (0.6-0.8 ms). Only scipy's library is limited where it is its
    own (pip wheels: numpy's keeps its threads); where scipy shares a system BLAS, that one.
    """
    try:
        import scipy.linalg.cython_lapack  # noqa: F401  (loads the library jaxlib's LAPACK calls run on)
        from threadpoolctl import ThreadpoolController
    except ImportError:  # both come with the dependencies; without them, nothing to limit
        return
    controller = ThreadpoolController().select(user_api="blas")
    paths = [lib["filepath"] for lib in controller.info()]
    own = [path for path in paths if Path(path).parent.name.startswith("scipy")]
    if paths:
        controller.select(filepath=own or paths).limit(limits=1)


def sow_hidden(module: nn.Module, activation: jax.Array) -> None:
    """Record a hidden layer's activation (in ``module``'s compact ``__call__``): a no-op
    unless the network is applied with the ``intermediates`` collection mutable."""
    module.sow(COLLECTION, HIDDEN, activation)


def hidden_activations(network: nn.Module, variables: Any, *args: Any, **kwargs: Any) -> list[jax.Array]:
    """The hidden layers' activations of ``network.apply(variables, *args, **kwargs)``, in
    layer order when the call runs one torso (acting with the policy, a Q-network, a
    supervised model); empty for a network without hidden layers."""
    _, state = network.apply(variables, *args, mutable=[COLLECTION], **kwargs)
    return jax.tree.leaves(state.get(COLLECTION, {}))


def unit_scores(activation: jax.Array) -> jax.Array:
    """Each unit's (last axis) mean ``|activation|`` over every other axis, divided by the
    layer's mean of those (Sokar et al.'s score); all 0 for a layer that is silent."""
    mean_abs = jnp.abs(activation).reshape(-1, activation.shape[-1]).mean(axis=0)
    layer_mean = mean_abs.mean()
    return jnp.where(layer_mean > 0, mean_abs / jnp.where(layer_mean > 0, layer_mean, 1.0), 0.0)


def dormant_fraction(activations: Sequence[jax.Array], tau: float) -> jax.Array:
    """The share of hidden units, over all ``activations``' layers, whose score is <= ``tau``
    (NaN without hidden layers)."""
    if not activations:
        return jnp.full((), jnp.nan, jnp.float32)
    dormant = sum(jnp.sum(unit_scores(a) <= tau) for a in activations)
    return dormant / sum(a.shape[-1] for a in activations)


def srank(features: jax.Array, delta: float = SRANK_DELTA) -> jax.Array:
    """Kumar et al.'s effective rank of ``features`` [rows, units]: the smallest k with
    ``sum(top-k singular values) >= (1 - delta) * sum(all)`` (0 for a zero matrix), as a float."""
    if jax.default_backend() == "cpu":  # where the SVD is jaxlib's LAPACK: limit it before it runs
        single_threaded_lapack()
    singular = jnp.linalg.svd(features, compute_uv=False)  # descending
    cumulative = jnp.cumsum(singular)
    total = cumulative[-1]
    k = jnp.sum(cumulative < (1.0 - delta) * total) + 1
    return jnp.where(total > 0, k, 0).astype(jnp.float32)


def representation(activations: Sequence[jax.Array]) -> Metrics:
    """The dormant fractions of all hidden layers and the srank of the last one's features
    (first :data:`SAMPLE_ROWS` rows), from activations with a leading batch axis; NaN
    without hidden layers."""
    dormant = {name: dormant_fraction(activations, tau) for name, tau in DORMANT_TAUS.items()}
    if not activations:
        return dormant | {"feature_srank": jnp.full((), jnp.nan, jnp.float32)}
    last = activations[-1]
    return dormant | {"feature_srank": srank(last.reshape(last.shape[0], -1)[:SAMPLE_ROWS])}


def effective_lr(moved: Any, after: Any) -> jax.Array:
    """``||w_after - w_before|| / ||w_before||`` over the weights (``kernel`` and
    ``embedding`` leaves), from ``moved = w_after - w_before`` (an update's summed steps)
    and ``after``; 0 where the weights were all zero."""
    selected = jax.tree.leaves(regs.mask(regs.Regularizer("l2"), after))
    pairs = [(d, a) for d, a, m in zip(jax.tree.leaves(moved), jax.tree.leaves(after), selected, strict=True) if m]
    step = jnp.sqrt(sum((jnp.sum(d * d) for d, _ in pairs), jnp.zeros(())))
    norm = jnp.sqrt(sum((jnp.sum((a - d) ** 2) for d, a in pairs), jnp.zeros(())))
    return jnp.where(norm > 0, step / jnp.where(norm > 0, norm, 1.0), 0.0)


def every(period: int, update: jax.Array, measure: Callable[[Any], Metrics], operand: Any) -> Metrics:
    """``measure(operand)`` on updates whose number ``update`` is a multiple of ``period``,
    NaN metrics on the others (``period = 1``: every update, unconditionally).

    The measurement is a ``lax.cond`` branch taken when any run of a ``vmap`` batch is due
    (the runs of a batch share their update counter): under ``vmap`` a batched predicate
    would turn the cond into a ``select`` that measures every update, and a while loop of
    one trip does not help either (XLA hoists its loop-invariant body, the SVD, out of it).
    Each run then keeps its own result only where it is due.
    """
    if period == 1:
        return measure(operand)
    skipped = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), jax.eval_shape(measure, operand))
    due = update % period == 0
    measured = jax.lax.cond(regs.in_any_run(due), measure, lambda _: skipped, operand)
    return jax.tree.map(lambda value, nan: jnp.where(due, value, nan), measured, skipped)


def metrics(
    period: int,
    update: jax.Array,
    activations_of: Callable[[jax.Array], list[jax.Array]],
    sample: jax.Array,
    moved: Any,
    after: Any,
) -> Metrics:
    """All of an update's mechanism metrics, on updates that are multiples of ``period``
    (:func:`every`; NaN on the others): the representation of ``activations_of(sample)``
    (a learner's hidden activations on a batch, with the parameters it chose) and the
    effective learning rate of an update that moved the parameters by ``moved`` to ``after``."""

    def measure(sample: jax.Array) -> Metrics:
        return {**representation(activations_of(sample)), "effective_lr": effective_lr(moved, after)}

    return every(period, update, measure, sample)
