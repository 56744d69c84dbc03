"""The converter graph: a registry of edges and a planner for the cheapest working path."""

from __future__ import annotations

import heapq
from collections.abc import Collection

from ..config.profiles import Precision
from ..errors import ConversionError
from .base import Edge
from .compression_passes import OnnxCompress, OpenVinoCompress, TFLiteCompress
from .identity import Copy
from .keras_to_savedmodel import KerasToSavedModel
from .onnx_to_tflite import OnnxToSavedModel, OnnxToTFLite
from .savedmodel_to_onnx import SavedModelToOnnx
from .savedmodel_to_tflite import SavedModelToTFLite
from .tflite_to_onnx import TFLiteToOnnx
from .to_openvino import ToOpenVino
from .torch_to_onnx import TorchToOnnx

# Costs are rough seconds-and-risk: direct TensorFlow paths first, onnx2tf (slow, layout
# rewriting) only where nothing else reaches TFLite.
EDGES: list[Edge] = [
    KerasToSavedModel(),
    SavedModelToTFLite(),
    SavedModelToOnnx(),
    TFLiteToOnnx(),
    ToOpenVino("savedmodel"),
    ToOpenVino("onnx"),
    ToOpenVino("tflite", cost=1.5),
    ToOpenVino("torch", cost=1.5),
    ToOpenVino("torchscript", cost=1.5),
    TorchToOnnx("torch"),
    TorchToOnnx("torchscript"),
    OnnxToTFLite(),
    OnnxToSavedModel(),
    OnnxToTFLite(static=True),
    OnnxToSavedModel(static=True),
    OnnxCompress(),
    OpenVinoCompress(),
    TFLiteCompress(),
    Copy("onnx"),
    Copy("tflite"),
    Copy("openvino"),
]


def edge_id(edge: Edge) -> str:
    return f"{edge.src}->{edge.dst}:{edge.tool}"


def plan_path(src: str, dst: str, precision: Precision, *,
              exclude: Collection[str] = (), edges: list[Edge] | None = None) -> list[Edge]:
    """Cheapest chain of edges from ``src`` to ``dst`` whose last hop produces ``precision``.

    Intermediate hops are fp32; only the final edge quantizes. Edges whose tool is not
    installed, or whose id is in ``exclude`` (they failed earlier in this build), are skipped.
    Raises ConversionError naming what edgepack can reach from ``src`` when no path exists.
    """
    usable = [e for e in (EDGES if edges is None else edges)
              if edge_id(e) not in exclude and e.available()]
    if src == dst:  # already in the format: a checked copy (fp32) or a same-format pass
        same = next((e for e in usable if e.src == e.dst == src and precision in e.precisions),
                    None)
        if same is not None:
            return [same]
    frontier: list[tuple[float, int, str, list[Edge]]] = [(0.0, 0, src, [])]
    settled: set[tuple[str, bool]] = set()
    counter = 1
    while frontier:
        cost, _, node, path = heapq.heappop(frontier)
        final_ok = bool(path) and node == dst and precision in path[-1].precisions
        if final_ok:
            return path
        if (node, bool(path)) in settled:
            continue
        settled.add((node, bool(path)))
        for edge in usable:
            if edge.src != node:
                continue
            if edge.src == edge.dst:  # a same-format pass (compression): only as the last hop
                if node == dst and path and precision != "fp32" and precision in edge.precisions:
                    heapq.heappush(frontier, (cost + edge.cost, counter, node, [*path, edge]))
                    counter += 1
                continue
            if edge.dst == src or any(e.dst == edge.dst for e in path):
                continue
            if edge.dst != dst and "fp32" not in edge.precisions:
                continue
            heapq.heappush(frontier, (cost + edge.cost, counter, edge.dst, [*path, edge]))
            counter += 1
    reachable = sorted(_reachable(src, usable))
    raise ConversionError(
        f"no converter path from {src} to {dst} at {precision}",
        hint=f"from {src} edgepack reaches: {', '.join(reachable) or 'nothing'}")


def edges_toward(src: str, dst: str) -> set[str]:
    """Ids of the edges on some route from ``src`` to ``dst``: the failures that explain why
    ``dst`` could not be made (another format's failed converter does not)."""
    ahead = _reachable(src, EDGES) | {src}
    return {edge_id(e) for e in EDGES
            if e.src in ahead and (e.dst == dst or dst in _reachable(e.dst, EDGES))}


def _reachable(src: str, edges: list[Edge]) -> set[str]:
    seen: set[str] = set()
    todo = [src]
    while todo:
        node = todo.pop()
        for e in edges:
            if e.src == node and e.dst not in seen and e.dst != src:
                seen.add(e.dst)
                todo.append(e.dst)
    return seen


__all__ = ["EDGES", "Edge", "edge_id", "edges_toward", "plan_path"]
