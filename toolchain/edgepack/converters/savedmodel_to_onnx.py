"""SavedModel -> ONNX with tf2onnx, from the serving signature.

``tf2onnx.convert.from_keras`` fails on Keras 3 models; converting the SavedModel's serving
function with ``from_function`` works. Opset 17: the newest this tf2onnx emits
reliably, and old enough for ONNX Runtime 1.16+ on boards. The ONNX keeps the SavedModel's
layout (NHWC for Keras).
"""

from __future__ import annotations

from pathlib import Path

from ..compress.context import ConvertContext
from ..formats.savedmodel import SavedModelFormat
from ..quiet import captured, import_tensorflow
from .base import Edge, converter_failed
from .onnx_names import name_batch_dim, rename_outputs

OPSET = 17


class Tf2onnx(Edge):
    """The tf2onnx edges (from SavedModels here, from TFLite files in tflite_to_onnx.py)."""

    dst = "onnx"
    tool = "tf2onnx"
    requires = ("tf2onnx", "tensorflow")
    cost = 2.0

    def tool_version(self) -> str:
        import tf2onnx

        return f"tf2onnx {tf2onnx.__version__} (opset {OPSET})"


class SavedModelToOnnx(Tf2onnx):
    src = "savedmodel"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        tf = import_tensorflow()
        loaded, fn = SavedModelFormat().load(src)  # ``loaded`` owns fn's variables: keep it
        _, kwargs = fn.structured_input_signature
        names = sorted(kwargs)
        outputs = sorted(fn.structured_outputs)
        shapes = ctx.input_shapes or {}
        specs = [tf.TensorSpec(shapes.get(n, kwargs[n].shape), kwargs[n].dtype, name=n)
                 for n in names]

        def serve(*args):  # positional in sorted-name order, outputs as a sorted tuple
            result = fn(**dict(zip(names, args, strict=True)))
            return tuple(result[k] for k in outputs)

        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.onnx"
        cap = None
        try:
            with captured() as cap:
                import tf2onnx

                tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
                model, _ = tf2onnx.convert.from_function(
                    tf.function(serve, input_signature=specs, autograph=False),
                    input_signature=specs, opset=OPSET)
        except Exception as exc:
            raise converter_failed("tf2onnx (savedmodel -> onnx)", exc,
                                   cap.text if cap else "", src) from exc
        del loaded
        rename_outputs(model, outputs)
        name_batch_dim(model)
        import onnx

        onnx.save(model, str(out))
        return out
