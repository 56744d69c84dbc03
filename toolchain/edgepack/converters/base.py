"""A converter edge: one hop from one format to another, by one tool."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.profiles import Precision, Quantization
from ..data.dataset import Dataset
from ..errors import ConversionError, first_line
from ..signature import Signature


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
    #: fixed input shapes by input name (static-shape targets, --input-shape); None: as is
    input_shapes: dict[str, tuple[int, ...]] | None = None
    #: the source's signature, for edges that must state shapes the file does not carry
    source_signature: Signature | None = None
    #: layers (node names) a quantizer must leave in float: the accuracy fallback's choice
    keep_float: tuple[str, ...] = ()
    #: the target CPU's instruction-set features (``isa`` in targets/*.yaml): what its int8
    #: kernels can do, e.g. whether NNCF must keep sums clear of int16 saturation; () unknown
    isa: tuple[str, ...] = ()
    #: representative inputs (the hop-check samples) for passes that inspect activations
    samples: Dataset | None = None
    #: a folder that lives as long as the build: what a quantizer may reuse across the
    #: accuracy fallback's attempts (ONNX Runtime's calibrated ranges); None: nothing kept
    scratch: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the hop wants the report to say

    def scratch_file(self, kind: str, model: Path, samples: Dataset | None,
                     suffix: str, **settings: Any) -> Path | None:
        """Where this build keeps what a quantizer computed from ``model`` on ``samples`` (its
        calibration) for the accuracy fallback's next attempts, keyed by their bytes and the
        ``settings``; None without a scratch folder. The file may not exist yet."""
        if self.scratch is None:
            return None
        from ..cache.keys import build_key, dataset_digest, file_digest

        key = build_key({"model": file_digest(model), **settings,
                         "samples": dataset_digest(samples) if samples is not None else None})
        folder = self.scratch / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key[:32]}{suffix}"


class Edge:
    """Converts ``src`` to ``dst``; ``cost`` orders paths (roughly seconds and risk)."""

    src: str = ""
    dst: str = ""
    tool: str = ""
    cost: float = 1.0
    precisions: tuple[Precision, ...] = ("fp32",)
    #: the hop turns channels-first inputs/outputs channels-last (onnx2tf does)
    channels_last: bool = False

    def available(self) -> bool:
        """Whether the tool is installed here; the planner skips edges that are not."""
        return True

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
    re.compile(r"'(tf\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op"),  # TFLite
    re.compile(r"[Uu]nsupported (?:op|operator|OP)s?[:= ]+'([\w.:]+)'"),  # quoted names
]


def converter_failed(what: str, exc: BaseException, log: str, path: Path) -> ConversionError:
    """The error for a converter that raised: names the unsupported operators when the tool's
    message or log says which, else quotes the tool's first line."""
    ops = unsupported_ops(f"{exc}\n{log}")
    detail = f"unsupported operator(s) {', '.join(ops)}" if ops else first_line(exc)
    return ConversionError(f"{what} failed: {detail}", path=path)


def unsupported_ops(text: str) -> list[str]:
    """Operator names a converter reported as unsupported, in order of first mention."""
    found: list[str] = []
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(text):
            for name in re.findall(r"[A-Za-z_][\w.:]*", match.group(1)):
                if name not in found and not name.isdigit():
                    found.append(name)
    return found
