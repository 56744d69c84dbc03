"""Model formats: a plain registry, detection by suffix or folder content, and `inspect`.

Each module holds one format. Detection never imports a framework.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import Format, ModelInfo
from .keras import KerasFormat
from .onnx import OnnxFormat
from .openvino import OpenVinoFormat
from .savedmodel import SavedModelFormat
from .tflite import TFLiteFormat
from .torch import TorchExportFormat, TorchScriptFormat

FORMATS: list[Format] = [KerasFormat(), SavedModelFormat(), OnnxFormat(), TFLiteFormat(),
                         OpenVinoFormat(), TorchExportFormat(), TorchScriptFormat()]


def get_format(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def detect(path: str | Path) -> Format:
    """The format of ``path``, or a ModelError saying what edgepack accepts."""
    p = Path(path)
    if not p.exists():
        raise ModelError("no such file or folder", path=p, hint="check the path")
    for fmt in FORMATS:
        if fmt.matches(p):
            return fmt
    accepted = ", ".join(s for f in FORMATS for s in f.suffixes)
    what = "a folder without saved_model.pb" if p.is_dir() else f"unknown suffix '{p.suffix}'"
    raise ModelError(f"not a model edgepack can read ({what})",
                     path=p, hint=f"accepted: {accepted}, or a TF SavedModel folder")


def inspect(path: str | Path) -> ModelInfo:
    """Format, signature, parameter count, size, operator histogram and the quantization it
    comes with, of a model file."""
    from .prequantized import quantization_of

    p = Path(path)
    fmt = detect(p)
    info = fmt.inspect(p)
    info.quantization = quantization_of(fmt.name, p)
    return info


__all__ = ["FORMATS", "Format", "ModelInfo", "detect", "get_format", "inspect"]
