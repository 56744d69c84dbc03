"""The transformer recipe for ONNX Runtime's quantizer (what compress/transformer.py detects).

- Only ops with weights are quantized (MatMul, Gemm, Conv, and the Gather of an embedding
  table): softmax, normalization, GELU and the residual adds stay float.
- Attention's products of two activations (query x key, scores x value) stay float.
- A matrix product whose output int8 cannot hold, even at its best clipping range (the
  "massive activations" of a transformer's feed-forward output: one channel hundreds of times
  the others), keeps its output float (``float_outputs``): its inputs and weights stay int8.
  Keeping every output float is slower in ONNX Runtime than fp32 (the weights are dequantized
  at every run), so only those (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .qdq import drop_unread
from .transformer import onnx_graph_of, resolve

#: the op types the transformer recipe quantizes: those with weights
OP_TYPES = ("MatMul", "Gemm", "Conv", "Gather")
#: what dynamic int8 quantizes in a transformer: its matrix products and table lookups, where
#: the weights are; its convolutions stay float (ConvInteger buys few bytes at a high cost)
DYNAMIC_OP_TYPES = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
#: the ops whose output the recipe may leave float
PRODUCTS = ("MatMul", "Gemm", "Conv")
#: an output whose int8 signal-to-noise ratio at its best range is below this stays float:
#: int8 of a bell-shaped tensor gives about 40 dB, a transformer's massive activations 12-16
MIN_OUTPUT_SNR_DB = 20.0


@dataclass
class Recipe:
    """How ``quantize_static`` is called for one graph."""

    model_type: str  # "transformer" or "generic"
    op_types: list[str] | None = None  # None: every type ONNX Runtime quantizes
    exclude: list[str] = field(default_factory=list)  # node names left float

    @property
    def transformer(self) -> bool:
        return self.model_type == "transformer"


def recipe(graph: Any, setting: str) -> Recipe:
    """The recipe for the ONNX ``graph`` under the profile's ``model_type`` ``setting``."""
    view = onnx_graph_of(graph)
    if resolve(setting, view) != "transformer":
        return Recipe("generic")
    products = {op.name for op in view.dynamic_products()}
    return Recipe("transformer", list(OP_TYPES), [n.name for n in graph.node
                                                  if n.name in products])


def dynamic_op_types(graph: Any, setting: str) -> list[str] | None:
    """The op types ``quantize_dynamic`` quantizes in ``graph``: a transformer's matrix
    products and lookups, or None (every type ONNX Runtime has an integer kernel for)."""
    return list(DYNAMIC_OP_TYPES) \
        if resolve(setting, onnx_graph_of(graph)) == "transformer" else None


def coarse_products(graph: Any, snr: dict[str, float]) -> set[str]:
    """The matrix products and convolutions of ``graph`` whose output's int8 signal-to-noise
    ratio (``snr``, by tensor) is below ``MIN_OUTPUT_SNR_DB``."""
    return {n.name for n in graph.node if n.op_type in PRODUCTS and n.output
            and snr.get(n.output[0], np.inf) < MIN_OUTPUT_SNR_DB}


def describe(recipe: Recipe, floated: list[str]) -> str:
    """The report's note on what the transformer recipe did."""
    note = (f"transformer recipe: only {', '.join(recipe.op_types or ())} quantized, "
            f"{len(recipe.exclude)} attention product(s) and normalization, softmax and "
            f"residual adds left float")
    if floated:
        note += (f"; {len(floated)} product(s) write float outputs (int8 cannot hold them: "
                 f"below {MIN_OUTPUT_SNR_DB:g} dB at their best range): " + ", ".join(floated[:4])
                 + (", ..." if len(floated) > 4 else ""))
    return note


def float_outputs(path: Path, nodes: set[str]) -> list[str]:
    """Let ``nodes`` of the QDQ model at ``path`` write their float output: their readers read
    it instead of its QuantizeLinear/DequantizeLinear pair (unless that pair makes a model
    output, whose name must stay). Returns the nodes changed."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    changed = []
    for node in [n for n in graph.node if n.name in nodes]:
        pairs = [(node.output[0], dq.output[0])
                 for q in readers.get(node.output[0], []) if q.op_type == "QuantizeLinear"
                 for dq in readers.get(q.output[0], []) if dq.op_type == "DequantizeLinear"]
        if not pairs or any(dq in outputs for _, dq in pairs):
            continue
        for out, dq in pairs:
            for reader in readers.get(dq, []):
                reader.input[:] = [out if t == dq else t for t in reader.input]
        changed.append(node.name)
    drop_unread(graph)
    _rename_fusion_shapes(graph)
    onnx.save(model, str(path))
    return changed


def _rename_fusion_shapes(graph: Any) -> None:
    """Give the shape initializers ``quant_pre_process``'s MatMul+Add fusion made
    (``gemm_input_shape``...) names of their own: when the session's own fusion meets a MatMul
    with a float output, it adds initializers under the same names and ONNX Runtime refuses to
    load the model ("Attempt to replace the existing tensor")."""
    renamed = {i.name: f"edgepack/{i.name}" for i in graph.initializer
               if i.name.startswith("gemm_")}
    if not renamed:
        return
    for init in graph.initializer:
        init.name = renamed.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [renamed.get(t, t) for t in node.input]
