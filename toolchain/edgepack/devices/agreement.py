"""Did the device compute what the host computed? Per output, with a tolerance that says why.

The device runs the same artifact on the same inputs as the host, so the only honest
differences are the kernels': float summation order (ARM NEON vs x86 AVX) and, for integer
outputs, requantization rounding. Hence, per output:

* float outputs: ``FLOAT_RTOL * (1 + max|host|)``;
* int8/uint8 outputs (dequantized by the adapter), and float outputs a model dequantizes from
  integers itself (int8 models with float I/O; see quant_steps.py): that plus ``INT_STEPS``
  quantization step.

A mismatch names the output, the sample and the element where it is worst, with both values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..signature import TensorSpec
from ..validate.fidelity import OutputFidelity, compare

#: float kernels on another ISA differ by rounding only (measured ~1e-6 relative)
FLOAT_RTOL = 1e-4
#: integer outputs may land one step apart where a value sits on a rounding boundary (the
#: same kernels are bit-exact; qemu's "max" CPU, a real kernel fault, was 24 steps off)
INT_STEPS = 1


@dataclass
class Agreement:
    fidelity: list[OutputFidelity]
    tolerances: list[float]
    failures: list[str]


def tolerance_for(spec: TensorSpec | None, ref: np.ndarray, step: float | None = None) -> float:
    """``step``: the quantization step a float output is dequantized from, if any."""
    tol = FLOAT_RTOL * (1.0 + float(np.max(np.abs(ref))) if ref.size else 1.0)
    if spec is not None and spec.dtype in ("int8", "uint8") and spec.quantization is not None:
        tol += INT_STEPS * spec.quantization.scale
    elif step is not None:
        tol += INT_STEPS * step
    return tol


def agree(refs: list[np.ndarray], outs: list[np.ndarray], specs: list[TensorSpec],
          tolerance: float | None = None,
          steps: list[float | None] | None = None) -> Agreement:
    """Compare device outputs with host ones (matched by position); ``tolerance`` overrides."""
    if len(refs) != len(outs):
        return Agreement([], [], [f"the device gave {len(outs)} outputs, the host {len(refs)}"])
    result = Agreement([], [], [])
    for i, (ref, out) in enumerate(zip(refs, outs, strict=True)):
        spec = specs[i] if i < len(specs) else None
        name = spec.name if spec is not None else f"output_{i}"
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            result.failures.append(f"output '{name}': shape {out.shape} on the device, "
                                   f"{ref.shape} on the host")
            continue
        fid = compare(name, ref, out)
        step = steps[i] if steps and i < len(steps) else None
        tol = tolerance if tolerance is not None else tolerance_for(spec, ref, step)
        result.fidelity.append(fid)
        result.tolerances.append(tol)
        if not fid.max_abs_error <= tol:  # also catches NaN
            where = np.unravel_index(int(np.nanargmax(np.abs(out - ref))), ref.shape)
            result.failures.append(
                f"output '{name}': max abs error {fid.max_abs_error:.3g} > tolerance {tol:.3g} "
                f"at sample {where[0]}, index {tuple(int(w) for w in where)} "
                f"(host {ref[where]:.6g}, device {out[where]:.6g})")
    return result
