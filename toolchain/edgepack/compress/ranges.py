"""Activation ranges beyond min/max: the clipping range that minimizes a tensor's int8 error.

A min/max range spends the 256 int8 steps on the tensor's most extreme value: one outlier
makes every step coarse and the bulk of the values round badly. The range chosen here
minimizes the expected squared error of quantizing the tensor's calibration values: rounding
noise (step**2 / 12 for each value inside the range, nothing for exact zeros, which every
range represents) plus the clipping error of every value outside it. Values are streamed into
a fixed-size histogram one sample at a time, so memory does not grow with the samples.

Used by the ONNX (compress/onnx_ranges.py), OpenVINO (compress/openvino_ranges.py) and TFLite
(compress/tflite_ranges.py) int8 paths when the profile's calibration method is ``mse``; TFLite
also takes its ``percentile`` range from the same histogram.
"""

from __future__ import annotations

import numpy as np

#: histogram bins: the data spans at least a quarter of them (see ``Histogram.add``), about
#: four bins per int8 step, enough to place a clipping bound between two steps
BINS = 4096
#: clipping bounds tried per search step (each a share of the min/max bound)
CANDIDATES = 256
#: int8 and uint8 alike
LEVELS = 256
#: the share of values a percentile range holds: ONNX Runtime's default for its calibrator
PERCENTILE = 99.999


class Histogram:
    """Counts of a tensor's values over [-half_width, half_width], widened by doubling (each
    new bin is exactly two old ones) when a sample reaches beyond, plus the exact min, max and
    count of zeros. Non-finite values count in min/max only."""

    def __init__(self, bins: int = BINS):
        self.counts = np.zeros(bins)
        self.half_width = 0.0
        self.zeros = 0
        self.low = np.inf
        self.high = -np.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values).ravel()
        if values.size == 0:
            return
        low, high = float(values.min()), float(values.max())
        self.low, self.high = min(self.low, low), max(self.high, high)
        if not np.isfinite(low) or not np.isfinite(high):
            values = values[np.isfinite(values)]
            if values.size == 0:
                return
            low, high = float(values.min()), float(values.max())
        self.zeros += int(values.size - np.count_nonzero(values))
        reach = max(-low, high)
        if self.half_width == 0.0:
            self.half_width = reach or 1.0
        while reach > self.half_width:
            self._double()
        bins = self.counts.size
        # float64 only where float32 would overflow (a sentinel's -3.4e38 plus the width)
        kind = np.float32 if self.half_width < 1e30 else np.float64
        index = (values.astype(kind, copy=False) + kind(self.half_width)) \
            * kind(bins / (2 * self.half_width))
        self.counts += np.bincount(np.minimum(index.astype(np.intp), bins - 1), minlength=bins)

    def _double(self) -> None:
        bins = self.counts.size
        merged = self.counts.reshape(bins // 2, 2).sum(axis=1)
        self.counts = np.zeros(bins)
        self.counts[bins // 4: bins // 4 + bins // 2] = merged
        self.half_width *= 2

    def centers(self) -> np.ndarray:
        edges = np.linspace(-self.half_width, self.half_width, self.counts.size + 1)
        return (edges[:-1] + edges[1:]) / 2

    @property
    def finite_range(self) -> tuple[float, float]:
        """min and max, with 0 included (every int8 range represents 0 exactly)."""
        return min(self.low, 0.0), max(self.high, 0.0)


def errors(hist: Histogram, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The squared error of quantizing ``hist``'s values on each range [low[i], high[i]]
    (bounds taken at bin centres; prefix sums make each range cost a binary search)."""
    x = hist.centers()
    sums = [np.concatenate([[0.0], np.cumsum(hist.counts * x ** k)]) for k in range(3)]
    below = np.searchsorted(x, low, side="left")  # bins [0, below) lie under low
    above = np.searchsorted(x, high, side="right")  # bins [above, end) lie over high

    def part(k: int, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return sums[k][stop] - sums[k][start]

    end = np.full_like(above, x.size)
    start = np.zeros_like(below)
    under = low ** 2 * part(0, start, below) - 2 * low * part(1, start, below) \
        + part(2, start, below)
    over = high ** 2 * part(0, above, end) - 2 * high * part(1, above, end) \
        + part(2, above, end)
    step = (high - low) / (LEVELS - 1)
    rounded = part(0, below, above) - hist.zeros
    return np.maximum(under, 0) + np.maximum(over, 0) + np.maximum(rounded, 0) * step ** 2 / 12


def mse_range(hist: Histogram) -> tuple[float, float]:
    """The range, 0 included, whose int8 grid quantizes ``hist``'s values with the least
    squared error: each bound searched in turn with the other fixed, until neither moves."""
    low, high = hist.finite_range
    if not np.isfinite(low) or not np.isfinite(high) or hist.counts.sum() == 0:
        return low, high
    shares = np.arange(1, CANDIDATES + 1) / CANDIDATES
    for _ in range(8):
        new_high = high if hist.high <= 0 else float(
            _best(hist, np.full(CANDIDATES, low), hist.high * shares)[1])
        new_low = low if hist.low >= 0 else float(
            _best(hist, hist.low * shares, np.full(CANDIDATES, new_high))[0])
        if (new_low, new_high) == (low, high):
            break
        low, high = new_low, new_high
    return low, high


def percentile_range(hist: Histogram, percentile: float = PERCENTILE) -> tuple[float, float]:
    """The range, 0 included, that holds ``percentile`` % of ``hist``'s values, the rest split
    evenly between the two tails (as ONNX Runtime's percentile calibration sets it)."""
    low, high = hist.finite_range
    total = hist.counts.sum()
    if not np.isfinite(low) or not np.isfinite(high) or total == 0:
        return low, high
    cumulative = np.cumsum(hist.counts)
    tail = total * (100.0 - percentile) / 200.0
    edges = np.linspace(-hist.half_width, hist.half_width, hist.counts.size + 1)
    first = int(np.searchsorted(cumulative, tail, side="right"))
    last = int(np.searchsorted(cumulative, total - tail, side="left"))
    return (min(max(float(edges[first]), hist.low), 0.0),
            max(min(float(edges[last + 1]), hist.high), 0.0))


def mse_scale(hist: Histogram, low: float, high: float) -> float:
    """The factor in (0, 1] for a range [low, high] that keeps its shape (a symmetric or
    unsigned range, its zero point) whose scaled version quantizes with the least error."""
    if hist.counts.sum() == 0 or not np.isfinite(low) or not np.isfinite(high):
        return 1.0
    shares = np.arange(1, CANDIDATES + 1) / CANDIDATES
    return float(shares[np.argmin(errors(hist, low * shares, high * shares))])


def _best(hist: Histogram, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    i = int(np.argmin(errors(hist, low, high)))
    return float(low[i]), float(high[i])


def snr_db(hist: Histogram, low: float, high: float) -> float:
    """The signal-to-noise ratio, in dB, of ``hist``'s values quantized on [low, high]."""
    x = hist.centers()
    power = float((hist.counts * x * x).sum())
    noise = float(errors(hist, np.array([low]), np.array([high]))[0])
    if noise <= 0:
        return np.inf
    return 10 * np.log10(max(power, 1e-300) / noise)
