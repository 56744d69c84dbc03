"""SavedModel sources: pruned and fine-tuned in TensorFlow, on the variables the serving function
reads.

Decision (tried, not assumed): ``tf.saved_model.load`` restores a SavedModel's variables as
``tf.Variable`` objects that the restored serving function captures; ``GradientTape`` through
that function yields a gradient for every trainable one (checked on Keras ``model.export``
folders, with conv, dense and batch-norm layers), and saving the loaded object again with the
same serving signature gives a SavedModel that converts like the original. So a SavedModel is
fine-tuned in TF (distill.py), with no detour through ONNX, whose post-training path could
not fine-tune at all.

What a restored SavedModel cannot do is change shape: its serving function is a fixed graph
whose ops and shapes were traced at save time. So:
- unstructured pruning works: zeros in the kernel variables (trainable float variables of rank
  2 or more, in the order the serving function captures them), kept zero while fine-tuning;
- structured pruning is applied as unstructured pruning at the same sparsity, with a note;
- low-rank factorization (it inserts a layer) is not possible and is skipped with a note;
both need the Keras model (or the ONNX file, for post-training factorization).
A SavedModel whose serving function reads no trainable variable (a frozen graph) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...config.structural import PruneSettings
from ...errors import UsageError
from ...formats.savedmodel import SERVING_KEY, SavedModelFormat
from ...quiet import captured
from ..magnitude import magnitude_masks


class Restored:
    """A loaded SavedModel: the object (which owns the variables) and its serving function."""

    def __init__(self, path: Path):
        self.path = path
        self.loaded, self.fn = SavedModelFormat().load(path)
        if not self.fn.trainable_variables:
            raise UsageError("the SavedModel's serving function reads no trainable variables "
                             "(a frozen graph): it cannot be pruned or fine-tuned",
                             hint="give the Keras model, or convert it to ONNX for "
                                  "post-training pruning")

    @property
    def variables(self) -> list[Any]:
        return list(self.fn.trainable_variables)

    def kernels(self) -> dict[str, Any]:
        """The weight matrices and filter banks by layer name ("dense" for dense/kernel:0)."""
        found = {}
        for v in self.variables:
            if v.dtype.is_floating and v.shape.rank is not None and v.shape.rank >= 2:
                name = v.name.split(":")[0]
                found[name.removesuffix("/kernel")] = v
        return found

    def __call__(self, arrays: dict[str, Any]) -> Any:
        out = self.fn(**arrays)
        if len(out) != 1:
            raise UsageError("distillation supports single-output models only")
        return next(iter(out.values()))

    def weight_counts(self) -> tuple[int, int]:
        values = [v.numpy() for v in self.fn.variables]
        return (int(sum(a.size for a in values)), int(sum(np.count_nonzero(a) for a in values)))

    def save(self, path: Path) -> Path:
        import tensorflow as tf

        with captured():
            tf.saved_model.save(self.loaded, str(path), signatures={SERVING_KEY: self.fn})
        return path


def prune(model: Restored, settings: PruneSettings) -> dict[str, np.ndarray]:
    """Zero the smallest kernel weights in place; the masks (1 keep, 0 pruned) by layer name.
    ``skip`` None leaves the first and last kernels, as for every other source."""
    kernels = model.kernels()
    names = list(kernels)
    unknown = sorted((set(settings.skip or ()) | set(settings.per_layer)) - set(names))
    if unknown:
        raise UsageError(f"structural settings name unknown layer(s) {', '.join(unknown)}",
                         hint="the SavedModel's kernels: " + ", ".join(names))
    skip = set(settings.skip) if settings.skip is not None else \
        ({names[0], names[-1]} if names else set())
    masks = magnitude_masks({n: v.numpy() for n, v in kernels.items() if n not in skip},
                            settings)
    for name, mask in masks.items():
        kernels[name].assign(kernels[name] * mask)
    return masks
