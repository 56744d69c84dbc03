"""Whether code carried inside a model file may run: never, unless the user says so.

Model files can carry code: a Keras Lambda layer is a pickled Python function (marshal'd
bytecode), a custom layer names a Python class to import. Loaded with ``safe_mode=True`` (the
default), Keras refuses them and edgepack explains. ``edgepack --trust-model-code ...`` (or
``EDGEPACK_TRUST_MODEL_CODE=1``, or ``with trusting_model_code():`` in Python) loads Keras files
with ``safe_mode=False``: the code in the file then RUNS on this machine with your permissions,
so pass it only for a file you made yourself or whose origin you trust as you would a script.

What trust does NOT open: pickled PyTorch files (``torch.save``) stay refused (export with
torch.export.save or torch.jit.save instead); ONNX custom-domain operators are reported by
``inspect`` and never loaded from a library edgepack was not built with (no
``register_custom_ops_library``); OpenVINO extensions are never loaded implicitly.

The setting travels in the environment so that worker processes (latency, matrix builds) see
the same choice as the command that started them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "EDGEPACK_TRUST_MODEL_CODE"


def model_code_trusted() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, leave) environment variables for the ``with`` body, then restore."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def trusting_model_code() -> contextlib.AbstractContextManager[None]:
    """Run the ``with`` body with model code trusted (Keras ``safe_mode=False``)."""
    return environment(**{ENV: "1"})
