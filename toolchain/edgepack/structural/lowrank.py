"""Low-rank factorization: a weight matrix W (m x n) becomes A (m x r) @ B (r x n) by truncated SVD.

A Keras Dense (or 1x1 Conv2D) becomes two layers: a thin one with r units, no bias and no
activation (A = U_r * S_r), then the original layer with its bias and activation reading r
inputs (B = V_r^T). The second keeps the original name, so a factorized output layer still
names the model's output. The pair computes fewer multiply-adds only when r * (m + n) < m * n;
any layer where that does not hold is left as it is and reported as skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..config.structural import LowRankSettings
from .keras import graph as kg


@dataclass
class Factorization:
    """One layer's decision, for the report."""

    layer: str
    shape: tuple[int, int]
    rank: int | None  # None: left as it is
    kept_energy: float
    params_before: int
    params_after: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_rank(singular: np.ndarray, m: int, n: int,
                settings: LowRankSettings) -> tuple[int, float]:
    """(rank, energy it keeps): the smallest rank keeping ``energy`` of sum(s^2), or the rank
    whose factor pair has ``param_ratio`` of the original parameters (at least 1)."""
    energy = np.cumsum(singular.astype(np.float64) ** 2)
    energy /= energy[-1] if energy[-1] > 0 else 1.0
    if settings.energy is not None:
        rank = int(np.searchsorted(energy, settings.energy - 1e-9)) + 1
    else:
        rank = max(1, int(settings.param_ratio * m * n / (m + n)))
    rank = min(rank, len(singular))
    return rank, float(energy[rank - 1])


def factor(weight: np.ndarray, settings: LowRankSettings,
           name: str) -> tuple[Factorization, np.ndarray | None, np.ndarray | None]:
    """The decision for a 2-D ``weight`` and, when it pays, the two factors A and B."""
    m, n = weight.shape
    u, s, vt = np.linalg.svd(weight.astype(np.float64), full_matrices=False)
    rank, kept = choose_rank(s, m, n, settings)
    if rank * (m + n) >= m * n:
        return Factorization(name, (m, n), None, kept, m * n, m * n,
                             f"rank {rank} saves nothing (r*(m+n) >= m*n)"), None, None
    a = (u[:, :rank] * s[:rank]).astype(weight.dtype)
    b = vt[:rank].astype(weight.dtype)
    return Factorization(name, (m, n), rank, kept, m * n, rank * (m + n)), a, b


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
