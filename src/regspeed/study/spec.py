"""What a study is: a TOML file validated with pydantic, and the conditions it expands to.

A spec names a task (a learner of :mod:`regspeed.learn.registry`, e.g. ``snake-ppo``), the
task's configuration (the learner's tables), a budget, seeds, the regularizers
to compare with their strengths, evaluation settings and learning-speed thresholds. The
baseline (``none``) is always a condition.

Validation reports every problem at once, one line each, with the TOML path of the field
(``regularizers[2].strengths: must be > 0 (got -0.0001)``), before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from regspeed.errors import ConfigError, ConfigProblemsError
from regspeed.learn import registry, tables
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Learner, Request, Setup


class SpecError(ConfigProblemsError):
    """A spec with one or more problems; each is ``(toml_path, message)``."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec") -> None:
        super().__init__(problems, source)


class _Strict(BaseModel):
    # strict: a bool is not an integer and a string is not a number (an integer may stand for a float)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class StrengthGrid(_Strict):
    """A log-spaced grid of strengths, ``num`` values from ``low`` to ``high``."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)
    num: int = Field(ge=1, le=1000)

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
    strengths: list[float] = Field(max_length=1000)
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

    every_updates: int = Field(10, ge=0, le=10**9)
    episodes: int = Field(32, ge=1, le=100_000)
    max_steps: int = Field(500, ge=1, le=1_000_000)


class Analysis(_Strict):
    """How the comparisons are decided; changes no run, only the verdicts."""

    # speed-ups within [1/margin, margin] count as "no practical difference": the smallest effect of interest
    margin: float = Field(1.1, gt=1.0, le=10.0)


class Execution(_Strict):
    """How the study is executed. ``chunk_updates`` and ``memory_cap_gb`` change no number of
    the results; ``sequential`` runs the seeds in waves of ``seeds`` up to ``max_seeds``,
    and a comparison stops receiving runs once it is decided."""

    chunk_updates: int = Field(10, ge=1, le=10**6)
    memory_cap_gb: float = Field(8.0, gt=0, le=1_000_000)
    sequential: bool = False
    max_seeds: int | None = Field(None, ge=1, le=10_000)


Threshold = Literal["auto"] | list[float]


class Spec(_Strict):
    """A whole study. ``config`` holds the learner's tables, validated by its ``build``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str
    seeds: int = Field(ge=1, le=10_000)
    first_seed: int = Field(0, ge=0, le=2**31 - 10_001)  # seeds become 32-bit PRNG keys
    budget: int = Field(ge=1, le=10**12)
    config: dict[str, Any] = Field(default_factory=dict)
    regularizers: list[RegularizerSpec] = Field(default_factory=list)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    analysis: Analysis = Field(default_factory=Analysis)
    execution: Execution = Field(default_factory=Execution)

    def seed_list(self) -> list[int]:
        """The seeds every condition is run with (a sequential study: those of its first wave)."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def looks(self) -> list[int]:
        """Seeds per condition at each look: ``[seeds]``, or for a sequential study every
        multiple of ``seeds`` up to ``max_seeds``."""
        if not self.execution.sequential or self.execution.max_seeds is None:
            return [self.seeds]
        return list(range(self.seeds, self.execution.max_seeds + 1, self.seeds))

    def wave_seeds(self, look: int) -> list[int]:
        """The seeds added at look ``look`` (0: the first wave, :meth:`seed_list`)."""
        start = self.first_seed + look * self.seeds
        return list(range(start, start + self.seeds))


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
    return parse(read(path), str(path))


MAX_SPEC_BYTES = 1_000_000


def read(path: str | Path) -> str:
    """A spec file's text: a UTF-8 text file of at most a megabyte, else one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("spec", f"{path} is not a file; write one with `regspeed spec > {path.name}`")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise ConfigError("spec", f"{path} is larger than {MAX_SPEC_BYTES:,} bytes; a spec is a short TOML file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        problem = f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
        raise ConfigError("spec", problem) from None


def parse(text: str, source: str = "spec") -> Spec:
    """Validate TOML text as a spec; every problem is reported at once in a :class:`SpecError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, f"not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(source, "nested too deeply to be a spec (tables are at most three levels deep)") from None
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
    seeds = min(spec.seeds, 3)
    looks = len(spec.looks())
    execution = spec.execution.model_copy(update={"max_seeds": seeds * looks if looks > 1 else None})
    smaller = {
        "name": f"{spec.name}-quick",
        "seeds": seeds,
        "budget": spec.budget // 12,
        "evaluation": evaluation,
        "execution": execution if spec.execution.sequential else spec.execution,
    }
    return spec.model_copy(update=smaller)


def learner_of(spec: Spec) -> Learner:
    """The learner a spec's ``task`` names."""
    return registry.get(spec.task)


def setup(spec: Spec, regularizer: regs.Regularizer) -> Setup:
    """The learner's setup for the runs of this study with ``regularizer``: built from
    ``config`` with the study's budget and evaluation; problems carry their TOML paths."""
    request = Request(
        budget=spec.budget,
        regularizer=regularizer,
        eval_episodes=spec.evaluation.episodes,
        eval_max_steps=spec.evaluation.max_steps,
    )
    try:
        return learner_of(spec).build(spec.config, request)
    except ConfigProblemsError as error:
        raise SpecError([(_spec_path(path), message) for path, message in error.problems]) from None


def speed_metrics(spec: Spec) -> tuple[str, ...]:
    """The speed metrics this study's runs produce (a valid spec)."""
    return learner_of(spec).speed_metrics_of(setup(spec, regs.Regularizer()))


