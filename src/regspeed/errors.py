"""Errors that mean "the user asked for something invalid" (as opposed to a bug)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied option is invalid.

    The message is one line that names the option and says how to fix it, e.g.
    ``rows: must be between 4 and 64 (got 3)``. The CLI prints it without a traceback.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
