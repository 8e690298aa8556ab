"""The ``regspeed`` Typer application: its consoles, the options several commands share, the
rule that a user mistake (:class:`~regspeed.errors.ConfigError`) ends with one line on
stderr naming the option and exit code 2, never a traceback, Ctrl-C stopping long
commands at a safe point (exit code 130), and the compiled-program cache every command
uses (``--compile-cache``, :mod:`regspeed.compile_cache`)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from regspeed import __version__
from regspeed.errors import ConfigError

app = typer.Typer(
    name="regspeed",
    help="Does L1/L2 regularization make a neural network learn faster? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# Options shared by several commands.
RowsOption = Annotated[int, typer.Option(help="Grid rows (4-64).")]
ColsOption = Annotated[int, typer.Option(help="Grid columns (4-64).")]
SeedOption = Annotated[int, typer.Option(help="PRNG seed.")]


class Interrupted(Exception):  # noqa: N818 (not an error: the user asked for it)
    """Ctrl-C was pressed; raised at a safe point (after a chunk is stored). Its message says
    what the user can do next."""


@contextlib.contextmanager
def stop_at_a_safe_point(next_step: str) -> Iterator[Callable[[], None]]:
    """While inside, Ctrl-C only asks to stop: the yielded check raises :class:`Interrupted`
    saying ``next_step`` at the next call (the caller's safe point, e.g. after a chunk is
    stored). A second Ctrl-C
    ends the process at once with exit code 130 (what is stored stays consistent: every
    chunk is one transaction after its checkpoint file).

    No exception is raised inside JAX's compiled code or its threads: Python's default
    KeyboardInterrupt there could crash the process (seen: segfaults, exit 139)."""
    requested = threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        if requested.is_set():
            os._exit(130)
        requested.set()
        error_console.print("stopping after the current chunk (Ctrl-C again to stop at once)", highlight=False)

    def check() -> None:
        if requested.is_set():
            raise Interrupted(next_step)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def user_errors_exit_cleanly(command: F) -> F:
    """Turn a :class:`ConfigError` raised by ``command`` into one line and exit code 2, and an
    :class:`Interrupted` into one line and exit code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Interrupted as interruption:
            error_console.print(f"interrupted; {escape(str(interruption))}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"regspeed {__version__}")
        raise typer.Exit()


@app.callback()
@user_errors_exit_cleanly
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    compile_cache: Annotated[
        str | None,
        typer.Option(
            "--compile-cache",
            metavar="FOLDER|off",
            show_default=False,
            help="Where compiled programs are kept for the next command (a folder private to you), or off. "
            "Default: $REGSPEED_COMPILE_CACHE, else $JAX_COMPILATION_CACHE_DIR, else ~/.cache/regspeed/jax "
            "($XDG_CACHE_HOME). One subfolder per machine type.",
        ),
    ] = None,
) -> None:
    """Does L1/L2 regularization make a neural network learn faster? Measure it."""
    enable_compile_cache(compile_cache)


def enable_compile_cache(option: str | None) -> None:
    """Turn on JAX's persistent compilation cache for the command (``regspeed.compile_cache``)
    without importing JAX; a default folder that cannot be used is one warning line."""
    import warnings

    from regspeed import compile_cache

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", compile_cache.CompileCacheWarning)
        compile_cache.enable_for_command(option)
    for warning in caught:
        if issubclass(warning.category, compile_cache.CompileCacheWarning):
            error_console.print(f"warning: {escape(str(warning.message))}", highlight=False, soft_wrap=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