def _spec_path(path: str) -> str:
    """A learner's table path as a TOML path of the spec."""
    if path == "budget":
        return path
    if path.startswith("regularizer."):
        return "regularizers." + path.removeprefix("regularizer.")
    return f"config.{path}"


def machine_memory_bytes() -> int:
    """This machine's physical memory (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _memory_problems(spec: Spec, learner: Learner, baseline: Setup) -> list[tuple[str, str]]:
    """One run must fit the memory cap and the machine (the plan batches runs within the cap)."""
    needed = learner.bytes_per_run(baseline.config)
    machine = machine_memory_bytes()
    cap = spec.execution.memory_cap_gb * 2**30
    if needed > cap:
        smaller = "make the network, environments or batch smaller, or raise the cap"
        return [("execution.memory_cap_gb", f"one run needs about {needed / 2**30:,.1f} GB, more than the cap of "
                 f"{spec.execution.memory_cap_gb:g} GB; {smaller}")]  # fmt: skip
    if machine and needed > machine:
        return [("config", f"one run needs about {needed / 2**30:,.1f} GB, more than this machine's "
                 f"{machine / 2**30:,.1f} GB; make the network, environments or batch smaller")]  # fmt: skip
    return []


def _semantic_problems(spec: Spec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if spec.task not in registry.LEARNERS:
        problems.append(("task", f"unknown task {spec.task!r}; choose one of {', '.join(registry.names())}"))
        return problems
    learner = learner_of(spec)
    measured = learner.speed_metrics
    try:
        baseline = setup(spec, regs.Regularizer())
        problems += _memory_problems(spec, learner, baseline)
        measured = learner.speed_metrics_of(baseline)
    except SpecError as error:
        problems += error.problems
    seen: dict[tuple, int] = {}
    named: dict[str, tuple] = {}
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
                setup(spec, regularizer)
            except SpecError as error:
                problems += [(f"{path}.{field.rsplit('.', 1)[-1]}", message) for field, message in error.problems]
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
            name = condition_name(regularizer, strength)
            if named.setdefault(name, (regularizer, strength)) != (regularizer, strength):
                problems.append((f"{path}.strengths", f"{strength!r} and {named[name][1]!r} are both named {name}; "
                                 "make strengths differ within 6 significant digits"))  # fmt: skip
    sequential, max_seeds = spec.execution.sequential, spec.execution.max_seeds
    if sequential and (max_seeds is None or max_seeds <= spec.seeds or max_seeds % spec.seeds):
        got = "none" if max_seeds is None else max_seeds
        wanted = f"a multiple of seeds ({spec.seeds}) larger than it: the seeds per condition at the last look"
        problems.append(
            ("execution.max_seeds", f"a sequential study needs {wanted}, e.g. {4 * spec.seeds} (got {got})")
        )
    primary = next((spec.thresholds[m] for m in learner.speed_metrics if m in spec.thresholds), "auto")
    if sequential and not isinstance(primary, list):
        first = next((m for m in learner.speed_metrics if m in spec.thresholds), learner.speed_metrics[0])
        fixed = "a sequential study decides against thresholds fixed in advance (\"auto\" moves as seeds arrive)"
        problems.append((f"thresholds.{first}", f"{fixed}: give numbers, e.g. from a fixed study of the same task"))
    if not sequential and max_seeds is not None:
        problems.append(("execution.max_seeds", "only a sequential study has one: set sequential = true or remove it"))
    for metric, threshold in spec.thresholds.items():
        if metric in learner.speed_metrics and metric not in measured:
            problems.append((f"thresholds.{metric}", "measured only in a world with levels: set config.env.levels "
                             "or config.env.obstacle_density, or remove this threshold"))  # fmt: skip
        elif metric not in learner.speed_metrics:
            problems.append((f"thresholds.{metric}", f"unknown metric; {spec.task} measures {', '.join(measured)}"))
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


def describe_validation_error(error: pydantic.ValidationError, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """One ``(toml_path, message)`` per problem pydantic found in a spec (a threshold that is
    neither "auto" nor a list of finite numbers gets one message, not one per member of the
    union or per list element)."""
    merged: dict[str, str] = {}
    for path, message in tables.describe_validation_error(error, prefix):
        threshold = re.fullmatch(r"(thresholds\.[^.\[]+)(\[\d+\])?", path)
        if threshold and (threshold[1] in merged or threshold[2]):
            merged[threshold[1]] = 'must be "auto" or a list of finite numbers'
        else:
            merged.setdefault(path, message)
    return list(merged.items())


def normalized(spec: Spec) -> dict[str, Any]:
    """The spec as plain data, with the task's configuration fully resolved (defaults
    filled in), so that two specs meaning the same study compare equal."""
    data = spec.model_dump(mode="json")
    data["config"] = learner_of(spec).tables(setup(spec, regs.Regularizer()))
    return data


# tables (and table fields) added to the spec after stores were written with it: a stored spec
# without them had their defaults
ADDED_TABLES = {"analysis": Analysis, "execution": Execution}


def with_added_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored :func:`normalized` spec with the tables and fields added since it was stored
    filled in with their defaults (what it meant), so that it compares equal to the same spec today."""
    filled = dict(stored)
    for name, table in ADDED_TABLES.items():
        filled[name] = table().model_dump(mode="json") | (stored.get(name) or {})
    return filled


def differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Where two :func:`normalized` specs differ: TOML path and both values (empty when equal)."""
    stored = with_added_defaults(stored)
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
    return [] if left == right else [(tables.toml_path(location) or "spec", left, right)]
