"""Supervised tasks where the literature knows the answer, under the Trainer contract.

- ``linreg``: least squares on inputs whose covariance has a chosen condition number
  (eigenvalues log-spaced from 1 to ``condition_number``), a linear model, Gaussian noise.
  Gradient descent is slow along the small-eigenvalue directions; an L2 term raises them.
- ``teacher``: a fixed random teacher MLP labels Gaussian inputs (plus label noise); a
  wider student MLP fits them.
- ``digits``: scikit-learn's bundled 8 x 8 handwritten digits (1,797 images, no
  download), an MLP classifier.
- ``modadd``: ``(a + b) mod p`` from a fraction of all p^2 pairs, an MLP on learned
  embeddings of a and b: the setting in which weight decay makes test accuracy jump long
  after the training set is fitted ("grokking", Power et al. 2022).

An *update* is one optimizer step on the whole training set (``batch_size = 0``) or on a
minibatch. The dataset is a pure function of the configuration (``data_seed``), so every
run and condition sees the same data; the run's seed sets initialisation and minibatches.
Per update: train and test loss, accuracy (classification) or R^2 (regression), and the
regularizer diagnostics shared with the RL trainers.

A continual task (``schedule``, a :class:`~regspeed.envs.schedule.Schedule` with
``phase_steps`` in updates): phase 0 is the task as configured; at each later phase's start
the inputs are permuted (``observations``: permuted digits, as permuted MNIST in Dohare et
al. 2024) and / or the classes get a new label mapping (``labels``). The phases' tables are
:func:`~regspeed.envs.schedule.tables`' (host-drawn, the same for every run); training and
the metrics of an update see the task of that update's phase. A stationary task's program
is the one without schedules.

The module ends with the four learners' declarations (``LEARNERS``, see
:mod:`regspeed.learn.learner`), one per task, built from one flat table.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from regspeed.envs import schedule as schedules
from regspeed.errors import ConfigError, ConfigProblemsError, refuse_non_finite
from regspeed.learn import common, mechanisms
from regspeed.learn import regularizers as regs
from regspeed.learn.common import Hparams, Metrics
from regspeed.learn.common import hparams as hparams  # re-exported
from regspeed.learn.common import run_keys as run_keys  # re-exported
from regspeed.learn.driver import Trainer
from regspeed.learn.learner import (
    MECHANISM_METRICS,
    REGULARIZATION_METRICS,
    Learner,
    Metric,
    Request,
    Setup,
    finite_checks,
)
from regspeed.learn.tables import Tables, learning_rate, plain, set_by_caller, unknown_keys, validated

TASKS = ("linreg", "teacher", "digits", "modadd")
CLASSIFICATION = ("digits", "modadd")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_LEARNING_RATE = 1e-3
MECHANISM_EVERY = 100  # updates between measurements of the representation (see mechanism_metrics)
INPUT_CHANGES = ("linreg", "teacher", "digits")  # tasks whose inputs a schedule may permute ("observations")


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    """Static settings of a supervised task (hashable: they select the compiled code).

    ``optimizer`` is ``sgd`` (with ``momentum``) or ``adam``; AdamW is ``adam`` with the
    ``weight_decay`` regularizer. ``hidden = ()`` is a linear model. ``layer_norm`` puts a
    LayerNorm (gain and bias) between each hidden layer's affine map and its activation, as
    :class:`~regspeed.learn.nets.NetworkConfig`'s does.
    """

    task: str = "modadd"
    train_samples: int = 1000  # linreg, teacher
    test_samples: int = 1000  # linreg, teacher
    inputs: int = 20  # linreg, teacher
    condition_number: float = 1000.0  # linreg
    noise: float = 0.1  # label noise std (linreg, teacher)
    teacher_hidden: tuple[int, ...] = (32,)  # teacher
    modulus: int = 97  # modadd
    train_fraction: float = 0.3  # modadd: share of the p^2 pairs trained on; digits: of the 1,797 images
    embedding: int = 128  # modadd
    hidden: tuple[int, ...] = (256,)
    activation: str = "relu"
    layer_norm: bool = False
    optimizer: str = "adam"
    momentum: float = 0.0
    batch_size: int = 0  # 0: full batch
    data_seed: int = 0
    regularizer: regs.Regularizer = dataclasses.field(default_factory=regs.Regularizer)
    total_updates: int = 1000
    schedule: schedules.Schedule = dataclasses.field(default_factory=schedules.Schedule)  # phase_steps in updates

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        if self.task not in TASKS:
            raise ConfigError("task", f"must be one of {', '.join(TASKS)} (got {self.task!r})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        for name in ("train_samples", "test_samples", "inputs", "embedding", "total_updates"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"must be a positive integer (got {value!r})")
        if not isinstance(self.modulus, int) or self.modulus < 2:
            raise ConfigError("modulus", f"must be an integer >= 2 (got {self.modulus!r})")
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError("train_fraction", f"must be in (0, 1) (got {self.train_fraction})")
        if not self.condition_number >= 1.0:
            raise ConfigError("condition_number", f"must be >= 1 (got {self.condition_number})")
        if self.noise < 0:
            raise ConfigError("noise", f"must be >= 0 (got {self.noise})")
        if any(not isinstance(h, int) or h < 1 for h in (*self.hidden, *self.teacher_hidden)):
            raise ConfigError("hidden", f"layer sizes must be positive integers (got {self.hidden})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", f"must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("momentum", f"must be in [0, 1) (got {self.momentum})")
        if not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ConfigError("batch_size", f"must be 0 (full batch) or a positive integer (got {self.batch_size!r})")
        if self.batch_size > self.train_size:
            raise ConfigError("batch_size", f"must be at most the {self.train_size} training examples")
        if self.regularizer.network != "all":
            raise ConfigError("reg_network", "a supervised model has one network; use all")
        problem = schedule_problem(self.task, self.schedule)
        if problem:
            raise ConfigError(*problem)
        regs.check_world(self.regularizer, self.schedule.changing)  # shrink_perturb at phase changes

    @property
    def classification(self) -> bool:
        """Whether the task is classification (cross-entropy, accuracy) or regression."""
        return self.task in CLASSIFICATION

    @property
    def train_size(self) -> int:
        """Training examples."""
        if self.task == "modadd":
            return max(1, round(self.train_fraction * self.modulus**2))
        if self.task == "digits":
            return max(1, round(self.train_fraction * 1797))
        return self.train_samples

    @property
    def steps_per_update(self) -> int:
        """Budget units per update: one optimizer step."""
        return 1


ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "gelu": nn.gelu}


def schedule_problem(task: str, schedule: schedules.Schedule) -> tuple[str, str] | None:
    """``(field, problem)`` if ``task`` cannot change as ``schedule`` says, else None: inputs
    are permuted in :data:`INPUT_CHANGES`' tasks, labels remapped in classification tasks,
    and no task has actions."""
    allowed = (("observations",) if task in INPUT_CHANGES else ()) + (("labels",) if task in CLASSIFICATION else ())
    for change in schedule.changes:
        if change not in allowed:
            choices = " and ".join(f'"{name}"' for name in allowed)
            return "schedule.changes", f"{task} cannot change its {change} (it can change {choices})"
    return None


def world(config: SupervisedConfig) -> schedules.WorldTables | None:
    """Every phase's input permutation and label derangement (None: a stationary task)."""
    if not config.schedule.changing:
        return None
    phases = config.schedule.phases(config.total_updates, 1)
    classes = config.modulus if config.task == "modadd" else 10 if config.task == "digits" else 1
    return schedules.tables(config.schedule, classes, dataset(config)[0].shape[-1], phases)


