"""PyTorch sources: ExportedProgram files (.pt2) and TorchScript archives.

Neither is loaded by unpickling arbitrary Python objects: an ExportedProgram is a serialized
graph whose weights torch reads with ``weights_only`` semantics, and TorchScript is TorchScript
code run by torch's own interpreter. A plain ``torch.save`` pickle (a checkpoint or a whole
pickled module) is refused: loading it would execute whatever the pickle says.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..signature import Signature, TensorSpec, guess_layout
from .base import Format, ModelInfo, file_size


def import_torch() -> Any:
    """Import torch quietly (its ONNX exporter logs are only for --debug)."""
    import logging

    import torch

    torch._logging.set_logs(onnx=logging.ERROR, export=logging.ERROR)
    return torch


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        raise ModelError("not a PyTorch archive (not a zip file); the file may be truncated",
                         path=path)
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"corrupt PyTorch archive: {exc}", path=path) from exc


class TorchExportFormat(Format):
    name = "torch"
    description = "PyTorch ExportedProgram (.pt2, torch.export.save)"
    suffixes = (".pt2",)
    runtime = "torch"

    def load(self, path: Path) -> Any:
        names = _zip_names(path)
        if not any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            raise ModelError("not an ExportedProgram archive (no archive_format entry)", path=path,
                             hint="save models with torch.export.save(torch.export.export(...))")
        torch = import_torch()
        try:
            return torch.export.load(str(path))
        except Exception as exc:
            raise ModelError(f"not a loadable ExportedProgram: {first_line(exc)}",
                             path=path) from exc

    def inspect(self, path: Path) -> ModelInfo:
        ep = self.load(path)
        state = ep.state_dict
        params = sum(int(state[n].numel()) for n in ep.graph_signature.parameters if n in state)
        ops = Counter(_op_name(n.target) for n in ep.graph.nodes if n.op == "call_function")
        return ModelInfo(path=str(path), format=self.name, signature=signature_of(ep),
                         parameters=params, size_bytes=file_size(path), operators=dict(ops),
                         details={"torch_export": True})


def signature_of(ep: Any) -> Signature:
    """Inputs/outputs of an ExportedProgram, dynamic dims named ("batch" for the first)."""
    user_inputs = set(ep.graph_signature.user_inputs)
    inputs = [_spec(n.name, n.meta["val"]) for n in ep.graph.nodes
              if n.op == "placeholder" and n.name in user_inputs]
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    values = out_node.args[0]
    names = list(ep.graph_signature.user_outputs)
    outputs = [_spec(names[i] if i < len(names) and names[i] else f"output_{i}", v.meta["val"])
               for i, v in enumerate(values)]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _spec(name: str, fake: Any) -> TensorSpec:
    dims: list[int | str] = []
    for i, d in enumerate(fake.shape):
        if type(d) is int:
            dims.append(d)
        else:  # a SymInt: dynamic (int() of it would give the example's size)
            dims.append("batch" if i == 0 else str(d))
    shape = tuple(dims)
    dtype = str(fake.dtype).replace("torch.", "")
    return TensorSpec(name=name, shape=shape, dtype=dtype,
                      layout=guess_layout(shape, channels_first=True))


def example_inputs(sig: Signature, shapes: dict[str, tuple[int, ...]] | None = None) -> tuple:
    """Zero tensors of the signature's shapes (dynamic dims as 1), for tracing exporters."""
    import numpy as np
    import torch

    shapes = shapes or {}
    return tuple(torch.from_numpy(np.zeros(
        shapes.get(s.name) or [d if isinstance(d, int) else 1 for d in s.shape], s.dtype))
        for s in sig.inputs)


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


class TorchScriptFormat(Format):
    name = "torchscript"
    description = "TorchScript archive (torch.jit.save); input shapes via --input-shape"
    suffixes = (".pt", ".pth", ".torchscript", ".ptl")
    runtime = "torch"

    def load(self, path: Path) -> Any:
        names = _zip_names(path)
        if not any("/code/" in n or n.startswith("code/") for n in names):
            raise ModelError(
                "refused: a pickled PyTorch file (torch.save), not TorchScript; loading it would "
                "run arbitrary code", path=path,
                hint="export the model with torch.export.save (.pt2) or torch.jit.save")
        torch = import_torch()
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise ModelError(f"not a loadable TorchScript archive: {first_line(exc)}",
                             path=path) from exc

    def signature_with_shapes(self, path: Path, shapes: dict[str, tuple[int, ...]]) -> Signature:
        """The signature given input shapes: TorchScript stores none, so run it once to learn
        its outputs. Every input must have a shape; the first dimension is kept dynamic."""
        module = self.load(path)
        names = [a.name for a in module.forward.schema.arguments[1:]]
        missing = [n for n in names if n not in shapes]
        if missing:
            raise ModelError(f"TorchScript does not store input shapes; missing for "
                             f"{', '.join(missing)}", path=path,
                             hint=f"pass --input-shape {missing[0]}:1x3x224x224 (one per input)")
        inputs = tuple(TensorSpec(n, ("batch", *shapes[n][1:]), "float32",
                                  guess_layout(shapes[n], channels_first=True)) for n in names)
        torch = import_torch()
        with torch.no_grad():
            result = module(*example_inputs(Signature(inputs), shapes))
        flat = result if isinstance(result, (tuple, list)) else [result]
        outputs = tuple(
            TensorSpec(f"output_{i}", ("batch", *t.shape[1:]),
                       str(t.dtype).replace("torch.", ""),
                       guess_layout(tuple(t.shape), channels_first=True))
            for i, t in enumerate(flat))
        return Signature(inputs=inputs, outputs=outputs)

    def inspect(self, path: Path) -> ModelInfo:
        module = self.load(path)
        args = module.forward.schema.arguments[1:]  # without self
        inputs = tuple(TensorSpec(name=a.name, shape=(), dtype="float32") for a in args)
        params = sum(int(p.numel()) for p in module.parameters())
        ops = Counter(n.kind().split("::")[-1] for n in module.inlined_graph.nodes()
                      if n.kind().startswith("aten::"))
        return ModelInfo(path=str(path), format=self.name,
                         signature=Signature(inputs=inputs, outputs=()), parameters=params,
                         size_bytes=file_size(path), operators=dict(ops),
                         details={"input_shapes": "not stored in TorchScript: pass "
                                                  "--input-shape NAME:1x3x224x224"})
