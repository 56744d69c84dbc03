"""Batch-norm folding: a BatchNormalization right after a Conv becomes the Conv's own weights.

Exact up to float rounding: the normalization is an affine map per output channel, so
``W' = W * g`` and ``b' = (b - mean) * g + beta`` with ``g = gamma / sqrt(var + eps)``. A
quantizer that sees the folded Conv quantizes the weights the network really applies (a
normalization left apart is quantized on its own, or folded by each format's converter after
its weights were already rounded). Only the inference form is folded (one output).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Graph, attr, float_weight


class FoldBatchNorm:
    """Fold each BatchNormalization whose input is a Conv's only output reader."""

    name = "fold-batchnorm"
    needs_samples = False
    exact = True

    def apply(self, graph: Graph, samples: Any) -> str:
        folded = 0
        for bn in [n for n in graph.graph.node if n.op_type == "BatchNormalization"]:
            conv = graph.producer.get(bn.input[0])
            if conv is not None and conv.op_type == "Conv" and _fold(graph, conv, bn):
                folded += 1
        graph.refresh()
        return f"{folded} batch normalization(s) folded into their convolutions"


def _fold(graph: Graph, conv: Any, bn: Any) -> bool:
    """Fold ``bn`` into ``conv`` and drop it; False (nothing changed) when it cannot be."""
    if len(bn.output) != 1 or not graph.only_reader(conv.output[0], bn):
        return False
    weight = float_weight(graph, conv, 1)
    params = [graph.weight(name) for name in bn.input[1:5]]
    if weight is None or any(p is None for p in params):
        return False
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    if gamma.size != weight.shape[0]:
        return False
    bias = float_weight(graph, conv, 2) if len(conv.input) > 2 else None
    if len(conv.input) > 2 and conv.input[2] and bias is None:
        return False
    g = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    graph.set_weight(conv.input[1], (weight * g.reshape(shape)).astype(np.float32))
    old_bias = np.zeros_like(g) if bias is None else bias.astype(np.float64)
    new_bias = ((old_bias - mean) * g + beta).astype(np.float32)
    if bias is None:
        name = graph.fresh_name(f"{conv.input[1]}_folded_bias")
        graph.add_initializer(name, new_bias)
        while len(conv.input) < 3:
            conv.input.append("")
        conv.input[2] = name
    else:
        graph.set_weight(conv.input[2], new_bias)
    conv.output[0] = bn.output[0]
    graph.graph.node.remove(bn)
    return True