class View(NamedTuple):
    """How an update's phase shows the task: ``params`` maps the run's parameters to those
    the model applies, ``labels`` the dataset's labels to the phase's. A permutation ``p`` of
    the inputs enters as the first layer's rows permuted the other way (``x[:, p] @ W ==
    x @ W[argsort(p)]``), not as a gather of the inputs: XLA:CPU computes a product with a
    computed input differently from one with the constant dataset, so phase 0 would not be
    the stationary task's numbers bit for bit."""

    params: Callable[[Any], Any]
    labels: Callable[[jax.Array], jax.Array]


def _unchanged(x: Any) -> Any:
    return x


UNCHANGED = View(_unchanged, _unchanged)


def first_layer(config: SupervisedConfig) -> str:
    """The name of the layer that reads the inputs (``hidden_0``; ``out`` for a linear model)."""
    return "hidden_0" if config.hidden else "out"


def view(config: SupervisedConfig, update: jax.Array | int) -> View:
    """The task as the update numbered ``update`` (0-based) meets it: its phase's inputs and
    labels; in a stationary task the identity (the program is unchanged)."""
    tables = world(config)
    if tables is None:
        return UNCHANGED
    phase = schedules.phase_of(jnp.asarray(update), config.schedule.phase_updates(1), len(tables.actions))
    changes, layer = config.schedule.changes, first_layer(config)
    rows = jnp.asarray(np.argsort(tables.observations, axis=1).astype(np.int32))[phase]

    def params(found: Any) -> Any:
        kernel = jnp.take(found[layer]["kernel"], rows, axis=0)
        return {**found, layer: {**found[layer], "kernel": kernel}}

    def labels(y: jax.Array) -> jax.Array:
        return schedules.carried_out(tables, phase, y)

    return View(params if "observations" in changes else _unchanged, labels if "labels" in changes else _unchanged)


