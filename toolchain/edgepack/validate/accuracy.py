"""Accuracy on labelled data: top-1/top-5 for classifiers, or a user's metric by import path."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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


def with_metric(name: str, fn: Metric, outputs: np.ndarray, labels: np.ndarray) -> Accuracy:
    return Accuracy(samples=len(labels), metric=name, value=float(fn(outputs, labels)))
