"""The PyTorch graph the torch passes edit: an ExportedProgram's module, its weighted ops, saving.

``ExportedProgram.module()`` is an ``fx.GraphModule`` of ATen ops whose parameters are real,
trainable ``nn.Parameter`` attributes under the original module paths ("features.0.weight").
The passes edit that module (slice or replace parameters, insert nodes) and train it; then it
is exported again with ``torch.export`` (batch dimension dynamic when the source's was) and
saved as a new ``.pt2``, which the build converts like any other PyTorch source.

A layer is named by its parameter's owner ("features.0"), which is what a user's skip list and
the report name. The module stays in eval mode (exported programs cannot switch modes): batch
norm keeps its running statistics and dropout is off while fine-tuning, which is what a short
recovery run on little data wants anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError
from ...signature import Signature

#: default values of aten.conv2d's arguments after (input, weight)
CONV_DEFAULTS = (None, [1, 1], [0, 0], [1, 1], 1)


def op(node: Any) -> str:
    """"conv2d" for ``aten.conv2d.default``; "" for anything that is not an ATen call."""
    if node.op != "call_function":
        return ""
    parts = str(node.target).split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "aten" else ""


@dataclass
class Weighted:
    """A conv2d/linear call whose weight (and bias) are parameters of the module."""

    node: Any
    name: str  # the owning module's path: what skip lists and reports name
    weight: str  # parameter path, e.g. "features.0.weight"
    bias: str | None
    kind: str  # "conv2d" | "linear"

    @property
    def groups(self) -> int:
        return int(conv_args(self.node)[6]) if self.kind == "conv2d" else 1


def load(path: Path) -> tuple[Any, Signature]:
    """(editable module, signature) of the ExportedProgram in ``path``."""
    from ...formats.torch import TorchExportFormat, signature_of

    ep = TorchExportFormat().load(path)
    signature = signature_of(ep)
    if any(isinstance(d, str) for s in signature.inputs for d in s.shape[1:]):
        raise UsageError("structural passes on PyTorch sources need fixed input shapes after "
                         "the batch dimension (the edited model is exported again)",
                         hint="export the model with static height/width/length")
    return ep.module(), signature


def conv_args(node: Any) -> list[Any]:
    """aten.conv2d's seven arguments, defaults filled in."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    args = list(node.args) + list(CONV_DEFAULTS[len(node.args) - 2:])
    for k, v in node.kwargs.items():
        args[names.index(k)] = v
    return args


def _attr(node: Any) -> str | None:
    return node.target if getattr(node, "op", None) == "get_attr" else None


def weighted(gm: Any) -> list[Weighted]:
    """conv2d/linear calls with parameter weights, in graph order."""
    params = dict(gm.named_parameters())
    found = []
    for node in gm.graph.nodes:
        kind = op(node)
        if kind not in ("conv2d", "linear"):
            continue
        args = conv_args(node) if kind == "conv2d" else [*node.args, None][:3]
        weight, bias = _attr(args[1]), _attr(args[2]) if args[2] is not None else None
        if weight not in params or (args[2] is not None and bias not in params):
            continue
        name = weight[:-len(".weight")] if weight.endswith(".weight") else weight
        found.append(Weighted(node, name, weight, bias, kind))
    return found


def resolve_skip(names: list[str], skip: list[str] | None,
                 per_layer: dict[str, float] | None = None) -> set[str]:
    """The layers to leave alone: the given ones (checked), else the first and last."""
    unknown = sorted((set(skip or ()) | set(per_layer or ())) - set(names))
    if unknown:
        raise UsageError(f"structural settings name unknown layer(s) {', '.join(unknown)}",
                         hint="the model's layers: " + ", ".join(names))
    if skip is None:
        return {names[0], names[-1]} if names else set()
    return set(skip)


def get(gm: Any, target: str) -> Any:
    owner, _, leaf = target.rpartition(".")
    return getattr(gm.get_submodule(owner), leaf)


def put(gm: Any, target: str, value: Any) -> None:
    """Replace a parameter (kept trainable) or buffer of the module by ``value``."""
    import torch

    owner_path, _, leaf = target.rpartition(".")
    owner = gm.get_submodule(owner_path)
    if leaf in owner._buffers:
        owner.register_buffer(leaf, value.detach().clone())
    else:
        owner.register_parameter(leaf, torch.nn.Parameter(value.detach().clone()))


def uses(gm: Any, target: str) -> int:
    """How many ops read the parameter at ``target`` (a shared weight cannot be resized)."""
    return sum(len(n.users) for n in gm.graph.nodes if n.op == "get_attr" and n.target == target)


def weight_counts(gm: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters): unstructured pruning shows in the second only."""
    params = list(gm.parameters())
    return (int(sum(p.numel() for p in params)),
            int(sum(int((p != 0).sum()) for p in params)))


def inputs(signature: Signature, arrays: dict[str, np.ndarray], idx: np.ndarray) -> list[Any]:
    import torch

    return [torch.from_numpy(np.ascontiguousarray(arrays[s.name][idx])) for s in signature.inputs]


def run(gm: Any, args: list[Any]) -> Any:
    out = gm(*args)
    if isinstance(out, (tuple, list)):
        if len(out) != 1:
            raise UsageError("distillation supports single-output models only")
        out = out[0]
    return out


def save(gm: Any, signature: Signature, path: Path) -> Path:
    """Export the edited module again (the source's dynamic batch kept) and save it."""
    from ...formats.torch import import_torch

    torch = import_torch()
    dynamic = [bool(s.shape) and isinstance(s.shape[0], str) for s in signature.inputs]
    example = tuple(torch.zeros([2 if dyn else s.shape[0], *s.shape[1:]],
                                dtype=getattr(torch, s.dtype))
                    for s, dyn in zip(signature.inputs, dynamic, strict=True))
    shapes = tuple({0: torch.export.Dim.AUTO} if dyn else None for dyn in dynamic)
    with torch.no_grad():
        program = torch.export.export(gm, example, dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path
