"""Did the device compute what the host computed? Per output, with a tolerance that says why.

The device runs the same artifact on the same inputs as the host, so the only honest
differences are the kernels': float summation order (ARM NEON vs x86 AVX) and, for integer
outputs, requantization rounding. Hence, per output:

* float outputs: ``FLOAT_RTOL * (1 + max|host|)``;
* int8/uint8 outputs (dequantized by the adapter), and float outputs a model dequantizes from
  integers itself (int8 models with float I/O; see quant_steps.py): that plus ``INT_STEPS``
  quantization step, or ``AS_WRITTEN_STEPS`` where the host's outputs are the file's int8 ops
  computed as written (``HostReference``).

An int8 file computed by two correct integer implementations drifts further apart in a deep
network: each layer may round a value on a boundary the other way, and the next layers carry
it on (MediaPipe's selfie segmentation in int8 ONNX, an emulated Pi against this host's file
computed as written: a quarter of the last convolution's elements one step or more apart, the
worst 38 steps; both equally close to fp32, cosine 0.976). So a compressed file's output also
passes when, given the source model's outputs for the same samples, the board's is as close
to them as the host's (mean and worst absolute error, within ``FAITHFUL_MARGIN``): the
fidelity the build reports holds on the board. A kernel fault takes it further away.

The host's reference follows the board's integer arithmetic: an x86 host without VNNI adds
int8 products in saturating 16-bit steps, which an ARM board does not (runtimes/
integer_semantics.py), so such a board is compared with the file computed as written, and a
board that saturates too with the host's own kernels.

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
#: the file computed as written requantizes in float, a board's kernels in fixed point: each
#: layer may round a boundary value a step the other way and the next layers carry it on
#: (an emulated Pi's EfficientNet-Lite0 int8 ONNX logits were 3.0 steps from the as-written
#: host's on 8 rows, a small net's 1.1). The drift grows with the rows: on 32 rows Lite0's
#: worst was 6 steps, and that correct file passes by ``as_faithful``, not by this tolerance
AS_WRITTEN_STEPS = 4
#: how much further from the source a compressed file's output may be on the board than on
#: the host: the selfie segmentation's int8 ONNX files on an emulated Pi, against this host's
#: as written, had 0.92x (0.0404 vs 0.0437, 0.0094 apart) and 1.06x (0.0148 vs 0.0139) the
#: host's mean absolute error from the source
FAITHFUL_MARGIN = 0.2


#: what a board's outputs were compared with (DeviceResult.compared_with)
KERNELS = "the same file on this host"
AS_WRITTEN = "the same file on this host, its int8 ops computed as written"


@dataclass
class HostReference:
    """The host's outputs for the feed a board runs: from this host's own int8 kernels, and
    where those add in saturating 16-bit steps, as the file's int8 ops are written too."""

    kernels: list[np.ndarray]
    as_written: list[np.ndarray] | None = None

    def for_board(self, saturates: bool) -> tuple[list[np.ndarray], bool]:
        """The outputs a board whose kernels do (or do not) saturate is compared with, and
        whether they are the file computed as written."""
        if self.as_written is not None and not saturates:
            return self.as_written, True
        return self.kernels, False


@dataclass
class Agreement:
    fidelity: list[OutputFidelity]
    tolerances: list[float]
    failures: list[str]
    #: outputs beyond their tolerance that passed as close to the source as the host's
    notes: list[str]


def as_faithful(name: str, host: np.ndarray, board: np.ndarray, source: np.ndarray
                ) -> str | None:
    """Why ``board`` follows the source model as closely as ``host`` does (a note), or None
    when it does not, by mean and worst absolute error."""
    if source.shape != host.shape:
        return None
    host_err, board_err = np.abs(host - source), np.abs(board - source)
    if not (board_err.mean() <= (1 + FAITHFUL_MARGIN) * host_err.mean()
            and board_err.max() <= (1 + FAITHFUL_MARGIN) * host_err.max()):
        return None
    return (f"output '{name}': beyond the tolerance from the host's, as close to the source "
            f"model: mean abs error from the source {board_err.mean():.3g} on the board, "
            f"{host_err.mean():.3g} on the host (max {board_err.max():.3g}, "
            f"{host_err.max():.3g}): integer rounding carried through the layers")


def tolerance_for(spec: TensorSpec | None, ref: np.ndarray, step: float | None = None,
                  as_written: bool = False) -> float:
    """``step``: the quantization step a float output is dequantized from, if any;
    ``as_written``: ``ref`` is the file's int8 ops computed as written."""
    tol = FLOAT_RTOL * (1.0 + float(np.max(np.abs(ref))) if ref.size else 1.0)
    steps = AS_WRITTEN_STEPS if as_written else INT_STEPS
    if spec is not None and spec.dtype in ("int8", "uint8") and spec.quantization is not None:
        tol += steps * spec.quantization.scale
    elif step is not None:
        tol += steps * step
    return tol


def agree(refs: list[np.ndarray], outs: list[np.ndarray], specs: list[TensorSpec],
          tolerance: float | None = None,
          steps: list[float | None] | None = None, as_written: bool = False,
          sources: list[np.ndarray | None] | None = None) -> Agreement:
    """Compare device outputs with host ones (matched by position); ``tolerance`` overrides;
    ``as_written``: ``refs`` are the file's int8 ops computed as written; ``sources``: for a
    compressed file, the source model's outputs in the file's order and layouts."""
    if len(refs) != len(outs):
        return Agreement([], [], [f"the device gave {len(outs)} outputs, the host {len(refs)}"],
                         [])
    result = Agreement([], [], [], [])
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
        tol = tolerance if tolerance is not None else tolerance_for(spec, ref, step, as_written)
        result.fidelity.append(fid)
        result.tolerances.append(tol)
        source = sources[i] if sources and i < len(sources) else None
        faithful = as_faithful(name, ref, out, np.asarray(source, np.float64)) \
            if source is not None and fid.max_abs_error > tol else None
        if faithful:
            result.notes.append(faithful)
        elif not fid.max_abs_error <= tol:  # also catches NaN
            where = np.unravel_index(int(np.nanargmax(np.abs(out - ref))), ref.shape)
            result.failures.append(
                f"output '{name}': max abs error {fid.max_abs_error:.3g} > tolerance {tol:.3g} "
                f"at sample {where[0]}, index {tuple(int(w) for w in where)} "
                f"(host {ref[where]:.6g}, device {out[where]:.6g})")
    return result
