"""An fp16 ONNX source computed in fp32: the copy the converters read.

A model converted to fp16 for a GPU (onnxconverter-common, an exporter's half precision) is the
file some users bring to an int8 CPU build. The converters read it badly: onnx2tf built no
faithful TFLite from any of six such files (cosines of -0.03 to 0.9999, all refused by the hop
check), ONNX Runtime's quantizer wrote an int8 file of one that it cannot load, and OpenVINO's
static int8 of another failed (docs/benchmarks.md). Every fp16 value is exact in fp32, so the
copy holds the same weights; it computes each op in fp32, as the fp16 model's float ops would
without rounding. Its fp32 files are checked against the fp16 source's own outputs like any
hop (their differences are the source's fp16 rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: the attributes that name an element type (Cast's target, a generator's dtype)
TYPE_ATTRIBUTES = ("to", "dtype")


def computes_in_fp16(graph: Any) -> bool:
    """Whether ``graph`` holds fp16 weights or takes or returns fp16 tensors."""
    from onnx import TensorProto

    half = TensorProto.FLOAT16
    return any(t.data_type == half for t in graph.initializer) or any(
        v.type.tensor_type.elem_type == half for v in [*graph.input, *graph.output])


def upcast(graph: Any) -> int:
    """Every fp16 tensor, value and type attribute of ``graph`` (and its subgraphs) made fp32,
    in place; how many tensors (weights and constants) were converted."""
    from onnx import TensorProto, numpy_helper

    from ..formats.onnx import graphs, tensors

    half, full = TensorProto.FLOAT16, TensorProto.FLOAT
    widened = [t for t in tensors(graph) if t.data_type == half]
    for tensor in widened:
        tensor.CopyFrom(numpy_helper.from_array(
            numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for g in graphs(graph):
        for value in [*g.input, *g.output, *g.value_info]:
            if value.type.tensor_type.elem_type == half:
                value.type.tensor_type.elem_type = full
        for node in g.node:
            for attr in node.attribute:
                if attr.name in TYPE_ATTRIBUTES and attr.type == attr.INT and attr.i == half:
                    attr.i = full
    return len(widened)


def upcast_source(src: Path, dst: Path) -> list[str] | None:
    """``src`` computed in fp32 at ``dst`` when it computes in fp16, with the note saying so;
    None (nothing written) when it does not, when its fp32 copy could not be one file (past
    protobuf's 2 GB: it is read as it is), or when it is not a model ONNX can read (its
    loader reports that)."""
    import onnx

    from ..formats.onnx import PROTOBUF_LIMIT, size_with_external_data

    try:
        if not computes_in_fp16(onnx.load(str(src), load_external_data=False).graph) \
                or 2 * size_with_external_data(src) >= PROTOBUF_LIMIT:
            return None
        model = onnx.load(str(src))
    except Exception:  # noqa: BLE001 (a corrupt file: the build's loader says what is wrong)
        return None
    converted = upcast(model.graph)
    onnx.save(model, str(dst))
    return [f"the fp16 source is computed in fp32 for the converters ({converted} fp16 "
            "tensors widened, exactly; inputs and outputs are float32 in every format built)"]
