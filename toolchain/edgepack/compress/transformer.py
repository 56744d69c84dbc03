"""Whether a graph is a transformer, read from its ops: the int8 recipes differ.

A transformer's int8 goes wrong where a CNN's does not: per-tensor activation ranges of the
layer-normalized hidden states hold a few outlier channels, attention masks carry sentinel
values, and softmax and normalization are sensitive to rounding. Its recipe quantizes the
matrix multiplications that have weights and leaves the rest in float (compress/onnx.py), or
hands NNCF its transformer model type (compress/openvino.py).

A graph is taken for a transformer when it has attention (a Softmax reached from a MatMul of
two activations through a few elementwise or shape ops, or feeding one; or a fused attention op,
which OpenVINO's frontend makes of a dynamic-shape export's attention) and a normalization
(LayerNormalization, OpenVINO's MVN, or the decomposed ReduceMean ... Sqrt pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the matrix products attention is made of, as ONNX and OpenVINO name them
MATMULS = frozenset({"MatMul", "Einsum"})
#: normalization ops, fused
NORMALIZATIONS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization",
                            "RMSNormalization", "MVN"})
#: what a decomposed layer normalization is made of (ONNX or OpenVINO names)
DECOMPOSED_NORMALIZATION = (frozenset({"ReduceMean"}), frozenset({"Sqrt", "Pow", "Power"}))
#: ops between an attention product and its softmax (scale, mask, reshapes)
PASS_THROUGH = frozenset({"Add", "Mul", "Div", "Sub", "Where", "Reshape", "Transpose", "Cast",
                          "Multiply", "Divide", "Subtract", "Select", "Convert", "Dropout",
                          "Squeeze", "Unsqueeze", "Identity"})
#: attention fused into one op (softmax inside): OpenVINO's ScaledDotProductAttention, ONNX's
#: Attention (opset 23) and ONNX Runtime's contrib ops
FUSED_ATTENTION = frozenset({"ScaledDotProductAttention", "Attention", "MultiHeadAttention",
                             "GroupQueryAttention"})
#: how far back from a softmax (or forward from it) the attention product may sit
HOPS = 4


@dataclass
class Op:
    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class Graph:
    """Ops and the tensors that are constants (weights, or computed from weights only)."""

    ops: list[Op]
    constants: set[str] = field(default_factory=set)

    def dynamic_products(self) -> list[Op]:
        """MatMuls of two activations (attention's Q.K and scores.V)."""
        return [op for op in self.ops if op.kind in MATMULS and len(op.inputs) >= 2
                and not set(op.inputs[:2]) & self.constants]


def is_transformer(graph: Graph) -> bool:
    kinds = {op.kind for op in graph.ops}
    normalized = bool(kinds & NORMALIZATIONS) or all(kinds & s for s in DECOMPOSED_NORMALIZATION)
    return normalized and _has_attention(graph)


def _has_attention(graph: Graph) -> bool:
    if any(op.kind in FUSED_ATTENTION for op in graph.ops):
        return True
    products = {id(op) for op in graph.dynamic_products()}
    if not products:
        return False
    producer = {t: op for op in graph.ops for t in op.outputs}
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    for softmax in (op for op in graph.ops if op.kind == "Softmax"):
        back = [producer[t] for t in softmax.inputs if t in producer]
        forward = [c for t in softmax.outputs for c in consumers.get(t, [])]
        for start, step in ((back, lambda o: [producer[t] for t in o.inputs if t in producer
                                              and t not in graph.constants]),
                            (forward, lambda o: [c for t in o.outputs
                                                 for c in consumers.get(t, [])])):
            if _reaches(start, step, products):
                return True
    return False


def _reaches(start: list[Op], step: Any, targets: set[int]) -> bool:
    frontier = start
    for _ in range(HOPS):
        if any(id(op) in targets for op in frontier):
            return True
        frontier = [n for op in frontier if op.kind in PASS_THROUGH for n in step(op)]
    return False


def onnx_graph(path: Path) -> Graph:
    """The ops of an ONNX file; constants are initializers, Constant outputs and what ops of
    constants alone compute."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return onnx_graph_of(model.graph)


def onnx_graph_of(graph: Any) -> Graph:
    constants = {i.name for i in graph.initializer}
    ops = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        ops.append(Op(node.op_type, node.name, tuple(node.input), tuple(node.output)))
        inputs = [t for t in node.input if t]
        if node.op_type == "Constant" or (inputs and all(t in constants for t in inputs)):
            constants.update(node.output)
    return Graph(ops, constants)


def openvino_graph(model: Any) -> Graph:
    """The ops of an OpenVINO model; its tensors named ``op:port``."""
    def tensor(output: Any) -> str:
        return f"{output.get_node().get_friendly_name()}:{output.get_index()}"

    constants: set[str] = set()
    ops = []
    for node in model.get_ordered_ops():
        inputs = tuple(tensor(v) for v in node.input_values())
        outputs = tuple(tensor(o) for o in node.outputs())
        ops.append(Op(node.get_type_name(), node.get_friendly_name(), inputs, outputs))
        if node.get_type_name() == "Constant" or (inputs and all(t in constants for t in inputs)):
            constants.update(outputs)
    return Graph(ops, constants)


#: TFLite builtins under the ONNX names the attention and normalization patterns above use
TFLITE_KINDS = {"BATCH_MATMUL": "MatMul", "SOFTMAX": "Softmax", "MEAN": "ReduceMean",
                "RSQRT": "Sqrt", "SQRT": "Sqrt", "POW": "Pow", "ADD": "Add", "MUL": "Mul",
                "DIV": "Div", "SUB": "Sub", "SELECT": "Where", "SELECT_V2": "Where",
                "RESHAPE": "Reshape", "TRANSPOSE": "Transpose", "CAST": "Cast",
                "SQUEEZE": "Squeeze", "EXPAND_DIMS": "Unsqueeze"}


def tflite_graph(path: Path) -> Graph:
    """The ops of a TFLite file (``tflite_graph_of``)."""
    from . import tflite_graph as flat

    return tflite_graph_of(flat.read(path.read_bytes()))


def tflite_graph_of(model: Any) -> Graph:
    """The ops of a TFLite model's object form (every subgraph), named as ONNX names them
    where the patterns above read them; constants are tensors with data and what ops of
    constants alone compute."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    from . import tflite_graph as flat

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    ops, constants = [], set()
    for g, sub in enumerate(model.subgraphs):
        def tensor(i: int, g: int = g) -> str:
            return f"{g}:{i}"

        constants.update(tensor(i) for i, t in enumerate(sub.tensors)
                         if model.buffers[t.buffer].data is not None)
        for k, op in enumerate(sub.operators):  # a subgraph's ops are in execution order
            builtin = names.get(flat.op_code(model, op), "?")
            inputs = tuple(tensor(i) for i in op.inputs if i >= 0)
            outputs = tuple(tensor(i) for i in op.outputs if i >= 0)
            ops.append(Op(TFLITE_KINDS.get(builtin, builtin), f"{g}:{k}", inputs, outputs))
            if inputs and all(t in constants for t in inputs):
                constants.update(outputs)
    return Graph(ops, constants)


def file_graph(fmt: str, path: Path) -> Graph:
    """The ops of a model file of format ``fmt`` (onnx, openvino or tflite)."""
    if fmt == "openvino":
        import openvino as ov

        return openvino_graph(ov.Core().read_model(str(path)))
    return {"onnx": onnx_graph, "tflite": tflite_graph}[fmt](path)


def resolve(setting: str, graph: Graph) -> str:
    """The profile's ``model_type`` with ``auto`` decided from ``graph``."""
    if setting != "auto":
        return setting
    return "transformer" if is_transformer(graph) else "generic"

