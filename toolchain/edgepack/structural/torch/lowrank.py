"""Low-rank factorization of a PyTorch graph's linear and 1x1 conv2d ops, in place.

A weight W (out x in) becomes A (out x r) @ B (r x in) by truncated SVD (``svd.factor``,
the same rank rule as for Keras): ``linear(x, W, b)`` becomes ``linear(linear(x, B), A, b)``,
and a 1x1 ``conv2d`` becomes a thin conv with B (doing the original stride and padding: the
padded zeros stay zeros through a bias-free conv) followed by a 1x1 conv with A and the bias.
B is a new parameter ``<layer>.weight_lowrank``; A replaces the weight. Layers where the pair
would not have fewer parameters are left as they are and reported.
"""

from __future__ import annotations

from typing import Any

from ...config.structural import LowRankSettings
from ..svd import Factorization, factor
from . import graph as tg
from .graph import Weighted


def _factorable(gm: Any, w: Weighted) -> bool:
    weight = tg.get(gm, w.weight)
    if tg.uses(gm, w.weight) != 1:
        return False
    if w.kind == "linear":
        return weight.dim() == 2
    return w.groups == 1 and tuple(weight.shape[2:]) == (1, 1)


def factorize_torch(gm: Any, settings: LowRankSettings) -> list[Factorization]:
    """Split every paying linear / 1x1 conv2d in two; every decision, for the report."""
    import torch

    decisions = []
    for w in tg.weighted(gm):
        if not _factorable(gm, w):
            continue
        weight = tg.get(gm, w.weight).detach()
        out_ch, in_ch = weight.shape[:2]
        decision, a, b = factor(weight.reshape(out_ch, in_ch).numpy(), settings, w.name)
        decisions.append(decision)
        if a is None or b is None:
            continue
        thin_target = f"{w.weight}_lowrank"
        extra = (1, 1) if w.kind == "conv2d" else ()
        tg.put(gm, thin_target, torch.from_numpy(b).reshape(*b.shape, *extra))
        tg.put(gm, w.weight, torch.from_numpy(a).reshape(*a.shape, *extra))
        graph, node = gm.graph, w.node
        with graph.inserting_before(node):
            thin_weight = graph.get_attr(thin_target)
            if w.kind == "linear":
                thin = graph.call_function(node.target, (node.args[0], thin_weight))
                node.args = (thin, *node.args[1:])
            else:
                args = tg.conv_args(node)
                thin = graph.call_function(node.target, (args[0], thin_weight, None, *args[3:]))
                node.args = (thin, args[1], args[2], [1, 1], [0, 0], [1, 1], 1)
                node.kwargs = {}
    gm.recompile()
    return decisions
