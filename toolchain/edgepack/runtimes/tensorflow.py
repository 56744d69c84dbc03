"""TensorFlow adapter: a SavedModel folder, run through its ``serving_default`` signature.

Loading goes through ``formats.savedmodel.SavedModelFormat().load`` (one place that explains a
missing serving signature), and the session is described by ``formats.savedmodel.signature_of``:
inputs are the signature's keyword arguments, outputs its keys sorted by name, which is also
the order of the TFLite file converted from it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, first_line
from .base import Runtime, RuntimeOptions
from .session import AdapterSession, InputError


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    formats = ("savedmodel",)

    def available(self) -> bool:
        return importlib.util.find_spec("tensorflow") is not None

    def version(self) -> str:
        import importlib.metadata

        for dist in ("tensorflow", "tensorflow-cpu"):
            try:
                return f"tensorflow {importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
        return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> TensorFlowSession:
        from ..formats.savedmodel import SavedModelFormat, signature_of
        from ..quiet import import_tensorflow

        options = options or RuntimeOptions()
        p = Path(path)
        if not (p / "saved_model.pb").is_file():
            raise ModelError("not a SavedModel folder (no saved_model.pb in it)", path=p)
        tf = import_tensorflow()
        if options.threads:
            _set_threads(tf, int(options.threads))
        loaded, fn = SavedModelFormat().load(p)
        return TensorFlowSession(loaded, fn, signature_of(fn), f"tensorflow {tf.__version__}")


class TensorFlowSession(AdapterSession):
    def __init__(self, loaded: Any, fn: Any, signature: Any, version: str):
        super().__init__(signature, runtime="tensorflow", runtime_version=version)
        self._loaded = loaded  # keeps the variables the function reads alive
        self.native = fn

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            result = self.native(**dict(zip(self.signature.input_names, arrays, strict=True)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"the serving signature refused the inputs: {first_line(exc)}") \
                from None
        return [result[name].numpy() for name in self.signature.output_names]


def _set_threads(tf: Any, threads: int) -> None:
    """TF's thread pools can only be sized before its runtime starts; later it is ignored."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
