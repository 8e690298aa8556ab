"""The ``regspeed`` Typer application: its consoles, the options several commands share, and
the rule that a user mistake (:class:`~regspeed.errors.ConfigError`) ends with one line on
stderr naming the option and exit code 2, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

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


def user_errors_exit_cleanly(command: F) -> F:
    """Turn a :class:`ConfigError` raised by ``command`` into one line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"regspeed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Does L1/L2 regularization make a neural network learn faster? Measure it."""
