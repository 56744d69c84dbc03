"""An ONNX graph seen as its layers and their constant weights, for the float passes.

Weights come as initializers or as ``Constant`` nodes (Paddle exports hold every weight in one);
``lift_constants`` turns the Constant nodes that feed a weight input into initializers first,
which changes no value, so a pass reads and writes every weight the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the inputs (by index) of an operation that are weights a pass may read or rewrite
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4),
}


class Graph:
    """A model's nodes with lookups by tensor name; weights as numpy arrays."""

    def __init__(self, model: Any):
        self.model = model
        self.graph = model.graph
        lift_constants(self.graph)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the lookups after nodes were added or removed."""
        from onnx import numpy_helper

        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self._arrays = {k: numpy_helper.to_array(v) for k, v in self.inits.items()}

    def weight(self, name: str) -> np.ndarray | None:
        """The constant ``name`` as float32 (a copy), or None when it is not a constant."""
        arr = self._arrays.get(name)
        return None if arr is None else np.array(arr, dtype=np.float32)

    def set_weight(self, name: str, value: np.ndarray) -> None:
        """Replace constant ``name``'s value; a constant other nodes share is not rewritten
        (the caller checks ``only_reader`` first)."""
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(value.astype(np.float32), name)
        self.inits[name].CopyFrom(tensor)
        self._arrays[name] = value.astype(np.float32)

    def only_reader(self, tensor: str, node: Any) -> bool:
        """Whether ``node`` is the one reader of ``tensor`` and it is no graph output."""
        readers = self.consumers.get(tensor, [])
        return len(readers) == 1 and readers[0] is node and tensor not in self.outputs

    def single_next(self, node: Any) -> Any | None:
        """The one node reading ``node``'s one output, if there is exactly one."""
        if len(node.output) != 1 or node.output[0] in self.outputs:
            return None
        readers = self.consumers.get(node.output[0], [])
        return readers[0] if len(readers) == 1 else None

    def add_initializer(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        self.inits[name] = self.graph.initializer[-1]
        self._arrays[name] = value.astype(np.float32)

    def fresh_name(self, base: str) -> str:
        taken = set(self.inits) | set(self.producer) | {i.name for i in self.graph.input}
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        return name


def attr(node: Any, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of ``node`` as a Python value."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def lift_constants(graph: Any) -> None:
    """Constant nodes (with a ``value`` tensor) that feed a weight input become initializers."""
    weight_names = {node.input[i] for node in graph.node
                    for i in WEIGHT_INPUTS.get(node.op_type, ()) if i < len(node.input)}
    keep = []
    for node in graph.node:
        value = attr(node, "value") if node.op_type == "Constant" else None
        if value is not None and node.output[0] in weight_names:
            value.name = node.output[0]
            graph.initializer.append(value)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def float_weight(graph: Graph, node: Any, index: int) -> np.ndarray | None:
    """Input ``index`` of ``node`` when it is a float constant that node alone reads."""
    if index >= len(node.input) or not node.input[index]:
        return None
    name = node.input[index]
    if name not in graph.inits or not graph.only_reader(name, node):
        return None
    value = graph.weight(name)
    if value is None or graph.inits[name].data_type != 1:  # TensorProto.FLOAT
        return None
    return value
