"""Time to answer: the default study's wall time and where it goes; the runner's overhead.

1. ``--whole`` (the default): ``regspeed study`` on the default spec (or ``--spec FILE``)
   into a temporary folder, in this process, as a user runs it: the wall time, the env steps
   of all its runs, and the share of the time spent compiling (JAX's compile events: tracing,
   lowering, XLA; or loading from the persistent cache), writing (store transactions,
   checkpoints, TensorBoard files) and analysing (sequential looks, the report); the rest is
   training. ``--compile-cache DIR`` chooses the cache (default: an empty temporary one,
   i.e. a cold start; give the same folder twice to see a warm one). Peak RSS at the end.
2. ``--overhead``: aggregate env steps/s of a study against the bare trainer on the same batch.
   The study is the default spec's baseline condition (``--seeds`` runs in one batch, the
default chunking and evaluation schedule) run by ``regspeed.study.runner`` into a
temporary folder: store writes, checkpoints after every chunk, progress callbacks. The
bare trainer is ``training.train`` on the same batch with the same chunks and evaluations
and nothing else. Both are compiled before timing (same process, same jit cache); they
alternate ``--repeats`` times and the median of each is compared. Target: >= 90%.

    .venv/bin/python benchmarks/study_throughput.py              # the default study, cold cache
    .venv/bin/python benchmarks/study_throughput.py --quick      # its --quick form
    .venv/bin/python benchmarks/study_throughput.py --overhead   # runner vs bare trainer
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    """The default study reduced to its baseline condition on one board (10 x 10)."""
    default = spec_module.load()
    smaller = {"name": "throughput", "seeds": seeds, "budget": budget, "regularizers": [], "factors": {}}
    return default.model_copy(update=smaller)


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


class Stopwatch:
    """Seconds spent inside wrapped functions, per share (a call inside another share's
    call counts once, for the outer one)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inside = False

    def wrap(self, share: str, function: Callable) -> Callable:
        """``function``, timed into ``share``."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside:
                return function(*args, **kwargs)
            self._inside = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._inside = False
                self.seconds[share] = self.seconds.get(share, 0.0) + time.perf_counter() - start

        return timed


COMPILE_EVENTS = (  # jax.monitoring's durations of making a program: tracing, lowering, XLA or the cache
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def instrumented(watch: Stopwatch) -> Iterator[None]:
    """Time the study's writing and analysing functions and JAX's compile events into ``watch``."""
    from regspeed.analysis import sequential
    from regspeed.learn import checkpoint
    from regspeed.report import report as report_module
    from regspeed.study import live
    from regspeed.study import store as store_module

    patches = [
        (checkpoint, "save", "writing"),
        (live, "write", "writing"),
        (store_module.Store, "record_chunk", "writing"),
        (sequential, "next_wave", "analysing"),
        (report_module, "write", "analysing"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]

    def on_event(event: str, duration: float, **_: Any) -> None:
        if event in COMPILE_EVENTS:
            watch.seconds["compiling"] = watch.seconds.get("compiling", 0.0) + duration

    jax.monitoring.register_event_duration_secs_listener(on_event)
    for (owner, name, share), (_, _, original) in zip(patches, originals, strict=True):
        setattr(owner, name, watch.wrap(share, original))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        jax.monitoring.unregister_event_duration_listener(on_event)


def whole_study(spec_file: Path | None, quick: bool, cache: Path | None, console: Console) -> None:
    """Run ``regspeed study`` as a user does and print where its time went."""
    from regspeed.cli.app import app
    from regspeed.study import store as store_module

    watch = Stopwatch()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "study"
        cache_folder = cache if cache is not None else Path(temporary) / "compile-cache"
        arguments = ["--compile-cache", str(cache_folder), "study", "--out", str(folder), "--no-tensorboard"]
        arguments += [str(spec_file)] if spec_file is not None else []
        arguments += ["--quick"] if quick else []
        with instrumented(watch):
            start = time.perf_counter()
            try:
                app(arguments, standalone_mode=False)
            finally:
                wall = time.perf_counter() - start
        the_spec = spec_module.load(spec_file)
        the_spec = spec_module.quick(the_spec) if quick else the_spec
        with store_module.Store.open(folder) as store:
            runs = store.runs()
        steps = 0
        for cell in spec_module.cells(the_spec):  # a study with factors: each cell's updates have their own size
            setup = spec_module.setup(cell.spec, regs.Regularizer())
            per_update = spec_module.learner_of(cell.spec).steps_per_update(setup)
            steps += per_update * sum(run.updates_done for run in runs if run.cell == cell.index)
    table = Table(title=f"regspeed study ({the_spec.name}): {len(runs)} runs, {steps / 1e6:.1f} M env steps")
    for column in ("", "seconds", "share"):
        table.add_column(column, justify="right")
    table.add_row("wall time", f"{wall:.1f}", "100%")
    shares = {share: watch.seconds.get(share, 0.0) for share in ("compiling", "writing", "analysing")}
    for share, seconds in shares.items():
        table.add_row(share, f"{seconds:.1f}", f"{seconds / wall:.0%}")
    rest = wall - sum(shares.values())
    table.add_row("training (the rest)", f"{rest:.1f}", f"{rest / wall:.0%}")
    table.add_row("env steps/s over the wall time", f"{steps / wall:,.0f}", "")
    table.add_row("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB", "")
    console.print(table)
    console.print(f"compile cache: {'given' if cache is not None else 'empty (cold)'}; {jax.devices()[0].device_kind}")


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", action="store_true", help="the runner against the bare trainer instead")
    parser.add_argument("--spec", type=Path, default=None, help="a study spec (default: the default study)")
    parser.add_argument("--quick", action="store_true", help="the study's --quick form")
    parser.add_argument("--compile-cache", type=Path, default=None, help="default: an empty temporary folder")
    parser.add_argument("--seeds", type=int, default=10, help="--overhead: runs in the batch")
    parser.add_argument("--budget", type=int, default=163_840, help="--overhead: env steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="--overhead: alternations")
    args = parser.parse_args()
    if not args.overhead:
        whole_study(args.spec, args.quick, args.compile_cache, Console())
        return
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
