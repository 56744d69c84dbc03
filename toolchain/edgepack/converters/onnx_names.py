"""Give a converted ONNX graph the source model's tensor names and a named batch dimension.

Converters name things after their own internals (tf2onnx: ``Identity:0``, ``unk__32``;
torch: ``s77``). An app and edgepack's validation find tensors by name, so the names a user
sees in the source are restored here.
"""

from __future__ import annotations

from typing import Any


def rename_outputs(model: Any, names: list[str]) -> None:
    """Rename graph outputs, positionally, everywhere they are referenced."""
    rename(model, {o.name: n for o, n in zip(model.graph.output, names, strict=False)})


def rename(model: Any, mapping: dict[str, str]) -> None:
    """Rename the graph's values named in ``mapping`` everywhere they are referenced."""
    graph = model.graph
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name in mapping:
            value.name = mapping[value.name]


def name_batch_dim(model: Any, name: str = "batch") -> None:
    """Call the first dimension of every graph input and output ``name`` when it is dynamic."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = name
