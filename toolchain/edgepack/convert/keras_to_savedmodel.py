"""Keras -> SavedModel with ``model.export``: the form the TFLite converter reads best.

``from_keras_model`` prints an endpoint dump to stdout and is the less tested path in Keras 3;
exporting a SavedModel and converting from it is what works reliably on our pins.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConversionError
from ..formats.keras import KerasFormat
from ..quiet import captured
from .base import ConvertContext, Edge


class KerasToSavedModel(Edge):
    src = "keras"
    dst = "savedmodel"
    tool = "keras.Model.export"
    cost = 1.0

    def tool_version(self) -> str:
        import keras

        return f"keras {keras.__version__}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        model = KerasFormat().load(src)
        out = ctx.workdir / f"{ctx.stem}.savedmodel"
        try:
            with captured() as cap:
                model.export(str(out), format="tf_saved_model", verbose=False)
        except Exception as exc:
            raise ConversionError(f"Keras export to SavedModel failed: {exc}".splitlines()[0],
                                  path=src, hint=cap.last_lines() or None) from exc
        return out
