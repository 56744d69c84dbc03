"""Load a file first in a child process, for runtimes whose native code can kill the process.

LiteRT checks a model's quantization parameters with ``TFLITE_CHECK``, which calls ``abort()``:
an int8 file with an absurd scale (1.3e36, an attention mask's float32-min sentinel calibrated
into an Add) takes the whole build down with SIGABRT, no message, no report, the staging folder
left behind. Loading it once in a child process (``load`` with its tensors allocated, then one
run on zeros where the shapes are fixed) turns that death into a ModelError, which fails that
file (a conversion edge, a fallback attempt, a source) with one line, like any file a runtime
rejects. Only the exit by signal is judged here: an exception in the child is the in-process
load's to report, with its real message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..limits import run_child
from .base import Runtime, RuntimeOptions, Session

#: seconds the child may take; a child that outlives it is not judged (the load in process
#: goes ahead and reports whatever it finds)
PROBE_SECONDS = 300.0


def load(runtime: Runtime, path: str | Path, options: RuntimeOptions | None = None) -> Session:
    """``runtime.load(path, options)``, preceded by a load in a child process when the runtime
    can abort on a bad file; ModelError (naming the signal) when the child was killed."""
    if runtime.aborts_on_bad_files:
        died = killed_by(runtime.name, Path(path))
        if died:
            raise ModelError(f"{runtime.name} {died} loading the model (found in a child "
                             "process, so nothing else was stopped); the file is unusable",
                             path=Path(path))
    return runtime.load(str(path), options)


def killed_by(runtime_name: str, path: Path) -> str:
    """"aborted (SIGABRT)"-style words when loading and running ``path`` once with the
    ``runtime_name`` adapter kills a child process; "" when it does not."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")]))}
    try:
        done = run_child([sys.executable, "-m", __name__, runtime_name, str(path)], env=env,
                         timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return ""
    if done.returncode >= 0:
        return ""
    try:
        name = signal.Signals(-done.returncode).name
    except ValueError:
        name = f"signal {-done.returncode}"
    verb = "aborted" if name == "SIGABRT" else "crashed"
    return f"{verb} ({name})"


def _run_once(runtime_name: str, path: str) -> None:
    """The child: load with the adapter, then run once on zeros if every dimension is fixed."""
    from . import get_runtime

    session = get_runtime(runtime_name).load(path, RuntimeOptions(threads=1))
    specs = session.signature.inputs
    if all(isinstance(d, int) and d > 0 for spec in specs for d in spec.shape):
        session.run({spec.name: np.zeros(spec.shape, spec.dtype) for spec in specs})


if __name__ == "__main__":
    try:
        _run_once(sys.argv[1], sys.argv[2])
    except Exception:  # noqa: BLE001 - an exception is the in-process load's to report
        sys.exit(1)
