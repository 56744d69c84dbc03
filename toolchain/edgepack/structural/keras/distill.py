"""Knowledge distillation in Keras: the student is compiled with the distillation loss
(loss.py) and trained with ``fit`` on the teacher's outputs.

Training is seeded, holds out a fraction of the given data to stop early on the distillation
loss (restoring the best epoch), and, after an unstructured prune, re-applies the pruning masks
after every step so the zeros stay zeros.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ...config.structural import DistillSettings
from ...data.dataset import Dataset
from ...errors import UsageError
from ..training import DistillResult, holdout, soft_targets
from .loss import kd_loss


def _inputs(model: Any, data: Dataset, idx: np.ndarray) -> Any:
    arrays = [data.inputs[t.name][idx] for t in model.inputs]
    return arrays[0] if len(arrays) == 1 else arrays


def distill(teacher: Any, student: Any, data: Dataset, settings: DistillSettings,
            masks: dict[str, np.ndarray] | None = None) -> DistillResult:
    """Train ``student`` (in place) on ``teacher``'s outputs for ``data``'s inputs."""
    import keras

    if len(teacher.outputs) != 1 or len(student.outputs) != 1:
        raise UsageError("distillation supports single-output models only")
    n = len(data)
    train_idx, val_idx = holdout(n, settings)
    keras.utils.set_random_seed(settings.seed)
    teacher_out = np.asarray(teacher.predict(_inputs(teacher, data, np.arange(n)),
                                             batch_size=256, verbose=0), np.float32)
    targets = soft_targets(teacher_out, data)
    target = targets.values
    loss = kd_loss(targets, settings) if targets.classes else "mse"
    student.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss)
    callbacks: list[Any] = [keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True)]
    if masks:
        callbacks.append(_keep_zeros(student, masks))
    history = student.fit(
        _inputs(student, data, train_idx), target[train_idx],
        validation_data=(_inputs(student, data, val_idx), target[val_idx]),
        epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True,
        callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 0)
    val = history.history["val_loss"]
    return DistillResult(len(val), float(min(val)), len(train_idx), len(val_idx),
                         targets.labelled)


def _keep_zeros(model: Any, masks: dict[str, np.ndarray]) -> Any:
    """A callback that re-applies the pruning masks after every training step."""
    import keras

    pairs = [(model.get_layer(name).kernel, mask) for name, mask in masks.items()]

    def apply(batch: int, logs: Any) -> None:
        for kernel, mask in pairs:
            kernel.assign(kernel * mask)

    return keras.callbacks.LambdaCallback(on_train_batch_end=apply)
