"""Dataclasses to JSON objects and back, by their own fields and type hints.

report.json is written from and read back into the same typed objects the build had in memory
without a reader per class: a field added to a dataclass is read back without touching this
module, and a key no dataclass declares is an error rather than silently lost data. A class
whose JSON keys are not its fields says so with ``OWN_JSON = True`` and brings its own
``to_dict``/``from_dict`` (report/parts.py).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data: what ``dataclasses.asdict`` gives, except that a class
    with ``OWN_JSON`` writes itself."""
    if is_dataclass(value) and not isinstance(value, type):
        if getattr(value, "OWN_JSON", False):
            return value.to_dict()
        return {f.name: encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(encode(v) for v in value)
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def build(cls: type, data: Any, where: str, derived: Mapping[type, frozenset[str]]) -> Any:
    """``cls`` from the JSON object ``data``; ValueError naming ``where`` when it does not fit.
    ``derived`` names, per class, keys that are computed on writing and dropped on reading."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    declared = {f.name for f in fields(cls)}
    unknown = set(data) - declared - derived.get(cls, frozenset())
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}")
    missing = [f.name for f in fields(cls) if f.name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    return cls(**{name: _value(hints[name], data[name], f"{where}.{name}", derived)
                  for name in declared if name in data})


def _value(tp: Any, value: Any, where: str, derived: Mapping[type, frozenset[str]]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in get_args(tp) if a is not type(None)]
        return _value(options[0], value, where, derived) if len(options) == 1 else value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = get_args(tp)
        return [_value(item, v, f"{where}[{i}]", derived) for i, v in enumerate(value)]
    if is_dataclass(tp) and getattr(tp, "OWN_JSON", False):
        try:
            return tp.from_dict(value)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    if is_dataclass(tp):
        return build(tp, value, where, derived)
    return value
