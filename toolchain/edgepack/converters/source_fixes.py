"""Graph fixes made once to a private copy of a build's source, before any converter reads it.

A fix lets more tools read the source without changing what it computes; the converters then
start from the copy, and every fp32 hop made from it is still checked against the original
source's outputs. Registered per source format:

* tflite: custom ops that a builtin op computes exactly are rewritten as that builtin
  (compress/tflite_builtins.py: MediaPipe's Convolution2DTransposeBias -> TRANSPOSE_CONV), so
  OpenVINO's and tf2onnx's TFLite readers, ai-edge-quantizer and LiteRT's int8 kernels see
  builtins; sparse constant weights expanded by a DENSIFY op are stored dense
  (compress/tflite_sparse.py: MediaPipe's pose and full-range face detectors), which tf2onnx and
  ai-edge-quantizer cannot read sparse; standalone ReLUs are fused into the op before them
  (compress/tflite_fuse.py), so their int8 ops run whole in XNNPACK.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..compress import tflite_builtins, tflite_fuse, tflite_sparse


def _tflite(src: Path, dst: Path) -> list[str] | None:
    """The TFLite source with its known custom ops as builtins, its sparse weights dense and
    its standalone activations fused (None: it needed none of them)."""
    flatbuffer, done = tflite_builtins.rewritten(src.read_bytes())
    flatbuffer, dense = tflite_sparse.densified(flatbuffer)
    flatbuffer, activations = tflite_fuse.fused(flatbuffer)
    notes = []
    if done:
        counts = ", ".join(f"{what} x{n}" for what, n in sorted(done.items()))
        notes.append("custom op(s) rewritten as the builtin that computes the same, for every "
                     f"tool to read: {counts}")
    if dense:
        notes.append(tflite_sparse.describe(dense))
    if activations:
        notes.append(tflite_fuse.describe(activations))
    if not notes:
        return None
    dst.write_bytes(flatbuffer)
    return notes


#: source format -> fix(source, copy to write) -> notes, or None when nothing needed fixing
FIXES: dict[str, Callable[[Path, Path], list[str] | None]] = {"tflite": _tflite}


def fixed_source(source: Path, fmt: str, folder: Path) -> tuple[Path, list[str]]:
    """The file converters should read for ``source``: a fixed copy in ``folder`` with what
    was fixed, or the source itself (no notes) when its format has no fix or it needs none."""
    fix = FIXES.get(fmt)
    if fix is None or not source.is_file():
        return source, []
    folder.mkdir(parents=True, exist_ok=True)
    notes = fix(source, folder / source.name)
    return (source, []) if notes is None else (folder / source.name, notes)
