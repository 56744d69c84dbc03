"""LiteRT / TFLite interpreter adapter (.tflite).

The interpreter comes from the first of ``ai_edge_litert`` (LiteRT), ``tflite_runtime`` (the
package older board images ship) and ``tensorflow.lite`` that imports; ``runtime_version``
records which one ran, e.g. "ai-edge-litert 2.3.0". These interpreters apply the XNNPACK
delegate by default, which is what a device runs, so it is left on; its "Created TensorFlow Lite
XNNPACK delegate" line, printed from C++, is kept off the terminal by building the interpreter
inside ``quiet.captured()``.

Names: a model with a SignatureDef is described by the signature's input and output keys (the
SavedModel's names, as ``formats/tflite.py`` reads them), in the signature's order (sorted by
name, as the converter writes them and the interpreter lists them), and mapped to tensor
indices once at load. Running then goes straight through ``set_tensor``/``invoke``/``get_tensor``
on those indices, not through a signature runner, which would resize and re-allocate every
tensor on every call. The interpreter is resized and re-allocated only when an input's shape
changes, so a latency loop over same-shaped inputs pays for it once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgepackError, ModelError, first_line
from ..signature import Quantization, Signature, TensorSpec, guess_layout
from .base import Runtime, RuntimeOptions
from .session import AdapterSession, InputError

SERVING_KEY = "serving_default"

# (module with Interpreter, distributions that may provide it, label for runtime_version)
_BACKENDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("ai_edge_litert.interpreter", ("ai-edge-litert",), "ai-edge-litert"),
    ("tflite_runtime.interpreter", ("tflite-runtime",), "tflite-runtime"),
    ("tensorflow", ("tensorflow", "tensorflow-cpu"), "tensorflow"),
)


class LiteRTRuntime(Runtime):
    name = "litert"
    formats = ("tflite",)
    aborts_on_bad_files = True  # TFLITE_CHECK on quantization parameters calls abort()

    def available(self) -> bool:
        return any(_installed(module) for module, _, _ in _BACKENDS)

    def version(self) -> str:
        """The backend ``load`` would use, e.g. "ai-edge-litert 2.3.0"; "" if none is installed."""
        for module, dists, label in _BACKENDS:
            if _installed(module):
                return f"{label} {_dist_version(dists)}".strip()
        return ""

    def load(self, path: str | Path, options: RuntimeOptions | None = None) -> LiteRTSession:
        from ..quiet import captured

        options = options or RuntimeOptions()
        p = Path(path)
        _check_file(p)
        cls, version = _interpreter_class()
        cap = None
        try:
            with captured() as cap, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                interpreter = cls(model_path=str(p), num_threads=options.threads)
                interpreter.allocate_tensors()
        except Exception as exc:
            said = _log_tail(cap.text if cap else "")
            raise ModelError(f"LiteRT cannot load the model: {first_line(exc)}"
                             + (f" [{said}]" if said else ""), path=p) from exc
        return LiteRTSession(interpreter, version)


class LiteRTSession(AdapterSession):
    def __init__(self, interpreter: Any, version: str):
        self.native = interpreter
        inputs, outputs, self._runner = _io_details(interpreter)
        super().__init__(Signature(inputs=tuple(_spec(n, d) for n, d in inputs),
                                   outputs=tuple(_spec(n, d) for n, d in outputs)),
                         runtime="litert", runtime_version=version)
        self._in_index = [int(d["index"]) for _, d in inputs]
        self._out_index = [int(d["index"]) for _, d in outputs]
        # the shapes the interpreter is allocated for; None: unknown, resize on next call
        self._shapes: list[tuple[int, ...] | None] = [
            tuple(int(v) for v in d["shape"]) for _, d in inputs]

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._runner is not None:
            result = self._runner(**dict(zip(self.signature.input_names, arrays, strict=True)))
            return [result[name] for name in self.signature.output_names]
        it = self.native
        resized = False
        for k, a in enumerate(arrays):
            if a.shape != self._shapes[k]:
                self._shapes[k] = None
                try:
                    it.resize_tensor_input(self._in_index[k], a.shape, strict=True)
                except (ValueError, RuntimeError) as exc:
                    spec = self.signature.inputs[k]
                    raise InputError(f"input '{spec.name}' takes shape {spec.shape_str()}, "
                                     f"cannot run {a.shape}: {first_line(exc)}") from None
                self._shapes[k] = a.shape
                resized = True
        if resized:
            it.allocate_tensors()
        for index, a in zip(self._in_index, arrays, strict=True):
            it.set_tensor(index, a)
        it.invoke()
        return [it.get_tensor(index) for index in self._out_index]


def _io_details(it: Any) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]], Any]:
    """(name, tensor details) of inputs and outputs in signature order, and a signature runner
    when the signature's tensors are not subgraph 0's (then run() has to go through it)."""
    ins, outs = it.get_input_details(), it.get_output_details()
    signatures = {}
    full = getattr(it, "_get_full_signature_list", None)  # {key: {"inputs": {name: index}}}
    if full is not None:
        signatures = full() or {}
    if not signatures:  # no SignatureDef: the tensors' own names
        return [(d["name"], d) for d in ins], [(d["name"], d) for d in outs], None
    key = SERVING_KEY if SERVING_KEY in signatures else next(iter(signatures))
    sig_in, sig_out = signatures[key]["inputs"], signatures[key]["outputs"]
    runner = it.get_signature_runner(key)
    # Tensor indices are per subgraph: a signature of another subgraph can reuse subgraph 0's
    # indices, so the fast path needs to know the subgraph, not just match the index sets.
    subgraph = getattr(runner, "_subgraph_index", 0 if len(signatures) == 1 else None)
    by_index = {int(d["index"]): d for d in [*ins, *outs]}
    if subgraph == 0 and set(sig_in.values()) == {int(d["index"]) for d in ins} and \
            set(sig_out.values()) <= set(by_index):
        return ([(name, by_index[int(i)]) for name, i in sig_in.items()],
                [(name, by_index[int(i)]) for name, i in sig_out.items()], None)
    return (list(runner.get_input_details().items()), list(runner.get_output_details().items()),
            runner)


def _spec(name: str, d: dict) -> TensorSpec:
    """A TensorSpec from interpreter tensor details, named as formats/tflite.py names it."""
    shape_sig = d.get("shape_signature")
    dims_src = d["shape"] if shape_sig is None else shape_sig
    dims = tuple(("batch" if i == 0 else "?") if int(v) < 0 else int(v)
                 for i, v in enumerate(dims_src))
    quant = None
    qp = d.get("quantization_parameters") or {}
    scales, zeros = qp.get("scales", ()), qp.get("zero_points", ())
    if len(scales) == 1 and len(zeros) == 1:
        quant = Quantization(float(scales[0]), int(zeros[0]))
    elif not qp and d.get("quantization", (0.0, 0))[0]:
        scale, zero = d["quantization"]
        quant = Quantization(float(scale), int(zero))
    return TensorSpec(name=name, shape=dims, dtype=np.dtype(d["dtype"]).name,
                      layout=guess_layout(dims, channels_first=False), quantization=quant)


def _interpreter_class() -> tuple[Any, str]:
    from ..quiet import import_tensorflow

    for module, dists, label in _BACKENDS:
        if not _installed(module):
            continue
        try:
            if module == "tensorflow":
                cls = import_tensorflow().lite.Interpreter
            else:
                cls = importlib.import_module(module).Interpreter
        except (ImportError, AttributeError):
            continue
        return cls, f"{label} {_dist_version(dists)}".strip()
    raise EdgepackError("no LiteRT interpreter is installed",
                        hint="pip install ai-edge-litert (or tflite-runtime on older boards)")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(dists: tuple[str, ...]) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def _check_file(path: Path) -> None:
    """Refuse what is plainly not a TFLite file before handing it to C++."""
    if not path.is_file():
        raise ModelError("no such file", path=path)
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError("not a TFLite file (missing the 'TFL3' identifier)", path=path,
                         hint="the file may be truncated or not a .tflite model")


def _log_tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and "XNNPACK delegate" not in ln and not ln.startswith("INFO")]
    return " | ".join(lines[-2:])[:300]
