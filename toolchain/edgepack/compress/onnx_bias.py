"""Empirical bias correction for ONNX Runtime's QDQ int8 models (why: compress/bias.py).

How: a copy of the QDQ model gets a float twin of every quantized Conv/Gemm reading the same
dequantized input (the layer ranking's twins, compress/sensitivity.py); on the calibration
samples each node's mean shift against its twin, per output channel, is subtracted from the
node's int32 bias (the initializer its bias DequantizeLinear reads, whose scale is the input's
times the weights'). ONNX Runtime then runs the corrected file with its integer kernels; the
shift comes from the weights' rounding, which those kernels share.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .bias import ChannelShift, corrected
from .sensitivity import float_twins, twins_session

#: the output axis holding the channels, by op type (NCHW convolutions; Gemm rows)
CHANNEL_AXIS = {"Conv": 1, "ConvTranspose": 1, "Gemm": -1}


def correct(qdq: Path, float_model: Path, feeds: Iterable[dict[str, np.ndarray]]) -> int:
    """Correct the int32 biases of the QDQ model ``qdq`` (made from ``float_model``) in place
    by what its nodes' twins measure on ``feeds``; how many nodes were corrected."""
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
    nodes = {n.name: n for n in graph.node}
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    probes = []
    for probe in float_twins(probed.graph, onnx.load(str(float_model)).graph):
        bias = _int32_bias(nodes[probe.node], producer, initializers, readers)
        if bias is not None and probe.linear is not None \
                and nodes[probe.node].op_type in CHANNEL_AXIS:
            probes.append((probe, bias))
    if not probes:
        return 0
    session = twins_session(probed)
    shifts = [ChannelShift(values.size, probe.linear, CHANNEL_AXIS[nodes[probe.node].op_type])
              for probe, (_, values, _) in probes]
    wanted = [t for probe, _ in probes for t in (probe.quantized, probe.twin)]
    for feed in feeds:
        outs = session.run(wanted, feed)
        for k, shift in enumerate(shifts):
            shift.add(outs[2 * k], outs[2 * k + 1])
    count = 0
    for shift, (_, (name, values, scales)) in zip(shifts, probes, strict=True):
        steps = shift.steps(np.broadcast_to(scales, values.shape))
        if not np.any(steps):
            continue
        initializers[name].CopyFrom(numpy_helper.from_array(corrected(values, steps), name))
        count += 1
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
