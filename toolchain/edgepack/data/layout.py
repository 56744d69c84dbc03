"""Moving arrays between tensor layouts (NCHW <-> NHWC, NCW <-> NWC).

A model converted from PyTorch (channels first) to TFLite (channels last) takes its image
transposed. Validation feeds every artifact the same samples, so it must transpose them into
the layout each artifact's signature records, and transpose 4-D outputs back before comparing.
"""

from __future__ import annotations

import numpy as np

from ..signature import Dim

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
