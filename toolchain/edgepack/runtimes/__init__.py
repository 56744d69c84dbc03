"""Runtime adapters: a plain registry of one class per runtime.

Each adapter lives in its own module and imports its framework only inside ``available()``,
``version()`` and ``load()``: at module level there is nothing but numpy, the standard library
and edgepack's numpy-only modules, so ``edgepack.runtimes.litert`` imports on a board that has
python3, numpy and one runtime and nothing else. What the sessions share is in ``session.py``.
"""

from __future__ import annotations

from ..errors import MissingDependencyError
from .base import Runtime, RuntimeOptions, Session, dequantize, quantize
from .keras import KerasRuntime
from .litert import LiteRTRuntime
from .onnxruntime import OnnxRuntime
from .openvino import OpenVinoRuntime
from .session import AdapterSession, InputError
from .tensorflow import TensorFlowRuntime
from .torch import TorchRuntime

#: every adapter, in order of preference per format (runtime_for_format takes the first
#: available one): ONNX goes to ONNX Runtime before OpenVINO.
RUNTIMES: list[Runtime] = [LiteRTRuntime(), OnnxRuntime(), OpenVinoRuntime(),
                           TensorFlowRuntime(), KerasRuntime(), TorchRuntime()]


def get_runtime(name: str) -> Runtime:
    """The adapter called ``name``; KeyError if there is none."""
    for rt in RUNTIMES:
        if rt.name == name:
            return rt
    raise KeyError(name)


def runtime_for_format(format_name: str) -> Runtime:
    """The first installed runtime that runs ``format_name`` models.

    KeyError for a format no adapter handles; MissingDependencyError when adapters exist but none of
    their frameworks is installed here.
    """
    candidates = [rt for rt in RUNTIMES if format_name in rt.formats]
    if not candidates:
        raise KeyError(format_name)
    for rt in candidates:
        if rt.available():
            return rt
    names = " or ".join(rt.name for rt in candidates)
    raise MissingDependencyError(f"no runtime for '{format_name}' models is installed",
                        hint=f"install {names}")


__all__ = ["RUNTIMES", "AdapterSession", "InputError", "Runtime", "RuntimeOptions", "Session",
           "dequantize", "get_runtime", "quantize", "runtime_for_format"]
