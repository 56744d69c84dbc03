"""The activations that go float with a layer kept in float, in every format's quantizer.

A layer kept in float whose activation stays int8 puts an int8 step right after it: the
activation alone is quantized on the layer's unclipped range, and a gated activation (SiLU:
a Sigmoid and a Mul of the layer's output) quantizes the float region away (nudenet's first 8
convolutions in float kept 0.862 of its detections, with their SiLUs 0.966:
docs/benchmarks.md). The rule is read on ops named as ONNX names them; TFLite's builtins are
mapped to those names.
"""

from __future__ import annotations

from typing import Any

from .tflite_graph import op_code
from .transformer import Op

#: activations that belong to the layer before them
FOLLOWERS = ("Relu", "Clip", "LeakyRelu", "HardSwish", "PRelu")
#: the gate of a gated activation, x * gate(x): SiLU/swish (Sigmoid), hard swish (HardSigmoid)
GATES = ("Sigmoid", "HardSigmoid")
#: TFLite builtins under the names above
TFLITE_KINDS = {"RELU": "Relu", "RELU6": "Clip", "RELU_N1_TO_1": "Clip",
                "LEAKY_RELU": "LeakyRelu", "HARD_SWISH": "HardSwish", "PRELU": "PRelu",
                "LOGISTIC": "Sigmoid", "MUL": "Mul"}


def following(ops: list[Op], kept: set[str]) -> list[str]:
    """Names of the ops that are the activation of an op named in ``kept``: the one reading
    its output, and a gated one's Mul of that output and its gate."""
    producer = {o: op.name for op in ops for o in op.outputs}
    found: list[str] = []
    gates: dict[str, str] = {}  # a gate's output -> the tensor it gates
    for op in ops:
        if not op.name or op.name in kept or not op.inputs \
                or producer.get(op.inputs[0]) not in kept:
            continue
        if op.kind in FOLLOWERS:
            found.append(op.name)
        elif op.kind in GATES:
            found.append(op.name)
            gates[op.outputs[0]] = op.inputs[0]
    for op in ops:
        if op.kind == "Mul" and len(op.inputs) == 2 and op.name not in kept:
            a, b = op.inputs
            if gates.get(a) == b or gates.get(b) == a:
                found.append(op.name)
    return found


def tflite_with_activations(model: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` (output tensors of layers kept in float, in the TFLite ``model``'s object
    form) and the output tensors of their activations: each op named by its first output
    tensor, as the quantizers' float lists name them."""
    if not names:
        return names
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    builtins = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    found = list(names)
    for sub in model.subgraphs:
        tensor = [t.name.decode() for t in sub.tensors]
        ops = [Op(TFLITE_KINDS.get(builtins.get(op_code(model, op), "?"), "?"),
                  tensor[op.outputs[0]], tuple(tensor[i] for i in op.inputs if i >= 0),
                  tuple(tensor[i] for i in op.outputs if i >= 0))
               for op in sub.operators if len(op.outputs)]
        found += following(ops, set(names))
    return tuple(dict.fromkeys(found))
