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
* onnx: a model that computes in fp16 is computed in fp32 (onnx_upcast.py): onnx2tf, ONNX
  Runtime's quantizer and OpenVINO's read fp16 graphs badly, and every fp16 value is exact in
  fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..compress import tflite_builtins, tflite_fuse, tflite_sparse
from .onnx_upcast import upcast_source

#: the fixes of a TFLite source, in the order applied: each turns the file's bytes into
#: (bytes, what it did: falsy when nothing), and says what it did in a note
TFLITE_FIXES: list[tuple[Callable[[bytes], tuple[bytes, Any]], Callable[[Any], str]]] = [
    (tflite_builtins.rewritten, tflite_builtins.describe),
    (tflite_sparse.densified, tflite_sparse.describe),
    (tflite_fuse.fused, tflite_fuse.describe)]


def _tflite(src: Path, dst: Path) -> list[str] | None:
    """The TFLite source with every fix of ``TFLITE_FIXES`` that applies (None: none did)."""
    flatbuffer, notes = src.read_bytes(), []
    for fix, describe in TFLITE_FIXES:
        flatbuffer, done = fix(flatbuffer)
        if done:
            notes.append(describe(done))
    if not notes:
        return None
    dst.write_bytes(flatbuffer)
    return notes


#: source format -> fix(source, copy to write) -> notes, or None when nothing needed fixing
FIXES: dict[str, Callable[[Path, Path], list[str] | None]] = {"tflite": _tflite,
                                                               "onnx": upcast_source}


def fixed_source(source: Path, fmt: str, folder: Path) -> tuple[Path, list[str]]:
    """The file converters should read for ``source``: a fixed copy in ``folder`` with what
    was fixed, or the source itself (no notes) when its format has no fix or it needs none."""
    fix = FIXES.get(fmt)
    if fix is None or not source.is_file():
        return source, []
    folder.mkdir(parents=True, exist_ok=True)
    notes = fix(source, folder / source.name)
    return (source, []) if notes is None else (folder / source.name, notes)
