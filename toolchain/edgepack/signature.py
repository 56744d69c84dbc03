"""What goes in and out of a model: TensorSpec and Signature.

These are plain dataclasses importing nothing but the standard library, because the runtime
adapters (which run on the board, next to only numpy and a runtime) describe their sessions with
them. They serialise to and from plain dicts for reports and manifests.

A dimension is an ``int`` when static and a ``str`` when dynamic: the name the format gives it
("batch", "N", "unk__12") or ``"?"`` when the format gives none. Keeping the name lets a report
say *which* dynamic dimension a target had to fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

Dim = int | str

# Layouts we know how to name; "" means "not an image-like tensor / not known".
LAYOUTS = ("NCHW", "NHWC", "NC", "NCW", "NWC", "")


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = (q - zero_point) * scale (per-tensor)."""

    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Normalization:
    """The preprocessing a model expects of raw image values, so an app cannot get it wrong.

    ``x_model = (x_raw * scale - mean) / std`` per channel, with channels in ``color_order``.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0
    color_order: str = ""  # "RGB", "BGR", "GRAY" or "" when not an image

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale,
                "color_order": self.color_order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(mean=tuple(float(v) for v in d.get("mean", (0.0,))),
                   std=tuple(float(v) for v in d.get("std", (1.0,))),
                   scale=float(d.get("scale", 1.0)), color_order=str(d.get("color_order", "")))


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", "int64", ...
    layout: str = ""
    quantization: Quantization | None = None
    normalization: Normalization | None = None
    #: what an output means when the user said so (project file, ``--metric``): "detector",
    #: "classifier", ... (validate/roles.py); "" when not declared
    role: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return any(isinstance(d, str) for d in self.shape)

    def shape_str(self) -> str:
        return "x".join(str(d) for d in self.shape) if self.shape else "scalar"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": self.quantization.to_dict() if self.quantization else None,
            "normalization": self.normalization.to_dict() if self.normalization else None,
            **({"role": self.role} if self.role else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        q = d.get("quantization")
        n = d.get("normalization")
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            layout=d.get("layout", ""),
            quantization=Quantization(float(q["scale"]), int(q["zero_point"])) if q else None,
            normalization=Normalization.from_dict(n) if n else None,
            role=str(d.get("role", "")),
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default_factory=tuple)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def with_normalization(self, norm: Normalization | None) -> Signature:
        """The same signature with ``norm`` recorded on every image-like (rank-4) input."""
        if norm is None:
            return self
        return replace(self, inputs=tuple(
            replace(s, normalization=norm) if s.rank == 4 else s for s in self.inputs))

    @property
    def output_roles(self) -> list[str]:
        """Each output's declared role, "" where none was declared."""
        return [s.role for s in self.outputs]

    def with_roles(self, roles: dict[str, str]) -> Signature:
        """The same signature with ``roles`` (by output name) declared on its outputs."""
        if not roles:
            return self
        return replace(self, outputs=tuple(replace(s, role=roles.get(s.name, s.role))
                                           for s in self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(inputs=tuple(TensorSpec.from_dict(s) for s in d["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(s) for s in d["outputs"]))


def guess_layout(shape: tuple[Dim, ...], channels_first: bool, dtype: str | None = None) -> str:
    """Name the layout of a tensor from its shape and the framework's convention.

    Frameworks do not store layouts; this records the convention of the framework that produced
    the tensor (Keras/TFLite: channels last; ONNX from PyTorch: channels first) for rank 3 and 4.
    Only image- or signal-like tensors have one: an integer tensor (token ids, a mask, a sample
    rate) and a tensor whose batch is not its first axis (an RNN state) get none. ``dtype``
    None (or "?"): not known, judged by the shape alone.
    """
    if dtype not in (None, "", "?") and not dtype.startswith(("float", "bfloat")):
        return ""
    if batch_axis(shape) != 0:
        return ""
    if len(shape) == 4:
        return "NCHW" if channels_first else "NHWC"
    if len(shape) == 3:
        return "NCW" if channels_first else "NWC"
    if len(shape) == 2:
        return "NC"
    return ""


#: dimension names that say "this axis is the batch" (compared in lower case)
BATCH_NAMES = ("batch", "batch_size", "batchsize", "n", "b", "bs", "num_samples")


def batch_axis(shape: tuple[Dim, ...]) -> int | None:
    """The axis a model stacks samples on, as its shape shows it; None for a scalar.

    A dimension named like a batch wins; else axis 0 when it is dynamic or 1; else the first
    dynamic axis, then the first axis of size 1 (an RNN state ``[layers, batch, hidden]`` is
    ``[2, N, 128]`` or, exported for one sample, ``[2, 1, 128]``); else axis 0. Data files and
    projects may declare it instead (``data.dataset``).
    """
    if not shape:
        return None
    for i, d in enumerate(shape):
        if isinstance(d, str) and d.lower() in BATCH_NAMES:
            return i
    if isinstance(shape[0], str) or shape[0] == 1:
        return 0
    for wanted in (str, 1):
        for i, d in enumerate(shape):
            if (isinstance(d, str) if wanted is str else d == 1):
                return i
    return 0


#: a dynamic dimension's name longer than this is not a name a person gave it
MAX_DIM_NAME = 48


def readable_dim(name: str, input_dims: tuple[str, ...] = ()) -> str:
    """A dynamic dimension's name fit to print: an exporter's symbolic expression (Ultralytics'
    300-character ``(floor(floor(height/2 - 1/2)/2) + 1)*...``) becomes ``f(height,width)``,
    named by the input dimensions it is computed from, or ``?`` when it names none; a name
    (``batch``, ``unk__12``, ``p2o.DynamicDimension.0``) stays as it is."""
    if len(name) <= MAX_DIM_NAME and all(c.isalnum() or c in "_.-:" for c in name):
        return name
    used = [d for d in input_dims if _mentions(name, d)]
    return f"f({','.join(used)})" if used else "?"


def _mentions(expression: str, word: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(word)}(?![\w.])", expression) is not None
