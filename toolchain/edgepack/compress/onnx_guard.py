"""Nodes no int8 scale can represent, found in ONNX Runtime's calibrated ranges: kept float.

Two patterns of real models defeat a per-tensor int8 scale whatever the calibration method:

- a sentinel: an attention mask made finite (-1e4 or float32's lowest, -3.4e38) added to the
  attention scores. One int8 step of that range is wider than every score, so all of them round
  to 0 and the softmax goes uniform. Every node that reads or writes such a tensor stays float.
  Only tensors that flow into a Softmax without passing a weighted op (MatMul, Gemm, Conv) can be
  masks: a large activation elsewhere is an outlier, which the accuracy fallback handles layer by
  layer instead of keeping the whole network float.
- a Concat of tensors whose ranges differ by orders of magnitude: a YOLO head joins boxes in
  pixels (0..320) with class scores (0..1) in one output, and the scores get one or two int8
  steps (nudenet: 5% of the detections kept). The Concat stays float; its inputs are still
  quantized, each on its own range.
- a square before its root: a magnitude (sqrt(re^2 + im^2), an STFT's spectrum) or a norm. A
  squared tensor spans the square of its input's range, so an int8 grid over it keeps about
  half the input's bits: every input below 1/16 of the largest rounds to 0 (silero-vad's
  spectrum: its speech probability's cosine 0.89 with it quantized, 0.996 kept float). The
  nodes from each Pow to the Sqrt it reaches through unweighted ops stay float; a Pow
  reaching no Sqrt is left to the ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: an activation whose calibrated range reaches this far holds a sentinel, not a signal
SENTINEL = 1e4
#: a Concat whose inputs' ranges differ by more than this factor cannot share one scale: the
#: smaller input would get fewer than 256 / 32 = 8 steps (nudenet's head: 369x; its feature
#: pyramid's Concats: at most 4.2x)
MIXED_RANGE = 32.0


def blind_spots(graph: Any, ranges: Path) -> dict[str, str]:
    """Node name -> why int8 cannot represent it ("sentinel", "mixed" or "squared"), from the
    calibration cache ``ranges`` that ``quantize_static`` wrote for ``graph``."""
    spans = _spans(ranges)
    big = _sentinel_bearing(graph, _mask_paths(graph), spans)
    squared = _square_to_root(graph)
    found: dict[str, str] = {}
    for node in graph.node:
        if not node.name:
            continue
        if node.name in squared:
            found[node.name] = "squared"
        elif big & {*node.input, *node.output}:
            found[node.name] = "sentinel"
        elif node.op_type == "Concat":
            parts = [spans[t] for t in node.input if spans.get(t, 0.0) > 0]
            if len(parts) > 1 and max(parts) > MIXED_RANGE * min(parts):
                found[node.name] = "mixed"
    return found


def notes(found: dict[str, str]) -> list[str]:
    """What the report says about the nodes kept float, one line per reason."""
    why = {"sentinel": f"they read or write values beyond +-{SENTINEL:g} on the calibration "
                       "data (an attention mask's -3.4e38, say), which no int8 step resolves",
           "mixed": f"they join tensors whose ranges differ more than {MIXED_RANGE:g}x (a "
                    "detector's boxes in pixels and its scores in 0..1), which one int8 scale "
                    "cannot hold",
           "squared": "they hold a square before its root (a magnitude or a norm), which "
                      "an int8 grid keeps with half the bits of the value squared"}
    lines = []
    for reason, text in why.items():
        names = [n for n, r in found.items() if r == reason]
        if names:
            lines.append(f"{len(names)} node(s) kept in float because {text}: "
                         + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    return lines


#: ops that compute with weights: a mask never passes through one on its way to the softmax
_WEIGHTED = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "MatMulInteger"}


def _mask_paths(graph: Any) -> set[str]:
    """Tensors that reach a Softmax's input through elementwise and shape ops only."""
    producer = {out: node for node in graph.node for out in node.output}
    frontier = [t for node in graph.node if node.op_type == "Softmax" for t in node.input[:1]]
    seen: set[str] = set()
    while frontier:
        tensor = frontier.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is not None and node.op_type not in _WEIGHTED:
            frontier.extend(t for t in node.input if t)
    return seen


def _sentinel_bearing(graph: Any, masks: set[str], spans: dict[str, float]) -> set[str]:
    """The tensors on a mask's path to a Softmax that hold a sentinel: calibrated to one, a
    constant one (``(1 - mask) * float32.min``: calibration data without padding never shows
    it), or computed from one (graph order: a node comes after its producers)."""
    from onnx import numpy_helper

    constants = {init.name: init for init in graph.initializer if init.name in masks}
    constants |= {node.output[0]: attr.t for node in graph.node if node.op_type == "Constant"
                  and node.output[0] in masks for attr in node.attribute if attr.name == "value"}
    bearing = {t for t in masks if spans.get(t, 0.0) >= SENTINEL}
    for name, tensor in constants.items():
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f" and values.size \
                and float(np.max(np.abs(values.astype(np.float64)))) >= SENTINEL:
            bearing.add(name)
    for node in graph.node:
        if bearing.intersection(node.input):
            bearing |= {t for t in node.output if t in masks}
    return bearing


def _square_to_root(graph: Any) -> set[str]:
    """Names of the nodes on a path from a Pow to a Sqrt through no weighted op, both
    included (a weighted op between them makes the root's input a new signal)."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    producer = {out: node for node in graph.node for out in node.output}
    after = _closure([n for n in graph.node if n.op_type == "Pow"],
                     lambda n: [r for t in n.output for r in readers.get(t, [])
                                if r.op_type not in _WEIGHTED])
    before = _closure([n for n in graph.node if n.op_type == "Sqrt"],
                      lambda n: [producer[t] for t in n.input
                                 if t in producer and producer[t].op_type not in _WEIGHTED])
    return {n.name for n in after if n.name in {m.name for m in before}}


def _closure(start: list[Any], step: Any) -> list[Any]:
    """``start`` and every node ``step`` reaches from it (nodes compared by identity)."""
    seen: dict[int, Any] = {}
    frontier = list(start)
    while frontier:
        node = frontier.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            frontier.extend(step(node))
    return list(seen.values())


def _spans(ranges: Path) -> dict[str, float]:
    """Each calibrated tensor's largest magnitude (tensors without a range left out)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    spans = {}
    for name, data in load_tensors_data(ranges).data.items():
        try:
            low, high = data.range_value
        except AttributeError:  # a histogram without its range: nothing to judge by
            continue
        spans[name] = max(float(np.max(np.abs(low))), float(np.max(np.abs(high))))
    return spans
