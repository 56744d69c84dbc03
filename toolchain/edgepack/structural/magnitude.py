"""What pruning by magnitude means in every framework: masks that zero the smallest weights,
the output channels with the largest L1 norm, and the plan recording which channels survive.
Each framework's pass reads its weights into numpy, asks here, and applies the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config.structural import PruneSettings


def magnitude_masks(kernels: dict[str, np.ndarray],
                    settings: PruneSettings) -> dict[str, np.ndarray]:
    """Masks (1 keep, 0 pruned) by name: one magnitude threshold over all ``kernels`` (global
    scope), else each kernel's own sparsity (``per_layer`` overrides the default)."""
    if not kernels:
        return {}
    if settings.scope == "global" and not settings.per_layer:
        magnitudes = np.sort(np.concatenate([np.abs(k).ravel() for k in kernels.values()]))
        count = int(round(settings.sparsity * magnitudes.size))
        cut = magnitudes[count - 1] if count else -np.inf
        return {n: (np.abs(k) > cut).astype(k.dtype) for n, k in kernels.items()}
    return {n: _layer_mask(k, settings.per_layer.get(n, settings.sparsity))
            for n, k in kernels.items()}


def _layer_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """Exactly round(sparsity * size) smallest-magnitude entries zero (ties broken by order)."""
    mask = np.ones(kernel.size, kernel.dtype)
    mask[np.argsort(np.abs(kernel).ravel(), kind="stable")[:int(round(sparsity * kernel.size))]] = 0
    return mask.reshape(kernel.shape)


def strongest_channels(norms: np.ndarray, sparsity: float) -> np.ndarray:
    """The sorted indices of the channels to keep: the round((1 - sparsity) * width) largest
    ``norms`` (at least one; ties broken by order)."""
    keep_n = max(1, int(round((1 - sparsity) * len(norms))))
    return np.sort(np.argsort(-norms, kind="stable")[:keep_n])


@dataclass
class ChannelPlan:
    """Which channels survive: outputs of producers, inputs of consumers, and the (flattened)
    indices seen by the layers in between."""

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    between: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why it kept its width

    def details(self) -> dict[str, Any]:
        """The prune stage's details for the report: channels kept, and who kept its width."""
        return {"kept_channels": {k: len(v) for k, v in self.outputs.items()},
                "kept_width": self.skipped}
