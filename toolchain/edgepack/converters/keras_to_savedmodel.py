"""Keras -> SavedModel with Keras' ExportArchive: the form the TFLite converter reads best.

``from_keras_model`` prints an endpoint dump to stdout and is the less tested path in Keras 3;
exporting a SavedModel and converting from it is what works reliably on our pins. The serving
endpoint calls the model with ``training=False``, as the source runs: ``model.export`` calls it
with ``training`` unset, which a layer whose own default is training (Keras 3's RandomFlip,
RandomRotation, ...) takes as training, so an augmentation layer left in an inference model
flipped its inputs in the export (max abs error 0.03 on a softmax, caught by the hop check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compress.context import ConvertContext
from ..formats.keras import KerasFormat
from ..quiet import captured
from .base import Edge, converter_failed


class KerasToSavedModel(Edge):
    src = "keras"
    dst = "savedmodel"
    tool = "keras.export.ExportArchive"
    requires = ("keras", "tensorflow")
    cost = 1.0

    def tool_version(self) -> str:
        import keras

        return f"keras {keras.__version__}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        model = KerasFormat().load(src)
        out = ctx.workdir / f"{ctx.stem}.savedmodel"
        cap = None
        try:
            with captured() as cap:
                from keras.export import ExportArchive

                archive = ExportArchive()
                archive.track(model)
                archive.add_endpoint("serve", lambda inputs: model(inputs, training=False),
                                     [self._signature(model, ctx)])
                archive.write_out(str(out), verbose=False)
        except Exception as exc:
            raise converter_failed("Keras export to SavedModel", exc, cap.text if cap else "",
                                   src) from exc
        return out

    def _signature(self, model: Any, ctx: ConvertContext) -> Any:
        """The model's inputs as one argument (a spec, or a list of them in ``model.inputs``
        order), with the fixed shapes of a static-shape target, else Keras' own (batch
        dynamic)."""
        import tensorflow as tf

        shapes = ctx.input_shapes or {}
        specs = [tf.TensorSpec(shapes.get(t.name, t.shape), t.dtype, name=t.name)
                 for t in model.inputs]
        return specs[0] if len(specs) == 1 else specs
