"""The learner contract: what every learner declares in its own module, so that the
command line, studies and benchmarks build and drive runs one way.

A :class:`Learner` is data: its name, what its budget counts (``step_unit``), its compiled
:class:`~regspeed.learn.driver.Trainer`, the metrics it produces (:class:`Metric`), which
of them measure learning speed, one ``build`` function that turns *tables* (plain data, as
TOML gives it: a spec's ``config``, or the flags of ``regspeed train``) and a
:class:`Request` (what the caller decides: budget, regularizer, evaluation) into a
:class:`Setup`, the inverse ``tables`` (every default filled in), a memory estimate, and,
for games, ``play`` (one greedy episode of trained parameters, to watch).

Learners register in :mod:`regspeed.learn.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regspeed.learn import common
from regspeed.learn import regularizers as regs
from regspeed.learn.driver import Trainer
from regspeed.learn.tables import Tables


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-update (or per-evaluation) metric a learner produces.

    Attributes:
        name: its key in the trainer's metrics and in a study's store.
        label: what people call it (``training score (food per episode)``).
        unit: the unit of its values, if any.
        higher_is_better: the direction of improvement (speed metrics must be higher-is-better).
        check_finite: a non-finite value means the run diverged: it is stopped, alone.
    """

    name: str
    label: str
    unit: str = ""
    higher_is_better: bool = True
    check_finite: bool = False


REGULARIZATION_METRICS = (
    Metric("learning_rate", "learning rate"),
    Metric("reg_loss", "regularizer loss term", higher_is_better=False),
    Metric("grad_norm", "task gradient norm", higher_is_better=False),
    Metric("grad_cosine", "cosine of the task and regularizer gradients"),
    Metric("weight_l1", "weight L1 norm", higher_is_better=False),
    Metric("weight_l2", "weight L2 norm", higher_is_better=False, check_finite=True),
    Metric("near_zero_fraction", "fraction of weights with |w| < 1e-3"),
)
"""Every learner reports these (see :mod:`regspeed.learn.regularizers`)."""

MECHANISM_METRICS = (
    Metric("dormant_fraction", "fraction of dormant hidden units (score 0: silent)", higher_is_better=False),
    Metric("dormant_fraction_0025", "fraction of dormant hidden units (score <= 0.025)", higher_is_better=False),
    Metric("feature_srank", "effective rank (srank) of the last hidden layer's features"),
    Metric("effective_lr", "effective learning rate (update norm / weight norm)"),
)
"""Every learner reports these (see :mod:`regspeed.learn.mechanisms`; NaN on updates a
learner does not measure, and the representation ones NaN without hidden layers)."""


def finite_checks(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """The metrics whose non-finite values stop a run (a :class:`Trainer`'s ``finite_checks``)."""
    return tuple(metric.name for metric in metrics if metric.check_finite)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the caller (a study, the command line) decides beyond the learner's own tables.

    Attributes:
        budget: per run, in the learner's ``step_unit`` (rounded down to whole updates).
        regularizer: the static regularizer (its strength is a traced hyperparameter).
        eval_episodes, eval_max_steps: greedy evaluation; ``None`` keeps the learner's defaults.
    """

    budget: int
    regularizer: regs.Regularizer = dataclasses.field(default_factory=regs.Regularizer)
    eval_episodes: int | None = None
    eval_max_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Setup:
    """A built run configuration: the static config (hashable: it selects the compiled
    code) and the learning rate (traced, the same for every run of a batch)."""

    config: Any
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class Learner:
    """One learner, as every caller sees it (see the module docstring)."""

    name: str
    description: str
    step_unit: str  # what budgets and the curves' step axis count: "env steps" or "updates"
    trainer: Trainer
    metrics: tuple[Metric, ...]
    speed_metrics: tuple[str, ...]  # curves (higher is better) whose learning speed a study measures
    progress_metric: str  # the metric a progress display shows
    build: Callable[[Tables, Request], Setup]  # raises ConfigProblemsError with paths relative to the tables
    tables: Callable[[Setup], Tables]  # the tables of a setup, every default filled in (regularizer/budget excluded)
    bytes_per_run: Callable[[Any], int]  # a generous estimate of one run's device memory in a batch
    play: Callable[[Any, Any, jax.Array, int], tuple[Any, list[Any]]] | None = None  # games: (env, states)
    measured: Callable[[Any], tuple[str, ...]] | None = None  # config -> the speed metrics it produces (all)
    learning_rate_key: str = "learning_rate"  # where its tables hold the learning rate (``ppo.learning_rate``)

    def speed_metrics_of(self, setup: Setup) -> tuple[str, ...]:
        """The speed metrics a run of ``setup`` produces (some need a setting, e.g. levels)."""
        return self.speed_metrics if self.measured is None else self.measured(setup.config)

    def __post_init__(self) -> None:
        names = [metric.name for metric in self.metrics]
        missing = [name for name in (*self.speed_metrics, self.progress_metric) if name not in names]
        if missing or len(set(names)) != len(names):
            raise ValueError(f"learner {self.name}: undeclared or repeated metrics {missing or names}")

    def metric(self, name: str) -> Metric:
        """The declaration of a metric (a plain one, labelled by its name, if undeclared)."""
        return next((metric for metric in self.metrics if metric.name == name), Metric(name, name))

    def labels(self) -> dict[str, str]:
        """Metric name -> what people call it."""
        return {metric.name: metric.label for metric in self.metrics}

    def total_updates(self, setup: Setup) -> int:
        """Updates of each run."""
        return setup.config.total_updates

    def steps_per_update(self, setup: Setup) -> int:
        """Budget units per update."""
        return setup.config.steps_per_update

    def start(
        self,
        setup: Setup,
        seeds: Sequence[int],
        strengths: Sequence[float] | np.ndarray,
        learning_rates: Sequence[float] | np.ndarray | None = None,
    ) -> Any:
        """Fresh carries of a batch of runs: one per (seed, strength, learning rate; by
        default ``setup``'s rate for every run), vmappable together. The same seed gives the
        same initial network and environments in every condition."""
        strengths = jnp.asarray(strengths, jnp.float32)
        rates = setup.learning_rate if learning_rates is None else jnp.asarray(learning_rates, jnp.float32)
        hparams = common.Hparams(jnp.broadcast_to(jnp.asarray(rates, jnp.float32), strengths.shape), strengths)
        return self.trainer.init_batch(setup.config, common.run_keys(seeds), hparams)
