"""TFLite / LiteRT flatbuffers, read directly from the schema without building an interpreter.

Reading the flatbuffer (with the schema module LiteRT ships) gives what an interpreter hides:
operator versions, which decide whether an older on-device runtime can run the file, and buffer
bounds, so a corrupt file is refused here rather than crashing a runtime later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..signature import Quantization, Signature, TensorSpec, guess_layout
from .base import Format, ModelInfo, histogram
from .metadata import annotate, sidecar_path

_IDENTIFIER = b"TFL3"


class TFLiteFormat(Format):
    name = "tflite"
    description = "TFLite / LiteRT flatbuffer (.tflite)"
    suffixes = (".tflite",)
    runtime = "litert"

    def inspect(self, path: Path) -> ModelInfo:
        data = path.read_bytes()
        try:
            return _read(path, data)
        except ModelError:
            raise
        except Exception as exc:  # flatbuffers raises struct/index errors on garbage
            raise ModelError(f"corrupt TFLite flatbuffer ({type(exc).__name__})", path=path,
                             hint="the file may be truncated; re-export it") from exc


def _read(path: Path, data: bytes) -> ModelInfo:
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ModelError("not a TFLite file (missing the 'TFL3' identifier)", path=path,
                         hint="the file may be truncated or not a .tflite model")
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError("TFLite file has no subgraph", path=path)
    inputs, outputs, signature_key = _inputs_outputs(model, path)
    ops, versions = _operators(model, path)
    params = _parameters(model, len(data), path)
    details: dict[str, Any] = {
        "schema_version": int(model.Version()),
        "metadata": _sidecar(path),
        "signature_key": signature_key,
        "operator_versions": {k: sorted(v) for k, v in sorted(versions.items())},
    }
    return ModelInfo(path=str(path), format="tflite",
                     signature=annotate(Signature(tuple(inputs), tuple(outputs)),
                                        details["metadata"]),
                     parameters=params, size_bytes=len(data), operators=histogram(ops),
                     details=details)


def _enum_names(enum: type) -> dict[int, str]:
    """A schema enum's names by value."""
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _inputs_outputs(model: Any, path: Path) -> tuple[list[TensorSpec], list[TensorSpec], str]:
    """(inputs, outputs, signature key) of the first subgraph. The serving signature's names
    are preferred: they are the SavedModel's names, so data keyed by the source's input names
    finds its tensor here too."""
    from ai_edge_litert import schema_py_generated as schema

    graph = model.Subgraphs(0)
    type_names = {v: k.lower() for v, k in _enum_names(schema.TensorType).items()}

    def spec(index: int, name: str | None = None) -> TensorSpec:
        return _tensor_spec(graph, index, name, type_names, path)

    if model.SignatureDefsLength() == 0:
        return ([spec(int(i)) for i in graph.InputsAsNumpy()],
                [spec(int(i)) for i in graph.OutputsAsNumpy()], "")
    sd = model.SignatureDefs(0)
    inputs = [spec(sd.Inputs(i).TensorIndex(), sd.Inputs(i).Name().decode())
              for i in range(sd.InputsLength())]
    outputs = [spec(sd.Outputs(i).TensorIndex(), sd.Outputs(i).Name().decode())
               for i in range(sd.OutputsLength())]
    return inputs, outputs, sd.SignatureKey().decode() if sd.SignatureKey() else ""


def _tensor_spec(graph: Any, index: int, name: str | None, type_names: dict[int, str],
                 path: Path) -> TensorSpec:
    """The spec of tensor ``index`` of ``graph``: dynamic dims named, per-tensor quantization."""
    if not 0 <= index < graph.TensorsLength():
        raise ModelError(f"tensor index {index} out of range", path=path)
    t = graph.Tensors(index)
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    sig = [int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else shape
    dims = tuple(("batch" if i == 0 else "?") if d < 0 else d for i, d in enumerate(sig))
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() == 1 and q.ZeroPointLength() == 1:
        quant = Quantization(float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0]))
    return TensorSpec(name=name or t.Name().decode("utf-8", "replace"), shape=dims,
                      dtype=type_names.get(t.Type(), f"type{t.Type()}"),
                      layout=guess_layout(dims, channels_first=False), quantization=quant)


def _operators(model: Any, path: Path) -> tuple[list[str], dict[str, set[int]]]:
    """Every operator's name, in every subgraph, and the versions each name appears with."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = _enum_names(schema.BuiltinOperator)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = (oc.CustomCode() or b"CUSTOM").decode() if code == schema.BuiltinOperator.CUSTOM \
            else op_names.get(code, f"BUILTIN_{code}")
        codes.append((name, oc.Version()))
    ops: list[str] = []
    versions: dict[str, set[int]] = {}
    for sg_index in range(model.SubgraphsLength()):
        sg = model.Subgraphs(sg_index)
        for i in range(sg.OperatorsLength()):
            idx = sg.Operators(i).OpcodeIndex()
            if idx >= len(codes):
                raise ModelError(f"operator refers to opcode {idx} of {len(codes)}", path=path)
            name, version = codes[idx]
            ops.append(name)
            versions.setdefault(name, set()).add(version)
    return ops, versions


def _parameters(model: Any, size: int, path: Path) -> int:
    """Elements of the tensors backed by a non-empty constant buffer, every buffer checked to
    lie inside the file (``size`` bytes)."""
    n_buffers = model.BuffersLength()
    params = 0
    for sg_index in range(model.SubgraphsLength()):
        sg = model.Subgraphs(sg_index)
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            b = t.Buffer()
            if b <= 0:
                continue
            if b >= n_buffers:
                raise ModelError(f"tensor refers to buffer {b} of {n_buffers}", path=path)
            buf = model.Buffers(b)
            if buf.Offset() > 1:
                if buf.Offset() + buf.Size() > size:
                    raise ModelError("a weight buffer points outside the file", path=path,
                                     hint="the file is truncated or corrupt")
            elif buf.DataLength() == 0:
                continue
            params += int(np.prod([int(d) for d in t.ShapeAsNumpy()])) if t.ShapeLength() else 1
    return params


def _sidecar(path: Path) -> dict[str, Any] | None:
    """edgepack's metadata sidecar (``<file>.json``) when there is one (see metadata.py)."""
    import json

    side = sidecar_path(path)
    try:
        return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None
    except (OSError, ValueError):
        return None
