"""The int8 grid a TFLite file rounds each float input to (formats/input_grid.py).

A full-integer file with float I/O starts with a QUANTIZE op on each input: its output tensor's
scale and zero point are the grid. With int8 I/O the input tensor is quantized itself: the app
(and edgepack's runtime adapter) round real values with its own scale and zero point. Layers
the accuracy fallback keeps in float read the input before any QUANTIZE: no grid.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from .input_grid import GridReading, Hop, InputGrid, walk

#: ops that move an input's values without changing them
LAYOUT_OPS = {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"}
#: ops that clip their input, and their bounds
CLIP_OPS = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0),
            "RELU_0_TO_1": (0.0, 1.0)}


def read(path: Path) -> GridReading:
    """The grid of each float input of the TFLite file at ``path`` (first subgraph), by the
    names its serving signature gives them (else its tensors')."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [ops.get(max(model.OperatorCodes(i).BuiltinCode(),
                         model.OperatorCodes(i).DeprecatedBuiltinCode()), "CUSTOM")
             for i in range(model.OperatorCodesLength())]
    readers: dict[str, list[Any]] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for position, t in enumerate(op.InputsAsNumpy()):
            readers.setdefault(str(t), []).append((codes[op.OpcodeIndex()], op, position))
    outputs = {str(t) for t in graph.OutputsAsNumpy()}

    def hops(tensor: str) -> list[Hop]:
        found = [_hop(code, op, position, graph, types) for code, op, position in
                 readers.get(tensor, [])]
        return found + ([Hop(f"the graph output {tensor}")] if tensor in outputs else [])

    reading = GridReading()
    for name, index in _inputs(model, graph):
        kind = types.get(graph.Tensors(index).Type(), "")
        own = _grid(graph, index, types)
        if kind.startswith("FLOAT"):
            reading.add(name, walk(name, str(index), hops))
        elif own is not None:  # int8 I/O: the tensor is on its grid
            reading.add(name, replace(own, name=name,
                                      read_from=f"the {kind.lower()} input's own quantization"))
    return reading


def _inputs(model: Any, graph: Any) -> list[tuple[str, int]]:
    """(name, tensor index) of each input: the serving signature's names where it has one."""
    if model.SignatureDefsLength():
        sd = model.SignatureDefs(0)
        return [(sd.Inputs(i).Name().decode(), sd.Inputs(i).TensorIndex())
                for i in range(sd.InputsLength())]
    return [(graph.Tensors(int(i)).Name().decode(), int(i)) for i in graph.InputsAsNumpy()]


def _grid(graph: Any, index: int, types: dict[int, str]) -> InputGrid | None:
    """The per-tensor integer grid of tensor ``index``, if it has one."""
    t = graph.Tensors(index)
    q = t.Quantization()
    bits = {"INT8": 8, "UINT8": 8, "INT16": 16}.get(types.get(t.Type(), ""))
    if bits is None or q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        return None
    qmin = 0 if types[t.Type()] == "UINT8" else -(1 << (bits - 1))
    return InputGrid("", float(q.ScaleAsNumpy()[0]), float(q.ZeroPointAsNumpy()[0]),
                     qmin, qmin + (1 << bits) - 1)


def _hop(code: str, op: Any, position: int, graph: Any, types: dict[int, str]) -> Hop:
    """What an op of type ``code`` does to its input at ``position``."""
    out = int(op.OutputsAsNumpy()[0]) if op.OutputsLength() else -1
    what = f"{code} `{graph.Tensors(out).Name().decode()}`" if out >= 0 else code
    if position != 0 or out < 0:
        return Hop(what)
    if code == "QUANTIZE":
        grid = _grid(graph, out, types)
        if grid is None:
            return Hop(what + " (not one int8 grid per tensor)")
        return Hop(what, grid=replace(grid, read_from=what))
    if code in LAYOUT_OPS:
        return Hop(what, str(out))
    if code in CLIP_OPS:
        return Hop(what, str(out), CLIP_OPS[code])
    return Hop(what)
