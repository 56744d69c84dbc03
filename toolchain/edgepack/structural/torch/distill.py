"""Knowledge distillation in PyTorch: the same loss and schedule as the Keras pass
(keras/distill.py).

KL(softmax(t/T) || softmax(s/T)) * T^2 on teacher and student logits, mixed with label cross
entropy (weight 1 - alpha) when the data is labelled; mean squared error for a non-classifier.
Adam, seeded (``torch.manual_seed`` and deterministic algorithms, restored afterwards), early
stopping on a held-out split with the best epoch's weights restored, and the pruning masks
re-applied after every step so unstructured zeros stay zeros.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...config.structural import DistillSettings
from ...data.dataset import Dataset
from ...signature import Signature
from ..training import DistillResult, Targets, fit, holdout, soft_targets
from . import graph as tg

BATCH = 256  # inference batch for the teacher's outputs and the validation loss


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """A reproducible run: seeded torch RNG and deterministic kernels, then back as it was.
    An op with no deterministic kernel warns instead of failing the build."""
    import torch

    was = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def predict(gm: Any, signature: Signature, data: Dataset) -> np.ndarray:
    import torch

    n = len(data)
    with torch.no_grad():
        return np.concatenate([tg.run(gm, tg.inputs(signature, data.inputs,
                                                     np.arange(i, min(n, i + BATCH)))).numpy()
                               for i in range(0, n, BATCH)])


def kd_loss(student_out: Any, target: Any, targets: Targets, settings: DistillSettings) -> Any:
    """Mean loss of a batch; ``target`` rows are laid out as ``targets.values``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if not targets.classes:
        return F.mse_loss(student_out, target)
    t, classes = settings.temperature, targets.classes
    logits = torch.log(student_out.clamp(1e-7, 1.0)) if targets.probs else student_out
    soft = F.log_softmax(target[:, :classes] / t, dim=-1)
    kl = F.kl_div(F.log_softmax(logits / t, dim=-1), soft, reduction="batchmean",
                  log_target=True) * (t * t)
    if not targets.labelled:
        return kl
    ce = F.cross_entropy(logits, target[:, classes].long())
    return settings.alpha * kl + (1 - settings.alpha) * ce


def distill(teacher: Any, student: Any, signature: Signature, data: Dataset,
            settings: DistillSettings, masks: dict[str, np.ndarray] | None = None
            ) -> DistillResult:
    """Train ``student`` (in place) on ``teacher``'s outputs for ``data``'s inputs."""
    import torch

    train_idx, val_idx = holdout(len(data), settings)
    targets = soft_targets(predict(teacher, signature, data), data)
    values = torch.from_numpy(targets.values)
    kept = [(tg.get(student, name), torch.from_numpy(mask)) for name, mask in (masks or {}).items()]
    params = [p for p in student.parameters() if p.requires_grad]

    def loss_of(idx: np.ndarray) -> Any:
        out = tg.run(student, tg.inputs(signature, data.inputs, idx))
        return kd_loss(out, values[idx], targets, settings)

    def step(idx: np.ndarray) -> float:
        optimizer.zero_grad()
        loss = loss_of(idx)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for weight, mask in kept:
                weight.mul_(mask)
        return float(loss.detach())

    def validate() -> float:
        with torch.no_grad():
            parts = [(loss_of(val_idx[i:i + BATCH]), len(val_idx[i:i + BATCH]))
                     for i in range(0, len(val_idx), BATCH)]
        return float(sum(float(loss) * n for loss, n in parts) / len(val_idx))

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in student.state_dict().items()}

    with seeded(settings.seed):
        optimizer = torch.optim.Adam(params, lr=settings.learning_rate)
        epochs, best = fit(step, validate, snapshot, student.load_state_dict, train_idx,
                           settings)
    return DistillResult(epochs, best, len(train_idx), len(val_idx), targets.labelled)
