"""Typed, validated config sections for the simulator, built from plain TOML data.

A tiny schema engine over frozen dataclasses: every field's type annotation says what the TOML
value must be, unknown keys are refused, and every error names the full key
(``devices[2].exam_decay``), as the run config does.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from watchnext.config import ConfigError

_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def build(cls: type, raw: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from ``raw`` (a dict); ConfigError names the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key "
                          f"(allowed: {', '.join(sorted(fields))})")
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    return cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, key)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    return scalar(value, annotation, key)


def scalar(value: Any, kind: type, key: str) -> Any:
    """``value`` as ``kind`` (an int is accepted as a float; a bool is never a number)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind is not bool and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {_SCALARS.get(kind, kind.__name__)}, "
                          f"got {type(value).__name__} {value!r}")
    return value


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def positive(value: float, key: str, zero_ok: bool = False) -> None:
    check(value > 0 or (zero_ok and value == 0), key, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")


def unit(value: float, key: str, low_open: bool = False, high_open: bool = False) -> None:
    """``value`` in [0, 1], with either end optionally excluded."""
    ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    check(ok, key, f"must be in {lo}0, 1{hi}, got {value}")


def one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    check(value in allowed, key, f"{value!r} is not one of {', '.join(allowed)}")
