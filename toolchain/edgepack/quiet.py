"""Keep framework log noise off the user's terminal.

TensorFlow, the TFLite converter and LiteRT print from C++ straight to file descriptors 1 and 2
("fully_quantize: 0 ...", "Created TensorFlow Lite XNNPACK delegate", oneDNN notices), which no
Python logging setting reaches. Heavy calls therefore run inside ``captured()``, which points
fds 1 and 2 at a temporary file and gives the text back, so a failure can quote the tool's own
last words instead of losing them. The CLI draws its progress on a duplicate of the original
stderr taken at start-up, so it stays visible while a call is captured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from types import ModuleType

_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",  # also makes CPU math bit-reproducible across runs
    "TF_USE_LEGACY_KERAS": "0",
    "KERAS_BACKEND": "tensorflow",
}


class Captured:
    """Text a captured block printed at the fd level."""

    def __init__(self) -> None:
        self.text = ""

    def last_lines(self, n: int = 3) -> str:
        """The last meaningful lines, for an error message."""
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(lines[-n:])


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """Redirect fds 1 and 2 (C++ and Python output alike) into a buffer for the block."""
    cap = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield cap
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            cap.text = sink.read().decode("utf-8", "replace")


def set_framework_env() -> None:
    """Environment that must be in place before TensorFlow or Keras is first imported."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (and Keras) quietly, once; later calls are free."""
    set_framework_env()
    if "tensorflow" not in sys.modules:
        with captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        _silence_python_loggers()
    import tensorflow as tf

    return tf


def _silence_python_loggers() -> None:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    for name in ("tensorflow", "keras", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl|h5py)(\.|$)")