# -------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=16)
def dataset(config: SupervisedConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` as NumPy arrays, a pure function of the config."""
    rng = np.random.default_rng(config.data_seed)
    if config.task == "linreg":
        return _linreg(config, rng)
    if config.task == "teacher":
        return _teacher(config, rng)
    if config.task == "digits":
        return _digits(config, rng)
    return _modadd(config, rng)


def _linreg(config: SupervisedConfig, rng: np.random.Generator) -> tuple:
    rotation, _ = np.linalg.qr(rng.normal(size=(config.inputs, config.inputs)))
    scales = np.sqrt(np.geomspace(1.0, config.condition_number, config.inputs))  # covariance eigenvalues
    weights = rng.normal(size=config.inputs)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        x = (rng.normal(size=(count, config.inputs)) * scales) @ rotation.T
        return x.astype(np.float32), (x @ weights + config.noise * rng.normal(size=count)).astype(np.float32)

    return (*draw(config.train_samples), *draw(config.test_samples))


def _teacher(config: SupervisedConfig, rng: np.random.Generator) -> tuple:
    sizes = [config.inputs, *config.teacher_hidden, 1]
    layers = [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in itertools.pairwise(sizes)]

    def label(x: np.ndarray) -> np.ndarray:
        for layer in layers[:-1]:
            x = np.tanh(x @ layer)
        return (x @ layers[-1])[:, 0]

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(count, config.inputs))
        return x.astype(np.float32), (label(x) + config.noise * rng.normal(size=count)).astype(np.float32)

    return (*draw(config.train_samples), *draw(config.test_samples))


def _digits(config: SupervisedConfig, rng: np.random.Generator) -> tuple:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    order = rng.permutation(len(labels))
    cut = config.train_size
    x = (images / 16.0).astype(np.float32)
    return x[order[:cut]], labels[order[:cut]].astype(np.int32), x[order[cut:]], labels[order[cut:]].astype(np.int32)


def _modadd(config: SupervisedConfig, rng: np.random.Generator) -> tuple:
    p = config.modulus
    a, b = np.divmod(np.arange(p * p), p)
    pairs = np.stack([a, b], axis=1).astype(np.int32)
    labels = ((a + b) % p).astype(np.int32)
    order = rng.permutation(p * p)
    cut = config.train_size
    return pairs[order[:cut]], labels[order[:cut]], pairs[order[cut:]], labels[order[cut:]]


# ------------------------------------------------------------------------------- model


class Model(nn.Module):
    """An MLP (``hidden = ()``: linear); for ``modadd``, on embeddings of a and b.

    Parameters: ``hidden_i``, with ``layer_norm`` ``norm_i`` (``scale`` and ``bias``),
    ``out`` and for ``modadd`` ``embed``. Each hidden activation is sown (before dropout)
    for the mechanism metrics.
    """

    config: SupervisedConfig

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rate: jax.Array | float = 0.0, key: jax.Array | None = None) -> jax.Array:
        """Predictions: class logits, or one regression output per example."""
        from regspeed.learn.nets import dropout

        config = self.config
        if config.task == "modadd":
            embed = nn.Embed(config.modulus, config.embedding, name="embed")
            x = embed(x).reshape(*x.shape[:-1], 2 * config.embedding)
        for index, size in enumerate(config.hidden):
            x = nn.Dense(size, name=f"hidden_{index}")(x)
            if config.layer_norm:
                x = nn.LayerNorm(name=f"norm_{index}")(x)
            x = ACTIVATIONS[config.activation](x)
            mechanisms.sow_hidden(self, x)
            if key is not None:
                x = dropout(x, dropout_rate, jax.random.fold_in(key, index))
        outputs = config.modulus if config.task == "modadd" else 10 if config.task == "digits" else 1
        out = nn.Dense(outputs, name="out")(x)
        return out if config.classification else out[..., 0]


@flax.struct.dataclass
class Carry:
    """Everything a run needs to continue."""

    params: Any
    init_params: Any
    opt_state: Any
    key: jax.Array
    update: jax.Array
    hparams: Hparams


def _optimizer(config: SupervisedConfig, hp: Hparams) -> optax.GradientTransformation:
    return regs.optimizer(config.regularizer, hp.learning_rate, hp.strength, base=config.optimizer,
                          momentum=config.momentum)  # fmt: skip


def init(config: SupervisedConfig, key: jax.Array, hp: Hparams) -> Carry:
    """A fresh run: initial parameters and optimizer state."""
    key, init_key = jax.random.split(key)
    x_train = dataset(config)[0]
    params = Model(config).init(init_key, jnp.asarray(x_train[:1]))["params"]
    return Carry(params, params, _optimizer(config, hp).init(params), key, jnp.zeros((), jnp.int32), hp)


def _loss_and_quality(config: SupervisedConfig, predictions: jax.Array, targets: jax.Array) -> tuple:
    """(loss, accuracy or R^2)."""
    if config.classification:
        loss = optax.softmax_cross_entropy_with_integer_labels(predictions, targets).mean()
        return loss, (jnp.argmax(predictions, -1) == targets).mean()
    error = ((predictions - targets) ** 2).mean()
    return error / 2, 1.0 - error / jnp.var(targets)


def measure(config: SupervisedConfig, params: Any, seen: View = UNCHANGED) -> Metrics:
    """Train and test loss and quality (accuracy or R^2) on the whole sets, as ``seen``
    (a phase's :func:`view`) shows them."""
    x_train, y_train, x_test, y_test = (jnp.asarray(a) for a in dataset(config))
    model, shown = Model(config), {"params": seen.params(params)}
    train_loss, train_quality = _loss_and_quality(config, model.apply(shown, x_train), seen.labels(y_train))
    test_loss, test_quality = _loss_and_quality(config, model.apply(shown, x_test), seen.labels(y_test))
    quality = "accuracy" if config.classification else "r2"
    return {
        "train_loss": train_loss,
        "test_loss": test_loss,
        f"train_{quality}": train_quality,
        f"test_{quality}": test_quality,
    }


def ridge_optimum(config: SupervisedConfig, strength: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(w, b)`` minimising ``mean((x w + b - y)^2) / 2 + strength / 2 * |w|^2`` on the
    training set (the bias is not penalised): the optimum an L2 run converges to."""
    x_train, y_train, _, _ = (jnp.asarray(a) for a in dataset(config))
    features = jnp.concatenate([x_train, jnp.ones((len(x_train), 1))], axis=1)
    penalty = jnp.concatenate([jnp.full(x_train.shape[1], strength), jnp.zeros(1)])
    gram = features.T @ features / len(y_train) + jnp.diag(penalty)
    solution = jnp.linalg.solve(gram, features.T @ y_train / len(y_train))
    return solution[:-1], solution[-1]


def _objective(config: SupervisedConfig, w: jax.Array, b: jax.Array, strength: jax.Array) -> jax.Array:
    x_train, y_train, _, _ = (jnp.asarray(a) for a in dataset(config))
    return ((x_train @ w + b - y_train) ** 2).mean() / 2 + strength / 2 * (w * w).sum()


def optimum_progress(config: SupervisedConfig, params: Any, init_params: Any, strength: jax.Array) -> jax.Array:
    """How far a linear model has come towards the optimum of its own (L2-)regularized
    objective: ``1 - (f(w) - f*) / (f(w0) - f*)``, 1 at the optimum. Defined for ``linreg``
    with a linear model under ``none`` or ``l2``; NaN otherwise. In a continual task
    ``params`` and ``init_params`` are as the phase's model applies them (a :class:`View`'s
    ``params``): its permuted inputs' objective is the dataset's at the permuted weights,
    with the same optimum value."""
    w_star, b_star = ridge_optimum(config, strength)
    best = _objective(config, w_star, b_star, strength)

    def value(p: Any) -> jax.Array:
        return _objective(config, p["out"]["kernel"][:, 0], p["out"]["bias"][0], strength)

    return 1.0 - (value(params) - best) / jnp.maximum(value(init_params) - best, 1e-12)


def has_optimum(config: SupervisedConfig) -> bool:
    """Whether :func:`optimum_progress` is defined for this configuration."""
    return config.task == "linreg" and not config.hidden and config.regularizer.kind in ("none", "l2")


def update(config: SupervisedConfig, carry: Carry) -> tuple[Carry, Metrics]:
    """One optimizer step (full batch or a minibatch); metrics on the whole sets after it."""
    x_train, y_train, _, _ = (jnp.asarray(a) for a in dataset(config))
    seen = view(config, carry.update)  # this update's phase (a stationary task: the identity)
    key, batch_key, dropout_key = jax.random.split(carry.key, 3)
    if config.batch_size:
        index = jax.random.choice(batch_key, len(y_train), (config.batch_size,), replace=False)
        x_batch, y_batch = x_train[index], seen.labels(y_train[index])
    else:
        x_batch, y_batch = x_train, seen.labels(y_train)
    regularizer, strength = config.regularizer, carry.hparams.strength
    rate = regs.dropout_rate(regularizer, strength)
    model = Model(config)

    def task_loss(params: Any) -> jax.Array:
        key = dropout_key if regularizer.kind == "dropout" else None
        return _loss_and_quality(config, model.apply({"params": seen.params(params)}, x_batch, rate, key), y_batch)[0]

    task_grad = jax.grad(task_loss)(carry.params)
    diagnostics = regs.gradient_diagnostics(regularizer, task_grad, carry.params, carry.init_params, strength)
    # The optimizer adds the penalty's gradient itself (and shrinks and perturbs, with period 0 at phase changes).
    at_phase_change = common.phase_change_step(config, carry.update, jnp.asarray(0), 1)
    updates, opt_state = _optimizer(config, carry.hparams).update(
        task_grad, carry.opt_state, carry.params, **at_phase_change
    )
    params = optax.apply_updates(carry.params, updates)
    mechanism = mechanism_metrics(config, updates, params, x_batch, carry.update + 1, seen)
    carry = carry.replace(params=params, opt_state=opt_state, key=key, update=carry.update + 1)
    # On the phase's task: the weights as the model applies them, from the initial weights as
    # the phase would apply them (its inputs permuted leave the ridge optimum's value as it is).
    l2_strength = jnp.where(regularizer.kind == "l2", strength, 0.0)
    progress = (
        optimum_progress(config, seen.params(params), seen.params(carry.init_params), l2_strength)
        if has_optimum(config)
        else jnp.asarray(jnp.nan, jnp.float32)
    )
    return carry, {
        "step": carry.update,
        **measure(config, params, seen),
        "optimum_progress": progress,
        **diagnostics,
        "learning_rate": opt_state.hyperparams["learning_rate"],
        "reg_loss": regs.penalty(regularizer, params, carry.init_params, strength),
        **regs.weight_statistics(params),
        **mechanism,
    }


def mechanism_metrics(
    config: SupervisedConfig, moved: Any, after: Any, x_batch: jax.Array, update: jax.Array, seen: View = UNCHANGED
) -> Metrics:
    """An update's mechanism metrics (:mod:`~regspeed.learn.mechanisms`), on every
    :data:`MECHANISM_EVERY`-th update only (NaN on the others): an SVD of 256 rows costs
    more than a whole update of the smaller tasks.

    Dormant units and srank: the model with the parameters after the step, without dropout,
    on the step's batch (its first 256 rows: with full batches, the same 256 training
    examples every time; NaN for a linear model, which has no hidden layer). Effective
    learning rate: the weights moved by the step (``moved``, the optimizer's updates) and
    after it. In a continual task the activations are the phase's (``seen``).
    """
    model = Model(config)

    def activations_of(x: jax.Array) -> list[jax.Array]:
        return mechanisms.hidden_activations(model, {"params": seen.params(after)}, x)

    sample = x_batch[: mechanisms.SAMPLE_ROWS]
    return mechanisms.metrics(MECHANISM_EVERY, update, activations_of, sample, moved, after)


def advance(config: SupervisedConfig, carry: Carry, n_updates: int) -> tuple[Carry, Metrics]:
    """``n_updates`` updates; metrics have a leading axis of length ``n_updates``."""
    return jax.lax.scan(lambda c, _: update(config, c), carry, None, length=n_updates)


def evaluate(config: SupervisedConfig, carry: Carry) -> Metrics:
    """The same measures as every update (there is no separate evaluation in supervised
    learning), prefixed ``eval_``, so periodic evaluation works as for the RL tasks; in a
    continual task on the task of the last update (an evaluation at a phase boundary belongs
    to the phase that ended)."""
    seen = view(config, jnp.maximum(carry.update - 1, 0))
    return {f"eval_{name}": value for name, value in measure(config, carry.params, seen).items()}


init_batch, advance_batch, evaluate_batch = common.compiled(init, advance, evaluate)


# ----------------------------------------------------------------- the learners

CALLER_FIELDS = ("task", "regularizer", "total_updates")
"""Fields of :class:`SupervisedConfig` that the learner's name and the caller's request set."""


def build(task: str, tables: Tables, request: Request) -> Setup:
    """A setup of ``task`` from one flat table: fields of :class:`SupervisedConfig` (except
    those in :data:`CALLER_FIELDS`), ``learning_rate`` and, for a continual task, a
    ``schedule`` table (phases in updates, shorter than the budget); the budget counts updates."""
    table = dict(tables)
    rate, problems = learning_rate(table, DEFAULT_LEARNING_RATE, "learning_rate")
    problems += set_by_caller(table, CALLER_FIELDS, "") + unknown_keys(table, SupervisedConfig, "")
    given = table.get("schedule", {})
    if not isinstance(given, dict):
        problems.append(("schedule", "must be a table"))
    else:
        problems += unknown_keys(given, schedules.Schedule, "schedule")
    if problems:
        raise ConfigProblemsError(problems)
    found_schedule, problems = validated(schedules.Schedule, given, ("schedule",))
    problem = schedule_problem(task, found_schedule) if found_schedule is not None else None
    if problems or problem:
        raise ConfigProblemsError(problems or [problem])
    fixed = {"task": task, "regularizer": request.regularizer, "total_updates": request.budget}
    config, found = validated(SupervisedConfig, table | fixed)
    if found:
        paths = {"reg_network": "regularizer.network", "reg_period": "regularizer.period"}
        raise ConfigProblemsError([(paths.get(path, path), message) for path, message in found])
    if config.schedule.changing and config.schedule.phase_steps >= config.total_updates:
        budget = f"{config.total_updates:,} updates"
        problem = f"must be shorter than the budget ({budget}) for the task to change: shorten phases"
        raise ConfigProblemsError([("schedule.phase_steps", problem)])
    if problem := schedules.phases_problem(config.schedule, config.total_updates, 1):
        raise ConfigProblemsError([("schedule.phase_steps", problem)])
    return Setup(config, rate)


def tables(setup: Setup) -> Tables:
    """The table of a setup, every default filled in (a stationary task's without
    ``schedule``, as stores written before schedules existed hold it)."""
    config = setup.config
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in CALLER_FIELDS}
    del fields["schedule"]
    if config.schedule.changing:
        fields["schedule"] = schedules.table(config.schedule)
    return plain(fields | {"learning_rate": setup.learning_rate})


def bytes_per_run(config: SupervisedConfig) -> int:
    """Activations of the training and test sets, parameters with optimizer state."""
    x_train, _, x_test, _ = dataset(config)
    width = max((*config.hidden, config.embedding, 97))
    examples = len(x_train) + len(x_test)
    shapes = jax.eval_shape(lambda key: Model(config).init(key, jnp.asarray(x_train[:1])), jax.random.key(0))
    parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    return int(1.5 * 4 * (4 * examples * width + 10 * parameters))


def metrics(task: str) -> tuple[Metric, ...]:
    """What a supervised run reports per update (and, prefixed ``eval_``, per evaluation)."""
    quality, words = ("accuracy", "accuracy") if task in CLASSIFICATION else ("r2", "R^2")
    measured = (
        Metric("train_loss", "training loss", higher_is_better=False, check_finite=True),
        Metric("test_loss", "test loss", higher_is_better=False),
        Metric(f"train_{quality}", f"training {words}"),
        Metric(f"test_{quality}", f"test {words}"),
    )
    evaluated = tuple(dataclasses.replace(m, name=f"eval_{m.name}", check_finite=False) for m in measured)
    return (
        Metric("step", "optimizer steps", "updates"),
        *measured,
        Metric("optimum_progress", "progress towards its own optimum"),
        *REGULARIZATION_METRICS,
        *MECHANISM_METRICS,
        *evaluated,
    )


def speed_metrics(task: str) -> tuple[str, ...]:
    """Fitting (train) and generalization (test) separately; for ``linreg`` also the
    progress towards each run's own (ridge) optimum."""
    quality = "accuracy" if task in CLASSIFICATION else "r2"
    return (*(("optimum_progress",) if task == "linreg" else ()), f"train_{quality}", f"test_{quality}")


def _learner(task: str) -> Learner:
    task_metrics = metrics(task)
    return Learner(
        name=task,
        description=f"supervised calibration task {task}",
        step_unit="updates",
        trainer=Trainer(init_batch, advance_batch, evaluate_batch, finite_checks(task_metrics)),
        metrics=task_metrics,
        speed_metrics=speed_metrics(task),
        progress_metric=speed_metrics(task)[-2],
        build=functools.partial(build, task),
        tables=tables,
        bytes_per_run=bytes_per_run,
    )


LEARNERS = tuple(_learner(task) for task in TASKS)
