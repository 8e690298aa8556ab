"""What a study is: a TOML file validated with pydantic, and the conditions it expands to.

A spec names a task (a learner of :mod:`regspeed.learn.registry`, e.g. ``snake-ppo``), the
task's configuration (the learner's tables), a budget, seeds, the regularizers
to compare with their strengths, evaluation settings and learning-speed thresholds. The
baseline (``none``) is always a condition.

Validation reports every problem at once, one line each, with the TOML path of the field
(``regularizers[2].strengths: must be > 0 (got -0.0001)``), before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

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
    period: int = 1  # shrink_perturb only
    perturb: float = 1.0  # shrink_perturb only

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


class Tuning(_Strict):
    """Tuned comparisons (``[tuning]``): each condition of each cell is run at every
    combination of the ``candidates`` on the tuning seeds, keeps the best by ``criterion``
    on the study's answer metric (``auc``: the area under its curve; ``final``: its final
    value), and is then run and compared at that value on the evaluation seeds. A knob is
    ``learning_rate`` (the task's own) or a path into ``config`` (``ppo.entropy_coef``)."""

    candidates: dict[str, Any] = Field(default_factory=dict)  # knob -> values (nested tables flattened)
    seeds: int = Field(3, ge=1, le=1_000)
    first_seed: int = Field(1_000_000, ge=0, le=2**31 - 10_001)  # apart from the evaluation seeds
    criterion: Literal["auc", "final"] = "auc"


Threshold = Literal["auto"] | list[float]
Budget = Annotated[int, Field(ge=1, le=10**12)]


class Spec(_Strict):
    """A whole study. ``config`` holds the learner's tables, validated by its ``build``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str
    seeds: int = Field(ge=1, le=10_000)
    first_seed: int = Field(0, ge=0, le=2**31 - 10_001)  # seeds become 32-bit PRNG keys
    budget: Budget | dict[str, Any]  # a table: per cell of a study with factors (see budget_of)
    config: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, Any] = Field(default_factory=dict)  # name (a TOML path) -> values; see cells()
    regularizers: list[RegularizerSpec] = Field(default_factory=list)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    analysis: Analysis = Field(default_factory=Analysis)
    execution: Execution = Field(default_factory=Execution)
    tuning: Tuning | None = None

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
    """Validate a spec given as a dict (as TOML parses it); a spec with factors, every cell."""
    try:
        spec = Spec.model_validate(raw)
    except pydantic.ValidationError as error:
        raise SpecError(describe_validation_error(error), source) from None
    problems = _factor_problems(spec) if spec.factors else _semantic_problems(spec)
    if spec.tuning is not None:
        problems += _tuning_problems(spec, checked=not problems)
    if problems:
        raise SpecError(problems, source)
    return spec


# ---------------------------------------------------------------------------- factors

SHORT_FACTORS = {"levels": "env.levels"}  # factor names that stand for a config path
ALGORITHMS = ("ppo", "dqn")  # the `algorithm` factor: task snake-<algorithm>, its own [config.<algorithm>] table


@dataclasses.dataclass(frozen=True)
class Factor:
    """A factor of a study: a name (``board``, ``algorithm``, ``levels`` or a path into
    ``config`` such as ``network.hidden``) and the values its cells take, in spec order."""

    name: str
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One combination of factor values: its index, the values, a label (``board=6,
    algorithm=ppo``; ``all`` for a study without factors) and its own study (a spec without
    factors, the values applied and the budget resolved)."""

    index: int
    values: dict[str, Any]
    label: str
    spec: Spec


def factors(spec: Spec) -> list[Factor]:
    """The spec's factors, in spec order (nested TOML tables flattened to dotted names)."""
    return [Factor(name, tuple(values)) for name, values in _flat_factors(spec.factors) if isinstance(values, list)]


def _flat_factors(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        found += _flat_factors(value, f"{name}.") if isinstance(value, dict) else [(name, value)]
    return found


def cells(spec: Spec) -> list[Cell]:
    """Every combination of the factors' values (the first factor varying slowest), each
    with its own spec; a study without factors is one cell, ``all``. The spec must be valid."""
    if not spec.factors:
        return [Cell(0, {}, "all", spec.model_copy(update={"tuning": None}))]
    return [Cell(index, values, cell_label(values), validate(_cell_raw(spec, values))) for index, values in
            enumerate(_combinations(factors(spec)))]  # fmt: skip


def _combinations(found: list[Factor]) -> list[dict[str, Any]]:
    combos: list[dict[str, Any]] = [{}]
    for factor in found:
        combos = [combo | {factor.name: value} for combo in combos for value in factor.values]
    return combos


def cell_label(values: dict[str, Any]) -> str:
    """``board=6, network.hidden=[64,64]``: a cell's factor values in words."""
    return ", ".join(f"{name}={value_text(value)}" for name, value in values.items())


def value_text(value: Any) -> str:
    """A factor value as a label and a budget table's key write it (``6``, ``ppo``, ``[64,64]``)."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else str(value)


def _config_path(name: str, task: str = "") -> tuple[str, ...]:
    """The path in ``config`` a factor sets (``board``: rows; ``algorithm``: none;
    ``learning_rate``: where ``task``'s learner keeps it)."""
    if name == "learning_rate":
        learner = registry.LEARNERS.get(task)
        return tuple((learner.learning_rate_key if learner else name).split("."))
    return tuple(SHORT_FACTORS.get(name, name).split("."))


def _cell_raw(spec: Spec, values: dict[str, Any], unresolved_budget: int | None = None) -> dict[str, Any]:
    """The cell's spec as plain data: the base spec with the factors' values applied and the
    budget resolved (``unresolved_budget`` where it cannot be: validation says why)."""
    raw = _with_values(spec.model_dump(mode="python", exclude={"factors", "tuning"}), values)
    budget = budget_of(spec, values, raw["config"])
    raw["budget"] = unresolved_budget if budget is None else budget
    return raw


def _with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A spec as plain data (a copy) with factor (or tuning knob) values applied, in order."""
    raw = copy.deepcopy(raw)
    config = raw["config"]
    for name, value in values.items():
        if name == "board":
            env = config.setdefault("env", {})
            env["rows"] = env["cols"] = value
        elif name == "algorithm":
            raw["task"] = f"snake-{value}"
            for other in ALGORITHMS:
                if other != value:
                    config.pop(other, None)
        else:
            *tables_path, field = _config_path(name, raw["task"])
            table = config
            for part in tables_path:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    break
            else:
                table[field] = value
    return raw


def with_values(spec: Spec, values: dict[str, Any]) -> Spec:
    """A spec without factors with settings given as factor values (``{"learning_rate":
    0.003}``): what a tuned condition is run with."""
    return validate(_with_values(spec.model_dump(mode="python"), values))


def budget_of(spec: Spec, values: dict[str, Any], config: dict[str, Any]) -> Any:
    """A cell's budget: the spec's number; ``{ per_cell = n }``: n for each cell of its
    board (rows x cols, 10 x 10 unless set); ``{ <factor> = { <value> = n, ... } }``: the
    entry of the cell's value of that factor, a number or ``{ per_cell = n }`` (None where
    missing or malformed; validation says so)."""
    budget = spec.budget
    if isinstance(budget, dict) and set(budget) != {"per_cell"}:
        if len(budget) != 1:
            return None
        (factor, table), = budget.items()
        if not isinstance(table, dict) or factor not in values:
            return None
        budget = table.get(value_text(values[factor]))
    return _per_cell(budget, config) if isinstance(budget, dict) else budget


def _per_cell(rule: dict[str, Any], config: dict[str, Any]) -> int | None:
    """``{ per_cell = n }``: n env steps for each cell of the board the configuration sets."""
    env = config.get("env", {})
    rows, cols, per_cell = env.get("rows", 10), env.get("cols", 10), rule.get("per_cell")
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (rows, cols, per_cell))
    if set(rule) == {"per_cell"} and whole:
        return per_cell * rows * cols
    return None


def _factor_problems(spec: Spec) -> list[tuple[str, str]]:
    """Every problem of a spec with factors: the factors themselves, the budget table, then
    each cell's own (a value a field rejects is reported at ``factors.<name>[index]``; other
    problems of a cell name the cell). One line per problem, repeats across cells merged."""
    found = _flat_factors(spec.factors)
    problems = [(f"factors.{name}", "must be a list of values, e.g. [6, 10]") for name, values in found
                if not isinstance(values, list)]  # fmt: skip
    problems += [(f"factors.{name}", "give at least one value") for name, values in found if values == []]
    for name, values in found:
        if isinstance(values, list):
            repeated = [v for i, v in enumerate(values) if v in values[:i]]
            problems += [(f"factors.{name}", f"lists {v!r} twice") for v in repeated[:1]]
    names = [name for name, _ in found]
    if "algorithm" in names:
        if not spec.task.startswith("snake-"):
            problems.append(("factors.algorithm", f"needs a snake task (got task {spec.task!r})"))
        for name in names:
            if name.split(".")[0] in ALGORITHMS:
                problems.append((f"factors.{name}", "sets one algorithm's table while algorithm is a factor too; "
                                 f"set it in [config.{name.split('.')[0]}] instead"))  # fmt: skip
    if spec.execution.sequential:
        problems.append(("execution.sequential", "a study with factors runs a fixed number of seeds per cell; "
                         "remove sequential (or the factors)"))  # fmt: skip
    if problems:
        return problems
    budget_problems = _budget_problems(spec, names)
    return budget_problems + _cell_problems(spec, budget_known=not budget_problems)


def _budget_problems(spec: Spec, names: list[str]) -> list[tuple[str, str]]:
    budget = spec.budget
    if not isinstance(budget, dict):
        return []
    if set(budget) == {"per_cell"}:
        return _per_cell_problems(budget, "budget")
    if len(budget) != 1 or next(iter(budget)) not in names:
        return [("budget", "must be a number, { per_cell = n }, or a table by one factor such as "
                 f"{{ board = {{ 6 = 200_000, 10 = 600_000 }} }} (factors: {', '.join(names)})")]  # fmt: skip
    (factor, table), = budget.items()
    values = next(factor_.values for factor_ in factors(spec) if factor_.name == factor)
    keys = [value_text(value) for value in values]
    if not isinstance(table, dict):
        return [(f"budget.{factor}", f"must be a table of each value's budget, e.g. {{ {keys[0]} = 600_000 }}")]
    problems = [(f"budget.{factor}", f"has no budget for {key}") for key in keys if key not in table]
    problems += [(f"budget.{factor}.{key}", "is not a value of the factor") for key in table if key not in keys]
    for key, value in table.items():
        if isinstance(value, dict):
            problems += _per_cell_problems(value, f"budget.{factor}.{key}")
        elif not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**12:
            problems.append((f"budget.{factor}.{key}", "must be an integer from 1 to 10^12 or { per_cell = n } "
                             f"(got {value!r})"))  # fmt: skip
    return problems


def _per_cell_problems(rule: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """The problems of a ``{ per_cell = n }`` budget at ``path``."""
    value = rule.get("per_cell")
    if set(rule) != {"per_cell"} or not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return [(f"{path}.per_cell", f"must be a positive integer: env steps per board cell (got {value!r})")]
    return []


def _cell_problems(spec: Spec, budget_known: bool = True) -> list[tuple[str, str]]:
    """Each cell validated as a study of its own, its problems placed on the factor values
    (``budget_known`` false: the budget table's problems are said already, so the cells are
    checked with a budget that fits)."""
    found = factors(spec)
    merged: dict[tuple[str, str], None] = {}
    for values in _combinations(found):
        try:  # a budget the table lacks is said once by _budget_problems: the cell's other problems still count
            raw = _cell_raw(spec, values, unresolved_budget=10**12)
            validate(raw if budget_known else raw | {"budget": 10**12})
        except SpecError as error:
            for path, message in error.problems:
                merged.setdefault(_placed(path, message, values, found), None)
    return list(merged)


def _placed(path: str, message: str, values: dict[str, Any], found: list[Factor]) -> tuple[str, str]:
    """A cell's problem at the factor value that caused it, else at its path in the cell."""
    for factor in found:
        index = factor.values.index(values[factor.name])
        if factor.name == "algorithm":
            paths = {"task"}
        elif factor.name == "board":
            paths = {"config.env.rows", "config.env.cols"}
        elif factor.name == "learning_rate":
            paths = {"config." + learner.learning_rate_key for learner in registry.LEARNERS.values()}
        else:
            paths = {"config." + ".".join(_config_path(factor.name))}
        if path in paths:
            if message.startswith("unknown key"):
                return f"factors.{factor.name}", "names no field of the task's configuration; check its spelling"
            return f"factors.{factor.name}[{index}]", message
    return path, f"in cell {cell_label(values)}: {message}"


# ----------------------------------------------------------------------------- tuning

NOT_TUNABLE = ("board", "algorithm", "levels")  # factors, not settings of a learner


def knobs(spec: Spec) -> list[Factor]:
    """The settings a tuned study tunes, with their candidates (nested tables flattened);
    none without ``[tuning]``."""
    if spec.tuning is None:
        return []
    return [Factor(name, tuple(values)) for name, values in _flat_factors(spec.tuning.candidates)]


def candidates(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the tuning candidates (the last knob varying fastest)."""
    return _combinations(knobs(spec))


def tuning_study(spec: Spec) -> Spec:
    """The tuning runs of a tuned study as a study of their own: the study's factors, then
    its knobs as factors (tuning cell ``e * K + k`` is cell ``e`` at candidate ``k`` of
    :func:`candidates`' ``K``), every condition on the tuning seeds, without ``[tuning]``."""
    assert spec.tuning is not None
    raw = spec.model_dump(mode="python", exclude={"tuning"})
    tuning = spec.tuning
    knob_factors = dict(_flat_factors(tuning.candidates))
    raw |= {"name": f"{spec.name[:93]}-tuning", "seeds": tuning.seeds, "first_seed": tuning.first_seed,
            "factors": spec.factors | knob_factors}  # fmt: skip
    return validate(raw, f"{spec.name} tuning")


def _tuning_problems(spec: Spec, checked: bool) -> list[tuple[str, str]]:
    """The problems of ``[tuning]``: its knobs, its seeds, and (``checked``: the rest of the
    spec is valid) every tuning cell's own, placed on the candidates that cause them."""
    assert spec.tuning is not None
    tuning, where = spec.tuning, "tuning.candidates"
    found = _flat_factors(tuning.candidates)
    if not found:
        return [(where, "give at least one setting and its candidates, e.g. learning_rate = [3e-4, 1e-3, 3e-3]")]
    factor_names = {name for name, _ in _flat_factors(spec.factors)}
    problems = []
    for name, values in found:
        if name in NOT_TUNABLE or name in factor_names:
            problems.append((f"{where}.{name}", "is a factor of the study, not a setting to tune; "
                             "tune a setting of the learner, such as learning_rate"))  # fmt: skip
        elif not isinstance(values, list):
            problems.append((f"{where}.{name}", "must be a list of candidate values, e.g. [3e-4, 1e-3, 3e-3]"))
        elif len(values) < 2:
            problems.append((f"{where}.{name}", f"gives {len(values)} candidate; tuning chooses among two or more "
                             "(a single value is a setting: put it in [config])"))  # fmt: skip
    if spec.execution.sequential:
        problems.append(("tuning", "a tuned study runs a fixed number of evaluation seeds; "
                         "remove execution.sequential (or [tuning])"))  # fmt: skip
    evaluated = (spec.first_seed, spec.first_seed + max(spec.looks()) - 1)
    tuned = (tuning.first_seed, tuning.first_seed + tuning.seeds - 1)
    if tuned[0] <= evaluated[1] and evaluated[0] <= tuned[1]:
        problems.append(("tuning.first_seed", f"the tuning seeds {tuned[0]} to {tuned[1]} overlap the evaluation "
                         f"seeds {evaluated[0]} to {evaluated[1]}: a condition is compared on seeds it was not "
                         f"tuned on; e.g. first_seed = {evaluated[1] + 1}"))  # fmt: skip
    if problems or not checked:
        return problems
    try:
        tuning_study(spec)
    except SpecError as error:
        knob_names = {name for name, _ in found}
        return [(_knob_path(path, knob_names), message) for path, message in error.problems]
    return []


def _knob_path(path: str, knob_names: set[str]) -> str:
    """A problem of the tuning study at a knob's factor path, as the path of its candidates."""
    name = re.sub(r"\[\d+\]$", "", path.removeprefix("factors."))
    return "tuning.candidates." + path.removeprefix("factors.") if path.startswith("factors.") and name in knob_names \
        else path


def quick(spec: Spec) -> Spec:
    """The same study, small: 3 seeds, 1/12 of the budget and more frequent evaluation
    (about a minute for the default study)."""
    evaluation = spec.evaluation.model_copy(update={"every_updates": max(1, spec.evaluation.every_updates // 5)})
    seeds = min(spec.seeds, 3)
    looks = len(spec.looks())
    budget = _scaled(spec.budget, 12)  # a table by factor, or per board cell: every entry
    execution = spec.execution.model_copy(update={"max_seeds": seeds * looks if looks > 1 else None})
    smaller = {
        "name": f"{spec.name}-quick",
        "tuning": spec.tuning and spec.tuning.model_copy(update={"seeds": min(spec.tuning.seeds, 2)}),
        "seeds": seeds,
        "budget": budget,
        "evaluation": evaluation,
        "execution": execution if spec.execution.sequential else spec.execution,
    }
    return spec.model_copy(update=smaller)


def _scaled(budget: Any, divisor: int) -> Any:
    """A budget (a number, or a table of them) with every number divided (at least 1)."""
    if isinstance(budget, dict):
        return {key: _scaled(value, divisor) for key, value in budget.items()}
    return max(1, budget // divisor) if isinstance(budget, int) and not isinstance(budget, bool) else budget


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
        built = learner_of(spec).build(spec.config, request)
    except ConfigProblemsError as error:
        raise SpecError([(_spec_path(path), message) for path, message in error.problems]) from None
    try:  # a learner without schedules (or a stationary world) never has a phase change to act at
        regs.check_world(regularizer, getattr(getattr(built.config, "schedule", None), "changing", False))
    except ConfigError as error:
        raise SpecError([("regularizers.period", error.problem)]) from None
    return built


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


_REGULARIZER_FIELDS = {  # ConfigError names -> spec keys
    "reg": "kind", "reg_network": "network", "reg_period": "period", "reg_perturb": "perturb",
}  # fmt: skip


def to_regularizer(entry: RegularizerSpec) -> regs.Regularizer:
    """The static regularizer of a spec entry."""
    return regs.Regularizer(
        kind=entry.kind,
        network=entry.network,
        include_biases=entry.include_biases,
        include_norm_scales=entry.include_norm_scales,
        l1_ratio=entry.l1_ratio,
        period=entry.period,
        perturb=entry.perturb,
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
    if regularizer.period != 1:
        qualifiers.append(f"period={regularizer.period or 'phase'}")  # 0: at each phase change
    if regularizer.perturb != 1.0:
        qualifiers.append(f"perturb={regularizer.perturb:g}")
    suffix = f"[{','.join(qualifiers)}]" if qualifiers else ""
    return f"{regularizer.kind}{suffix}@{strength:g}"


# ------------------------------------------------------------------ messages and diffs


def describe_validation_error(error: pydantic.ValidationError, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """One ``(toml_path, message)`` per problem pydantic found in a spec (a threshold that is
    neither "auto" nor a list of finite numbers gets one message, not one per member of the
    union or per list element)."""
    merged: dict[str, str] = {}
    for path, message in tables.describe_validation_error(error, prefix):
        if path == "budget" and message.startswith("must be a table"):
            continue  # a budget that is not a number: the number's problem says it (a table is for factors)
        path = "budget" if path == "budget.constrained-int" else path
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
    if spec.factors:  # compared as written: every cell follows from it
        return data
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
