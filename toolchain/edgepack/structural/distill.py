"""Knowledge distillation in Keras: a student learns the teacher's output distribution.

The loss is the classic one (Hinton et al.): KL(softmax(t/T) || softmax(s/T)) * T^2 on the
teacher's and student's logits t and s, mixed as alpha * KL + (1 - alpha) * CE(labels) when the
training data has labels. Models that end in a softmax give probabilities, not logits; log(p)
is the logit vector up to a constant, which softmax ignores, so both kinds work unchanged. A
non-classifier output (not a 2-D score vector) is matched with mean squared error instead.

Training is seeded, holds out a fraction of the given data to stop early on the distillation
loss (restoring the best epoch), and, after an unstructured prune, re-applies the pruning masks
after every step so the zeros stay zeros.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import Dataset, is_class_labels
from ..errors import UsageError
from .settings import DistillSettings

#: outputs within this of summing to one (and in [0, 1]) are read as probabilities
PROB_TOLERANCE = 1e-3


@dataclass
class DistillResult:
    epochs: int  # epochs run before early stopping
    best_val_loss: float
    train_samples: int
    val_samples: int
    labelled: bool

    def note(self) -> str:
        kind = "labelled" if self.labelled else "unlabelled"
        return (f"distilled on {self.train_samples} {kind} samples ({self.val_samples} held out "
                f"for early stopping): {self.epochs} epochs, best validation loss "
                f"{self.best_val_loss:.4g}")


def _inputs(model: Any, data: Dataset, idx: np.ndarray) -> Any:
    arrays = [data.inputs[t.name][idx] for t in model.inputs]
    return arrays[0] if len(arrays) == 1 else arrays


def _as_logits(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """(logits, whether the model outputs probabilities)."""
    probs = bool(scores.min() >= 0 and scores.max() <= 1 and
                 np.allclose(scores.sum(axis=1), 1, atol=PROB_TOLERANCE))
    return (np.log(np.clip(scores, 1e-7, 1)) if probs else scores), probs


def distill(teacher: Any, student: Any, data: Dataset, settings: DistillSettings,
            masks: dict[str, np.ndarray] | None = None) -> DistillResult:
    """Train ``student`` (in place) on ``teacher``'s outputs for ``data``'s inputs."""
    import keras

    if len(teacher.outputs) != 1 or len(student.outputs) != 1:
        raise UsageError("distillation supports single-output models only")
    n = len(data)
    n_val = max(1, int(round(settings.validation_split * n)))
    if n - n_val < 2:
        raise UsageError(f"{n} training samples are too few to distil on",
                         hint="pass --train DATA (or more calibration data)")
    keras.utils.set_random_seed(settings.seed)
    order = np.random.default_rng(settings.seed).permutation(n)
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    teacher_out = np.asarray(teacher.predict(_inputs(teacher, data, np.arange(n)),
                                             batch_size=256, verbose=0), np.float32)
    labelled = data.labels is not None and is_class_labels(data.labels)
    classifier = teacher_out.ndim == 2
    if classifier:
        logits, probs = _as_logits(teacher_out)
        columns = [logits] + ([data.labels.reshape(-1, 1).astype(np.float32)] if labelled else [])
        target = np.concatenate(columns, axis=1)
        loss = _kd_loss(logits.shape[1], settings, probs, labelled)
    else:
        target, loss = teacher_out, "mse"
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
    return DistillResult(len(val), float(min(val)), len(train_idx), len(val_idx), labelled)


def _kd_loss(classes: int, settings: DistillSettings, probs: bool, labelled: bool) -> Any:
    from keras import ops

    t = settings.temperature

    def loss(y_true: Any, y_pred: Any) -> Any:
        student_logits = ops.log(ops.clip(y_pred, 1e-7, 1.0)) if probs else y_pred
        soft = ops.softmax(y_true[:, :classes] / t)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-12, 1.0))
                             - ops.log_softmax(student_logits / t)), axis=-1) * (t * t)
        if not labelled:
            return kl
        labels = ops.cast(y_true[:, classes], "int32")
        ce = -ops.take_along_axis(ops.log_softmax(student_logits),
                                  ops.expand_dims(labels, -1), axis=-1)[:, 0]
        return settings.alpha * kl + (1 - settings.alpha) * ce

    return loss


def _keep_zeros(model: Any, masks: dict[str, np.ndarray]) -> Any:
    """A callback that re-applies the pruning masks after every training step."""
    import keras

    pairs = [(model.get_layer(name).kernel, mask) for name, mask in masks.items()]

    def apply(batch: int, logs: Any) -> None:
        for kernel, mask in pairs:
            kernel.assign(kernel * mask)

    return keras.callbacks.LambdaCallback(on_train_batch_end=apply)
