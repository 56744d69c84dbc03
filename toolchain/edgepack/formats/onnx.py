"""ONNX models (.onnx, with optional external data next to them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, first_line
from ..signature import Dim, Signature, TensorSpec, guess_layout, readable_dim
from .base import Format, ModelInfo, file_size, histogram
from .metadata import KEY, annotate


class OnnxFormat(Format):
    name = "onnx"
    description = "ONNX model (.onnx)"
    suffixes = (".onnx",)
    runtime = "onnxruntime"

    def load(self, path: Path) -> Any:
        """The checked ModelProto (external data loaded from the model's folder)."""
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=True)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise ModelError(f"not a valid ONNX model: {first_line(exc)}", path=path,
                             hint="the file may be truncated or corrupt; re-export it") from exc
        return model

    def inspect(self, path: Path) -> ModelInfo:
        import onnx

        model = self.load(path)
        graph = model.graph
        initializers = {init.name for init in graph.initializer}
        opsets = {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import}
        custom = sorted(d for d in opsets if d not in ("ai.onnx", "ai.onnx.ml", "com.microsoft"))
        props = {p.key: p.value for p in model.metadata_props}
        # tf2onnx keeps TensorFlow's channels-last layout; other producers are channels-first
        first = model.producer_name != "tf2onnx"
        inputs = tuple(_spec(v, onnx, first) for v in graph.input if v.name not in initializers)
        named = tuple(d for spec in inputs for d in spec.shape if isinstance(d, str))
        signature = Signature(
            inputs=inputs,
            outputs=_sequence_outputs(inputs, tuple(_spec(v, onnx, first, named)
                                                    for v in graph.output)))
        return ModelInfo(
            path=str(path), format=self.name,
            signature=annotate(signature, props.get(KEY)),
            parameters=parameter_count(graph), size_bytes=size_with_external_data(path),
            operators=histogram(_op_types(graph)),
            details={"opsets": opsets, "ir_version": int(model.ir_version),
                     "producer": f"{model.producer_name} {model.producer_version}".strip(),
                     "custom_domains": custom,
                     "metadata": props})


def _spec(value: Any, onnx: Any, channels_first: bool,
          input_dims: tuple[str, ...] = ()) -> TensorSpec:
    """A graph input's or output's spec; an output's dimension that is a symbolic expression
    is named by the input dimensions it comes from (``readable_dim``)."""
    ttype = value.type.tensor_type
    dims: list[Dim] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(readable_dim(d.dim_param, input_dims) if d.dim_param else "?")
    shape = tuple(dims)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name if ttype.elem_type else "?"
    return TensorSpec(name=value.name, shape=shape, dtype=dtype,
                      layout=guess_layout(shape, channels_first=channels_first, dtype=dtype))


