"""PyTorch sources: ExportedProgram files (.pt2) and TorchScript archives.

Both can run code (see trust.py). A TorchScript file is a program whose ``__setstate__`` runs
when it loads: it is loaded only with ``--trust-model-code``. A ``.pt2`` is read as data by
``inspect`` (``pt2_check.read_archive``: its JSON program, never torch.export.load) and loaded
untrusted only when ``pt2_check`` finds nothing in it but raw tensors and known computation;
torch then loads the very bytes that were checked. A plain ``torch.save`` pickle (a checkpoint
or a whole pickled module) is refused even with trust: export with torch.export.save instead.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..signature import Signature, TensorSpec, guess_layout
from ..trust import model_code_trusted, refused
from . import pt2_check
from .base import Format, ModelInfo, code_check, file_size

#: torch.export's serialized ScalarType -> dtype name (torch._export.serde.schema)
_SCALAR_TYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16",
                 7: "float32", 8: "float64", 9: "complex32", 10: "complex64", 11: "complex128",
                 12: "bool", 13: "bfloat16", 28: "uint16", 34: "uint32", 35: "uint64"}


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

    def checked_note(self, path: Path) -> str | None:
        """What an untrusted load relies on (None when model code is trusted); raises the
        exit-5 refusal when the archive could run more than its graph's computation."""
        if model_code_trusted():
            return None
        reason = pt2_check.unsafe_reason(pt2_check.read_archive(path))
        if reason:
            raise refused(path, f"in this .pt2, {reason}")
        return (".pt2 checked without running it: raw tensors and aten operators only; "
                "loaded without --trust-model-code")

    def load(self, path: Path) -> Any:
        if model_code_trusted():
            source: Any = str(path)
            if not any(n.split("/")[-1] == "archive_format" for n in _zip_names(path)):
                raise ModelError("not an ExportedProgram archive (no archive_format entry)",
                                 path=path, hint="save models with "
                                                 "torch.export.save(torch.export.export(...))")
        else:
            archive = pt2_check.read_archive(path)
            reason = pt2_check.unsafe_reason(archive)
            if reason:
                raise refused(path, f"in this .pt2, {reason}")
            source = io.BytesIO(archive.data)  # the bytes that were checked, not the file again
        torch = import_torch()
        try:
            return torch.export.load(source)
        except Exception as exc:
            raise ModelError(f"not a loadable ExportedProgram: {first_line(exc)}",
                             path=path) from exc

    def inspect(self, path: Path) -> ModelInfo:
        """Read from the archive's JSON program without loading it (nothing in it runs)."""
        archive = pt2_check.read_archive(path)
        graph_module = archive.program.get("graph_module") or {}
        try:
            signature, params = _program_signature(graph_module, archive.weights)
            ops = Counter(_target_name(n["target"]) for n in graph_module["graph"]["nodes"])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ModelError(f"corrupt ExportedProgram: its program lacks {exc}",
                             path=path) from exc
        reason = pt2_check.unsafe_reason(archive)
        return ModelInfo(path=str(path), format=self.name, signature=signature,
                         parameters=params, size_bytes=file_size(path), operators=dict(ops),
                         details={"torch_export": True, "code_check": code_check(reason)})


def _program_signature(graph_module: dict[str, Any],
                       weights: dict[str, Any]) -> tuple[Signature, int]:
    """The signature (as ``signature_of`` gives it for the loaded program) and parameter count
    of a serialized ExportedProgram."""
    values = graph_module["graph"]["tensor_values"]
    specs = graph_module["signature"]
    inputs = [s["user_input"]["arg"]["as_tensor"]["name"] for s in specs["input_specs"]
              if "user_input" in s]
    outputs = [s["user_output"]["arg"].get("as_tensor", {}).get("name")
               for s in specs["output_specs"] if "user_output" in s]
    config = weights.get("config", {}) if isinstance(weights, dict) else {}
    params = 0
    for s in specs["input_specs"]:
        meta = config.get(s.get("parameter", {}).get("parameter_name"), {})
        sizes = [d.get("as_int", 0) for d in meta.get("tensor_meta", {}).get("sizes", [])]
        params += _product(sizes) if meta else 0
    signature = Signature(
        inputs=tuple(_value_spec(n, values[n]) for n in inputs),
        outputs=tuple(_value_spec(n or f"output_{i}", values.get(n, {}))
                      for i, n in enumerate(outputs)))
    return signature, params


def _value_spec(name: str, value: dict[str, Any]) -> TensorSpec:
    dims: list[int | str] = []
    for i, d in enumerate(value.get("sizes", [])):
        if "as_int" in d:
            dims.append(int(d["as_int"]))
        else:  # symbolic, as signature_of names it: "batch" first, else the expression
            dims.append("batch" if i == 0 else _expression_text(d["as_expr"]["expr_str"]))
    shape = tuple(dims)
    return TensorSpec(name=name, shape=shape, dtype=_SCALAR_TYPES.get(value.get("dtype"), "?"),
                      layout=guess_layout(shape, channels_first=True))


def _expression_text(expr: str) -> str:
    """How torch prints a serialized shape expression; '?' for one outside the grammar
    edgepack evaluates (pt2_check), which is never evaluated here."""
    if pt2_check.expression_problem(expr) is not None:
        return "?"
    import sympy

    return str(sympy.sympify(expr))


def _product(sizes: list[int]) -> int:
    count = 1
    for s in sizes:
        count *= int(s)
    return count


def _target_name(target: str) -> str:
    """The operator's name in the histogram: torch.ops.aten.conv2d.default -> conv2d,
    _operator.getitem -> getitem."""
    parts = target.split(".")
    return parts[3] if parts[:2] == ["torch", "ops"] and len(parts) > 3 else parts[-1]


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
        self.checked_note(path)
        torch = import_torch()
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise ModelError(f"not a loadable TorchScript archive: {first_line(exc)}",
                             path=path) from exc

    def checked_note(self, path: Path) -> str | None:
        """TorchScript has no safe path: without trust it is refused."""
        if not model_code_trusted():
            raise refused(path, "a TorchScript file is a program: its __setstate__ and methods "
                                "run when it loads and can read and write files, and edgepack "
                                "cannot check them", "export it with torch.export.save (.pt2)")
        return None

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
