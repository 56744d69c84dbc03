"""ONNX compression with ONNX Runtime's and onnxconverter-common's own tools.

- int8: ``quantize_static`` to QDQ (runs in ONNX Runtime and OpenVINO alike; QOperator
  per-channel does not load in OpenVINO), int8 weights and activations, per-channel weights as
  the profile says, calibrated on the profile's seeded sample with its method. ``quant_pre_process``
  (shape inference, graph optimisation) runs first, as ONNX Runtime recommends.
- dynamic-int8: ``quantize_dynamic``, int8 weights only.
- fp16: ``convert_float_to_float16`` with float32 model I/O kept, so apps feed the same arrays,
  and an overflow guard: nodes whose weights or activations leave the fp16 range stay fp32.
  (ONNX Runtime's CPU provider runs many fp16 nodes in fp32 behind inserted casts, so a host
  run does not reveal an overflow a GPU would hit: the guard measures the fp32 activations.)

Calibration samples are streamed to the calibrator one at a time from the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Dataset
from ..errors import DataError

if TYPE_CHECKING:  # convert/ imports this module: no import at run time
    from ..convert.base import ConvertContext

#: the largest finite float16 value; anything beyond it becomes inf in half precision
FP16_MAX = 65504.0


def compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    if ctx.precision == "fp16":
        _fp16(src, out, ctx)
    elif ctx.precision == "dynamic-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
    elif ctx.precision == "int8":
        _static_int8(src, out, ctx)
    else:
        raise ValueError(f"ONNX compression has no precision {ctx.precision}")


def _fp16(src: Path, out: Path, ctx: ConvertContext) -> None:
    """fp16 with the overflow guard: nodes that make or take values beyond the fp16 range on
    the sample inputs (or hold such weights) stay in fp32, and the report says which."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    blocked = fp16_overflow_nodes(src, ctx.samples)
    if blocked:
        ctx.notes.append(f"fp16 overflow guard: {len(blocked)} node(s) kept in fp32 because "
                         f"their values exceed the fp16 range (|x| > {FP16_MAX:g}): "
                         + ", ".join(blocked))
    # max_finite_val: the converter would otherwise clamp weights to 1e4 without a word
    model = float16.convert_float_to_float16(model, keep_io_types=True,
                                             max_finite_val=FP16_MAX,
                                             node_block_list=blocked or None)
    onnx.save(model, str(out))


def fp16_overflow_nodes(src: Path, samples: Dataset | None) -> list[str]:
    """Nodes whose weights, or whose input/output activations on ``samples``, exceed fp16."""
    import tempfile

    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    model = onnx.load(str(src))
    big: set[str] = {i.name for i in model.graph.initializer
                     if numpy_helper.to_array(i).dtype.kind == "f"
                     and np.abs(numpy_helper.to_array(i)).max(initial=0) > FP16_MAX}
    if samples is not None:
        names = [i.name for i in model.graph.input]
        with tempfile.TemporaryDirectory(prefix="edgepack-fp16-") as tmp:
            aug = Path(tmp) / "all.onnx"
            modify_model_output_intermediate_tensors(str(src), str(aug))
            acts = collect_activations(str(aug), _Reader(samples.head(32).samples(), names))
        big |= {t for t, values in acts.items()
                if any(np.abs(v[np.isfinite(v)]).max(initial=0) > FP16_MAX
                       or not np.isfinite(v).all() for v in values)}
    return [n.name or n.output[0] for n in model.graph.node
            if big & set(n.input) or big & set(n.output)]


def _static_int8(src: Path, out: Path, ctx: ConvertContext) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant = ctx.quantization
    if ctx.calibration is None or quant is None:
        raise DataError("full-integer int8 needs calibration data")
    settings = quant.calibration
    samples = ctx.calibration.take(settings.samples, settings.seed)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings.method]
    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre))
    names = [i.name for i in onnx.load(str(pre)).graph.input]
    quantize_static(str(pre), str(out), _Reader(samples.samples(), names),
                    quant_format=QuantFormat.QDQ, per_channel=quant.per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method,
                    nodes_to_exclude=list(ctx.keep_float),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    pre.unlink(missing_ok=True)
    ctx.notes.append(f"calibrated on {len(samples)} samples of {ctx.calibration.source} "
                     f"(seed {settings.seed}, {settings.method}); QDQ, "
                     f"{'per-channel' if quant.per_channel else 'per-tensor'} int8 weights")


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over per-sample feeds, renamed
    positionally to the ONNX graph's input names (converters rename inputs)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], names: list[str]):
        self._it = iter(feeds)
        self._names = names

    def get_next(self) -> dict[str, Any] | None:
        feed = next(self._it, None)
        if feed is None:
            return None
        return {n: v.astype(np.float32) for n, v in zip(self._names, feed.values(), strict=True)}

    def __iter__(self):  # the quantization debugger iterates readers
        return iter(self.get_next, None)
