"""Study overhead: aggregate env steps/s of a study against the bare trainer on the same batch.

The study is the default spec's baseline condition (``--seeds`` runs in one batch, the
default chunking and evaluation schedule) run by ``regspeed.study.runner`` into a
temporary folder: store writes, checkpoints after every chunk, progress callbacks. The
bare trainer is ``training.train`` on the same batch with the same chunks and evaluations
and nothing else. Both are compiled before timing (same process, same jit cache); they
alternate ``--repeats`` times and the median of each is compared. Target: >= 90%.

    .venv/bin/python benchmarks/study_throughput.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs
from regspeed.study import runner
from regspeed.study import spec as spec_module


def baseline_spec(seeds: int, budget: int) -> spec_module.Spec:
    """The default study reduced to its baseline condition."""
    default = spec_module.load()
    return default.model_copy(update={"name": "throughput", "seeds": seeds, "budget": budget, "regularizers": []})


def bare(spec: spec_module.Spec) -> float:
    """Seconds for the bare trainer to run the batch (init included, compilation excluded)."""
    learner = spec_module.learner_of(spec)
    setup = spec_module.setup(spec, regs.Regularizer())
    start = time.perf_counter()
    carry = learner.start(setup, spec.seed_list(), np.zeros(spec.seeds))
    carry, _ = training.train(
        learner.trainer,
        setup.config,
        carry,
        learner.total_updates(setup),
        spec.execution.chunk_updates,
        spec.evaluation.every_updates,
    )
    jax.block_until_ready(carry)
    return time.perf_counter() - start


def study(spec: spec_module.Spec) -> float:
    """Seconds for the study runner to run the same batch into a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        runner.run(spec, Path(folder) / "study")
        return time.perf_counter() - start


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=163_840, help="env steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = baseline_spec(args.seeds, args.budget)
    learner = spec_module.learner_of(spec)
    setup = spec_module.setup(spec, regs.Regularizer())
    steps = learner.total_updates(setup) * learner.steps_per_update(setup) * args.seeds
    console = Console()
    with console.status("compiling..."):
        warm = baseline_spec(args.seeds, learner.steps_per_update(setup) * spec.execution.chunk_updates)
        bare(warm)
        study(warm)
    times: dict[str, list[float]] = {"bare trainer": [], "study": []}
    for _ in range(args.repeats):
        times["bare trainer"].append(bare(spec))
        times["study"].append(study(spec))
    title = f"Study overhead: {args.seeds} runs x {steps // args.seeds:,} env steps, median of {args.repeats}"
    table = Table(title=title)
    for name in ("", "seconds", "env steps/s", "ratio"):
        table.add_column(name, justify="right")
    base = statistics.median(times["bare trainer"])
    for name, measured in times.items():
        seconds = statistics.median(measured)
        table.add_row(name, f"{seconds:.1f}", f"{steps / seconds:,.0f}", f"{base / seconds:.2f}")
    console.print(table)
    console.print("target: study >= 0.90 of the bare trainer")


if __name__ == "__main__":
    main()
