"""Ops no int8 scale can represent, found in the TFLite converter's calibrated ranges: kept float.

The same three patterns as in ONNX (compress/onnx_guard.py says why each defeats one int8
scale): an attention mask's sentinel flowing into a Softmax, a Concatenation of tensors whose
ranges differ by orders of magnitude (a detector's boxes in pixels beside its scores in 0..1),
and a square before its root (a SQUARE, POW or x*x reaching a SQRT through unweighted ops).
Here the ranges are the min/max the calibration wrote into the float flatbuffer, and an op is
named by its output tensor, which is what the converter's denylist takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import tflite_graph as graph
from .onnx_guard import MIXED_RANGE, SENTINEL

#: ops that compute with weights: a mask never passes through one on its way to the softmax
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
             "TRANSPOSE_CONV", "CONV_3D")


def blind_spots(calibrated: bytes) -> dict[str, str]:
    """Output tensor name of each op int8 cannot represent -> why ("sentinel", "mixed" or
    "squared"), in the calibrated float flatbuffer ``calibrated`` of the TFLite converter."""
    model = graph.read(calibrated)
    sub = model.subgraphs[0]
    return _found(model, {i: _span(t) for i, t in enumerate(sub.tensors)
                          if _span(t) is not None})


def blind_spots_in(flatbuffer: bytes, stats: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The same, for a float flatbuffer and ai-edge-quantizer's calibration ``stats`` (tensor
    name -> its "min" and "max"): a TFLite source, or a file its 16x8 layers are made from."""
    model = graph.read(flatbuffer)
    index = {t.name.decode(): i for i, t in enumerate(model.subgraphs[0].tensors)}
    spans = {index[name]: float(max(np.max(np.abs(qsv["min"])), np.max(np.abs(qsv["max"]))))
             for name, qsv in stats.items() if name in index and "min" in qsv and "max" in qsv}
    return _found(model, spans)


def _found(model: Any, spans: dict[int, float]) -> dict[str, str]:
    """``blind_spots`` of ``model``'s main graph, given each tensor's largest calibrated
    magnitude by tensor index."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    sub = model.subgraphs[0]
    masks = _mask_paths(model, sub)
    bearing = _sentinel_bearing(model, sub, masks, spans)
    squared = _square_to_root(model, sub)
    found: dict[str, str] = {}
    producer = {int(out): op for op in sub.operators for out in op.outputs}
    for op in sub.operators:
        if not len(op.outputs):
            continue
        name = sub.tensors[op.outputs[0]].name.decode()
        touched = [int(i) for i in (*op.inputs, *op.outputs) if i >= 0]
        if id(op) in squared:
            found[name] = "squared"
        elif any(i in bearing for i in touched):
            found[name] = "sentinel"
            # a select takes one scale for its inputs and output: the converter gives the
            # op that computes the scores the sentinel's scale too, unless it is float
            selects = graph.op_code(model, op) in (BuiltinOperator.SELECT_V2,
                                                   BuiltinOperator.SELECT)
            for i in op.inputs if selects else ():
                if int(i) in producer and len(producer[int(i)].outputs):
                    found.setdefault(sub.tensors[producer[int(i)].outputs[0]].name.decode(),
                                     "sentinel")
        elif graph.op_code(model, op) == BuiltinOperator.CONCATENATION:
            parts = [spans[int(i)] for i in op.inputs if spans.get(int(i), 0.0) > 0]
            if len(parts) > 1 and max(parts) > MIXED_RANGE * min(parts):
                found[name] = "mixed"
    return found


def _sentinel_bearing(model: Any, sub: Any, masks: set[int], spans: dict[int, float]
                      ) -> set[int]:
    """The tensors on a mask's path to a Softmax that hold a sentinel: calibrated to one, a
    constant one (``tf.where(mask, scores, float32.min)``: calibration data without padding
    never shows it, yet the select takes that constant's scale), or computed from one."""
    from ai_edge_litert.schema_py_generated import TensorType

    bearing = {i for i in masks if spans.get(i, 0.0) >= SENTINEL}
    for i in masks:
        tensor = sub.tensors[i]
        data = model.buffers[tensor.buffer].data
        if tensor.type == TensorType.FLOAT32 and data is not None and len(data) \
                and float(np.max(np.abs(graph.values(model, tensor, np.float32)))) >= SENTINEL:
            bearing.add(i)
    for op in sub.operators:  # graph order: a consumer comes after its producers
        if bearing.intersection(int(i) for i in op.inputs):
            bearing |= {int(o) for o in op.outputs if int(o) in masks}
    return bearing


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


def _square_to_root(model: Any, sub: Any) -> set[int]:
    """Ids of the ops on a path from a square (SQUARE, POW, MUL of a tensor by itself) to a
    SQRT through unweighted ops, both included."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    weighted = {getattr(BuiltinOperator, kind) for kind in _WEIGHTED}
    code = {id(op): graph.op_code(model, op) for op in sub.operators}
    readers: dict[int, list[Any]] = {}
    for op in sub.operators:
        for i in op.inputs:
            readers.setdefault(int(i), []).append(op)
    producer = {int(out): op for op in sub.operators for out in op.outputs}

    def squares(op: Any) -> bool:
        return code[id(op)] in (BuiltinOperator.SQUARE, BuiltinOperator.POW) or (
            code[id(op)] == BuiltinOperator.MUL and len(op.inputs) == 2
            and int(op.inputs[0]) == int(op.inputs[1]))

    def reach(start: list[Any], step: Any) -> set[int]:
        seen: set[int] = set()
        frontier = list(start)
        while frontier:
            op = frontier.pop()
            if id(op) not in seen:
                seen.add(id(op))
                frontier.extend(o for o in step(op) if code[id(o)] not in weighted)
        return seen

    after = reach([op for op in sub.operators if squares(op)],
                  lambda op: [r for i in op.outputs for r in readers.get(int(i), [])])
    before = reach([op for op in sub.operators if code[id(op)] == BuiltinOperator.SQRT],
                   lambda op: [producer[int(i)] for i in op.inputs if int(i) in producer])
    return after & before
