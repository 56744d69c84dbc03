"""Keras -> SavedModel with ``model.export``: the form the TFLite converter reads best.

``from_keras_model`` prints an endpoint dump to stdout and is the less tested path in Keras 3;
exporting a SavedModel and converting from it is what works reliably on our pins.
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
    tool = "keras.Model.export"
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
                model.export(str(out), format="tf_saved_model", verbose=False,
                             **self._signature(model, ctx))
        except Exception as exc:
            raise converter_failed("Keras export to SavedModel", exc, cap.text if cap else "",
                                   src) from exc
        return out

    def _signature(self, model: Any, ctx: ConvertContext) -> dict[str, Any]:
        """Fixed input shapes for static-shape targets; otherwise Keras' own (batch dynamic)."""
        if not ctx.input_shapes:
            return {}
        import tensorflow as tf

        specs = [tf.TensorSpec(ctx.input_shapes.get(t.name, t.shape), t.dtype, name=t.name)
                 for t in model.inputs]
        return {"input_signature": specs}
