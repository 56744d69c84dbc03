"""Same-format final hops that compress with the format's own tool (ONNX Runtime, NNCF,
ai-edge-quantizer).

The planner allows a same-format edge only as the last hop of a path, after the fp32 model in
that format exists: compression is a pass over it, not a conversion.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..compress import onnx as onnx_compress
from ..compress import openvino as openvino_compress
from ..compress import tflite_quantizer
from ..compress.context import ConvertContext
from ..errors import ConversionError, DataError
from ..quiet import captured
from .base import Edge, converter_failed


class CompressionPass(Edge):
    suffix: str = ""
    package: str = ""  # the distribution whose version names the tool

    def tool_version(self) -> str:
        return f"{self.package} {importlib.metadata.version(self.package)}"

    def compress(self, src: Path, out: Path, ctx: ConvertContext) -> None:
        raise NotImplementedError

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}{self.suffix}"
        cap = None
        try:
            with captured() as cap:
                self.compress(src, out, ctx)
        except (ConversionError, DataError):
            raise
        except Exception as exc:
            raise converter_failed(f"{self.tool} {ctx.precision} compression", exc,
                                   cap.text if cap else "", src) from exc
        return out


class OnnxCompress(CompressionPass):
    """int8 QDQ, dynamic int8 and fp16 ONNX (compress/onnx.py)."""

    src = dst = "onnx"
    tool = "onnxruntime.quantization"
    package = "onnxruntime"
    requires = ("onnxruntime", "onnxconverter_common")
    suffix = ".onnx"
    precisions = ("int8", "dynamic-int8", "fp16")

    def compress(self, src: Path, out: Path, ctx: ConvertContext) -> None:
        onnx_compress.compress(src, out, ctx)


class OpenVinoCompress(CompressionPass):
    """NNCF int8 and int8-weight OpenVINO IR (compress/openvino.py)."""

    src = dst = "openvino"
    tool = "nncf"
    package = "nncf"
    requires = ("nncf", "openvino")
    suffix = ".xml"
    precisions = ("int8", "dynamic-int8")

    def compress(self, src: Path, out: Path, ctx: ConvertContext) -> None:
        openvino_compress.compress(src, out, ctx)


class TFLiteCompress(CompressionPass):
    """int8, dynamic int8 and fp16 TFLite from a float TFLite file (compress/tflite_quantizer.py):
    how a TFLite source, which has no SavedModel for the TFLite converter, gets compressed."""

    src = dst = "tflite"
    tool = "ai-edge-quantizer"
    package = "ai-edge-quantizer"
    suffix = ".tflite"
    precisions = ("int8", "dynamic-int8", "fp16")
    #: TensorFlow: the fp16 guard's and the integer I/O rewrite's flatbuffer tools
    requires = ("ai_edge_quantizer", "tensorflow")

    def compress(self, src: Path, out: Path, ctx: ConvertContext) -> None:
        tflite_quantizer.compress(src, out, ctx)
