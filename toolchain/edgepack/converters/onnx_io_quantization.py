"""The quantization of an ONNX graph's integer inputs and outputs, read from the graph and
written to its metadata (runtimes/io_quantization.py): an integer output made by a
QuantizeLinear, an integer input read by DequantizeLinear nodes (either through layout ops),
each with one scale and zero point given as constants: how tf2onnx converts a TFLite model with
uint8 I/O.
"""

from __future__ import annotations

from typing import Any

from ..formats.metadata import set_onnx_property
from ..runtimes.io_quantization import KEY, dump
from ..signature import Quantization

#: ONNX TensorProto element types of quantized I/O (UINT8, INT8)
INTEGER_TYPES = (2, 3)
#: ops between a tensor and its (de)quantization that move values without changing them
#: (tf2onnx reshapes and transposes around them)
LAYOUT_OPS = frozenset({"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"})


def record_io_quantization(model: Any) -> int:
    """Write the scale and zero point of each quantized integer input and output of ``model``
    (an onnx ModelProto) to its metadata; how many tensors got one."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def params(node: Any) -> Quantization | None:
        scale = constants.get(node.input[1]) if len(node.input) > 1 else None
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
            return None
        return Quantization(float(scale.reshape(())), int(zero.reshape(())) if zero is not None
                            else 0)

    found: dict[str, Quantization] = {}
    made_by = {out: node for node in graph.node for out in node.output}
    for value in graph.output:
        node = made_by.get(value.name)
        while node is not None and node.op_type in LAYOUT_OPS:
            node = made_by.get(node.input[0])
        if value.type.tensor_type.elem_type in INTEGER_TYPES and node is not None \
                and node.op_type == "QuantizeLinear" and (q := params(node)) is not None:
            found[value.name] = q
    for value in graph.input:
        readers = _readers(graph, value.name)
        qs = {params(n) for n in readers if n.op_type == "DequantizeLinear"}
        if value.type.tensor_type.elem_type in INTEGER_TYPES and readers and len(qs) == 1 \
                and all(n.op_type == "DequantizeLinear" for n in readers) and None not in qs:
            found[value.name] = qs.pop()
    set_onnx_property(model, KEY, dump(found) if found else None)
    return len(found)


def _readers(graph: Any, name: str) -> list[Any]:
    """The nodes that read ``name`` as their data input, through layout ops."""
    found = []
    for node in graph.node:
        if node.input and node.input[0] == name:
            found += _readers(graph, node.output[0]) if node.op_type in LAYOUT_OPS else [node]
        elif name in node.input:
            found.append(node)  # read as something else than data: not a plain input
    return found
