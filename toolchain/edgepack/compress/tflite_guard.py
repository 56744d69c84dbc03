"""Ops no int8 scale can represent, found in the TFLite converter's calibrated ranges: kept float.

The same two patterns as in ONNX (compress/onnx_guard.py says why each defeats one int8 scale):
an attention mask's sentinel flowing into a Softmax, and a Concatenation of tensors whose
ranges differ by orders of magnitude (a detector's boxes in pixels beside its scores in 0..1).
Here the ranges are the min/max the calibration wrote into the float flatbuffer, and an op is
named by its output tensor, which is what the converter's denylist takes.
"""

from __future__ import annotations

from typing import Any

from . import tflite_graph as graph
from .onnx_guard import MIXED_RANGE, SENTINEL

#: ops that compute with weights: a mask never passes through one on its way to the softmax
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
             "TRANSPOSE_CONV", "CONV_3D")


def blind_spots(calibrated: bytes) -> dict[str, str]:
    """Output tensor name of each op int8 cannot represent -> why ("sentinel" or "mixed"), in
    the calibrated float flatbuffer ``calibrated`` of the TFLite converter."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    model = graph.read(calibrated)
    sub = model.subgraphs[0]
    spans = {i: _span(t) for i, t in enumerate(sub.tensors) if _span(t) is not None}
    masks = _mask_paths(model, sub)
    found: dict[str, str] = {}
    for op in sub.operators:
        if not len(op.outputs):
            continue
        name = sub.tensors[op.outputs[0]].name.decode()
        touched = [int(i) for i in (*op.inputs, *op.outputs) if i >= 0]
        if any(i in masks and spans.get(i, 0.0) >= SENTINEL for i in touched):
            found[name] = "sentinel"
        elif graph.op_code(model, op) == BuiltinOperator.CONCATENATION:
            parts = [spans[int(i)] for i in op.inputs if spans.get(int(i), 0.0) > 0]
            if len(parts) > 1 and max(parts) > MIXED_RANGE * min(parts):
                found[name] = "mixed"
    return found


def _span(tensor: Any) -> float | None:
    """The largest magnitude of a calibrated tensor's range (None: no calibrated range)."""
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or len(q.min) != 1:
        return None
    return max(abs(float(q.min[0])), abs(float(q.max[0])))


def _mask_paths(model: Any, sub: Any) -> set[int]:
    """Tensors that reach a Softmax's input through unweighted ops only."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    weighted = {getattr(BuiltinOperator, kind) for kind in _WEIGHTED}
    producer = {int(out): op for op in sub.operators for out in op.outputs}
    frontier = [int(op.inputs[0]) for op in sub.operators
                if graph.op_code(model, op) == BuiltinOperator.SOFTMAX]
    seen: set[int] = set()
    while frontier:
        tensor = frontier.pop()
        if tensor in seen or tensor < 0:
            continue
        seen.add(tensor)
        op = producer.get(tensor)
        if op is not None and graph.op_code(model, op) not in weighted:
            frontier.extend(int(i) for i in op.inputs)
    return seen
