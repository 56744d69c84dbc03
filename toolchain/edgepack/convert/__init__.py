"""The converter graph: a registry of edges and a planner for the cheapest working path."""

from __future__ import annotations

import heapq

from ..errors import ConversionError
from ..profiles import Precision
from .base import ConvertContext, Edge
from .keras_to_savedmodel import KerasToSavedModel
from .savedmodel_to_tflite import SavedModelToTFLite

EDGES: list[Edge] = [KerasToSavedModel(), SavedModelToTFLite()]


def plan_path(src: str, dst: str, precision: Precision,
              edges: list[Edge] | None = None) -> list[Edge]:
    """Cheapest chain of edges from ``src`` to ``dst`` whose last hop produces ``precision``.

    Intermediate hops are fp32; only the final edge quantizes. Raises ConversionError naming
    what edgepack can reach from ``src`` when no path exists.
    """
    edges = EDGES if edges is None else edges
    if src == dst and precision == "fp32":
        return []
    frontier: list[tuple[float, int, str, list[Edge]]] = [(0.0, 0, src, [])]
    best: dict[str, float] = {}
    counter = 1
    while frontier:
        cost, _, node, path = heapq.heappop(frontier)
        if path and node == dst and precision in path[-1].precisions:
            return path
        if best.get(node, float("inf")) <= cost and path:
            continue
        best[node] = cost
        for edge in edges:
            if edge.src != node or any(e.dst == edge.dst for e in path) or edge.dst == src:
                continue
            if edge.dst != dst and "fp32" not in edge.precisions:
                continue
            heapq.heappush(frontier, (cost + edge.cost, counter, edge.dst, [*path, edge]))
            counter += 1
    reachable = sorted({e.dst for e in edges if e.src == src})
    raise ConversionError(
        f"no converter path from {src} to {dst} at {precision}",
        hint=f"from {src} edgepack reaches: {', '.join(reachable) or 'nothing'}")


__all__ = ["EDGES", "ConvertContext", "Edge", "plan_path"]
