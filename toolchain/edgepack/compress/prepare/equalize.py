"""Cross-layer equalization: per-channel weight ranges of two chained convolutions evened out.

For ``Conv1 -> act -> Conv2`` with ``act(s * x) = s * act(x)`` for every ``s > 0`` (ReLU,
LeakyReLU, or no activation), dividing Conv1's output channel ``i`` (weights and bias) by ``s_i``
and multiplying Conv2's input channel ``i`` by ``s_i`` computes the same function. With
``s_i = sqrt(r1_i / r2_i)`` (``r1_i``: Conv1's range on output channel i, ``r2_i``: Conv2's on
input channel i) both become ``sqrt(r1_i * r2_i)``, so per-tensor and per-channel int8 grids
lose less of the small channels (depthwise convolutions gain most). ReLU6, Clip, HardSwish,
SiLU and the like are not homogeneous: a pair through them is left as it is, since the
rescaled network would no longer compute the source's outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Graph, attr, float_weight

#: activations with act(s*x) == s*act(x) for s > 0
HOMOGENEOUS = ("Relu", "LeakyRelu")
#: equalization rounds over the pairs (a chain of three convolutions settles in a few)
ROUNDS = 3
#: scales are bounded so a dead channel (range 0 on one side) is not blown up
SCALE_LIMITS = (1e-4, 1e4)


class Equalize:
    """Equalize every Conv pair joined by a positively homogeneous activation (or none)."""

    name = "equalize"
    needs_samples = False
    exact = True

    def apply(self, graph: Graph, samples: Any) -> str:
        pairs = conv_pairs(graph)
        for _ in range(ROUNDS):
            for first, second in pairs:
                equalize_pair(graph, first, second)
        return f"{len(pairs)} convolution pair(s) equalized"


def conv_pairs(graph: Graph) -> list[tuple[Any, Any]]:
    """(Conv1, Conv2) pairs that can be equalized exactly, in graph order."""
    pairs = []
    for conv in graph.graph.node:
        if conv.op_type != "Conv" or float_weight(graph, conv, 1) is None:
            continue
        nxt = graph.single_next(conv)
        if nxt is not None and nxt.op_type in HOMOGENEOUS and len(nxt.input) == 1:
            nxt = graph.single_next(nxt)
        if nxt is None or nxt.op_type != "Conv" or nxt.input[0] == conv.input[0]:
            continue
        if _bias_ok(graph, conv) and float_weight(graph, nxt, 1) is not None:
            pairs.append((conv, nxt))
    return pairs


def _bias_ok(graph: Graph, conv: Any) -> bool:
    return len(conv.input) < 3 or not conv.input[2] or float_weight(graph, conv, 2) is not None


def equalize_pair(graph: Graph, first: Any, second: Any) -> None:
    """Rescale ``first``'s output channels against ``second``'s input channels."""
    w1, w2 = graph.weight(first.input[1]), graph.weight(second.input[1])
    channels = w1.shape[0]
    groups = attr(second, "group", 1)
    per_group = w2.shape[1]
    if per_group * groups != channels:
        return
    r1 = np.abs(w1.reshape(channels, -1)).max(axis=1)
    # Conv2's input channel c = g * per_group + j reads w2[outputs of group g, j]
    w2g = w2.reshape(groups, -1, per_group, *w2.shape[2:])
    r2 = np.abs(np.moveaxis(w2g, 2, 1).reshape(groups, per_group, -1)).max(axis=2).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(r1 / r2)
    scale = np.where(np.isfinite(scale) & (r1 > 0) & (r2 > 0), scale, 1.0)
    scale = np.clip(scale, *SCALE_LIMITS).astype(np.float32)
    graph.set_weight(first.input[1], w1 / scale.reshape((-1,) + (1,) * (w1.ndim - 1)))
    if len(first.input) > 2 and first.input[2]:
        graph.set_weight(first.input[2], graph.weight(first.input[2]) / scale)
    s2 = scale.reshape(groups, 1, per_group, *(1,) * (w2.ndim - 2))
    graph.set_weight(second.input[1], (w2g * s2).reshape(w2.shape))
