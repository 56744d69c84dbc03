"""Accuracy on labelled data: top-1/top-5 for classifiers, or a user's metric by import path."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset, is_class_labels
from ..errors import UsageError

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Accuracy:
    samples: int
    top1: float | None = None
    top5: float | None = None
    metric: str | None = None  # name of a user metric, when one was used
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classification(scores: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Top-1 and top-5 (top-k with k = min(5, classes)) of class scores against labels."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"class scores must be (N, C), got shape {scores.shape}")
    k = min(5, scores.shape[1])
    topk = np.argsort(-scores, axis=1)[:, :k]
    return Accuracy(samples=len(labels), top1=float(np.mean(topk[:, 0] == labels)),
                    top5=float(np.mean(np.any(topk == labels[:, None], axis=1))))


def load_metric(spec: str) -> Metric:
    """``package.module:function`` -> the function, called as ``f(outputs, labels) -> float``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"metric '{spec}' is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import metric module '{module_name}': {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"'{attr}' in '{module_name}' is not a function")
    return fn


@dataclass(frozen=True)
class UserMetric:
    """A user's metric: its import path (``package.module:function``) and the function."""

    spec: str
    fn: Metric

    @classmethod
    def load(cls, spec: str) -> UserMetric:
        return cls(spec, load_metric(spec))

    def code_file(self) -> Path | None:
        """The file the function's code is in (None: built in, or defined interactively):
        what a cached measurement with this metric depends on besides its name."""
        try:
            name = inspect.getsourcefile(self.fn)
        except TypeError:
            return None
        return Path(name) if name and Path(name).is_file() else None


def measure(outputs: list[np.ndarray], data: Dataset,
            metric: UserMetric | None = None) -> Accuracy | None:
    """Top-1/top-5 of the first output for a classifier with class labels, and the user's
    metric when given; None without labels."""
    if data.labels is None or not outputs:
        return None
    result = None
    if is_class_labels(data.labels) and outputs[0].ndim == 2:
        result = classification(outputs[0], data.labels)
    if metric is not None:
        value = float(metric.fn(outputs[0], data.labels))
        if result is None:
            return Accuracy(samples=len(data.labels), metric=metric.spec, value=value)
        result.metric, result.value = metric.spec, value
    return result
