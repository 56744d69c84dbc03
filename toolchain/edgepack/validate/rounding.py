"""Whether an fp32 conversion changed an output by more than float rounding.

Two runtimes computing the same fp32 graph differ by rounding, and a deep graph amplifies it in
proportion to the size of the values it carries: an output whose values reach hundreds (pose
landmarks in pixels, segmentation logits) differs by a few hundredths where a probability
differs by a few millionths, and where the graph is steep (a near tie, a large logit) one value
can move much further than the rest. So each output is judged against its own spread (its
largest magnitude or its range, whichever is larger): the mean error may reach MEAN of it, the
largest PEAK of it (an isolated value where the rounding piled up). A conversion bug (a wrong
pad, axis, bias or layout) moves its outputs widely, or some far, by more than that.
"""

from __future__ import annotations

import numpy as np

from .fidelity import OutputFidelity

#: the largest error an fp32 hop may make, as a share of the output's spread (plus one)
PEAK = 1e-2
#: the mean error an fp32 hop may make, as a share of the output's spread (plus one)
MEAN = 1e-4


def spread(ref: np.ndarray) -> float:
    """The larger of the output's largest magnitude and its range."""
    ref = np.asarray(ref, np.float64)
    if ref.size == 0:
        return 0.0
    return float(max(np.max(np.abs(ref)), np.max(ref) - np.min(ref)))


def beyond_rounding(ref: np.ndarray, fidelity: OutputFidelity) -> str | None:
    """What shows the output changed by more than float rounding ("max abs error 0.5 > 0.1"),
    None when its errors are within rounding of its spread."""
    scale = 1 + spread(ref)
    if not fidelity.max_abs_error <= PEAK * scale:
        return f"max abs error {fidelity.max_abs_error:.3g} > {PEAK * scale:.3g}"
    if not fidelity.mean_abs_error <= MEAN * scale:
        return f"mean abs error {fidelity.mean_abs_error:.3g} > {MEAN * scale:.3g}"
    return None
