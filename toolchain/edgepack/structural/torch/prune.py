"""Magnitude pruning of a PyTorch graph (an ExportedProgram's module), in place.

Unstructured: the smallest conv2d/linear weights become zeros; the masks are returned so
fine-tuning keeps them zero (the same rule as the Keras pass, ``magnitude.magnitude_masks``).

Structured: the output channels (conv filters, linear units) with the smallest L1 norm are
removed and the parameters sliced, so the exported model is genuinely narrower. It follows the
ATen graph from a producer to the one conv2d/linear that reads it, through ops that keep the
channel's meaning: element-wise activations and dropout, pooling, batch norm and depthwise
convolutions (both sliced too), and a flatten or a view to (batch, C*H*W) before a linear (its
rows sliced, a literal width in the view rewritten). Anything else -- an add or concat, a
second reader, a model output, a shared weight, an op this module does not know -- keeps the
producer's width, and the plan records why, for the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...config.structural import PruneSettings
from ..magnitude import ChannelPlan, magnitude_masks, strongest_channels
from . import graph as tg
from .graph import Weighted, op

#: ops that act on each channel separately and keep the tensor's shape
ELEMENTWISE = {"relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "tanh", "elu",
               "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "hardswish",
               "hardswish_", "hardsigmoid", "dropout", "clone", "contiguous", "alias"}
#: ops that act on each channel of an NCHW tensor separately (channel axis 1)
SPATIAL = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
FLATTEN = {"flatten", "view", "reshape", "_unsafe_view"}


def prune_unstructured(gm: Any, settings: PruneSettings) -> dict[str, np.ndarray]:
    """Zero the smallest weights; the masks (1 keep, 0 pruned) by parameter path."""
    import torch

    layers = tg.weighted(gm)
    skip = tg.resolve_skip([w.name for w in layers], settings.skip, settings.per_layer)
    chosen = [w for w in layers if w.name not in skip]
    kernels = {w.name: tg.get(gm, w.weight).detach().numpy() for w in chosen}
    masks = magnitude_masks(kernels, settings)
    with torch.no_grad():
        for w in chosen:
            tg.get(gm, w.weight).mul_(torch.from_numpy(masks[w.name]))
    return {w.weight: masks[w.name] for w in chosen}


def prune_structured(gm: Any, settings: PruneSettings) -> ChannelPlan:
    """Remove the weakest channels of every producer whose chain allows it; the plan."""
    layers = tg.weighted(gm)
    producers = [w for w in layers if w.groups == 1]
    skip = tg.resolve_skip([w.name for w in producers], settings.skip, settings.per_layer)
    by_node = {w.node: w for w in layers}
    plan = ChannelPlan()
    between: dict[Any, np.ndarray] = {}
    for w in producers:
        if w.name in skip:
            plan.skipped[w.name] = "in the skip list"
            continue
        chain = _chain(gm, w, by_node)
        if isinstance(chain, str):
            plan.skipped[w.name] = chain
            continue
        weight = tg.get(gm, w.weight).detach().numpy()
        keep = strongest_channels(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1),
                                  settings.per_layer.get(w.name, settings.sparsity))
        plan.outputs[w.name] = keep
        idx = keep
        for node in chain[:-1]:
            if op(node) in FLATTEN and _rank(node.args[0]) == 4:
                c, h, wd = (int(d) for d in node.args[0].meta["val"].shape[1:])
                idx = np.arange(c * h * wd).reshape(c, h * wd)[idx].ravel()
            between[node] = idx
        plan.inputs[by_node[chain[-1]].name] = idx
    _apply(gm, layers, plan, between)
    plan.between = {node.name: idx for node, idx in between.items()}
    return plan


def _rank(node: Any) -> int:
    val = getattr(node, "meta", {}).get("val")
    return len(val.shape) if val is not None else -1


def _chain(gm: Any, producer: Weighted, by_node: dict[Any, Weighted]) -> list[Any] | str:
    """[ops in between..., consumer], or why the producer must keep its width."""
    if tg.uses(gm, producer.weight) != 1:
        return "its weight is shared with another op"
    channels_first = producer.kind == "conv2d"  # else the channel axis is the last one
    current, chain = producer.node, []
    while True:
        users = list(current.users)
        if any(u.op == "output" for u in users):
            return "its output is a model output"
        if len(users) != 1:
            return "its output feeds several ops" if users else "nothing reads its output"
        node = users[0]
        k = op(node)
        if not node.args or node.args[0] is not current:
            return f"{k or node.target} reads it other than as its input"
        chain.append(node)
        consumer = by_node.get(node)
        if consumer is not None and consumer.groups == 1:
            if (consumer.kind == "conv2d") != channels_first:  # conv reads axis 1, linear -1
                return f"{consumer.name} does not read the channel axis"
            if tg.uses(gm, consumer.weight) != 1:
                return f"{consumer.name}'s weight is shared with another op"
            return chain
        reason = _passes(gm, node, k, consumer, channels_first, current)
        if reason:
            return reason
        if k in FLATTEN:
            channels_first = False
        current = node


def _passes(gm: Any, node: Any, k: str, depthwise: Weighted | None, channels_first: bool,
            current: Any) -> str:
    """"" when a channel passes ``node`` unchanged in meaning, else why not."""
    rank = _rank(current)
    if k in ELEMENTWISE:
        return ""
    if k == "batch_norm" and (channels_first or rank == 2):
        params = [a for a in node.args[1:5] if a is not None]
        return "" if all(getattr(a, "op", None) == "get_attr" for a in params) else \
            "a batch norm without stored statistics follows"
    if channels_first and k in SPATIAL:
        return ""
    if channels_first and depthwise is not None:
        weight = tg.get(gm, depthwise.weight)
        if depthwise.groups == weight.shape[0] and weight.shape[1] == 1 and \
                tg.uses(gm, depthwise.weight) == 1:
            return ""
        return "a grouped convolution follows"
    if k in FLATTEN and (rank == 4 and channels_first or rank == 2) and _flattens(node):
        return ""
    return f"{k or node.target} follows, which pruning cannot narrow"


def _flattens(node: Any) -> bool:
    """``node`` gives (N, features) from (N, C, H, W) or (N, features), with a width that is
    -1 or a literal this pass may rewrite."""
    out = node.meta.get("val")
    if out is None or len(out.shape) != 2:
        return False
    if op(node) == "flatten":
        return True
    shape = node.args[1]
    return isinstance(shape[1], int) and (shape[1] == -1 or shape[1] == int(out.shape[1]))


def _apply(gm: Any, layers: list[Weighted], plan: ChannelPlan,
           between: dict[Any, np.ndarray]) -> None:
    """Slice every parameter the plan touches; fix the arguments that spell widths."""
    import torch

    def take(target: str, idx: np.ndarray, dim: int) -> None:
        tg.put(gm, target, torch.index_select(tg.get(gm, target), dim, torch.from_numpy(idx)))

    with torch.no_grad():
        for w in layers:
            if w.name in plan.inputs and w.groups == 1:
                take(w.weight, plan.inputs[w.name], 1)
            if w.name in plan.outputs:
                take(w.weight, plan.outputs[w.name], 0)
                if w.bias:
                    take(w.bias, plan.outputs[w.name], 0)
        depthwise = {w.node: w for w in layers if w.groups != 1}
        for node, idx in between.items():
            k = op(node)
            if k == "batch_norm":
                for arg in node.args[1:5]:
                    if arg is not None:
                        take(arg.target, idx, 0)
            elif node in depthwise:
                w = depthwise[node]
                take(w.weight, idx, 0)
                if w.bias:
                    take(w.bias, idx, 0)
                args = tg.conv_args(node)
                args[6] = len(idx)
                node.args, node.kwargs = tuple(args), {}
            elif k in FLATTEN and k != "flatten" and node.args[1][1] != -1:
                node.args = (node.args[0], [node.args[1][0], len(idx)], *node.args[2:])
    gm.recompile()
