"""Read a build's report.json back into a Report.

``compare`` (and anything else that works from a finished build) needs the same typed objects the
build had in memory, not a dict: the renderings take a Report. The report's dataclasses are
rebuilt from their own type hints, so a field added to Artifact or LatencyStats is read back
without touching this module; the keys ``to_dict`` derives (``status``, ``conversion_path``)
are dropped, and a key no dataclass declares is an error rather than silently lost data.
"""

from __future__ import annotations

import json
import types
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from ..errors import UsageError
from .model import REPORT_SCHEMA_VERSION, Artifact, Report

#: keys ``Report.to_dict`` adds that are computed from the fields, not stored in them
_DERIVED: dict[type, frozenset[str]] = {Report: frozenset({"status"}),
                                        Artifact: frozenset({"conversion_path"})}


def load_report(path: str | Path) -> Report:
    """The Report in ``path``: a build folder, or its report.json."""
    p = Path(path)
    file = p / "report.json" if p.is_dir() else p
    if not file.is_file():
        raise UsageError("no report.json here: not an edgepack build folder", path=p,
                         hint="give the folder `edgepack build` wrote")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"not a readable report ({exc})", path=file) from None
    return report_from_dict(data, source=file)


def report_from_dict(data: Any, source: str | Path | None = None) -> Report:
    """The inverse of ``Report.to_dict``; UsageError naming the field when ``data`` is not one."""
    if not isinstance(data, dict):
        raise UsageError("not an edgepack report (expected a JSON object)", path=source)
    version = data.get("schema_version")
    if isinstance(version, int) and version > REPORT_SCHEMA_VERSION:
        raise UsageError(f"written by a newer edgepack (report schema {version}; this one "
                         f"reads up to {REPORT_SCHEMA_VERSION})", path=source,
                         hint="upgrade edgepack")
    try:
        return _build(Report, data, "report")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"not a valid edgepack report: {exc}", path=source) from None


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    declared = {f.name for f in fields(cls)}
    unknown = set(data) - declared - _DERIVED.get(cls, frozenset())
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}")
    missing = [f.name for f in fields(cls) if f.name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    return cls(**{name: _value(hints[name], data[name], f"{where}.{name}")
                  for name in declared if name in data})


def _value(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in get_args(tp) if a is not type(None)]
        return _value(options[0], value, where) if len(options) == 1 else value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = get_args(tp)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if is_dataclass(tp):
        return _build(tp, value, where)
    return value
