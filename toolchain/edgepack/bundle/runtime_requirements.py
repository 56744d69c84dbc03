"""What runtime a bundled model needs: a declared minimum where the file declares one, and the
runtime versions that actually validated it.

Only a minimum the file itself states is recorded as a minimum. The TFLite converter computes
one from the operator versions it emitted and stores it in the flatbuffer's Metadata table as
``min_runtime_version`` (TensorFlow Lite numbering: tflite-runtime and tensorflow releases);
that is read here. For formats that declare nothing (ONNX, OpenVINO) the manifest records only
the versions that validated the artifact during the build, under ``validated_with``: known to
work, not a proven minimum. Guessing a minimum from a changelog would be a claim we cannot back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line

TFLITE_METADATA_KEY = b"min_runtime_version"
#: the key of a TFLite minimum: it is on TensorFlow Lite's numbering (tflite-runtime and
#: tensorflow releases), not ai-edge-litert's, so it is not filed under the "litert" adapter
TFLITE_RUNTIME = "tensorflow-lite"
TFLITE_SOURCE = "declared in the .tflite by its converter (metadata 'min_runtime_version')"


def min_runtime_versions(path: Path, format_name: str) -> dict[str, dict[str, str]]:
    """``{runtime: {"version", "source"}}`` for a file that declares its minimum, else ``{}``."""
    if format_name != "tflite":
        return {}
    version = tflite_min_runtime_version(path)
    return {TFLITE_RUNTIME: {"version": version, "source": TFLITE_SOURCE}} if version else {}


def tflite_min_runtime_version(path: Path) -> str | None:
    """The ``min_runtime_version`` metadata string of a .tflite file, or None if absent."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() != TFLITE_METADATA_KEY:
                continue
            raw = _buffer_bytes(data, model.Buffers(entry.Buffer()))
            return raw.split(b"\0", 1)[0].decode("ascii") or None
    except Exception as exc:  # flatbuffers raises struct/index errors on garbage
        raise ModelError(f"cannot read the TFLite metadata: {first_line(exc)}", path=path) from exc
    return None


def _buffer_bytes(data: bytes, buffer: Any) -> bytes:
    """A buffer's bytes: inline, or at an offset past the flatbuffer (files over 2 GB)."""
    if buffer.Offset() > 1:
        return data[buffer.Offset():buffer.Offset() + buffer.Size()]
    return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""


def validated_with(runtime: str, tools: dict[str, str]) -> dict[str, str]:
    """``{runtime: version}`` of the runtime that loaded, checked and timed the artifact in the
    build (report.json's ``tools`` records it under the adapter's name)."""
    return {runtime: tools[runtime]} if runtime in tools else {}
