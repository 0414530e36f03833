"""Dataclasses from TOML-like dicts, rejecting bad values with a message naming the field."""
from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with where it is (file, field)."""


def join(where: str, key: str) -> str:
    """`file: field.sub` — a path of fields after the file name."""
    return f"{where}{key}" if where.endswith(": ") else f"{where}.{key}"


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if is_dataclass(hint):
        return from_dict(hint, value, where)
    return value


def from_dict(cls: type[T], data: Any, where: str, ignore: tuple[str, ...] = ()) -> T:
    """Build dataclass `cls` from `data`; unknown keys and ill-typed values raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known - set(ignore))
    if unknown:
        raise ConfigError(f"{join(where, unknown[0])}: unknown field; known fields: {', '.join(sorted(known))}")
    values = {k: _check(v, hints[k], join(where, k)) for k, v in data.items() if k in known}
    try:
        obj = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check = getattr(obj, "validate", None)
    if check:
        try:
            check(where.rstrip(": "))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return obj