def _sequence_outputs(inputs: tuple[TensorSpec, ...],
                      outputs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Outputs ``[batch, seq, hidden]`` of a model fed token ids ``[batch, seq]`` hold one
    vector per token, not channels by width: they get no layout (NCW would be a wrong guess)."""
    seq = {s.shape[1] for s in inputs
           if s.rank == 2 and s.dtype != "?" and not s.dtype.startswith("float")} - {"?"}
    return tuple(replace(o, layout="") if o.rank == 3 and o.shape[1] in seq else o
                 for o in outputs)


def parameter_count(graph: Any) -> int:
    """Elements of every weight tensor: initializers and ``Constant`` nodes (PP-OCR and
    silero-vad store all their weights as Constant nodes), inside If/Loop/Scan bodies too."""
    from onnx import helper

    count = sum(int(np.prod(init.dims)) if init.dims else 1 for init in graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                count += int(np.prod(attr.t.dims)) if attr.t.dims else 1
            for sub in [*([attr.g] if attr.type == helper.AttributeProto.GRAPH else []),
                        *attr.graphs]:
                count += parameter_count(sub)
    return count


def _op_types(graph: Any) -> list[str]:
    """Node op types, including those inside If/Loop/Scan subgraphs."""
    names: list[str] = []
    for node in graph.node:
        plain = node.domain in ("", "ai.onnx")
        names.append(node.op_type if plain else f"{node.domain}.{node.op_type}")
        for attr in node.attribute:
            if attr.g and attr.g.node:
                names.extend(_op_types(attr.g))
            for g in attr.graphs:
                names.extend(_op_types(g))
    return names


def size_with_external_data(path: Path) -> int:
    """Bytes of the ONNX file ``path`` and of its external data files."""
    return file_size(path) + sum(f.stat().st_size for f in external_data_files(path))


def external_data_files(path: Path) -> list[Path]:
    """The files next to the ONNX file ``path`` that hold its external data (weights stored
    outside the protobuf: torch's dynamo exporter writes ``model.onnx.data`` by default), in
    the order first named; those named but missing are left out. Read from the file itself:
    a model loaded with its external data names none (its tensors hold the bytes)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 (not ONNX, or corrupt: its loader says so, not this)
        return []
    found: dict[str, None] = {}
    for tensor in tensors(graph):
        for entry in tensor.external_data:
            if entry.key == "location":
                found[entry.value] = None
    folder = path.parent.resolve()
    # only files in the model's folder, as ONNX's loader takes them: a location naming
    # another place (../../etc/passwd, an absolute path) is no part of this model
    return [f for f in (path.parent / name for name in found)
            if f.is_file() and f.resolve().is_relative_to(folder)]


def graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph inside it (If, Loop and Scan bodies, at any depth)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from graphs(sub)


def tensors(graph: Any) -> list[Any]:
    """Every TensorProto of ``graph`` and its subgraphs: initializers and nodes' tensor
    attributes (a Constant's value), as the messages themselves (changed in place)."""
    found = []
    for g in graphs(graph):
        found += list(g.initializer)
        for node in g.node:
            for attr in node.attribute:
                found += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
    return found


#: protobuf's limit on one serialized message: a bigger model cannot be one .onnx file
PROTOBUF_LIMIT = 2**31


def write_self_contained(src: Path, out: Path) -> Path:
    """``src`` written to ``out`` as one file, its external data taken inside: a deliverable
    an app ships and loads from anywhere. A model past protobuf's 2 GB limit cannot be one
    file, and is refused rather than delivered as a file that loads nowhere but here."""
    import onnx

    total = size_with_external_data(src)
    if total >= PROTOBUF_LIMIT:
        raise ModelError(f"its weights ({total / 2**30:.1f} GB) are past protobuf's 2 GB limit "
                         "for one ONNX file", path=src,
                         hint="edge targets take models well under 2 GB; quantize or prune it "
                              "in its framework first")
    onnx.save(onnx.load(str(src)), str(out))
    return out


def fix_input_shapes(model: Any, shapes: dict[str, tuple[int, ...]]) -> Any:
    """``model`` (a ModelProto, changed in place and returned) with the inputs named in
    ``shapes`` fixed to those shapes, and every shape inside re-inferred from them.

    Shapes the exporter recorded inside the graph (value_info, outputs) were derived from the
    dynamic dims; they are dropped and inferred again by ONNX's shape inference, so nothing
    in the file contradicts the fixed inputs. Raises ModelError when a shape does not fit.
    """
    import onnx

    for value in model.graph.input:
        shape = shapes.get(value.name)
        if shape is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape) or any(d.HasField("dim_value") and d.dim_value != s
                                          for d, s in zip(dims, shape, strict=False)):
            now = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in dims)
            raise ModelError(f"input '{value.name}' is {now or 'a scalar'}: it cannot be fixed "
                             f"to {'x'.join(map(str, shape))}",
                             hint="--input-shape may only fix the dynamic dimensions")
        for d, size in zip(dims, shape, strict=True):
            d.Clear()
            d.dim_value = size
    del model.graph.value_info[:]
    for value in model.graph.output:
        for d in value.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort: the fixed inputs are what counts
        return model


def write_with_shapes(src: Path, out: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A copy of the ONNX file ``src`` at ``out`` whose inputs have the fixed ``shapes``."""
    import onnx

    model = fix_input_shapes(onnx.load(str(src)), shapes)
    onnx.save(model, str(out))
    return out
