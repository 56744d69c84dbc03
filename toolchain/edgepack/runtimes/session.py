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
* real-valued (float) inputs quantized into int8/uint8 inputs with the tensor's scale and zero
  point (integer data is the tensor's integers already, e.g. camera bytes, and is only cast),
  int8/uint8 outputs dequantized to float32 (``base.quantize`` / ``base.dequantize``);
* a model with a STATIC batch of 1 given N > 1 samples is run once per sample and the outputs
  concatenated, each input split and each output joined on its own batch axis
  (``signature.batch_axis``: an RNN state ``[2, 1, 128]`` on axis 1). Resizing a static
  dimension is not something every runtime allows (LiteRT
  refuses with ``strict=True``, ORT and OpenVINO reject the shape, and a converted graph may
  have the batch baked into Reshape constants), whereas the per-sample loop is always correct;
  static-batch models are what ``static_shapes`` targets get, so validation must still be able
  to feed them a whole evaluation batch;
* a scalar (rank-0) input takes a 0-d array, or one value per sample (shape (N,), as a data
  set holds it): equal values are fed once, different ones make a run per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ..signature import Signature, TensorSpec, batch_axis
from .base import Session, dequantize, quantize

_QUANTIZED = ("int8", "uint8")


class InputError(DataError, ValueError):
    """Inputs that do not fit the model (count, rank or a static dimension).

    A ``DataError`` (exit code 6) for the CLI, and a ``ValueError`` for code that catches that.
    """


class _Plan:
    """What run() needs to know about one input, computed once at load time."""

    __slots__ = ("spec", "dtype", "quant", "static", "axis")

    def __init__(self, spec: TensorSpec):
        self.spec = spec
        self.dtype = np.dtype(spec.dtype) if _is_dtype(spec.dtype) else None
        self.quant = spec.quantization if spec.dtype in _QUANTIZED else None
        # (axis, size) of every static dimension
        self.static = tuple((i, d) for i, d in enumerate(spec.shape) if isinstance(d, int))
        self.axis = batch_axis(spec.shape)  # None: a scalar input

    def rows(self, a: np.ndarray) -> int | None:
        """How many samples ``a`` holds (None: one value for every sample)."""
        if self.axis is None:
            return len(a) if a.ndim == 1 else None
        return a.shape[self.axis]

    def row(self, a: np.ndarray, i: int) -> np.ndarray:
        """Sample ``i`` of ``a`` as a batch of one (a scalar's value as a 0-d array)."""
        if self.axis is None:
            return np.asarray(a[i]) if a.ndim == 1 else a
        # contiguous: a row taken across another axis is a strided view, which runtimes that
        # read the array's memory in place (OpenVINO's shared tensors) refuse
        return np.ascontiguousarray(a[(slice(None),) * self.axis + (slice(i, i + 1),)])


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
        self._batch1 = [i for i, p in enumerate(self._plans)
                        if p.axis is not None and p.spec.shape[p.axis] == 1]

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
            per_sample = [self._invoke([p.row(a, i) for p, a in zip(self._plans, prepared,
                                                                      strict=True)])
                          for i in range(loop_n)]
            raw = [self._join(k, outs) for k, outs in enumerate(zip(*per_sample, strict=True))]
        else:
            raw = self._invoke(prepared)
        return {name: (dequantize(out, q) if q is not None else out)
                for name, out, q in zip(self._out_names, raw, self._out_quant, strict=True)}

    def _prepare(self, plan: _Plan, value: Any) -> np.ndarray:
        spec = plan.spec
        a = np.asarray(value)
        if plan.axis is None:
            if a.ndim > 1:
                raise InputError(f"input '{spec.name}' is a scalar: give a 0-d array or one "
                                 f"value per sample, got an array of shape {a.shape}")
        elif spec.shape:
            if a.ndim != len(spec.shape):
                raise InputError(f"input '{spec.name}' takes rank {len(spec.shape)} "
                                 f"({spec.shape_str()}), got an array of shape {a.shape}")
            for axis, size in plan.static:
                if a.shape[axis] != size and not (axis == plan.axis and size == 1):
                    raise InputError(
                        f"input '{spec.name}' takes shape {spec.shape_str()}, got {a.shape} "
                        f"(dimension {axis} must be {size})")
        if plan.quant is not None and a.dtype.kind == "f":
            a = quantize(a, plan.quant, spec.dtype)  # real values -> the tensor's integers
        elif plan.dtype is not None and a.dtype != plan.dtype:
            a = a.astype(plan.dtype)
        if plan.axis is None and a.ndim == 1 and len(a) and (a == a[0]).all():
            a = a[0]  # one value for every sample: fed once
        return np.require(a, requirements="C")  # (ascontiguousarray makes a scalar 1-d)

    def _loop_batch(self, arrays: list[np.ndarray]) -> int:
        """N when N > 1 samples must go one at a time (a static batch of 1, or a scalar input
        with a different value per sample), else 0."""
        counts = [p.rows(a) for p, a in zip(self._plans, arrays, strict=True)]
        per_sample = [c for p, c in zip(self._plans, counts, strict=True)
                      if p.axis is None and c is not None]
        n = counts[self._batch1[0]] if self._batch1 else (per_sample or [0])[0]
        if n <= 1 or not (self._batch1 or per_sample):
            return 0
        sizes = {c for c in counts if c is not None}
        if sizes != {n}:
            raise InputError(f"inputs disagree on the batch size: {sorted(sizes)}")
        return n

    def _join(self, k: int, outs: tuple[np.ndarray, ...]) -> np.ndarray:
        """Output ``k`` of every per-sample run, joined on its batch axis: an axis of size 1 in
        every run, the one the signature shows when it is one of them (a declared
        ``[?, ?, ?]`` state returned ``[2, 1, 128]`` joins on axis 1; a declared ``1 x seqlen``
        returned ``(T, 1, C)`` on axis 1)."""
        first = np.asarray(outs[0])
        ones = [i for i in range(first.ndim) if all(np.shape(o)[i:i + 1] == (1,) for o in outs)]
        if not ones and all(np.shape(o) == first.shape for o in outs):
            # no batch axis in the output (a scalar, or a model that returns its one sample's
            # scores squeezed): each run's output is one sample, stacked on a new axis 0
            return np.stack(outs)
        spec = self.signature.outputs[k] if k < len(self.signature.outputs) else None
        declared = batch_axis(spec.shape) if spec is not None and spec.rank == first.ndim \
            else None
        axis = declared if declared in ones or not ones else ones[0]
        return np.concatenate(outs, axis=axis or 0)


def _is_dtype(name: str) -> bool:
    if name in ("", "?"):  # "?" would parse as numpy's bool character code
        return False
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True
