"""Whether code carried inside a model file may run: never, unless the user says so.

Several model formats carry code, not only numbers:

* a Keras Lambda layer is a pickled Python function, a custom layer names a class to import;
* a TorchScript file is a program: its ``__setstate__`` runs when the file is loaded and may
  read, create and overwrite files (``torch.from_file(..., shared=True)``);
* a TensorFlow SavedModel is a graph of operations, and operations can write files
  (``tf.io.write_file``), read them, print to them or call Python;
* a ``.pt2`` (torch.export) archive is loaded through pickle, ``eval`` of its shape
  expressions and ``exec`` of its guard code, and its graph can call any torch function.

Without trust edgepack loads none of them blindly. Keras files load with ``safe_mode=True``.
TorchScript is refused. A SavedModel is loaded only when a walk of its graph (every function
the loader or the serving signature can run) finds nothing but computation, and a ``.pt2`` only
when its archive holds no pickled object, its expressions and names pass a strict grammar and
every operator is a known computation (``formats/savedmodel_check.py``, ``formats/pt2_check.py``);
a build that takes that path says so. ``inspect`` reads SavedModel and ``.pt2`` files without
loading them. Anything else is refused with exit 5 and the reason.

``edgepack --trust-model-code ...`` (or ``EDGEPACK_TRUST_MODEL_CODE=1``, or ``with
trusting_model_code():`` in Python) loads such files as their framework does: the code in the
file then RUNS on this machine with your permissions, so pass it only for a file you made
yourself or whose origin you trust as you would a script.

What trust does NOT open: pickled PyTorch files (``torch.save``) stay refused (export with
torch.export.save or torch.jit.save instead); ONNX custom-domain operators are reported by
``inspect`` and never loaded from a library edgepack was not built with (no
``register_custom_ops_library``); OpenVINO extensions are never loaded implicitly; ``verify``
never loads a model that is not ONNX, TFLite or OpenVINO IR.

The setting travels in the environment so that worker processes (latency, matrix builds) see
the same choice as the command that started them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelError

ENV = "EDGEPACK_TRUST_MODEL_CODE"
TRUST_HINT = ("only if you made the file or trust it like a script you run: "
              "`edgepack --trust-model-code ...` loads it and runs its code")


def model_code_trusted() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


def refused(path: str | Path, reason: str, alternative: str = "") -> ModelError:
    """The exit-5 error for a file that would run code and is not trusted: ``reason`` says
    what in the file does it; the hint says how to trust it (and ``alternative``, a safer way
    to get the same model)."""
    hint = f"{alternative}; or, {TRUST_HINT}" if alternative else TRUST_HINT
    return ModelError(f"refused: {reason}", path=path, hint=hint)


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
    """Run the ``with`` body with model code trusted (Keras ``safe_mode=False``, TorchScript,
    SavedModel and .pt2 files loaded by their frameworks without checks)."""
    return environment(**{ENV: "1"})
