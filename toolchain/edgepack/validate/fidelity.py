"""How closely an artifact's outputs follow the source model's, per output.

Max/mean abs error catch a broken kernel; cosine and SNR summarise quantization noise without
depending on the output's scale; top-1 agreement and top-5 overlap say what a classifier's user
will see. All are computed on the same eval inputs fed to both models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class OutputFidelity:
    name: str
    samples: int
    max_abs_error: float
    mean_abs_error: float
    cosine: float  # mean over samples of the per-sample cosine similarity
    snr_db: float | None  # None: undefined (identical outputs, or an all-zero reference)
    top1_agreement: float | None = None  # classifiers only
    top5_overlap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_classifier_output(ref: np.ndarray) -> bool:
    """A (N, C) output with C >= 2: class scores, so agreement metrics apply."""
    return ref.ndim == 2 and ref.shape[1] >= 2


def compare(name: str, ref: np.ndarray, out: np.ndarray) -> OutputFidelity:
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64).reshape(ref.shape)
    n = ref.shape[0] if ref.ndim else 1
    diff = out - ref
    r = ref.reshape(n, -1)
    o = out.reshape(n, -1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    dots = np.sum(r * o, axis=1)
    # two all-zero vectors are identical (cosine 1); one zero vector shares no direction (0)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(o, axis=1) == 0)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(both_zero, 1.0, 0.0))
    noise = float(np.sum(diff ** 2))
    signal = float(np.sum(ref ** 2))
    snr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None
    result = OutputFidelity(name=name, samples=n, max_abs_error=float(np.max(np.abs(diff))),
                            mean_abs_error=float(np.mean(np.abs(diff))),
                            cosine=float(np.mean(cos)), snr_db=snr)
    if is_classifier_output(ref):
        result.top1_agreement = float(np.mean(ref.argmax(1) == out.argmax(1)))
        result.top5_overlap = topk_overlap(ref, out, min(5, ref.shape[1]))
    return result


def topk_overlap(ref: np.ndarray, out: np.ndarray, k: int) -> float:
    """Mean share of the source's top-k classes that are also in the artifact's top-k.

    Ties count as in: an int8 output maps many small scores to the same value, and which of the
    tied classes an argsort puts first says nothing about the model.
    """
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    kth = -np.sort(-out, axis=1)[:, k - 1:k]  # the artifact's k-th largest score per sample
    hits = np.take_along_axis(out, top_ref, axis=1) >= kth
    return float(np.mean(hits.sum(axis=1) / k))


def compare_all(names: list[str], refs: list[np.ndarray],
                outs: list[np.ndarray]) -> list[OutputFidelity]:
    """Per-output fidelity; outputs are matched by position (formats rename them)."""
    if len(refs) != len(outs):
        raise ValueError(f"the artifact has {len(outs)} outputs, the source {len(refs)}")
    return [compare(n, r, o) for n, r, o in zip(names, refs, outs, strict=True)]
