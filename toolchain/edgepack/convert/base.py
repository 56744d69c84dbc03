"""A converter edge: one hop from one format to another, by one tool."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..profiles import Precision, Quantization


@dataclass
class ConvertContext:
    """What a hop needs besides its input file.

    Only the last hop of a path produces the deliverable's precision; earlier hops are fp32.
    """

    workdir: Path
    stem: str  # file name stem for outputs, e.g. the model's name
    precision: Precision = "fp32"
    quantization: Quantization | None = None
    calibration: Dataset | None = None
    notes: list[str] = field(default_factory=list)  # what the hop wants the report to say


class Edge:
    """Converts ``src`` to ``dst``; ``cost`` orders paths (roughly seconds and risk)."""

    src: str = ""
    dst: str = ""
    tool: str = ""
    cost: float = 1.0
    precisions: tuple[Precision, ...] = ("fp32",)

    def tool_version(self) -> str:
        raise NotImplementedError

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        """Write the converted model under ``ctx.workdir``; return its path."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "tool": self.tool}
