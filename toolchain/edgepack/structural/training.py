"""The framework-neutral half of a distillation run: the held-out split, the soft targets, the
epoch loop with early stopping, and its progress bar.

Keras trains with ``fit``; PyTorch and restored SavedModels have no such loop, so they share
this one: seeded shuffling, one optimizer step per batch, the validation loss after every
epoch, and the best epoch's weights restored at the end (Keras' ``EarlyStopping`` with
``restore_best_weights``, same patience semantics). The bar is drawn only on a terminal, like
Keras' own ``verbose=1``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..config.structural import DistillSettings
from ..data.dataset import Dataset, is_class_labels
from ..errors import UsageError

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


@dataclass
class Targets:
    """What the student is trained towards, one row per sample.

    For a classifier (2-D outputs): the teacher's logits, then the label as a last column when
    the data is labelled. Otherwise the teacher's raw outputs (matched with mean squared error).
    """

    values: np.ndarray
    classes: int  # 0 for a non-classifier
    probs: bool  # the models output probabilities: their logs are the logits
    labelled: bool


def nothing_to_distil() -> UsageError:
    return UsageError("nothing to distil into: the passes left the model as it was",
                      hint="add --prune/--lowrank, a distill width in the profile, or "
                           "--student MODEL")


def choose_student(settings: DistillSettings, student: Path | None, changed: bool,
                   current: Any, masks: dict[str, Any], load: Callable[[Path], Any],
                   narrow: Callable[[float], Any]) -> tuple[Any, str, dict[str, Any]]:
    """(the model to distil into, what it is, the pruning masks it keeps): the given student
    (``load``), the source narrowed to the distill width (``narrow``), or the model the passes
    pruned/factorized, with its masks. The same choice in every framework."""
    if student is not None:
        return load(student), f"given ({student.name})", {}
    if settings.width is not None:
        return narrow(settings.width), f"width x{settings.width:g}", {}
    if changed:
        return current, "pruned/factorized", masks
    raise nothing_to_distil()


def require_data(train: Dataset | None) -> Dataset:
    """The training data, or the error saying where it comes from."""
    if train is None:
        raise UsageError("distillation needs training data",
                         hint="pass --train DATA (or --calibration DATA, used unlabelled)")
    return train


def holdout(n: int, settings: DistillSettings) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices), seeded; the validation part stops training."""
    n_val = max(1, int(round(settings.validation_split * n)))
    if n - n_val < 2:
        raise UsageError(f"{n} training samples are too few to distil on",
                         hint="pass --train DATA (or more calibration data)")
    order = np.random.default_rng(settings.seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def as_logits(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """(logits, whether the model outputs probabilities).

    log(p) is the logit vector up to a constant, which softmax ignores, so a model ending in a
    softmax is distilled exactly like one that returns logits.
    """
    probs = bool(scores.min() >= 0 and scores.max() <= 1 and
                 np.allclose(scores.sum(axis=1), 1, atol=PROB_TOLERANCE))
    return (np.log(np.clip(scores, 1e-7, 1)) if probs else scores), probs


def soft_targets(teacher_out: np.ndarray, data: Dataset) -> Targets:
    labelled = data.labels is not None and is_class_labels(data.labels)
    if teacher_out.ndim != 2:
        return Targets(teacher_out.astype(np.float32), 0, False, False)
    logits, probs = as_logits(teacher_out)
    columns = [logits] + ([data.labels.reshape(-1, 1).astype(np.float32)] if labelled else [])
    return Targets(np.concatenate(columns, axis=1).astype(np.float32), logits.shape[1], probs,
                   labelled)


def fit(step: Callable[[np.ndarray], float], validate: Callable[[], float],
        snapshot: Callable[[], Any], restore: Callable[[Any], None], train_idx: np.ndarray,
        settings: DistillSettings, bar: EpochBar | None = None) -> tuple[int, float]:
    """Train until ``settings.epochs`` or ``patience`` epochs without a better validation loss;
    restore the best weights. ``step`` trains on one batch of sample indices and returns its
    loss. Returns (epochs run, best validation loss)."""
    rng = np.random.default_rng(settings.seed)
    bs = settings.batch_size
    batches = (len(train_idx) + bs - 1) // bs
    bar = bar or EpochBar(settings.epochs, batches)
    best, best_state, waited, epoch = float("inf"), snapshot(), 0, 0
    for epoch in range(1, settings.epochs + 1):
        order = rng.permutation(train_idx)
        total = 0.0
        for b in range(batches):
            total += step(order[b * bs:(b + 1) * bs])
            bar.update(epoch, b + 1, total / (b + 1))
        val = validate()
        bar.end(epoch, total / batches, val)
        if val < best:
            best, best_state, waited = val, snapshot(), 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    restore(best_state)
    return epoch, best


class EpochBar:
    """``Epoch 3/40  12/12 [==============================] loss: 0.41 - val_loss: 0.38``,
    redrawn in place; silent unless ``stream`` is a terminal."""

    WIDTH = 30

    def __init__(self, epochs: int, batches: int, stream: TextIO | None = None):
        self.epochs, self.batches = epochs, batches
        self.stream = stream or sys.stdout
        self.on = self.stream.isatty()

    def _line(self, epoch: int, done: int, loss: float) -> str:
        filled = self.WIDTH * done // self.batches
        bar = "=" * filled + (">" if filled < self.WIDTH else "") + \
            "." * (self.WIDTH - filled - 1)
        return (f"Epoch {epoch}/{self.epochs}  {done}/{self.batches} [{bar[:self.WIDTH]}] "
                f"loss: {loss:.4g}")

    def update(self, epoch: int, done: int, loss: float) -> None:
        if self.on:
            self.stream.write("\r" + self._line(epoch, done, loss))
            self.stream.flush()

    def end(self, epoch: int, loss: float, val: float) -> None:
        if self.on:
            self.stream.write(f"\r{self._line(epoch, self.batches, loss)} - val_loss: "
                              f"{val:.4g}\n")
            self.stream.flush()
