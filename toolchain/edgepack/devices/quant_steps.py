"""The quantization step behind each float output of a model that computes in integers.

An int8 model with float I/O ends in a dequantize: its float outputs can only take values on a
grid of that step, and two correct integer kernels (ARM and x86) may round a value that sits on
a boundary to neighbouring grid points. The on-device comparison allows that one step, which it
can only do if it knows the step: read here from the file (host side only; the board never needs
it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def output_steps(path: Path) -> list[float | None]:
    """Per output (signature order): the step of the integer tensor it is dequantized from."""
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _tflite(path)
    if suffix == ".onnx":
        return _onnx(path)
    return []


def _tflite(path: Path) -> list[float | None]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        codes.append(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()))
    producer = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for t in op.OutputsAsNumpy():
            producer[int(t)] = op
    if model.SignatureDefsLength():
        sd = model.SignatureDefs(0)
        outs = [sd.Outputs(i).TensorIndex() for i in range(sd.OutputsLength())]
    else:
        outs = [int(t) for t in graph.OutputsAsNumpy()]
    steps: list[float | None] = []
    for t in outs:
        op = producer.get(t)
        step = None
        if op is not None and codes[op.OpcodeIndex()] == schema.BuiltinOperator.DEQUANTIZE:
            q = graph.Tensors(int(op.InputsAsNumpy()[0])).Quantization()
            if q is not None and q.ScaleLength():
                step = float(np.max(q.ScaleAsNumpy()))
        steps.append(step)
    return steps


def _onnx(path: Path) -> list[float | None]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    steps: list[float | None] = []
    for output in graph.output:
        node = producer.get(output.name)
        step = None
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in inits:
            step = float(np.max(numpy_helper.to_array(inits[node.input[1]])))
        steps.append(step)
    return steps
