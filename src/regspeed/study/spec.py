"""What a study is: a TOML file validated with pydantic, and the conditions it expands to.

A spec names a task (``snake-ppo``; tasks register themselves in
:mod:`regspeed.study.tasks`), the task's configuration, a budget, seeds, the regularizers
to compare with their strengths, evaluation settings and learning-speed thresholds. The
baseline (``none``) is always a condition.

Validation reports every problem at once, one line each, with the TOML path of the field
(``regularizers[2].strengths: must be > 0 (got -0.0001)``), before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from regspeed.errors import ConfigError
from regspeed.learn import regularizers as regs


class SpecError(ConfigError):
    """A spec with one or more problems; each is ``(toml_path, message)``."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec") -> None:
        self.problems = problems
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(source, f"{len(problems)} {noun}\n  " + "\n  ".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrengthGrid(_Strict):
    """A log-spaced grid of strengths, ``num`` values from ``low`` to ``high``."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)
    num: int = Field(ge=1)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> StrengthGrid:
        if self.low > self.high:
            raise ValueError(f"low must be <= high (got low = {self.low:g}, high = {self.high:g})")
        return self

    def values(self) -> list[float]:
        """The strengths, rounded to 6 significant digits so that names stay readable."""
        return [float(f"{value:.6g}") for value in np.geomspace(self.low, self.high, self.num)]


class RegularizerSpec(_Strict):
    """One regularizer kind to compare against the baseline, at one or more strengths."""

    kind: str
    strengths: list[float]
    network: str = "all"
    include_biases: bool = False
    include_norm_scales: bool = False
    l1_ratio: float = 0.5

    @pydantic.field_validator("strengths", mode="before")
    @classmethod
    def _grid_to_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return StrengthGrid.model_validate(value).values()
        return value

    @pydantic.field_validator("strengths")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("give at least one strength")
        for value in values:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"must be > 0 (got {value:g})")
        return values


class Evaluation(_Strict):
    """Periodic greedy evaluation on a fixed set of episodes."""

    every_updates: int = Field(10, ge=0)
    episodes: int = Field(32, ge=1)
    max_steps: int = Field(500, ge=1)


class Execution(_Strict):
    """How the study is executed; none of these changes a number of the results."""

    chunk_updates: int = Field(10, ge=1)
    memory_cap_gb: float = Field(8.0, gt=0)


Threshold = Literal["auto"] | list[float]


class Spec(_Strict):
    """A whole study. ``config`` is validated by the task (see :mod:`regspeed.study.tasks`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str
    seeds: int = Field(ge=1)
    first_seed: int = Field(0, ge=0)
    budget: int = Field(ge=1)
    config: dict[str, Any] = Field(default_factory=dict)
    regularizers: list[RegularizerSpec] = Field(default_factory=list)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    execution: Execution = Field(default_factory=Execution)

    def seed_list(self) -> list[int]:
        """The seeds every condition is run with."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclasses.dataclass(frozen=True)
class Condition:
    """One arm of the study: a regularizer (static) at one strength (traced)."""

    name: str
    regularizer: regs.Regularizer
    strength: float


# ------------------------------------------------------------------------------ loading

DEFAULT_SPEC = "default.toml"


def default_text() -> str:
    """The default spec, with its comments (what ``regspeed spec`` prints)."""
    return resources.files("regspeed.study").joinpath(DEFAULT_SPEC).read_text()


def load(path: str | Path | None = None) -> Spec:
    """Read and validate a spec file (``None``: the embedded default)."""
    if path is None:
        return parse(default_text(), "default spec")
    path = Path(path)
    if not path.is_file():
        raise ConfigError("spec", f"{path} is not a file; write one with `regspeed spec > {path.name}`")
    return parse(path.read_text(), str(path))


def parse(text: str, source: str = "spec") -> Spec:
    """Validate TOML text as a spec; every problem is reported at once in a :class:`SpecError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, f"not valid TOML: {error}") from None
    return validate(raw, source)


def validate(raw: dict[str, Any], source: str = "spec") -> Spec:
    """Validate a spec given as a dict (as TOML parses it)."""
    try:
        spec = Spec.model_validate(raw)
    except pydantic.ValidationError as error:
        raise SpecError(describe_validation_error(error), source) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def quick(spec: Spec) -> Spec:
    """The same study, small: 3 seeds, 1/12 of the budget and more frequent evaluation
    (about a minute for the default study)."""
    evaluation = spec.evaluation.model_copy(update={"every_updates": max(1, spec.evaluation.every_updates // 5)})
    smaller = {
        "name": f"{spec.name}-quick",
        "seeds": min(spec.seeds, 3),
        "budget": spec.budget // 12,
        "evaluation": evaluation,
    }
    return spec.model_copy(update=smaller)


def _semantic_problems(spec: Spec) -> list[tuple[str, str]]:
    from regspeed.study import tasks

    problems: list[tuple[str, str]] = []
    if spec.task not in tasks.REGISTRY:
        problems.append(("task", f"unknown task {spec.task!r}; choose one of {', '.join(tasks.REGISTRY)}"))
        return problems
    task = tasks.REGISTRY[spec.task]
    problems += task.check(spec)
    seen: dict[tuple, int] = {}
    for index, entry in enumerate(spec.regularizers):
        path = f"regularizers[{index}]"
        if entry.kind == "none":
            problems.append((f"{path}.kind", "the baseline (none) is always included; remove this entry"))
            continue
        try:
            regularizer = to_regularizer(entry)
        except ConfigError as error:
            problems.append((f"{path}.{_REGULARIZER_FIELDS.get(error.field, error.field)}", error.problem))
            continue
        if not problems:  # the task's own configuration is valid: check it accepts this regularizer
            try:
                task.static_config(spec, regularizer)
            except ConfigError as error:
                problems.append((f"{path}.{error.field.rsplit('.', 1)[-1]}", error.problem))
        for strength in entry.strengths:
            try:
                regs.check_strength(regularizer, strength)
            except ConfigError as error:
                problems.append((f"{path}.strengths", error.problem))
            if seen.get((regularizer, strength)) == index:
                problems.append((f"{path}.strengths", f"lists {strength:g} twice"))
            elif (regularizer, strength) in seen:
                problems.append((path, f"repeats regularizers[{seen[regularizer, strength]}] at strength {strength:g}"))
            seen.setdefault((regularizer, strength), index)
    for metric, threshold in spec.thresholds.items():
        if metric not in task.speed_metrics:
            problems.append(
                (f"thresholds.{metric}", f"unknown metric; {spec.task} measures {', '.join(task.speed_metrics)}")
            )
        elif isinstance(threshold, list) and not threshold:
            problems.append((f"thresholds.{metric}", 'give at least one threshold, or "auto"'))
    return problems


_REGULARIZER_FIELDS = {"reg": "kind", "reg_network": "network"}  # ConfigError names -> spec keys


def to_regularizer(entry: RegularizerSpec) -> regs.Regularizer:
    """The static regularizer of a spec entry."""
    return regs.Regularizer(
        kind=entry.kind,
        network=entry.network,
        include_biases=entry.include_biases,
        include_norm_scales=entry.include_norm_scales,
        l1_ratio=entry.l1_ratio,
    )


def conditions(spec: Spec) -> list[Condition]:
    """The baseline, then every regularizer at every strength, in spec order."""
    result = [Condition("none", regs.Regularizer(), 0.0)]
    for entry in spec.regularizers:
        regularizer = to_regularizer(entry)
        for strength in entry.strengths:
            result.append(Condition(condition_name(regularizer, strength), regularizer, strength))
    return result


def condition_name(regularizer: regs.Regularizer, strength: float) -> str:
    """A short, unique name such as ``l2@0.001`` or ``l1[policy]@1e-05``."""
    qualifiers = []
    if regularizer.network != "all":
        qualifiers.append(regularizer.network)
    if regularizer.include_biases:
        qualifiers.append("biases")
    if regularizer.include_norm_scales:
        qualifiers.append("scales")
    if regularizer.kind == "elastic" and regularizer.l1_ratio != 0.5:
        qualifiers.append(f"l1_ratio={regularizer.l1_ratio:g}")
    suffix = f"[{','.join(qualifiers)}]" if qualifiers else ""
    return f"{regularizer.kind}{suffix}@{strength:g}"


# ------------------------------------------------------------------ messages and diffs

_MESSAGES = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "unexpected_keyword_argument": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}


def toml_path(location: tuple[Any, ...]) -> str:
    """``('regularizers', 2, 'strengths')`` -> ``regularizers[2].strengths``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            path += f".{part}" if path else str(part)
        else:  # pydantic's union-member tags such as 'literal['auto']': not part of the TOML
            continue
    return path


def _message(detail: dict[str, Any]) -> str:
    kind, context = detail["type"], detail.get("ctx", {})
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":  # our own validators already say what they got
        return detail["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        message = "use letters, digits, '_', '.' and '-' only (it names the study's folder)"
    elif kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        message = f"must be {symbol} {context[key]}"
    else:
        message = detail["msg"]
    given = detail.get("input")
    return message if isinstance(given, dict) else f"{message} (got {given!r})"


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def describe_validation_error(error: pydantic.ValidationError, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """One ``(toml_path, message)`` per problem pydantic found (duplicates from unions merged)."""
    problems: list[tuple[str, str]] = []
    for detail in error.errors(include_url=False):
        location = prefix + tuple(detail["loc"])
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # raised by a dataclass's own checks
            location = (*location, cause.field)
            message = cause.problem
        else:
            message = _message(detail)
        problem = (toml_path(location), message)
        if problem not in problems:
            problems.append(problem)
    return _merge_union_problems(problems)


def _merge_union_problems(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A threshold that is neither "auto" nor a list gets one message, not one per union member."""
    merged: dict[str, str] = {}
    for path, message in problems:
        if path in merged and path.startswith("thresholds."):
            merged[path] = 'must be "auto" or a list of numbers'
        else:
            merged.setdefault(path, message)
    return list(merged.items())


def normalized(spec: Spec) -> dict[str, Any]:
    """The spec as plain data, with the task's configuration fully resolved (defaults
    filled in), so that two specs meaning the same study compare equal."""
    from regspeed.study import tasks

    data = spec.model_dump(mode="json")
    data["config"] = tasks.REGISTRY[spec.task].resolved_config(spec)
    return data


def differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Where two :func:`normalized` specs differ: TOML path and both values (empty when equal)."""
    return [f"{path}: stored {left!r}, given {right!r}" for path, left, right in _diff(stored, given, ())]


def _diff(left: Any, right: Any, location: tuple) -> list[tuple[str, Any, Any]]:
    if isinstance(left, dict) and isinstance(right, dict):
        found = []
        for key in sorted(set(left) | set(right), key=str):
            found += _diff(left.get(key), right.get(key), (*location, key))
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        found = []
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            found += _diff(a, b, (*location, index))
        return found
    return [] if left == right else [(toml_path(location) or "spec", left, right)]
