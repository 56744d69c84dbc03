"""The interface every model format implements, and what `inspect` reports about a file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..signature import Signature


@dataclass
class ModelInfo:
    """Everything `edgepack inspect` tells about a model file; serialisable for --json."""

    path: str
    format: str
    signature: Signature
    parameters: int
    size_bytes: int
    operators: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)
    #: the quantization the file comes with (formats/prequantized.py), None for a float file
    quantization: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "inputs": [s.to_dict() for s in self.signature.inputs],
            "outputs": [s.to_dict() for s in self.signature.outputs],
            "operators": dict(sorted(self.operators.items(), key=lambda kv: (-kv[1], kv[0]))),
            "details": self.details,
        }


class Format:
    """A model format: how to recognise its files and read what they declare.

    Subclasses import their framework inside methods, never at module level, so that
    `edgepack --help` and format detection stay instant.
    """

    name: str = ""
    description: str = ""
    suffixes: tuple[str, ...] = ()
    #: the runtime (in edgepack.runtimes) that executes this format, if any
    runtime: str | None = None

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def inspect(self, path: Path) -> ModelInfo:
        raise NotImplementedError

    def checked_note(self, path: Path) -> str | None:
        """For formats whose files can run code (see trust.py): raises the exit-5 refusal
        when ``path`` would and model code is not trusted; else None, or, when the file was
        checked and loads untrusted, a note saying so for the report."""
        return None

    def read_signature(self, path: Path) -> Signature:
        return self.inspect(path).signature


def file_size(path: Path) -> int:
    """Bytes on disk of a model file or a model folder (SavedModel), with sidecars (.bin)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def code_check(reason: str | None) -> str:
    """What ``inspect`` says of a file that can carry code (``details.code_check``): whether
    it loads without ``--trust-model-code``, and if not, why."""
    if reason is None:
        return "only computation: loads without --trust-model-code"
    return f"needs --trust-model-code: {reason}"


def histogram(names: list[str]) -> dict[str, int]:
    return dict(Counter(names))
