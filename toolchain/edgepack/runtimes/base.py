"""The one interface every runtime adapter implements.

Adapters import only numpy at module level: the same code runs on a board that has nothing but
python3, numpy and one runtime installed. Callers always pass and receive real (float) values;
an adapter (de)quantizes int8/uint8 model I/O from the tensor's own scale and zero point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..signature import Quantization, Signature


@dataclass(frozen=True)
class RuntimeOptions:
    """Knobs common to runtimes; each adapter maps them to its own settings."""

    threads: int | None = None  # None: the runtime's default (usually all cores)
    device: str = "CPU"  # OpenVINO device name; ONNX Runtime provider choice
    precision_hint: str | None = None  # OpenVINO INFERENCE_PRECISION_HINT, e.g. "f32"
    extra: dict[str, Any] = field(default_factory=dict)


class Session:
    """A loaded model ready to run. ``run`` maps input name -> array to output name -> array.

    Inputs are matched by name, or by position when the names differ (different formats name
    the same tensor differently); outputs come back under this session's own output names, in
    ``signature.outputs`` order.
    """

    signature: Signature
    runtime: str = ""
    runtime_version: str = ""
    #: the precision the runtime computes in when it chooses one itself (OpenVINO runs an f32
    #: model in bf16 on CPUs with AVX512_BF16/AMX); "" when it runs the model's own precision
    precision: str = ""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def order_inputs(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs in this session's order: by name when all names match, else by position."""
        names = self.signature.input_names
        if set(inputs) == set(names):
            return [inputs[n] for n in names]
        if len(inputs) != len(names):
            raise ValueError(f"model takes {len(names)} inputs ({', '.join(names)}), "
                             f"got {len(inputs)}")
        return list(inputs.values())


class Runtime:
    """A runtime adapter: ``load`` a model file into a Session."""

    name: str = ""
    formats: tuple[str, ...] = ()
    #: its native code can end the process on a file it rejects (an ``abort()`` from a failed
    #: check) instead of raising: the build loads new files in a child first (child_probe.py)
    aborts_on_bad_files: bool = False

    def available(self) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def load(self, path: str, options: RuntimeOptions | None = None) -> Session:
        raise NotImplementedError


def quantize(x: np.ndarray, q: Quantization, dtype: str) -> np.ndarray:
    """Real values -> integer tensor values with the tensor's scale and zero point."""
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(np.asarray(x, np.float32) / q.scale) + q.zero_point,
                   info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """Integer tensor values -> real values."""
    return ((x.astype(np.float32) - q.zero_point) * q.scale).astype(np.float32)
