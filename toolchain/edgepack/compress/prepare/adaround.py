"""Learned weight rounding (AdaRound, Nagel et al. 2020) written back as float weights.

Each weight row (an output channel) goes on the symmetric int8 grid every format's quantizer
uses for weights: ``scale = max|w| / 127`` per output channel. Whether each weight rounds up
or down is learned to minimise the layer's output error on the calibration inputs (their
second moments, layers.py) instead of rounding to nearest. The row's largest-magnitude weight
keeps its exact value (it sits on +-127), so ONNX Runtime, NNCF and the TFLite converter
compute the same scale from the written floats and reproduce the learned integers exactly.
A row keeps nearest rounding where learning does not lower its error on the calibration data.
A layer followed by a batch normalization is left alone (list ``fold-batchnorm`` first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...data.dataset import Dataset
from .graph import Graph
from .layers import input_moments, weight_layers

#: the int8 weight grid's largest level (symmetric, narrow range: -127..127)
QMAX = 127
#: AdaRound's rectified sigmoid stretch
ZETA, GAMMA = 1.1, -0.1
#: optimisation settings: steps, Adam's rate, the rounding regulariser's weight, the share of
#: steps before it starts, its exponent's annealing from and to
STEPS, RATE, REG_WEIGHT, WARMUP, BETA = 200, 0.05, 0.01, 0.2, (20.0, 2.0)
#: calibration samples whose layer inputs the rounding is learned on
SAMPLES = 32
#: eigen-directions of a layer's inputs the optimiser keeps (the final choice per row uses all)
RANK = 64


@dataclass
class RoundingResult:
    """One layer's learned rounding: the new rows and the output errors it chose between."""

    rows: np.ndarray
    nearest_error: float
    learned_error: float


class AdaRound:
    """Learn each weight layer's int8 rounding on the calibration samples."""

    name = "adaround"
    needs_samples = True
    exact = False

    def apply(self, graph: Graph, samples: Dataset) -> str:
        # a normalization after the layer would be folded into the rounded weights by the
        # quantizer's own graph optimizer, off the grid: fold-batchnorm runs first for those
        layers = [layer for layer in weight_layers(graph)
                  if not any(n.op_type == "BatchNormalization"
                             for n in graph.consumers.get(layer.node.output[0], []))]
        if not layers:
            return "no weight layer to round"
        feeds = samples.take(SAMPLES, 0).samples()
        moments = input_moments(graph.model, layers, feeds)
        before = after = 0.0
        for layer, g in zip(layers, moments, strict=True):
            result = learn_rounding(layer.rows, g)
            graph.set_weight(layer.node.input[1], layer.stored(result.rows))
            before += result.nearest_error
            after += result.learned_error
        gain = 1 - after / before if before > 0 else 0.0
        return (f"{len(layers)} layer(s) rounded on {len(feeds)} samples, summed layer output "
                f"error {gain:.0%} below nearest rounding")


def grid(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row scale (groups, outputs, 1) and the mask of each row's largest-magnitude weight."""
    peak = np.abs(rows).max(axis=2, keepdims=True)
    scale = peak.astype(np.float32) / np.float32(QMAX)
    first = np.abs(rows).argmax(axis=2)[..., None]
    mask = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(mask, first, True, axis=2)
    return scale, mask


def on_grid(rows: np.ndarray, scale: np.ndarray, mask: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Integers ``q`` back as float weights; each row's peak keeps its exact value."""
    return np.where(mask, rows, q.astype(np.float32) * scale).astype(np.float32)


def row_errors(delta: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Each row's mean squared output change for weight change ``delta`` (groups, rows, k)."""
    return (np.matmul(delta.astype(np.float64), g) * delta).sum(-1)


def learn_rounding(rows: np.ndarray, g: np.ndarray) -> RoundingResult:
    """``rows`` (groups, outputs, k) rounded to the int8 grid, each row learned or nearest,
    whichever gives the smaller output error on inputs with second moments ``g``."""
    scale, mask = grid(rows)
    safe = np.where(scale > 0, scale, 1)
    nearest = np.clip(np.round(rows / safe), -QMAX, QMAX)
    learned = _optimise(rows / safe, mask, g)
    near_rows = on_grid(rows, scale, mask, nearest)
    learn_rows = on_grid(rows, scale, mask, learned)
    near_err = row_errors(near_rows - rows, g)
    learn_err = row_errors(learn_rows - rows, g)
    better = (learn_err < near_err)[..., None]
    chosen = np.where(better, learn_rows, near_rows)
    return RoundingResult(chosen, float(near_err.sum()),
                          float(np.minimum(learn_err, near_err).sum()))


def _optimise(scaled: np.ndarray, mask: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Learned integers for weights already divided by their scale: AdaRound's soft rounding
    ``floor(w) + h(v)`` with an annealed regulariser that drives each ``h`` to 0 or 1, by Adam
    on the closed-form gradient of the quadratic output error (no autograd: small layers are
    many, and their cost is per step)."""
    times_g = _operator(g)
    w = scaled.astype(np.float32)
    floor = np.floor(w)
    free = ~mask
    frac = np.clip(w - floor, 1e-4, 1 - 1e-4)
    v = np.log((frac - GAMMA) / (ZETA - frac))  # h(v) == frac
    near = np.where(free, np.round(w) - w, 0)
    base = np.maximum((times_g(near) * near).sum(-1), 1e-12)[..., None]
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    warm = int(STEPS * WARMUP)
    for step in range(1, STEPS + 1):
        sig = 1 / (1 + np.exp(-v))
        raw = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(raw, 0, 1)
        soft = floor + h
        inside = free & (soft >= -QMAX) & (soft <= QMAX) & (raw > 0) & (raw < 1)
        delta = np.where(free, np.clip(soft, -QMAX, QMAX) - w, 0)
        grad = 2 * times_g(delta) / base
        if step > warm:
            beta = BETA[1] + (BETA[0] - BETA[1]) * (1 - (step - warm) / (STEPS - warm))
            t = 2 * h - 1
            grad = grad - REG_WEIGHT * 2 * beta * np.abs(t) ** (beta - 1) * np.sign(t)
        grad = np.where(inside, grad * sig * (1 - sig) * (ZETA - GAMMA), 0)
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad * grad
        v -= RATE * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
    hard = floor + (v >= 0)
    return np.clip(np.where(mask, np.round(w), hard), -QMAX, QMAX)


def _operator(g: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``d -> d @ g`` per group; for wide layers through the ``RANK`` strongest eigen-directions
    of ``g``, so a step costs rows x width x RANK instead of rows x width^2."""
    if g.shape[1] <= RANK:
        full = g.astype(np.float32)
        return lambda d: np.matmul(d, full)
    factor = _factor(g)
    back = np.ascontiguousarray(np.swapaxes(factor, 1, 2))
    return lambda d: np.matmul(np.matmul(d, factor), back)


def _factor(g: np.ndarray) -> np.ndarray:
    """F (groups, k, r) with F F^T ~ g: the ``RANK`` strongest eigen-directions of each
    group's input moments, scaled by their root eigenvalues."""
    values, vectors = np.linalg.eigh(g)
    values = np.clip(values, 0, None)
    keep = min(RANK, g.shape[1])
    return (vectors[..., -keep:] * np.sqrt(values[:, None, -keep:])).astype(np.float32)
