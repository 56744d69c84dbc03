"""Ops no int8 scale can represent in an OpenVINO model: kept float through NNCF's ignored scope.

Two of the patterns compress/onnx_guard.py describes (and says why each defeats one int8
scale), found here before NNCF quantizes:

- a Concat of tensors whose ranges differ by orders of magnitude (a detector's boxes in pixels
  beside its scores, silero-vad's decoder joining its features with its state): NNCF gives a
  Concat's inputs one shared scale, so the smaller input keeps a step or two. The ranges are
  the fp32 model's on the first calibration samples.
- a square before its root (a Power, or a Multiply of a tensor by itself, reaching a Sqrt
  through unweighted ops).

The attention-mask sentinel needs no guard here: NNCF's transformer model type, which
attention graphs get (compress/transformer.py), leaves the mask's ops float.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .onnx_guard import MIXED_RANGE

#: calibration samples the fp32 model runs to measure the Concats' input ranges
GUARD_SAMPLES = 32

#: ops that compute with weights; a square reaching a root through one is a new signal
WEIGHTED_OPS = frozenset({"Convolution", "GroupConvolution", "MatMul",
                          "ConvolutionBackpropData"})


def blind_spots(model: Any, feeds: list[dict[str, np.ndarray]]) -> dict[str, str]:
    """Op friendly name -> why int8 cannot represent it ("mixed" or "squared")."""
    found = dict.fromkeys(square_to_root(model), "squared")
    found.update(dict.fromkeys(mixed_concats(model, feeds), "mixed"))
    return found


def mixed_concats(model: Any, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    """Concats whose float inputs' largest magnitudes, over ``feeds`` run by the fp32 model,
    differ more than MIXED_RANGE times."""
    import openvino as ov

    probe = model.clone()
    concats = [op for op in probe.get_ordered_ops() if op.get_type_name() == "Concat"]
    ports: dict[tuple[str, int], Any] = {}
    for op in concats:
        for port in op.inputs():
            source = port.get_source_output()
            if source.get_element_type() == ov.Type.f32 \
                    and source.get_node().get_type_name() != "Constant":
                ports.setdefault((source.get_node().get_friendly_name(), source.get_index()),
                                 source)
    if not ports or not feeds:
        return []
    first = len(probe.outputs)
    probe.add_outputs(list(ports.values()))
    compiled = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    spans = dict.fromkeys(ports, 0.0)
    for feed in feeds:
        results = request.infer(feed)
        for k, key in enumerate(ports):
            value = results[compiled.outputs[first + k]]
            spans[key] = max(spans[key], float(np.max(np.abs(value))) if value.size else 0.0)
    mixed = []
    for op in concats:
        parts = [spans.get((p.get_source_output().get_node().get_friendly_name(),
                            p.get_source_output().get_index()), 0.0) for p in op.inputs()]
        parts = [x for x in parts if x > 0]
        if len(parts) > 1 and max(parts) > MIXED_RANGE * min(parts):
            mixed.append(op.get_friendly_name())
    return mixed


def square_to_root(model: Any) -> list[str]:
    """Names of the ops on a path from a square (Power, a Multiply of a tensor by itself) to
    a Sqrt through unweighted ops, both included."""
    def squares(op: Any) -> bool:
        kind = op.get_type_name()
        sources = [i.get_source_output() for i in op.inputs()]
        return kind == "Power" or (kind == "Multiply" and len(sources) == 2
                                   and sources[0] == sources[1])

    def reach(start: list[Any], step: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        frontier = list(start)
        while frontier:
            op = frontier.pop()
            if op.get_friendly_name() not in seen:
                seen[op.get_friendly_name()] = op
                frontier.extend(o for o in step(op) if o.get_type_name() not in WEIGHTED_OPS)
        return seen

    ops = model.get_ordered_ops()
    after = reach([op for op in ops if squares(op)], lambda op: [
        t.get_node() for out in op.outputs() for t in out.get_target_inputs()])
    before = reach([op for op in ops if op.get_type_name() == "Sqrt"], lambda op: [
        i.get_source_output().get_node() for i in op.inputs()])
    return [op.get_friendly_name() for op in ops
            if op.get_friendly_name() in after and op.get_friendly_name() in before]
