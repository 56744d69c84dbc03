"""edgepack: ship trained neural networks to edge and mobile devices.

The Python API does everything the CLI does::

    import edgepack
    report = edgepack.build("examples/digits", "raspberrypi")
    info = edgepack.inspect("model.tflite")

Names are resolved lazily so that ``import edgepack`` (and ``edgepack --help``) stay instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "build": ("edgepack.api", "build"),
    "bench": ("edgepack.measure.host", "bench"),
    "compare": ("edgepack.measure.compare", "compare"),
    "load_report": ("edgepack.report.load", "load_report"),
    "inspect": ("edgepack.formats", "inspect"),
    "convert": ("edgepack.pipeline.convert_file", "convert"),
    "load_catalog": ("edgepack.config.catalog", "load_catalog"),
    "load_dataset": ("edgepack.data.dataset", "load_dataset"),
    "Report": ("edgepack.report.model", "Report"),
    "Signature": ("edgepack.signature", "Signature"),
    "TensorSpec": ("edgepack.signature", "TensorSpec"),
    "EdgepackError": ("edgepack.errors", "EdgepackError"),
    "package": ("edgepack.bundle", "package"),
    "verify": ("edgepack.bundle", "verify"),
    "keygen": ("edgepack.bundle", "keygen"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgepack' has no attribute {name!r}")
