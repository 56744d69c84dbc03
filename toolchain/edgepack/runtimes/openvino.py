"""OpenVINO adapter: an IR (.xml next to its .bin) or an .onnx file, compiled for a device.

Settings: ``Core().compile_model(path, options.device, config)`` with
``INFERENCE_NUM_THREADS`` from ``threads`` (when set), ``INFERENCE_PRECISION_HINT`` from
``precision_hint`` (when set) and ``PERFORMANCE_HINT`` from ``extra["performance_hint"]``
("LATENCY" by default: one request at a time, as a device app runs it).

Precision: on a CPU with AVX512_BF16 or AMX, OpenVINO computes an f32 model in **bf16** unless
told otherwise, which moves outputs by ~1e-2 relative. That is the speed a user gets, so it is
not overridden here, but a validation that compares against the original model must load with
``RuntimeOptions(precision_hint="f32")``, or it measures OpenVINO's default precision rather than
the artifact. ``extra["integer_semantics"]`` True turns the CPU plugin's low-precision
transformations off, so an int8 IR's FakeQuantize ops are computed as written rather than by
int8 kernels that saturate on an x86 CPU without VNNI (integer_semantics.py; NNCF's test
encoder on an AMD EPYC: cosine 0.99994 to fp32 so, 0.99662 through the kernels).

Names are as ``formats/openvino.py`` gives them: the first of a port's names in sorted order.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..signature import Signature, TensorSpec, guess_layout
from .base import Runtime, RuntimeOptions
from .session import AdapterSession, InputError


class OpenVinoRuntime(Runtime):
    name = "openvino"
    formats = ("openvino", "onnx")

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def version(self) -> str:
        try:
            return f"openvino {importlib.metadata.version('openvino')}"
        except importlib.metadata.PackageNotFoundError:
            return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> OpenVinoSession:
        import openvino as ov

        from ..quiet import captured

        options = options or RuntimeOptions()
        p = Path(path)
        if not p.is_file():
            raise ModelError("no such file", path=p)
        if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").is_file():
            raise ModelError(f"the weights file {p.with_suffix('.bin').name} is missing next to "
                             "it", path=p,
                             hint="an OpenVINO IR is an .xml and a .bin with the same name")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": str(options.extra.get("performance_hint", "LATENCY")).upper()}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        if options.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = options.precision_hint
        if options.extra.get("integer_semantics"):
            # FakeQuantize computed as written, not by this host's saturating x86 int8
            # kernels (integer_semantics.py): the CPU plugin's low-precision passes off
            from .integer_semantics import OPENVINO_SETTINGS

            config.update(OPENVINO_SETTINGS)
        try:
            with captured():
                compiled = ov.Core().compile_model(str(p), options.device, config)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot load the model on {options.device}: "
                             f"{_useful_line(exc)}", path=p) from exc
        return OpenVinoSession(compiled, f"openvino {_version(ov)}", ov.Tensor)


class OpenVinoSession(AdapterSession):
    """Runs through one reused InferRequest, inputs wrapped without copying.

    ``request.infer(list_of_arrays)`` copies every input into a new tensor and builds a dict of
    copied outputs on each call, a few percent of a 1 ms model. Here the (already contiguous,
    already cast) arrays are wrapped as shared-memory tensors and ``infer()`` is called. The
    request keeps only a pointer into those arrays, so the session holds them until the next
    call; an input that is the very array held from the last call is not wrapped and set again
    (its memory is what the request reads, in-place changes included), which is what a latency
    loop over one feed does.
    """

    def __init__(self, compiled: Any, version: str, tensor_cls: Any):
        self.native = compiled
        signature = Signature(
            inputs=tuple(_spec(port, f"input_{i}") for i, port in enumerate(compiled.inputs)),
            outputs=tuple(_spec(port, f"output_{i}") for i, port in enumerate(compiled.outputs)))
        super().__init__(signature, runtime="openvino", runtime_version=version)
        self._request = compiled.create_infer_request()  # reused: no per-call set-up
        self._tensor = tensor_cls
        self._held: list[np.ndarray] = []
        self._n_out = len(compiled.outputs)
        self.precision = _inference_precision(compiled)

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        request, held = self._request, self._held
        try:
            for i, a in enumerate(arrays):
                if i >= len(held) or held[i] is not a:
                    request.set_input_tensor(i, self._tensor(a, shared_memory=True))
            self._held = arrays
            request.infer()
        except RuntimeError as exc:
            self._held = []
            raise InputError(f"OpenVINO refused the inputs: {_useful_line(exc)}") from None
        # copy: the request's output buffers are overwritten by the next call
        return [np.array(request.get_output_tensor(i).data) for i in range(self._n_out)]


def _spec(port: Any, fallback: str) -> TensorSpec:
    shape = tuple(int(d.get_length()) if d.is_static else ("batch" if i == 0 else "?")
                  for i, d in enumerate(port.get_partial_shape()))
    names = sorted(port.get_names())
    return TensorSpec(name=names[0] if names else fallback, shape=shape,
                      dtype=port.get_element_type().to_dtype().name,
                      layout=guess_layout(shape, channels_first=True))


def _inference_precision(compiled: Any) -> str:
    """What the device computes in ("bf16", "f32", "f16"); "" if the device does not say."""
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    except (RuntimeError, AttributeError):
        return ""


def _version(ov: Any) -> str:
    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(ov, "__version__", "")).split("-")[0]


def _useful_line(exc: BaseException) -> str:
    """OpenVINO errors start with "Exception from src/...cpp:123:" lines; keep the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0][:300]
