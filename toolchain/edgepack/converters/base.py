"""A converter edge: one hop from one format to another, by one tool."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from ..compress.context import ConvertContext
from ..config.profiles import Precision
from ..errors import ConversionError
from .provision import ToolSet
from .root_cause import root_cause


class Edge:
    """Converts ``src`` to ``dst``; ``cost`` orders paths (roughly seconds and risk)."""

    src: str = ""
    dst: str = ""
    tool: str = ""
    cost: float = 1.0
    precisions: tuple[Precision, ...] = ("fp32",)
    #: the hop turns channels-first inputs/outputs channels-last (onnx2tf does)
    channels_last: bool = False
    #: the modules the tool imports beyond edgepack's core (``edgepack doctor`` names them)
    requires: tuple[str, ...] = ()
    #: tools that cannot share edgepack's pins, installed on first use (converters/provision.py)
    tools: ToolSet | None = None

    def available(self) -> bool:
        """Whether the tool is installed here; the planner skips edges that are not."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def tool_version(self) -> str:
        raise NotImplementedError

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        """Write the converted model under ``ctx.workdir``; return its path."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "tool": self.tool}


# How converters name the operators they cannot handle, in their error text and logs.
_OP_PATTERNS = [
    re.compile(r"Unsupported ops: Counter\(\{([^}]*)\}\)"),  # tf2onnx
    re.compile(r"No conversion rule found for operations?: ([^\n]+)"),  # OpenVINO frontends
    re.compile(r"No translator found for ([\w.:]+) node"),  # OpenVINO's TFLite frontend
    re.compile(r"'(tf\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op"),  # TFLite
    re.compile(r"[Uu]nsupported (?:op|operator|OP)s?[:= ]+'([\w.:]+)'"),  # quoted names
]


def converter_failed(what: str, exc: BaseException, log: str, path: Path) -> ConversionError:
    """The error for a converter that raised: names the unsupported operators when the tool's
    message or log says which, else the root cause of its exception in one line."""
    return ConversionError(f"{what} failed: {failure_detail(exc, log)}", path=path)


def failure_detail(exc: BaseException, log: str) -> str:
    """The unsupported operators when the tool's message or log names them, else the root
    cause of its exception, in one line."""
    ops = unsupported_ops(f"{exc}\n{log}")
    return f"unsupported operator(s) {', '.join(ops)}" if ops else root_cause(exc)


def unsupported_ops(text: str) -> list[str]:
    """Operator names a converter reported as unsupported, in order of first mention."""
    found: list[str] = []
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(text):
            for name in re.findall(r"[A-Za-z_][\w.:]*", match.group(1)):
                if name not in found and not name.isdigit():
                    found.append(name)
    return found
