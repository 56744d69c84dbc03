"""The int8 grid a quantized file rounds each floating-point input to, read from the file.

Each format's reader (onnx_grid, tflite_grid, openvino_grid) says what the ops reading an input
do to it (``Hop``): round it to a grid (a quantize op: the walk ends), clip it (Clip, Relu,
Min/Max with a constant), move its values without changing them (Reshape, Transpose), or
compute on it in float (no grid). ``walk`` follows every path from the input to the first
rounding. Clips compose exactly (clamping to [a1, b1] then [a2, b2] is clamping to
[clamp(a1), clamp(b1)] within [a2, b2]), and layout ops commute with rounding one grid per
tensor, so the grid and the clip found are what the file applies to the raw input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

#: values one rounding step computes at a time (32 MB of float64 per temporary)
ROUND_CHUNK = 1 << 22


@dataclass(frozen=True)
class InputGrid:
    """The grid of one float input: ``(q - zero_point) * scale``, q in qmin..qmax, applied after
    clipping the input to [clip_low, clip_high] (None: no bound on that side)."""

    name: str
    scale: float
    zero_point: float
    qmin: int
    qmax: int
    clip_low: float | None = None
    clip_high: float | None = None
    #: the op of the file the grid was read from ("" for one not read from a file)
    read_from: str = ""

    @property
    def span(self) -> tuple[float, float]:
        """The lowest and highest values on the grid."""
        return ((self.qmin - self.zero_point) * self.scale,
                (self.qmax - self.zero_point) * self.scale)

    @property
    def exact(self) -> bool:
        """Whether rounding then feeding the fp32 model (whose own clip is then the identity
        on the rounded values) is exactly what the file computes: the grid lies within the
        clip's bounds. Else the model's clip pulls the values rounded past its bounds back in
        (at most half a step): a smaller input error than the file's, a stricter floor."""
        low, high = self.span
        slack = self.scale * 1e-3  # a float32 scale times 255 misses a bound by ulps
        return (self.clip_low is None or low >= self.clip_low - slack) and \
            (self.clip_high is None or high <= self.clip_high + slack)

    def key(self) -> tuple:
        """What makes two grids round alike (float32 scale and lowest value, the number of
        levels, the clip), whichever zero point and integer type a format states them in."""
        return (self.name, float(np.float32(self.scale)), float(np.float32(self.span[0])),
                self.qmax - self.qmin, self.clip_low, self.clip_high)

    def round(self, x: np.ndarray) -> np.ndarray:
        """``x`` clipped, then rounded to the nearest grid value (saturating at its ends), a
        few samples at a time: the arithmetic is float64 and its temporaries are several
        copies of what they round (nudenet's 160 eval images, 197 MB: 1.6 GB at once)."""
        x = np.asarray(x)
        if x.ndim == 0 or x.size <= ROUND_CHUNK:
            return self._round(x)
        out = np.empty_like(x)
        rows = max(1, ROUND_CHUNK // (x.size // len(x)))
        for start in range(0, len(x), rows):
            out[start:start + rows] = self._round(x[start:start + rows])
        return out

    def _round(self, x: np.ndarray) -> np.ndarray:
        v = np.asarray(x, np.float64)
        if self.clip_low is not None or self.clip_high is not None:
            v = np.clip(v, self.clip_low, self.clip_high)
        q = np.clip(np.round(v / self.scale + self.zero_point), self.qmin, self.qmax)
        return ((q - self.zero_point) * self.scale).astype(x.dtype)

    def describe(self) -> str:
        """The grid in a few words: step, span, clip and where it was read."""
        low, high = self.span
        text = f"`{self.name}` step {self.scale:.4g} over [{low:.4g}, {high:.4g}]"
        if self.clip_low is not None or self.clip_high is not None:
            low_bound = "-inf" if self.clip_low is None else f"{self.clip_low:.4g}"
            high_bound = "inf" if self.clip_high is None else f"{self.clip_high:.4g}"
            text += f" after clipping to [{low_bound}, {high_bound}]"
        return text + (f" from {self.read_from}" if self.read_from else "")


@dataclass(frozen=True)
class Hop:
    """What one op reading a float tensor does to it on the way to the file's first rounding:
    ``grid`` (a quantize op, ends the walk; name and clip unset), else ``output`` (the tensor
    it passes on, clipped to ``clip`` when that is set), else it reads the tensor in float."""

    op: str
    output: str | None = None
    clip: tuple[float, float] = (-math.inf, math.inf)
    grid: InputGrid | None = None


@dataclass
class GridReading:
    """A file's float inputs (by its own names, in its order), the grid of each that has one,
    and for each that has none, why."""

    inputs: list[str] = field(default_factory=list)
    grids: dict[str, InputGrid] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, found: InputGrid | str) -> None:
        """Input ``name`` with its grid, or why it has none."""
        self.inputs.append(name)
        if isinstance(found, InputGrid):
            self.grids[name] = found
        else:
            self.missing[name] = found


def walk(name: str, tensor: str, hops: Callable[[str], list[Hop]]) -> InputGrid | str:
    """The one grid every path from input ``name`` (tensor ``tensor``) reaches first, with the
    clip the ops before it apply; else why there is none (a path computes on the input in
    float, or two paths round it on different grids)."""
    found: dict[tuple, InputGrid] = {}
    stack = [(tensor, (-math.inf, math.inf))]
    while stack:
        at, bounds = stack.pop()
        for hop in hops(at):
            if hop.grid is not None:
                grid = replace(hop.grid, name=name, clip_low=_finite(bounds[0]),
                               clip_high=_finite(bounds[1]))
                found.setdefault(grid.key(), grid)
            elif hop.output is not None:
                stack.append((hop.output, _compose(bounds, hop.clip)))
            else:
                return f"`{name}` reaches {hop.op} before any int8 grid"
    if not found:
        return f"`{name}` reaches no int8 grid"
    if len(found) > 1:
        return f"`{name}` is rounded on {len(found)} different grids"
    return next(iter(found.values()))


def _compose(first: tuple[float, float], then: tuple[float, float]) -> tuple[float, float]:
    """Clamping to ``first`` then to ``then`` as one clamp."""
    low, high = then
    return min(max(first[0], low), high), min(max(first[1], low), high)


def _finite(bound: float) -> float | None:
    return None if math.isinf(bound) else float(bound)
