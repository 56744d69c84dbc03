"""Empirical bias correction for ONNX Runtime's QDQ int8 models (why: compress/bias.py).

How: the QDQ model gets a float twin of every quantized Conv/Gemm reading the same dequantized
input (the layer ranking's twins, compress/sensitivity.py); on the calibration samples each
node's mean shift against its twin, per output channel, is measured (``measure``) and
subtracted from the node's int32 bias (``apply``): the initializer its bias DequantizeLinear
reads, whose scale is the input's times the weights'. ONNX Runtime then runs the corrected
file with its integer kernels; the shift comes from the weights' rounding, which those kernels
share.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .bias import ChannelShift, Shifts, corrected
from .sensitivity import float_twins, twins_session

#: the output axis holding the channels, by op type (NCHW convolutions; Gemm rows)
CHANNEL_AXIS = {"Conv": 1, "ConvTranspose": 1, "Gemm": -1}


def measure(qdq: Path, float_model: Path, feeds: Iterable[dict[str, np.ndarray]]) -> Shifts:
    """Each quantized Conv/Gemm's mean shift per output channel in the QDQ model ``qdq``
    (made from ``float_model``), by node name, measured on ``feeds`` against its twin."""
    import onnx

    model = onnx.load(str(qdq))
    op_types = {n.name: n.op_type for n in model.graph.node}
    probes = [p for p in float_twins(model.graph, onnx.load(str(float_model)).graph)
              if p.linear is not None and op_types[p.node] in CHANNEL_AXIS]
    if not probes:
        return {}
    session = twins_session(model)
    shifts: list[ChannelShift] = []
    wanted = [t for probe in probes for t in (probe.quantized, probe.twin)]
    for feed in feeds:
        outs = session.run(wanted, feed)
        if not shifts:
            shifts = [ChannelShift(outs[2 * k].shape[CHANNEL_AXIS[op_types[probe.node]]],
                                   probe.linear, CHANNEL_AXIS[op_types[probe.node]])
                      for k, probe in enumerate(probes)]
        for k, shift in enumerate(shifts):
            shift.add(outs[2 * k], outs[2 * k + 1])
    return {probe.node: shift.mean() for probe, shift in zip(probes, shifts, strict=True)}


def apply(qdq: Path, shifts: Shifts) -> int:
    """Correct the int32 bias of each node of ``qdq`` named in ``shifts``, in place; how many
    nodes were corrected."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    count = 0
    for node in graph.node:
        bias = _int32_bias(node, producer, initializers, readers)
        if node.name not in shifts or bias is None:
            continue
        name, values, scales = bias
        fixed = corrected(values, shifts[node.name], scales)
        if fixed is not None:
            initializers[name].CopyFrom(numpy_helper.from_array(fixed, name))
            count += 1
    if count:
        onnx.save(model, str(qdq))
    return count


def _int32_bias(node: Any, producer: dict[str, Any], initializers: dict[str, Any],
                readers: dict[str, int]) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(the name and values of the int32 initializer ``node``'s bias is dequantized from, its
    scale), or None: no bias, a float one (a node kept in float), or one another node reads."""
    from onnx import numpy_helper

    if len(node.input) < 3 or not node.input[2]:
        return None
    dq = producer.get(node.input[2])
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in initializers \
            or dq.input[1] not in initializers or readers.get(dq.input[0], 0) > 1:
        return None
    values = numpy_helper.to_array(initializers[dq.input[0]])
    if values.dtype != np.int32 or values.ndim != 1:
        return None
    scales = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64).reshape(-1)
    return dq.input[0], values, scales
