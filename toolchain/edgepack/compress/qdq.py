"""Edits of ONNX QDQ graphs shared by the ONNX int8 passes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def drop_unread(graph: Any, ops: Collection[str] | None = QDQ_OPS) -> None:
    """Remove the nodes of the types ``ops`` (None: any node) whose outputs nothing reads
    (repeatedly: a DQ's Q goes next), then the initializers (scales, zero points) nothing
    reads. A subgraph's (If, Loop) reads of the graph's values count."""
    while True:
        read = reads(graph) | {o.name for o in graph.output}
        dead = [n for n in graph.node if (ops is None or n.op_type in ops)
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def reads(graph: Any) -> set[str]:
    """Every value name a node of ``graph`` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= reads(sub)
    return names
