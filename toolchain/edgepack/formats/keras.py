"""Keras models (.keras zip, legacy .h5), always loaded with ``safe_mode=True``.

safe_mode refuses to deserialise Python lambdas (Lambda layers) and other arbitrary code, so a
model file from elsewhere cannot run code on the build machine. Such a model is refused with an
explanation rather than loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..quiet import captured, import_tensorflow
from ..signature import Signature, TensorSpec, guess_layout
from .base import Format, ModelInfo, file_size, histogram

_H5_MAGIC = b"\x89HDF\r\n\x1a\n"


class KerasFormat(Format):
    name = "keras"
    description = "Keras 3 model (.keras) or legacy HDF5 (.h5)"
    suffixes = (".keras", ".h5", ".hdf5")
    runtime = "keras"

    def load(self, path: Path) -> Any:
        """The keras.Model in ``path``, refusing code-carrying layers."""
        _check_container(path)
        import_tensorflow()
        import keras

        from ..trust import model_code_trusted

        trusted = model_code_trusted()  # --trust-model-code: see trust.py for the risk
        try:
            with captured():
                return keras.models.load_model(path, safe_mode=not trusted, compile=False)
        except ValueError as exc:
            text = str(exc)
            if not trusted and ("safe_mode" in text or "arbitrary code" in text):
                raise ModelError(
                    "refused: the model contains Python code (e.g. a Lambda layer) that would run "
                    "when loaded", path=path,
                    hint="rebuild it without Lambda layers; if you made the file yourself, "
                         "`edgepack --trust-model-code ...` runs that code",
                ) from exc
            raise ModelError(f"not a loadable Keras model: {first_line(exc)}", path=path) from exc
        except Exception as exc:  # keras raises many types for corrupt files
            raise ModelError(f"not a loadable Keras model: {first_line(exc)}",
                             path=path) from exc

    def inspect(self, path: Path) -> ModelInfo:
        model = self.load(path)
        return ModelInfo(
            path=str(path), format=self.name, signature=signature_of(model),
            parameters=int(model.count_params()), size_bytes=file_size(path),
            operators=histogram(_layer_types(model)),
            details={"keras_model": model.name, "container": path.suffix.lstrip(".")})


def signature_of(model: Any) -> Signature:
    """Inputs and outputs of a keras.Model, outputs named after the layers producing them."""
    inputs = tuple(_spec(t.name, t) for t in model.inputs)
    outputs = []
    for i, t in enumerate(model.outputs):
        history = getattr(t, "_keras_history", None)
        name = history.operation.name if history is not None else f"output_{i}"
        outputs.append(_spec(name, t))
    return Signature(inputs=inputs, outputs=tuple(outputs))


def _spec(name: str, tensor: Any) -> TensorSpec:
    shape = tuple("batch" if (d is None and i == 0) else ("?" if d is None else int(d))
                  for i, d in enumerate(tensor.shape))
    return TensorSpec(name=name, shape=shape, dtype=str(tensor.dtype),
                      layout=guess_layout(shape, channels_first=False))


def _layer_types(model: Any) -> list[str]:
    names: list[str] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            names.extend(_layer_types(layer))
        elif type(layer).__name__ != "InputLayer":
            names.append(type(layer).__name__)
    return names


def _check_container(path: Path) -> None:
    """Reject files that are not even the right container, before Keras gives a cryptic error."""
    if not path.is_file():
        raise ModelError("no such file", path=path)
    with path.open("rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelError("not a .keras file (not a zip archive); the file may be truncated "
                             "or corrupt", path=path)
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"corrupt .keras archive: {exc}", path=path) from exc
        if "config.json" not in names:
            raise ModelError("not a Keras 3 model: the archive has no config.json", path=path)
        if bad is not None:
            raise ModelError(f"corrupt .keras archive: member '{bad}' fails its CRC check",
                             path=path)
    elif head != _H5_MAGIC:
        raise ModelError("not an HDF5 file (bad signature); the file may be truncated or corrupt",
                         path=path)
