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


class ConfigProblemsError(ConfigError):
    """Several problems found at once, each ``(path, message)``; the path names a field of
    the caller's vocabulary (a TOML path in a spec, a table path in a learner's tables)."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "configuration") -> None:
        self.problems = problems
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(source, f"{len(problems)} {noun}\n  " + "\n  ".join(lines))
