"""The distillation loss, in ``keras.ops`` so that it runs on Keras and on plain TF tensors
alike (the Keras trainer and the SavedModel trainer share it).

The classic loss (Hinton et al.): KL(softmax(t/T) || softmax(s/T)) * T^2 on the teacher's and
student's logits t and s, mixed as alpha * KL + (1 - alpha) * CE(labels) when the training data
has labels. Models that end in a softmax give probabilities, not logits; log(p) is the logit
vector up to a constant, which softmax ignores, so both kinds work unchanged. A non-classifier
output (not a 2-D score vector) is matched with mean squared error instead, by the caller.
"""

from __future__ import annotations

from typing import Any

from ...config.structural import DistillSettings
from ..training import Targets


def kd_loss(targets: Targets, settings: DistillSettings) -> Any:
    """loss(y_true, y_pred) per sample, for ``y_true`` rows laid out as ``targets.values``."""
    from keras import ops

    t, classes, probs, labelled = (settings.temperature, targets.classes, targets.probs,
                                   targets.labelled)

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
