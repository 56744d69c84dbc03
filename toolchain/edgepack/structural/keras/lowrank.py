"""Low-rank factorization of Keras Dense and 1x1 Conv2D layers (the rank rule is ``svd.py``'s).

A factorized layer becomes two: a thin one with r units, no bias and no activation
(A = U_r * S_r), then the original layer with its bias and activation reading r inputs
(B = V_r^T). The second keeps the original name, so a factorized output layer still names the
model's output. Layers where the pair would not save multiply-adds are left and reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...config.structural import LowRankSettings
from ..svd import Factorization, factor
from . import graph as kg


def _factorable(layer: Any) -> bool:
    k = kg.kind(layer)
    if k == "Dense":
        return len(layer.kernel.shape) == 2
    return (k == "Conv2D" and tuple(layer.kernel_size) == (1, 1) and layer.groups == 1
            and layer.data_format == "channels_last")


def factorize_keras(model: Any, settings: LowRankSettings) -> tuple[Any, list[Factorization]]:
    """A new model with every paying Dense / 1x1 Conv2D split in two; and every decision."""
    import keras

    decisions: list[Factorization] = []
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in model.layers:
        if not _factorable(layer):
            continue
        kernel = layer.kernel.numpy()
        decision, a, b = factor(kernel.reshape(kernel.shape[-2], kernel.shape[-1]), settings,
                                layer.name)
        decisions.append(decision)
        if a is not None and b is not None:
            factors[layer.name] = (a, b)

    def outer(layer: Any) -> Any:
        config = layer.get_config()
        if layer.name in factors and kg.kind(layer) == "Conv2D":
            config.update(strides=(1, 1), padding="valid")  # the thin conv does the striding
        return layer.__class__.from_config(config)

    originals = {layer.name: layer for layer in model.layers}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer.name not in factors:
            return layer(*args, **kwargs)
        rank = factors[layer.name][0].shape[1]
        thin_name = f"{layer.name}_lowrank"
        if kg.kind(layer) == "Dense":
            thin = keras.layers.Dense(rank, use_bias=False, name=thin_name)
        else:
            src = originals[layer.name]  # the clone was made stride 1, "valid"
            thin = keras.layers.Conv2D(rank, 1, strides=src.strides, padding=src.padding,
                                       use_bias=False, name=thin_name)
        return layer(thin(*args, **kwargs))

    new = kg.clone(model, outer, call)
    kg.copy_weights(model, new, lambda layer, w: _outer_weights(layer, w, factors))
    for name, (a, _) in factors.items():
        thin = new.get_layer(f"{name}_lowrank")
        thin.set_weights([a.reshape(thin.kernel.shape)])
    return new, decisions


def _outer_weights(layer: Any, weights: list[np.ndarray],
                   factors: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray] | None:
    if layer.name not in factors:
        return None
    b = factors[layer.name][1]
    return [b.reshape((*weights[0].shape[:-2], *b.shape)), *weights[1:]]
