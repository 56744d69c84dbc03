"""SavedModel -> TFLite with the TensorFlow Lite converter, at any TFLite precision.

Quantization happens here because the TFLite converter is the tool that quantizes TFLite best:
it sees the float graph and folds scales into the kernels XNNPACK runs.
"""

from __future__ import annotations

from pathlib import Path

from ..compress.tflite import configure
from ..errors import ConversionError, first_line
from ..quiet import captured, import_tensorflow
from .base import ConvertContext, Edge


class SavedModelToTFLite(Edge):
    src = "savedmodel"
    dst = "tflite"
    tool = "tf.lite.TFLiteConverter"
    cost = 1.0
    precisions = ("fp32", "fp16", "dynamic-int8", "int8")

    def tool_version(self) -> str:
        tf = import_tensorflow()
        return f"tensorflow {tf.__version__}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        tf = import_tensorflow()
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.tflite"
        cap = None
        try:
            with captured() as cap:
                converter = tf.lite.TFLiteConverter.from_saved_model(str(src))
                configure(converter, tf, ctx)
                flatbuffer = converter.convert()
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"TFLite conversion ({ctx.precision}) failed: {first_line(exc)}",
                                  path=src,
                                  hint=cap.last_lines() if cap else None) from exc
        out.write_bytes(flatbuffer)
        return out
