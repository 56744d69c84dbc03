"""Magnitude pruning of Keras models: unstructured (zeros in kernels) and structured (channels).

Unstructured pruning zeroes the smallest-magnitude kernel weights (per layer, or with one global
threshold). The model keeps its shapes: runtimes still compute densely, so it pays only in a
compressed download or on sparse kernels; the masks are returned so fine-tuning keeps the zeros.

Structured pruning removes whole output channels (Conv2D filters, Dense units) with the smallest
L1 norm and rebuilds a genuinely narrower model: the producer loses channels, the layers between
it and the next Conv2D/Dense (activations, pooling, batch norm, depthwise conv, dropout,
flatten) follow, and that consumer loses the matching input rows. A channel whose output also
feeds anything else (a residual Add, a concatenation, a model output) is left alone: removing it
would need the other branch to agree, which magnitude alone cannot decide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...config.structural import PruneSettings
from ...errors import UsageError
from ..magnitude import ChannelPlan, magnitude_masks, strongest_channels
from . import graph as kg

#: layers a channel passes through unchanged in meaning (channel axis last)
CHANNEL_WISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout2D",
                "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D", "ZeroPadding2D", "BatchNormalization", "DepthwiseConv2D"}
#: layers whose output channels can be removed, and whose input rows follow a removal upstream
PRODUCERS = ("Conv2D", "Dense")


def prune_unstructured(model: Any, settings: PruneSettings) -> dict[str, np.ndarray]:
    """Zero the smallest kernel weights in place; returns the masks (1 keep, 0 pruned) by layer."""
    layers = kg.kernel_layers(model)
    skip = kg.resolve_skip(model, settings.skip, layers)
    _check_names(model, settings.per_layer)
    chosen = [layer for layer in layers if layer.name not in skip]
    kernels = {layer.name: layer.kernel.numpy() for layer in chosen}
    masks = magnitude_masks(kernels, settings)
    for layer in chosen:
        layer.kernel.assign(kernels[layer.name] * masks[layer.name])
    return masks


def _check_names(model: Any, per_layer: dict[str, float]) -> None:
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(per_layer) - names)
    if unknown:
        raise UsageError(f"per-layer sparsity names unknown layer(s) {', '.join(unknown)}")
    bad = [n for n, s in per_layer.items() if not 0 <= s < 1]
    if bad:
        raise UsageError(f"per-layer sparsity of {', '.join(bad)} is not in [0, 1)")


def prune_structured(model: Any, settings: PruneSettings) -> tuple[Any, ChannelPlan]:
    """A new, narrower model with the surviving channels' weights, and the plan it followed."""
    plan = plan_channels(model, settings)

    def narrower(layer: Any) -> Any:
        config = layer.get_config()
        if layer.name in plan.outputs:
            config["filters" if kg.kind(layer) == "Conv2D" else "units"] = \
                len(plan.outputs[layer.name])
        return layer.__class__.from_config(config)

    new = kg.clone(model, narrower)
    kg.copy_weights(model, new, lambda layer, w: _slice(layer, w, plan))
    return new, plan


def plan_channels(model: Any, settings: PruneSettings) -> ChannelPlan:
    producers = [layer for layer in model.layers if _is_producer(layer)]
    skip = kg.resolve_skip(model, settings.skip, producers)
    _check_names(model, settings.per_layer)
    outputs = kg.output_layers(model)
    plan = ChannelPlan()
    for layer in producers:
        if layer.name in skip:
            plan.skipped[layer.name] = "in the skip list"
            continue
        chain = _chain_to_consumer(model, layer, outputs)
        if isinstance(chain, str):
            plan.skipped[layer.name] = chain
            continue
        kernel = layer.kernel.numpy()
        sparsity = settings.per_layer.get(layer.name, settings.sparsity)
        keep = strongest_channels(np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0),
                                  sparsity)
        plan.outputs[layer.name] = keep
        idx = keep
        for between in chain[:-1]:
            if kg.kind(between) == "Flatten":
                spatial = tuple(int(d) for d in between.input.shape[1:])
                idx = np.arange(int(np.prod(spatial))).reshape(spatial)[..., idx].ravel()
            plan.between[between.name] = idx
        plan.inputs[chain[-1].name] = idx
    return plan


def _is_producer(layer: Any) -> bool:
    if kg.kind(layer) not in PRODUCERS:
        return False
    return kg.kind(layer) == "Dense" or (layer.groups == 1 and
                                         layer.data_format == "channels_last")


def _chain_to_consumer(model: Any, producer: Any, outputs: set[str]) -> list[Any] | str:
    """[channel-wise layers..., consumer], or the reason the producer must keep its width."""
    chain: list[Any] = []
    current = producer
    flattened = False
    while True:
        if current.name in outputs:
            return "its output is a model output"
        nxt = kg.consumers(model, current)
        if len(nxt) != 1:
            return "its output feeds several layers" if nxt else "nothing reads its output"
        layer = nxt[0]
        chain.append(layer)
        k = kg.kind(layer)
        if k in PRODUCERS and _is_producer(layer) and (k == "Dense" or not flattened):
            return chain
        if k == "Flatten" and not flattened and None not in layer.input.shape[1:]:
            flattened = True
        elif k == "DepthwiseConv2D" and layer.depth_multiplier != 1:
            return "a depthwise convolution with depth_multiplier > 1 follows"
        elif k not in CHANNEL_WISE or (flattened and k not in ("Dropout", "Activation")):
            return f"a {k} layer follows, which pruning cannot narrow"
        current = layer


def _slice(layer: Any, weights: list[np.ndarray], plan: ChannelPlan) -> list[np.ndarray] | None:
    """The old layer's weights restricted to the surviving channels (None: unchanged)."""
    name, k = layer.name, kg.kind(layer)
    if k in PRODUCERS:
        kernel, rest = weights[0], weights[1:]
        if name in plan.inputs:
            kernel = np.take(kernel, plan.inputs[name], axis=-2)
        if name in plan.outputs:
            keep = plan.outputs[name]
            kernel = kernel[..., keep]
            rest = [w[keep] for w in rest]
        return [kernel, *rest]
    if name in plan.between:
        idx = plan.between[name]
        if k == "DepthwiseConv2D":
            return [weights[0][:, :, idx, :], *(w[idx] for w in weights[1:])]
        return [w[idx] for w in weights]
    return None
