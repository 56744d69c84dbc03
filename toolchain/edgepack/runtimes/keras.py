"""Keras adapter: a ``.keras`` (or legacy ``.h5``) file, loaded with ``safe_mode=True``.

Loading goes through ``formats.keras.KerasFormat().load``, which refuses models carrying Python
code (Lambda layers) with a ModelError. Outputs are named as ``formats.keras.signature_of``
names them: after the layer that produces each, in ``model.outputs`` order. The model runs with
``model(x, training=False)`` (dropout off, batch-norm in inference mode), which for the small
batches of validation and latency loops is faster than ``predict``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import first_line
from .base import Runtime, RuntimeOptions
from .session import AdapterSession, InputError


class KerasRuntime(Runtime):
    name = "keras"
    formats = ("keras",)

    def available(self) -> bool:
        return (importlib.util.find_spec("keras") is not None
                and importlib.util.find_spec("tensorflow") is not None)

    def version(self) -> str:
        import importlib.metadata

        try:
            return f"keras {importlib.metadata.version('keras')}"
        except importlib.metadata.PackageNotFoundError:
            return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> KerasSession:
        from ..formats.keras import KerasFormat, signature_of
        from ..quiet import import_tensorflow

        options = options or RuntimeOptions()
        tf = import_tensorflow()
        if options.threads:
            from .tensorflow import _set_threads

            _set_threads(tf, int(options.threads))
        model = KerasFormat().load(Path(path))  # ModelError for missing, corrupt, unsafe
        import keras

        return KerasSession(model, signature_of(model), f"keras {keras.__version__}")


class KerasSession(AdapterSession):
    def __init__(self, model: Any, signature: Any, version: str):
        super().__init__(signature, runtime="keras", runtime_version=version)
        self.native = model

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import keras

        x = arrays[0] if len(arrays) == 1 else list(arrays)
        try:
            result = self.native(x, training=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"the Keras model refused the inputs: {first_line(exc)}") from None
        return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(result)]
