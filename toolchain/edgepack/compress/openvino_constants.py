"""Equal constants of an OpenVINO model shared by one Constant node before the IR is saved.

The IR's .bin already stores equal data once, but its .xml describes every Constant node with
its shape, ports and an edge, and converters and NNCF make many equal ones: each FakeQuantize
NNCF inserts takes its input and output ranges from four Constants, two of them equal to the
other two for every activation, and converters repeat the same axes and shapes for each
reshape. For a small model the .xml outweighs the weights (MediaPipe's selfie segmenter: a
290 KB .xml next to 213 KB of weights at fp32, its int8 .xml 400 KB), so those nodes decide
whether int8 is smaller at all. OpenVINO's plugins merge equal constants when they compile;
this writes the file the way it will run.
"""

from __future__ import annotations

import hashlib
from typing import Any


def share_equal_constants(model: Any) -> int:
    """Point every consumer of a Constant equal to an earlier one (same element type, shape
    and bytes) at the earlier one; how many Constants that left unused. A Constant read by a
    model output is left alone, as its tensor names are the output's."""
    first: dict[tuple[str, tuple[int, ...], str], Any] = {}
    shared = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        out = op.output(0)
        targets = list(out.get_target_inputs())
        if any(t.get_node().get_type_name() == "Result" for t in targets):
            continue
        key = (out.get_element_type().get_type_name(), tuple(out.get_shape()),
               hashlib.sha256(op.get_data().tobytes()).hexdigest())
        if key not in first:
            first[key] = out
            continue
        for target in targets:
            target.replace_source_output(first[key])
        shared += 1
    return shared
