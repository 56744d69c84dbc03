"""Post-training structural passes on an ONNX graph's constant weights (no training possible).

An ONNX file cannot be fine-tuned here, so only what needs no retraining is done: unstructured
magnitude pruning of Conv/Gemm/MatMul weights (zeros in the initializers) and low-rank
factorization of Gemm/MatMul with a constant 2-D weight, each replaced by MatMul(X, A) followed
by the original op on B, which keeps the original node's output name. Channel (structured)
pruning is not attempted: without fine-tuning, removing channels is the same loss as zeroing
them, and rewriting every consumer of an arbitrary graph is not worth that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...config.structural import LowRankSettings, PruneSettings
from ...errors import UsageError
from ..svd import Factorization, factor

#: op type -> index of its weight input
WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1}


def load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def save(model: Any, path: Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _initializers(model: Any) -> dict[str, Any]:
    return {init.name: init for init in model.graph.initializer}


def _weighted_nodes(model: Any) -> list[tuple[Any, Any]]:
    """(node, weight initializer) for every Conv/Gemm/MatMul with a constant float weight."""
    inits = _initializers(model)
    found = []
    for node in model.graph.node:
        idx = WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx or node.input[idx] not in inits:
            continue
        init = inits[node.input[idx]]
        if init.data_type == 1:  # FLOAT
            found.append((node, init))
    return found


def prune_onnx(model: Any, settings: PruneSettings) -> dict[str, float]:
    """Zero the smallest weights of each Conv/Gemm/MatMul in place; sparsity reached by node."""
    from onnx import numpy_helper

    weighted = _weighted_nodes(model)
    names = [n.name or n.output[0] for n, _ in weighted]
    skip = set(settings.skip) if settings.skip is not None else \
        ({names[0], names[-1]} if names else set())
    unknown = sorted((set(settings.skip or ()) | set(settings.per_layer)) - set(names))
    if unknown:
        raise UsageError(f"structural settings name unknown node(s) {', '.join(unknown)}",
                         hint="prunable nodes: " + ", ".join(names))
    reached: dict[str, float] = {}
    done: set[str] = set()  # a weight used by two nodes is pruned once
    for name, (_, init) in zip(names, weighted, strict=True):
        if name in skip or init.name in done:
            continue
        done.add(init.name)
        w = numpy_helper.to_array(init)
        target = settings.per_layer.get(name, settings.sparsity)
        flat = w.ravel().copy()
        flat[np.argsort(np.abs(flat), kind="stable")[:int(round(target * flat.size))]] = 0
        init.CopyFrom(numpy_helper.from_array(flat.reshape(w.shape), init.name))
        reached[name] = float(np.mean(flat == 0))
    return reached


def factorize_onnx(model: Any, settings: LowRankSettings) -> list[Factorization]:
    """Split every paying Gemm/MatMul with a constant 2-D weight into two products, in place."""
    from onnx import helper, numpy_helper

    decisions = []
    graph = model.graph
    uses = _use_counts(model)
    for node, init in _weighted_nodes(model):
        if node.op_type == "Conv" or len(init.dims) != 2 or uses[init.name] != 1:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
            continue
        w = numpy_helper.to_array(init)
        trans_b = bool(attrs.get("transB", 0))
        name = node.name or node.output[0]
        decision, a, b = factor(w.T if trans_b else w, settings, name)
        decisions.append(decision)
        if a is None or b is None:
            continue
        a_name, mid = f"{init.name}_lowrank_a", f"{node.output[0]}_lowrank"
        graph.initializer.append(numpy_helper.from_array(a, a_name))
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(b.T if trans_b else b),
                                              init.name))
        thin = helper.make_node("MatMul", [node.input[0], a_name], [mid],
                                name=f"{name}_lowrank")
        node.input[0] = mid
        position = list(graph.node).index(node)
        graph.node.insert(position, thin)
    return decisions


def _use_counts(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    return counts


def weight_counts(model: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters) over the float initializers."""
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == 1]
    return int(sum(a.size for a in arrays)), int(sum(np.count_nonzero(a) for a in arrays))
