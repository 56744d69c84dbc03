"""Edits of ONNX QDQ graphs shared by the ONNX int8 passes."""

from __future__ import annotations

from typing import Any


def drop_unread(graph: Any) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads (repeatedly: a DQ's Q goes next), then
    the scales and zero points only they read."""
    while True:
        read = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)
