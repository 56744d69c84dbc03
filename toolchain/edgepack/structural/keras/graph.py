"""Small Keras graph helpers the structural passes share: the layer graph, cloning, saving.

Every pass rebuilds the model with ``keras.models.clone_model`` (new layer objects from edited
configs, weights copied in afterwards) instead of editing a model in place, because Keras layers
cannot change their shapes once built. Sequential models are viewed as Functional first: cloning
with a ``call_function`` (one layer becoming two) only works on Functional graphs, and the saved
result is an ordinary Functional model of standard layers (no Lambda), loadable in safe mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError
from ...formats.keras import KerasFormat
from ...quiet import captured, import_tensorflow

#: layers whose kernel is a weight matrix or filter bank the passes act on
KERNEL_LAYERS = ("Conv2D", "Dense", "DepthwiseConv2D")


def load(path: Path) -> Any:
    """The Keras model in ``path`` (safe mode), as a Functional model."""
    return functional(KerasFormat().load(path))


def functional(model: Any) -> Any:
    import_tensorflow()
    import keras

    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def kind(layer: Any) -> str:
    return type(layer).__name__


def kernel_layers(model: Any) -> list[Any]:
    """Layers with a prunable kernel, in graph order (nested models are not entered)."""
    return [layer for layer in model.layers if kind(layer) in KERNEL_LAYERS]


def resolve_skip(model: Any, skip: list[str] | None, candidates: list[Any]) -> set[str]:
    """The layer names to leave alone: the given ones (checked), else the first and last."""
    if skip is None:
        return {candidates[0].name, candidates[-1].name} if candidates else set()
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise UsageError(f"structural skip list names unknown layer(s) {', '.join(unknown)}",
                         hint="the model's layers: " + ", ".join(sorted(names)))
    return set(skip)


def consumers(model: Any, layer: Any) -> list[Any]:
    """The layers of ``model`` that read ``layer``'s output."""
    own = {id(x) for x in model.layers}
    return [n.operation for n in layer._outbound_nodes if id(n.operation) in own]


def output_layers(model: Any) -> set[str]:
    return {t._keras_history.operation.name for t in model.outputs}


def clone(model: Any, clone_function: Callable[[Any], Any] | None = None,
          call_function: Callable[..., Any] | None = None) -> Any:
    """A rebuilt model: layers from ``clone_function`` (default: same config), called by
    ``call_function`` (default: as in the original). Weights are NOT copied."""
    import keras

    def same(layer: Any) -> Any:
        return layer.__class__.from_config(layer.get_config())

    kwargs: dict[str, Any] = {"clone_function": clone_function or same}
    if call_function is not None:
        kwargs["call_function"] = call_function
    return keras.models.clone_model(model, **kwargs)


def copy_weights(old: Any, new: Any,
                 transform: Callable[[Any, list[np.ndarray]], list[np.ndarray] | None]) -> None:
    """For each weighted layer of ``new``: ``transform(old_layer_of_same_name, its weights)``;
    None means "unchanged". Layers new in ``new`` are set by the caller."""
    old_names = {layer.name for layer in old.layers}
    for layer in new.layers:
        if not layer.weights or layer.name not in old_names:
            continue
        src = old.get_layer(layer.name)
        weights = src.get_weights()
        layer.set_weights(transform(src, weights) or weights)


def save(model: Any, path: Path) -> Path:
    """Save an uncompiled copy (no optimizer state: the file is the model, nothing else)."""
    clean = model.__class__.from_config(model.get_config())  # clone_model would copy compile()
    clean.set_weights(model.get_weights())
    with captured():
        clean.save(path)
    return path


def weight_counts(model: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters): unstructured pruning shows in the second only."""
    weights = model.get_weights()
    return (int(sum(w.size for w in weights)), int(sum(np.count_nonzero(w) for w in weights)))
