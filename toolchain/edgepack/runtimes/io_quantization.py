"""The scale and zero point of a model's integer inputs and outputs, where its format has no
place for them: ONNX I/O carries none (a TFLite tensor does), so an ONNX file converted from a
TFLite model with uint8 I/O would be fed raw integers and read raw, next to a source that is fed
and read in real values. edgepack writes them in the file's metadata (``KEY``, a JSON map of
tensor name to ``[scale, zero_point]``) and the ONNX adapter reads them from ONNX Runtime's own
metadata map, so the session quantizes real inputs and dequantizes integer outputs as it does
for TFLite. Standard library only: the adapters import it on a board.
"""

from __future__ import annotations

import json

from ..signature import Quantization

#: the metadata key (ONNX ``metadata_props``)
KEY = "edgepack.io_quantization"


def dump(found: dict[str, Quantization]) -> str:
    return json.dumps({name: [q.scale, q.zero_point] for name, q in sorted(found.items())})


def parse(text: str | None) -> dict[str, Quantization]:
    """The map ``dump`` wrote; nothing from a missing or malformed value."""
    try:
        raw = json.loads(text) if text else {}
        return {str(name): Quantization(float(scale), int(zero))
                for name, (scale, zero) in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return {}
