"""ONNX Runtime adapter (.onnx).

Settings from RuntimeOptions: ``threads`` -> ``intra_op_num_threads``; ``device`` picks the
execution provider ("CPU" -> CPUExecutionProvider, "CUDA"/"GPU" -> CUDA then CPU, or a provider
name) unless ``extra["providers"]`` lists them explicitly; ``extra["graph_optimization_level"]``
is one of "all" (default), "extended", "basic", "disable"; ``extra["allow_spinning"]`` False
stops idle intra-op threads from spin-waiting (two sessions timed in turns in one process then
stop taking each other's cores: the speed step's A/B timing); ``extra["integer_semantics"]``
True computes an int8 file as its ops say, not through this host's saturating x86 integer
kernels (integer_semantics.py: validation on an x86 host without VNNI). ORT's own warnings
(e.g. about initializers in graph inputs) are silenced with ``set_default_logger_severity(3)``.

The signature is read from the session (ONNX Runtime alone, no ``onnx`` package needed), named
as ``formats/onnx.py`` names it: graph input/output names, a dynamic dimension by its
``dim_param`` or "?". ONNX I/O carries no scale or zero point (a quantized ONNX model is QDQ
with float I/O), so inputs are only cast to the declared dtype, unless the file's metadata
gives them (io_quantization.py: converted from a TFLite model with uint8 I/O): those are
quantized and dequantized as the TFLite adapter does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, first_line
from ..signature import Quantization, Signature, TensorSpec, guess_layout, readable_dim
from .base import Runtime, RuntimeOptions
from .io_quantization import KEY, parse
from .session import AdapterSession, InputError

_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
           "basic": "ORT_ENABLE_BASIC", "disable": "ORT_DISABLE_ALL", "none": "ORT_DISABLE_ALL"}

# ORT type strings -> numpy dtype names
_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
          "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
          "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(uint32)": "uint32",
          "tensor(int64)": "int64", "tensor(uint64)": "uint64", "tensor(bool)": "bool"}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx",)

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def version(self) -> str:
        try:
            return f"onnxruntime {importlib.metadata.version('onnxruntime')}"
        except importlib.metadata.PackageNotFoundError:
            return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> OnnxSession:
        import onnxruntime as ort

        options = options or RuntimeOptions()
        p = Path(path)
        if not p.is_file():
            raise ModelError("no such file", path=p)
        ort.set_default_logger_severity(3)
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
        level = options.extra.get("graph_optimization_level", "all")
        if isinstance(level, str):
            if level.lower() not in _LEVELS:
                raise ValueError(f"graph_optimization_level must be one of {sorted(_LEVELS)}, "
                                 f"got {level!r}")
            level = getattr(ort.GraphOptimizationLevel, _LEVELS[level.lower()])
        model: str | bytes = str(p)
        if options.extra.get("integer_semantics"):
            # what the file says, not what this host's integer kernels make of it
            # (integer_semantics.py): no QDQ fusion, integer ops as the float ops they equal
            from .integer_semantics import rewritten

            if level not in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                             ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
                level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            model = rewritten(p) or model
        so.graph_optimization_level = level
        if "allow_spinning" in options.extra:
            so.add_session_config_entry("session.intra_op.allow_spinning",
                                        "1" if options.extra["allow_spinning"] else "0")
        providers = options.extra.get("providers") or _providers(options.device)
        try:
            session = ort.InferenceSession(model, sess_options=so, providers=list(providers))
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load the model: {first_line(exc)}",
                             path=p) from exc
        return OnnxSession(session, f"onnxruntime {ort.__version__}")


class OnnxSession(AdapterSession):
    def __init__(self, session: Any, version: str):
        self.native = session
        quantized = parse(session.get_modelmeta().custom_metadata_map.get(KEY))
        inputs = tuple(_spec(v, quantization=quantized.get(v.name))
                       for v in session.get_inputs())
        named = tuple(d for spec in inputs for d in spec.shape if isinstance(d, str))
        signature = Signature(inputs=inputs,
                              outputs=tuple(_spec(v, named, quantized.get(v.name))
                                            for v in session.get_outputs()))
        super().__init__(signature, runtime="onnxruntime", runtime_version=version)
        self._feed_names = signature.input_names
        self._fetch_names = signature.output_names

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self.native.run(self._fetch_names,
                                   dict(zip(self._feed_names, arrays, strict=True)))
        except Exception as exc:
            if type(exc).__name__ in ("InvalidArgument", "Fail"):  # shapes the graph refuses
                raise InputError(f"ONNX Runtime refused the inputs: {first_line(exc)}") from None
            raise


def _providers(device: str) -> list[str]:
    d = (device or "CPU").upper()
    if d == "CPU":
        return ["CPUExecutionProvider"]
    if d in ("CUDA", "GPU"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [device, "CPUExecutionProvider"]


def dtype_of(ort_type: str) -> str:
    """The numpy dtype name of an ONNX Runtime type string ("tensor(int64)" -> "int64")."""
    return _TYPES.get(ort_type, "float32")


def _spec(value: Any, input_dims: tuple[str, ...] = (),
          quantization: Quantization | None = None) -> TensorSpec:
    shape = tuple(int(d) if isinstance(d, int) else (readable_dim(d, input_dims) if d else "?")
                  for d in (value.shape or ()))
    dtype = _TYPES.get(value.type, "?")
    return TensorSpec(name=value.name, shape=shape, dtype=dtype,
                      layout=guess_layout(shape, channels_first=True, dtype=dtype),
                      quantization=quantization)
