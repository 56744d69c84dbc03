"""The model a build or conversion starts from: a file, or a PyTorch module given in Python.

A ``torch.nn.Module`` is exported once with ``torch.export`` (batch dimension dynamic where the
model allows it) to an ExportedProgram file in the build's work folder, so that from then on
every source is a file with a format, a signature and a runtime to compute reference outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ModelError, UsageError, first_line
from ..formats import detect
from ..formats.base import ModelInfo
from ..runtimes import child_probe, get_runtime
from ..runtimes.base import Session
from ..signature import Signature
from ..validate.outputs import exact_options


@dataclass
class SourceFacts:
    """What a build needs to know of its source without running it: enough to plan, load the
    data and write the report, so a build whose every step is cached never loads the model."""

    format: str
    signature: Signature
    parameters: int
    size_bytes: int
    runtime: str
    runtime_version: str
    #: what loading it relied on (a file that can carry code, checked and loaded untrusted)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, source: Source) -> SourceFacts:
        return cls(source.format, source.signature, source.info.parameters,
                   source.info.size_bytes, source.session.runtime,
                   source.session.runtime_version, list(source.notes))

    def to_record(self) -> dict[str, Any]:
        return {"format": self.format, "signature": self.signature.to_dict(),
                "parameters": self.parameters, "size_bytes": self.size_bytes,
                "runtime": self.runtime, "runtime_version": self.runtime_version,
                "notes": self.notes}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> SourceFacts:
        return cls(r["format"], Signature.from_dict(r["signature"]), r["parameters"],
                   r["size_bytes"], r["runtime"], r["runtime_version"], r.get("notes", []))


@dataclass
class Source:
    path: Path
    format: str
    info: ModelInfo
    signature: Signature
    session: Session
    notes: list[str]


def parse_input_shapes(specs: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``["image:1x3x224x224", ...]`` -> ``{"image": (1, 3, 224, 224)}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d < 1 for d in shape):
            raise UsageError(f"--input-shape '{spec}' is not NAME:DIMxDIM... "
                             "(e.g. image:1x3x224x224)")
        shapes[name] = shape
    return shapes


def export_module(module: Any, example_inputs: Any, workdir: Path, name: str) -> tuple[Path, str]:
    """A torch.nn.Module -> ``<workdir>/<name>.pt2``; returns the path and a note on shapes."""
    from ..formats.torch import import_torch

    torch = import_torch()
    if example_inputs is None:
        raise UsageError("a PyTorch module needs example_inputs=(tensor, ...) to be exported")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    module = module.eval()
    names = _forward_params(module)[:len(args)]
    dynamic = {n: {0: torch.export.Dim.AUTO} for n in names}
    note = "batch dimension exported as dynamic"
    try:
        program = torch.export.export(module, args, dynamic_shapes=dynamic)
    except Exception:  # the model specialises on its batch size: keep the example's
        try:
            program = torch.export.export(module, args)
        except Exception as exc:
            raise ModelError(f"torch.export cannot export the module: {first_line(exc)}",
                             path=type(module).__name__) from exc
        note = "batch dimension fixed to the example's (the model specialises on it)"
    path = workdir / f"{name}.pt2"
    torch.export.save(program, str(path))
    return path, note


def _forward_params(module: Any) -> list[str]:
    import inspect

    return [p for p in inspect.signature(module.forward).parameters if p != "self"]


def open_source(path: Path, input_shapes: dict[str, tuple[int, ...]] | None) -> Source:
    """Detect, inspect and load the source with its own runtime (for reference outputs)."""
    fmt = detect(path)
    if fmt.runtime is None:
        raise ModelError(f"{fmt.name} models cannot be run here", path=path)
    note = fmt.checked_note(path)  # refused here, before anything reads it, if it runs code
    info = fmt.inspect(path)
    signature = info.signature
    # as every file is validated: OpenVINO computes in bf16 on CPUs that have it unless told
    # f32, which put a bf16 error into every reference output of an IR source
    options = exact_options(fmt.runtime)
    if fmt.name == "torchscript":
        from ..formats.torch import TorchScriptFormat

        signature = TorchScriptFormat().signature_with_shapes(path, input_shapes or {})
        options = replace(options, extra={"signature": signature})
    unknown = set(input_shapes or {}) - set(signature.input_names)
    if unknown:
        raise UsageError(f"--input-shape names unknown input(s) {', '.join(sorted(unknown))}",
                         hint=f"the model's inputs: {', '.join(signature.input_names)}")
    session = child_probe.load(get_runtime(fmt.runtime), path, options)
    return Source(path, fmt.name, info, signature, session, [note] if note else [])
