"""Moving arrays, datasets and shapes between tensor layouts (NCHW <-> NHWC, NCW <-> NWC).

A model converted from PyTorch (channels first) to TFLite (channels last) takes its image
transposed. Validation feeds every artifact the same samples, so it must transpose them into
the layout each artifact's signature records, and transpose 4-D outputs back before comparing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..signature import Dim, Signature
from .dataset import Dataset

_AXES = {
    ("NCHW", "NHWC"): (0, 2, 3, 1),
    ("NHWC", "NCHW"): (0, 3, 1, 2),
    ("NCW", "NWC"): (0, 2, 1),
    ("NWC", "NCW"): (0, 2, 1),
}

CHANNELS_LAST = {"NCHW": "NHWC", "NCW": "NWC"}


def permutation(src: str, dst: str) -> tuple[int, ...] | None:
    """Axes that take an array from ``src`` to ``dst`` layout; None when nothing to do."""
    if not src or not dst or src == dst:
        return None
    return _AXES.get((src, dst))


def convert(array: np.ndarray, src: str, dst: str) -> np.ndarray:
    axes = permutation(src, dst)
    if axes is None or array.ndim != len(axes):
        return array
    return np.ascontiguousarray(array.transpose(axes))


def convert_shape(shape: tuple[Dim, ...], src: str, dst: str) -> tuple[Dim, ...]:
    axes = permutation(src, dst)
    if axes is None or len(shape) != len(axes):
        return shape
    return tuple(shape[i] for i in axes)


def shapes_in_layouts(shapes: dict[str, tuple[int, ...]] | None, source: Signature,
                      layouts: list[str]) -> dict[str, tuple[int, ...]] | None:
    """Fixed input shapes (source names and layouts) in the layouts a converted file takes:
    an NHWC SavedModel made by onnx2tf from an NCHW ONNX model is fixed at 1x224x224x3, not
    at the 1x3x224x224 the target's static shapes give the source."""
    if not shapes:
        return shapes
    moved = {spec.name: (spec.layout, layouts[i]) for i, spec in enumerate(source.inputs)}
    return {name: tuple(convert_shape(shape, *moved.get(name, ("", ""))))
            for name, shape in shapes.items()}


def in_layouts(data: Dataset, source: Signature, layouts: list[str]) -> Dataset:
    """``data`` (source names and layouts) moved into the layouts a converted file takes:
    a quantizer calibrating an NHWC SavedModel made from an NCHW ONNX model needs NHWC."""
    inputs = {spec.name: convert(data.inputs[spec.name], spec.layout, layouts[i])
              for i, spec in enumerate(source.inputs) if spec.name in data.inputs}
    if all(inputs[n] is data.inputs[n] for n in inputs):
        return data
    return replace(data, inputs={**data.inputs, **inputs})
