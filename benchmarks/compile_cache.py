"""Compile once: `regspeed study --quick` with an empty compiled-program cache (cold) and again
with the same cache (warm), and optionally the quick test subset cold and warm.

Each study is a separate process (``regspeed --compile-cache TMP study --quick --out TMP/...``,
a fresh study folder each time; the user's own cache is not touched), run through this script
so that it can read JAX's own compile-time events: "compile" is the time JAX spent in XLA
(compiling, or loading from the cache: ``backend_compile_duration``) plus tracing and
lowering to XLA's input; "rest" is the process's wall time less that (importing, running
the programs, the store, the report). "study" is what ``regspeed study`` prints ("finished in
N s"). Peak RSS is the child's. ``--suite`` also times ``pytest -m "not slow"`` twice with a
fresh cache of its own (REGSPEED_COMPILE_CACHE), about 2 minutes each.

    .venv/bin/python benchmarks/compile_cache.py [--suite] [--min-compile-time SECONDS] [--off]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
BACKEND = "/jax/core/compile/backend_compile_duration"  # XLA compile, or load from the persistent cache
TRACE = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")
HITS = "/jax/compilation_cache/cache_hits"
REQUESTS = "/jax/compilation_cache/compile_requests_use_cache"
OURS = ("REGSPEED_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def child(report: Path, arguments: list[str]) -> None:
    """Run ``regspeed ARGUMENTS`` in this process, recording JAX's compile events into ``report``."""
    import regspeed  # noqa: F401  (its XLA flags first, as the command has them)

    # isort: split
    import jax

    seconds: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()

    def on_duration(event: str, duration: float, **_: object) -> None:
        seconds[event] += duration

    def on_event(event: str, **_: object) -> None:
        counts[event] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    from regspeed.cli import app

    code: int | str | None = 0
    try:
        app(arguments, prog_name="regspeed")
    except SystemExit as exit_:
        code = exit_.code
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    facts = {"seconds": dict(seconds), "counts": dict(counts), "peak_rss": rss, "code": code}
    report.write_text(json.dumps(facts))
    sys.exit(code)


def environment(min_compile_time: float | None) -> dict[str, str]:
    """This environment without the cache variables (the study's option names the cache)."""
    env = {name: value for name, value in os.environ.items() if name not in OURS}
    if min_compile_time is not None:
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = repr(min_compile_time)
    return env | {"COLUMNS": "200"}


def cache_size(folder: Path) -> tuple[int, int]:
    """Entries and bytes in a cache folder (every machine's subfolder)."""
    files = [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []
    return len(files), sum(path.stat().st_size for path in files)


def study(work: Path, cache: str, label: str, min_compile_time: float | None) -> dict:
    """One ``regspeed study --quick`` process: its timings, counts, peak RSS and the cache after it."""
    report = work / f"{label}.json"
    arguments = ["--compile-cache", cache, "study", "--quick", "--out", str(work / f"study-{label}")]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(report), "--", *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, env=environment(min_compile_time), capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{label}: regspeed {' '.join(arguments)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    facts = json.loads(report.read_text())
    finished = re.search(r"finished in (\d+) s", done.stdout)
    compiled = facts["seconds"].get(BACKEND, 0.0)
    traced = sum(facts["seconds"].get(event, 0.0) for event in TRACE)
    return {
        "process": wall,
        "compile": compiled + traced,
        "xla": compiled,
        "rest": wall - compiled - traced,
        "study": float(finished.group(1)) if finished else float("nan"),
        "rss": facts["peak_rss"],
        "hits": facts["counts"].get(HITS, 0),
        "requests": facts["counts"].get(REQUESTS, 0),
        "cache": cache_size(Path(cache)) if cache != "off" else (0, 0),
    }


def suite(cache: Path, min_compile_time: float | None) -> dict:
    """One ``pytest -m "not slow"`` session with the suite's cache in ``cache``."""
    env = environment(min_compile_time) | {"REGSPEED_COMPILE_CACHE": str(cache)}
    command = [sys.executable, "-m", "pytest", "-m", "not slow", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = lines[-1].strip("= ") if lines else f"exit code {done.returncode}: {done.stderr[-300:]}"
    return {"process": wall, "summary": summary, "cache": cache_size(cache)}


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="store_true", help='also time `pytest -m "not slow"` cold and warm')
    parser.add_argument(
        "--min-compile-time",
        type=float,
        default=None,
        help="JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS for the children (default: regspeed's, 0)",
    )
    parser.add_argument("--off", action="store_true", help="also run the study with the cache off (a baseline)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.arguments)
    console = Console(width=None if sys.stdout.isatty() else 120)
    with tempfile.TemporaryDirectory(prefix="regspeed-compile-cache-") as folder:
        work = Path(folder)
        os.chmod(work, 0o700)
        cache = work / "cache"
        runs = {}
        labels = (["off"] if args.off else []) + ["cold", "warm"]
        for label in labels:
            with console.status(f"regspeed study --quick, {label}..."):
                where = "off" if label == "off" else str(cache)
                runs[label] = study(work, where, label, args.min_compile_time)
        seconds = "default (0)" if args.min_compile_time is None else f"{args.min_compile_time:g} s"
        table = Table(title=f"regspeed study --quick, min compile time to cache: {seconds}")
        columns = ("", "process s", "compile s", "XLA s", "rest s", "study s", "peak RSS MB", "cache hits")
        for name in (*columns, "cache after"):
            table.add_column(name, justify="right")
        for label, run in runs.items():
            entries, size = run["cache"]
            table.add_row(
                label,
                f"{run['process']:.1f}",
                f"{run['compile']:.1f}",
                f"{run['xla']:.1f}",
                f"{run['rest']:.1f}",
                f"{run['study']:.0f}",
                f"{run['rss'] / 2**20:.0f}",
                f"{run['hits']}/{run['requests']}",
                f"{entries} files, {size / 2**20:.1f} MiB",
            )
        console.print(table)
        if args.suite:
            suite_cache = work / "suite-cache"
            table = Table(title='pytest -m "not slow", a fresh compiled-program cache')
            for name in ("", "seconds", "result", "cache after"):
                table.add_column(name, justify="right")
            for label in ("cold", "warm"):
                with console.status(f"the quick test subset, {label}..."):
                    run = suite(suite_cache, args.min_compile_time)
                entries, size = run["cache"]
                table.add_row(
                    label, f"{run['process']:.0f}", run["summary"], f"{entries} files, {size / 2**20:.1f} MiB"
                )
            console.print(table)


if __name__ == "__main__":
    main()
