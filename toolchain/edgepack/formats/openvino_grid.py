"""The int8 grid an OpenVINO IR rounds each float input to (formats/input_grid.py).

NNCF puts a FakeQuantize on the input, or after the ops it keeps in float before the first
quantized one (a Transpose of the layout, a Relu, a Clamp): ``levels`` values from
``input_low`` to ``input_high`` (the same as the output bounds when it only rounds).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .input_grid import GridReading, Hop, InputGrid, walk

#: ops that move an input's values without changing them
LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert"}


def read(path: Path) -> GridReading:
    """The grid of each float input of the IR at ``path`` (its .xml)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    ports: dict[str, Any] = {}

    def key(output: Any) -> str:
        name = f"{output.get_node().get_friendly_name()}:{output.get_index()}"
        ports[name] = output
        return name

    def hops(tensor: str) -> list[Hop]:
        return [_hop(target.get_node(), target.get_index(), key)
                for target in ports[tensor].get_target_inputs()]

    reading = GridReading()
    for param in model.get_parameters():
        if not param.get_element_type().is_real():
            continue
        name = param.output(0).get_any_name()
        reading.add(name, walk(name, key(param.output(0)), hops))
    return reading


def _scalar(node: Any, port: int) -> float | None:
    """The one value of a constant input of ``node`` (through a Convert), else None."""
    source = node.input(port).get_source_output().get_node()
    if source.get_type_name() == "Convert":
        source = source.input(0).get_source_output().get_node()
    if source.get_type_name() != "Constant":
        return None
    data = np.asarray(source.get_data(), np.float64)
    return float(data.ravel()[0]) if data.size == 1 else None


def _hop(node: Any, index: int, key: Any) -> Hop:
    """What ``node`` does to its input ``index``; ``key`` names an output port to walk on."""
    kind = node.get_type_name()
    what = f"{kind} `{node.get_friendly_name()}`"
    if index != 0 or kind == "Result":
        return Hop(what)
    if kind == "FakeQuantize":
        return _fake_quantize(node, what)
    if kind in LAYOUT_OPS:
        return Hop(what, key(node.output(0)))
    if kind == "Relu":
        return Hop(what, key(node.output(0)), (0.0, math.inf))
    if kind == "Clamp":
        attrs = node.get_attributes()
        return Hop(what, key(node.output(0)), (float(attrs["min"]), float(attrs["max"])))
    if kind in ("Minimum", "Maximum") and (bound := _scalar(node, 1)) is not None:
        return Hop(what, key(node.output(0)),
                   (-math.inf, bound) if kind == "Minimum" else (bound, math.inf))
    return Hop(what)


def _fake_quantize(node: Any, what: str) -> Hop:
    """A FakeQuantize with scalar bounds that rounds without rescaling."""
    low, high, out_low, out_high = (_scalar(node, i) for i in range(1, 5))
    levels = int(node.get_attributes()["levels"])
    if None in (low, high, out_low, out_high) or not high > low or \
            not (math.isclose(low, out_low) and math.isclose(high, out_high)):
        return Hop(what + " (not one grid per tensor)")
    scale = (high - low) / (levels - 1)
    return Hop(what, grid=InputGrid("", scale, -low / scale, 0, levels - 1, read_from=what))
