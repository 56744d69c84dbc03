"""What every adapter's Session shares, so each adapter implements only ``_invoke``.

Each adapter lives in its own module and imports its framework only inside ``available()``,
``version()`` and ``load()``: at module level there is nothing but numpy, the standard library
and edgepack's numpy-only modules, so ``edgepack.runtimes.litert`` imports on a board that has
python3, numpy and one runtime and nothing else.

``AdapterSession`` holds what is the same for every runtime, so each adapter implements only
``_invoke`` (arrays already in the model's dtypes and order -> raw outputs in signature order):

* inputs by name (or by position, ``Session.order_inputs``), checked against the signature's
  static dimensions with one clear message (``InputError``: both a ``DataError`` for the CLI and
  a ``ValueError`` for callers that catch that);
* real-valued inputs quantized into int8/uint8 inputs with the tensor's scale and zero point,
  int8/uint8 outputs dequantized to float32 (``base.quantize`` / ``base.dequantize``);
* a model with a STATIC batch of 1 given N > 1 samples is run once per sample and the outputs
  concatenated. Resizing a static dimension is not something every runtime allows (LiteRT
  refuses with ``strict=True``, ORT and OpenVINO reject the shape, and a converted graph may
  have the batch baked into Reshape constants), whereas the per-sample loop is always correct;
  static-batch models are what ``static_shapes`` targets get, so validation must still be able
  to feed them a whole evaluation batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ..signature import Signature, TensorSpec
from .base import Session, dequantize, quantize

_QUANTIZED = ("int8", "uint8")


class InputError(DataError, ValueError):
    """Inputs that do not fit the model (count, rank or a static dimension).

    A ``DataError`` (exit code 6) for the CLI, and a ``ValueError`` for code that catches that.
    """


class _Plan:
    """What run() needs to know about one input, computed once at load time."""

    __slots__ = ("spec", "dtype", "quant", "static")

    def __init__(self, spec: TensorSpec):
        self.spec = spec
        self.dtype = np.dtype(spec.dtype) if _is_dtype(spec.dtype) else None
        self.quant = spec.quantization if spec.dtype in _QUANTIZED else None
        # (axis, size) of every static dimension
        self.static = tuple((i, d) for i, d in enumerate(spec.shape) if isinstance(d, int))


class AdapterSession(Session):
    """A Session whose adapter implements ``_invoke``; see the module docstring."""

    def __init__(self, signature: Signature, runtime: str, runtime_version: str):
        self.signature = signature
        self.runtime = runtime
        self.runtime_version = runtime_version
        self._plans = [_Plan(s) for s in signature.inputs]
        self._out_quant = [s.quantization if s.dtype in _QUANTIZED else None
                           for s in signature.outputs]
        self._out_names = signature.output_names
        # inputs whose batch dimension is a static 1: they may be fed N samples one at a time
        self._batch1 = [i for i, p in enumerate(self._plans) if p.spec.shape[:1] == (1,)]

    # -- what adapters implement ---------------------------------------------------------------
    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run once: arrays in the model's dtypes and input order -> outputs in signature order."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            arrays = self.order_inputs(inputs)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        prepared = [self._prepare(p, a) for p, a in zip(self._plans, arrays, strict=True)]
        loop_n = self._loop_batch(prepared)
        if loop_n:
            per_sample = [self._invoke([a[i:i + 1] for a in prepared]) for i in range(loop_n)]
            raw = [np.concatenate(outs, axis=0) for outs in zip(*per_sample, strict=True)]
        else:
            raw = self._invoke(prepared)
        return {name: (dequantize(out, q) if q is not None else out)
                for name, out, q in zip(self._out_names, raw, self._out_quant, strict=True)}

    def _prepare(self, plan: _Plan, value: Any) -> np.ndarray:
        spec = plan.spec
        a = np.asarray(value)
        if spec.shape:
            if a.ndim != len(spec.shape):
                raise InputError(f"input '{spec.name}' takes rank {len(spec.shape)} "
                                 f"({spec.shape_str()}), got an array of shape {a.shape}")
            for axis, size in plan.static:
                if a.shape[axis] != size and not (axis == 0 and size == 1):
                    raise InputError(
                        f"input '{spec.name}' takes shape {spec.shape_str()}, got {a.shape} "
                        f"(dimension {axis} must be {size})")
        if plan.quant is not None:
            a = quantize(a, plan.quant, spec.dtype)  # real values -> the tensor's integers
        elif plan.dtype is not None and a.dtype != plan.dtype:
            a = a.astype(plan.dtype)
        return np.ascontiguousarray(a)

    def _loop_batch(self, arrays: list[np.ndarray]) -> int:
        """N when N > 1 samples must go one at a time through a static batch of 1, else 0."""
        if not self._batch1:
            return 0
        n = arrays[self._batch1[0]].shape[0]
        if n == 1:
            return 0
        sizes = {a.shape[0] for a in arrays if a.ndim > 0}
        if sizes != {n}:
            raise InputError(f"inputs disagree on the batch size: {sorted(sizes)}")
        return n


def _is_dtype(name: str) -> bool:
    if name in ("", "?"):  # "?" would parse as numpy's bool character code
        return False
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True
