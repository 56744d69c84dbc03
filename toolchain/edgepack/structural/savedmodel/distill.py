"""Knowledge distillation of a restored SavedModel: a GradientTape loop over the variables its
serving function reads.

There is no Keras model to ``fit``, so the loop is the shared one (training.fit) and the loss is
the Keras pass's own (``keras/loss.py``, written in ``keras.ops``, which run on TF tensors):
same soft targets, temperature, label mixing, Adam, seeding, early stopping and pruning masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...config.structural import DistillSettings
from ...data.dataset import Dataset
from ..keras.loss import kd_loss
from ..training import DistillResult, fit, holdout, soft_targets
from .restored import Restored

BATCH = 256  # inference batch for the teacher's outputs and the validation loss


def _feed(data: Dataset, idx: np.ndarray) -> dict[str, Any]:
    return {name: array[idx] for name, array in data.inputs.items()}


def predict(model: Restored, data: Dataset) -> np.ndarray:
    n = len(data)
    return np.concatenate([np.asarray(model(_feed(data, np.arange(i, min(n, i + BATCH)))))
                           for i in range(0, n, BATCH)])


def distill(teacher: Restored, student: Restored, data: Dataset, settings: DistillSettings,
            masks: dict[str, np.ndarray] | None = None) -> DistillResult:
    """Train ``student``'s variables (in place) on ``teacher``'s outputs for ``data``."""
    import keras
    import tensorflow as tf

    train_idx, val_idx = holdout(len(data), settings)
    keras.utils.set_random_seed(settings.seed)
    targets = soft_targets(predict(teacher, data), data)
    per_sample = kd_loss(targets, settings) if targets.classes else \
        (lambda y, p: tf.reduce_mean(tf.square(y - p), axis=list(range(1, len(p.shape)))))
    kernels = student.kernels()
    kept = [(kernels[name], mask) for name, mask in (masks or {}).items()]
    variables = student.variables
    optimizer = keras.optimizers.Adam(settings.learning_rate)

    def loss_of(idx: np.ndarray) -> Any:
        return tf.reduce_mean(per_sample(tf.constant(targets.values[idx]),
                                         student(_feed(data, idx))))

    def step(idx: np.ndarray) -> float:
        with tf.GradientTape() as tape:
            loss = loss_of(idx)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables, strict=True)
                                   if g is not None])
        for variable, mask in kept:
            variable.assign(variable * mask)
        return float(loss)

    def validate() -> float:
        parts = [(loss_of(val_idx[i:i + BATCH]), len(val_idx[i:i + BATCH]))
                 for i in range(0, len(val_idx), BATCH)]
        return float(sum(float(loss) * n for loss, n in parts) / len(val_idx))

    def snapshot() -> list[np.ndarray]:
        return [v.numpy() for v in variables]

    def restore(values: list[np.ndarray]) -> None:
        for v, value in zip(variables, values, strict=True):
            v.assign(value)

    epochs, best = fit(step, validate, snapshot, restore, train_idx, settings)
    return DistillResult(epochs, best, len(train_idx), len(val_idx), targets.labelled)
