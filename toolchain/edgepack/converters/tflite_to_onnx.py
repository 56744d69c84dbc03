"""TFLite -> ONNX with tf2onnx's TFLite frontend (``from_tflite``), for TFLite sources.

The ONNX keeps the TFLite layout (NHWC). tf2onnx names the graph's inputs and outputs after the
TFLite tensors; a file with a SignatureDef is read by edgepack under the signature's names
(formats/tflite.py), so those are given to the ONNX values too. Opset as for SavedModels.
"""

from __future__ import annotations

from pathlib import Path

from ..compress import tflite_graph
from ..compress.context import ConvertContext
from ..errors import ConversionError
from ..quiet import captured, import_tensorflow
from .base import converter_failed
from .onnx_io_quantization import record_io_quantization
from .onnx_names import name_batch_dim, rename
from .savedmodel_to_onnx import OPSET, Tf2onnx


class TFLiteToOnnx(Tf2onnx):
    src = "tflite"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        import_tensorflow()  # quietly, before tf2onnx imports it
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.onnx"
        cap = None
        try:
            with captured() as cap:
                import tf2onnx

                tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
                model, _ = tf2onnx.convert.from_tflite(str(src), opset=OPSET)
        except Exception as exc:
            raise converter_failed("tf2onnx (tflite -> onnx)", exc, cap.text if cap else "",
                                   src) from exc
        # an op tf2onnx has no handler for stays in the graph as a TFL_<name> node
        left = sorted({n.op_type.removeprefix("TFL_") for n in model.graph.node
                       if n.op_type.startswith("TFL_")})
        if left:
            raise ConversionError(f"tf2onnx (tflite -> onnx) failed: unsupported operator(s) "
                                  f"{', '.join(left)}", path=src)
        rename(model, _signature_names(src))
        name_batch_dim(model)
        record_io_quantization(model)  # a source with uint8 I/O: ONNX I/O has no scale
        import onnx

        onnx.save(model, str(out))
        return out


def _signature_names(src: Path) -> dict[str, str]:
    """TFLite tensor name -> the name edgepack reads it by: its key in the first SignatureDef
    (none when the file has no signature: the tensor names are the names)."""
    model = tflite_graph.read(src.read_bytes())
    if not model.signatureDefs:
        return {}
    signature = model.signatureDefs[0]
    tensors = model.subgraphs[signature.subgraphIndex].tensors
    return {tensors[item.tensorIndex].name.decode(): item.name.decode()
            for item in [*(signature.inputs or []), *(signature.outputs or [])]}
