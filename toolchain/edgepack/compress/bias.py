"""What the bias corrections of every format share: measuring an op's mean shift per channel.

Why: the rounding of a layer's int8 weights shifts each output channel's mean, and the shift
compounds layer after layer. NNCF corrects it for OpenVINO (BiasCorrection, compress/openvino.py);
the TFLite converter and ONNX Runtime's quantizer do not, so edgepack does
(compress/tflite_bias.py, compress/onnx_bias.py).

Each op's shift is measured against a float twin reading the same quantized input: its own
shift, so one pass corrects the whole model (correcting each op's total error against the float
model instead needs the ops corrected one after the other, a pass each). The accuracy fallback's
float layers change neither an op's weights nor its input's mean, so the shifts are measured
once per build and applied to every re-quantization. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

#: calibration samples the shifts are measured on: enough outputs per channel to average even
#: in a CNN's last, smallest feature maps, in seconds
BIAS_SAMPLES = 64
#: the fewest linear outputs a channel needs for its mean shift to be trusted
MIN_COUNT = 16


class ChannelShift:
    """The mean of (int8 output - float twin output) per channel, over the outputs where the
    op's fused activation is linear (where a bias change moves the output as is)."""

    def __init__(self, channels: int, linear: tuple[float, float], axis: int):
        self.sums = np.zeros(channels)
        self.counts = np.zeros(channels)
        self.linear, self.axis = linear, axis

    def add(self, got: np.ndarray, twin: np.ndarray) -> None:
        channels = self.sums.size
        got = np.moveaxis(got, self.axis, -1).reshape(-1, channels).astype(np.float64)
        twin = np.moveaxis(twin, self.axis, -1).reshape(-1, channels)
        low, high = self.linear
        inside = (twin > low) & (twin < high)
        self.sums += np.where(inside, got - twin, 0.0).sum(axis=0)
        self.counts += inside.sum(axis=0)

    def mean(self) -> np.ndarray:
        """The shift per channel; 0 where a channel was too rarely linear to tell."""
        return np.where(self.counts >= MIN_COUNT, self.sums / np.maximum(self.counts, 1), 0.0)


def corrected(bias: np.ndarray, shift: np.ndarray, scales: np.ndarray) -> np.ndarray | None:
    """An int32 bias (``scales``: its scale per channel or one for all) less ``shift`` in
    its steps, kept in the int32 range; None when no channel moves by a whole step."""
    steps = np.round(shift / np.broadcast_to(scales, shift.shape)).astype(np.int64)
    if shift.shape != bias.shape or not np.any(steps):
        return None
    info = np.iinfo(np.int32)
    return np.clip(bias.astype(np.int64) - steps, info.min, info.max).astype(np.int32)


Shifts = dict[str, np.ndarray]  # an op's shift per output channel, by the op's name


def cached(path: Path | None, measure: Callable[[], Shifts]) -> Shifts:
    """The shifts kept at ``path`` (the build's scratch folder), else ``measure()``'s, kept
    there for the next quantization of the same model."""
    if path is not None and path.is_file():
        with np.load(path) as kept:
            return {str(name): kept[f"s{i}"] for i, name in enumerate(kept["names"])}
    shifts = measure()
    if path is not None:  # written whole, then renamed: a killed build leaves no torn file
        part = path.with_suffix(".part.npz")
        np.savez(part, names=np.array(list(shifts), dtype=str),
                 **{f"s{i}": v for i, v in enumerate(shifts.values())})
        part.replace(path)
    return shifts
