"""The int8 grid an ONNX QDQ file rounds each float input to (formats/input_grid.py).

ONNX Runtime's quantizer puts a QuantizeLinear on the input, or after the ops it leaves in
float before the first quantized one (a Clip, a Relu, tf2onnx's Min/Max clip, a Reshape or
Transpose of the layout), or after the layers the accuracy fallback keeps in float.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .input_grid import GridReading, Hop, InputGrid, walk

#: ops that move an input's values without changing them
LAYOUT_OPS = {"Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def read(path: Path) -> GridReading:
    """The grid of each float input of the ONNX file at ``path``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = _constants(graph)
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))
    outputs = {o.name for o in graph.output}

    def hops(tensor: str) -> list[Hop]:
        found = [_hop(node, i, consts) for node, i in readers.get(tensor, [])]
        return found + ([Hop(f"the graph output `{tensor}`")] if tensor in outputs else [])

    reading = GridReading()
    for value in graph.input:
        if value.name in consts or value.type.tensor_type.elem_type not in FLOAT_TYPES:
            continue
        reading.add(value.name, walk(value.name, value.name, hops))
    return reading


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """The graph's small constants (initializers and Constant nodes) by name."""
    from onnx import numpy_helper

    found = {}
    tensors = [(t.name, t) for t in graph.initializer] + [
        (n.output[0], n.attribute[0].t) for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"]
    for name, tensor in tensors:
        if tensor.data_location != 1:  # external data: weights, never a scale
            found[name] = numpy_helper.to_array(tensor)
    return found


def _hop(node: Any, index: int, consts: dict[str, np.ndarray]) -> Hop:
    """What ``node`` does to its input ``index`` (formats/input_grid.Hop)."""
    what = f"{node.op_type} `{node.name or node.output[0]}`"
    scalars = [consts.get(n) if n else None for n in node.input]
    scalars = [None if a is None or a.size != 1 else float(a.ravel()[0]) for a in scalars]
    if index != 0:
        return Hop(what)
    if node.op_type == "QuantizeLinear":
        return _quantize(node, what, consts)
    if node.op_type in LAYOUT_OPS:
        return Hop(what, node.output[0])
    if node.op_type == "Relu":
        return Hop(what, node.output[0], (0.0, math.inf))
    if node.op_type == "Clip":
        return _clip(node, what, scalars)
    if node.op_type in ("Min", "Max") and len(node.input) == 2 and scalars[1] is not None:
        bound = scalars[1]
        return Hop(what, node.output[0],
                   (-math.inf, bound) if node.op_type == "Min" else (bound, math.inf))
    return Hop(what)


def _clip(node: Any, what: str, scalars: list[float | None]) -> Hop:
    """A Clip whose bounds are constants (inputs since opset 11, attributes before)."""
    attrs = {a.name: a.f for a in node.attribute}
    bounds = [-math.inf, math.inf]
    for i, key in ((1, "min"), (2, "max")):
        if len(node.input) > i and node.input[i]:
            if scalars[i] is None:
                return Hop(what)
            bounds[i - 1] = scalars[i]
        elif key in attrs:
            bounds[i - 1] = attrs[key]
    return Hop(what, node.output[0], (bounds[0], bounds[1]))


def _quantize(node: Any, what: str, consts: dict[str, np.ndarray]) -> Hop:
    """A QuantizeLinear with one scale and zero point (uint8 when it states none)."""
    scale = consts.get(node.input[1])
    zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else \
        np.zeros((), np.uint8)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1 \
            or not np.issubdtype(zero.dtype, np.integer):
        return Hop(what + " (not one grid per tensor)")
    info = np.iinfo(zero.dtype)
    return Hop(what, grid=InputGrid("", float(scale.ravel()[0]), float(zero.ravel()[0]),
                                    int(info.min), int(info.max), read_from=what))
