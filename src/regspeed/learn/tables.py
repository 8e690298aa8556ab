"""Configurations from TOML-like tables: validated by pydantic into the learners' frozen
dataclasses, every problem reported at once with the path of its field.

A learner's *tables* are plain data as TOML parses them (``{"env": {"rows": 6}, "ppo":
{"learning_rate": 1e-3}}``); a study's spec holds them under ``config``, and the
``regspeed train`` command makes the same tables from its flags. Problem paths are relative
to the tables (``env.rows``); callers prefix or translate them (``config.env.rows`` in a
spec, ``--rows`` on the command line).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import typing
from typing import Any

import pydantic

from regspeed.errors import ConfigError

Problems = list[tuple[str, str]]
Tables = dict[str, Any]


def plain(value: Any) -> Any:
    """Dataclasses (nested anywhere) and tuples as JSON would give them back: dicts, lists, numbers."""
    return json.loads(json.dumps(value, default=dataclasses.asdict))


def unknown_keys(table: dict[str, Any], kind: type, path: str) -> Problems:
    """Keys of a table that are not fields of the dataclass it configures."""
    known = {field.name for field in dataclasses.fields(kind)}
    prefix = f"{path}." if path else ""
    return [(f"{prefix}{key}", "unknown key; remove it or check its spelling") for key in table if key not in known]


def validated(kind: type, data: dict[str, Any], path: tuple[Any, ...] = ()) -> tuple[Any, Problems]:
    """``kind`` (a dataclass) validated from ``data``: ``(instance, [])`` or ``(None, problems)``.

    Types are checked strictly first (:func:`wrong_types`), so a value is never silently
    coerced (``"6"`` or ``true`` for an integer); then the dataclass is built, which runs its
    own checks."""
    problems = wrong_types(kind, data, path)
    if problems:
        return None, problems
    try:
        return pydantic.TypeAdapter(kind).validate_python(data), []
    except pydantic.ValidationError as error:
        return None, describe_validation_error(error, path)


def wrong_types(kind: type, data: dict[str, Any], path: tuple[Any, ...] = ()) -> Problems:
    """The values of ``data`` whose type is not their field's, by pydantic's strict rules: a
    bool is not an integer and a string is not a number, but an integer may stand for a float
    and a list (all TOML has) for a tuple. Nested dataclasses given as tables are checked the
    same way; keys that are not fields are left to the caller."""
    problems: Problems = []
    for name, field_type in _field_types(kind).items():
        if name not in data:
            continue
        value, where = data[name], (*path, name)
        if dataclasses.is_dataclass(field_type):
            if isinstance(value, dict):
                problems += wrong_types(field_type, value, where)
            continue  # an instance, or something else that building the dataclass reports
        try:
            _strict_adapter(field_type).validate_python(_list_as_tuple(field_type, value))
        except pydantic.ValidationError as error:
            problems += describe_validation_error(error, where)
    return problems


@functools.cache
def _field_types(kind: type) -> dict[str, Any]:
    """A dataclass's fields and their types (annotations resolved)."""
    hints = typing.get_type_hints(kind)
    return {field.name: hints[field.name] for field in dataclasses.fields(kind)}


@functools.cache
def _strict_adapter(field_type: Any) -> pydantic.TypeAdapter:
    """Strict validation of one field's type (made once per type)."""
    return pydantic.TypeAdapter(field_type, config=pydantic.ConfigDict(strict=True))


def _list_as_tuple(field_type: Any, value: Any) -> Any:
    """A list given for a tuple field, as the tuple it stands for (strict validation refuses lists)."""
    return tuple(value) if typing.get_origin(field_type) is tuple and isinstance(value, list) else value


def learning_rate(table: dict[str, Any], default: float, path: str) -> tuple[float, Problems]:
    """The ``learning_rate`` key of a table (removed from it), or ``default``."""
    value = table.pop("learning_rate", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        return default, [(path, f"must be a number > 0 (got {value!r})")]
    return float(value), []


def set_by_caller(table: dict[str, Any], fields: tuple[str, ...], path: str) -> Problems:
    """Keys of ``table`` that the caller sets (budget, evaluation, regularizer): removed, each a problem."""
    prefix = f"{path}." if path else ""
    found = sorted(set(table) & set(fields))
    for key in found:
        table.pop(key)
    return [(f"{prefix}{key}", "set by the study or command (budget, evaluation, regularizer)") for key in found]


# ------------------------------------------------------------------ pydantic messages

_MESSAGES = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "unexpected_keyword_argument": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}

_TYPES = {  # strict validation's type errors, in TOML's words
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "dataclass_type": "must be a table",
}

_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
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
    elif kind == "finite_number":
        message = "must be a finite number"
    elif kind in _TYPES:
        message = _TYPES[kind]
    elif kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        message = f"must be {symbol} {context[key]}"
    else:
        message = detail["msg"]
    given = detail.get("input")
    return message if isinstance(given, dict) else f"{message} (got {given!r})"


def describe_validation_error(error: pydantic.ValidationError, prefix: tuple[Any, ...] = ()) -> Problems:
    """One ``(toml_path, message)`` per problem pydantic found (exact duplicates dropped)."""
    problems: Problems = []
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
    return problems
