"""Errors that mean "the user asked for something invalid" (as opposed to a bug)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


class ConfigError(ValueError):
    """A user-supplied option is invalid.

    The message is one line that names the option and says how to fix it, e.g.
    ``rows: must be between 4 and 64 (got 3)``. The CLI prints it without a traceback.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ConfigProblemsError(ConfigError):
    """Several problems found at once, each ``(path, message)``; the path names a field of
    the caller's vocabulary (a TOML path in a spec, a table path in a learner's tables)."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "configuration") -> None:
        self.problems = problems
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(source, f"{len(problems)} {noun}\n  " + "\n  ".join(lines))


def refuse_non_finite(config: Any) -> None:
    """Raise :class:`ConfigError` on the first float field of a dataclass that is NaN or
    infinite (every config calls it first in ``__post_init__``: no setting may be NaN/inf)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(field.name, f"must be a finite number (got {value})")
