"""PyTorch adapter: ExportedProgram (.pt2) and TorchScript files, run on the CPU.

It runs the *source* of a PyTorch build, so that every converted artifact is compared with what
the user's own model computes. Loading goes through ``formats.torch``, which never unpickles
arbitrary objects. torch is imported inside ``load`` only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import first_line
from ..signature import Signature
from .base import Runtime, RuntimeOptions
from .session import AdapterSession, InputError


class TorchRuntime(Runtime):
    name = "torch"
    formats = ("torch", "torchscript")

    def available(self) -> bool:
        return importlib.util.find_spec("torch") is not None

    def version(self) -> str:
        try:
            return f"torch {importlib.metadata.version('torch')}"
        except importlib.metadata.PackageNotFoundError:
            return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> TorchSession:
        from ..formats.torch import TorchExportFormat, TorchScriptFormat, import_torch, signature_of

        options = options or RuntimeOptions()
        torch = import_torch()
        if options.threads:
            torch.set_num_threads(int(options.threads))
        p = Path(path)
        if p.suffix.lower() == ".pt2":
            ep = TorchExportFormat().load(p)
            module, signature = ep.module(), signature_of(ep)
        else:
            module = TorchScriptFormat().load(p)
            signature = options.extra.get("signature") or TorchScriptFormat().inspect(p).signature
        return TorchSession(module, signature, self.version())


class TorchSession(AdapterSession):
    def __init__(self, module: Any, signature: Signature, version: str):
        super().__init__(signature, runtime="torch", runtime_version=version)
        self.native = module

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            try:
                result = self.native(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
            except Exception as exc:
                raise InputError(
                    f"the PyTorch model refused the inputs: {first_line(exc)}") from None
        flat = result if isinstance(result, (tuple, list)) else [result]
        return [t.detach().cpu().numpy() for t in flat]
