"""OpenVINO IR compression with NNCF, OpenVINO's own post-training tool.

- int8: ``nncf.quantize`` on the fp32 IR with the profile's seeded calibration sample and NNCF's
  own bias correction, layers the accuracy fallback chose left in float through
  ``ignored_scope``. Activation ranges are the min/max over every sample, as the profile's
  ``minmax`` says and as the other formats calibrate: NNCF's default averages each sample's
  min/max instead. (Its quantile estimator, the nearest to ``percentile``, took
  EfficientNet-Lite0 to 0.34 top-1 agreement: other methods are reported, not mapped.)
  Activations are quantized per tensor, as in the other formats. NNCF's default gives each
  channel of a depthwise convolution's input its own range, and a channel that stayed quiet on
  the calibration photos is then clipped to that small range on new ones: EfficientNet-Lite0's
  last projections fell to cosine 0.94 against fp32, where ONNX Runtime's per-tensor int8 of
  the same layers keeps 0.996; its output's cosine went from 0.96 to 0.98 per tensor.
  NNCF's overflow fix (the first layer's weights on 7 bits, so that CPUs summing u8 x s8
  pairs into int16 cannot saturate) is kept only for targets without an int8 dot-product
  instruction: with VNNI nothing saturates, and the full 8 bits took EfficientNet-Lite0's
  plain int8 from 0.82 to 0.88 top-1 agreement.
- dynamic-int8: ``nncf.compress_weights`` (int8 weights, float activations), which needs no data.
- fp16 is not here: ``save_model(compress_to_fp16=True)`` does it in the conversion edge.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # convert/ imports this module: no import at run time
    from ..convert.base import ConvertContext


#: ``isa`` features (targets/*.yaml) whose int8 dot products accumulate in int32: no int16
#: saturation, so no overflow fix (AVX-VNNI on Alder Lake, AVX512-VNNI, AMX on Xeons)
INT8_DOT_PRODUCT_ISA = frozenset({"avx_vnni", "avx512_vnni", "amx_int8"})


def _nncf():
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


def compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    import openvino as ov

    nncf = _nncf()
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(src))
    if ctx.precision == "dynamic-int8":
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif ctx.precision == "int8":
        quant = ctx.quantization
        if ctx.calibration is None or quant is None:
            raise DataError("full-integer int8 needs calibration data")
        settings = quant.calibration
        samples = ctx.calibration.take(settings.samples, settings.seed)
        names = [p.get_any_name() for p in model.inputs]
        feeds = [{n: v.astype(np.float32) for n, v in zip(names, f.values(), strict=True)}
                 for f in samples.samples()]
        scope = nncf.IgnoredScope(names=list(ctx.keep_float)) if ctx.keep_float else None
        vnni = sorted(INT8_DOT_PRODUCT_ISA & set(ctx.isa))
        ranges = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            activations_quantization_params=QuantizationParameters(per_channel=False),
            overflow_fix=nncf.OverflowFix.DISABLE if vnni else nncf.OverflowFix.FIRST_LAYER)
        model = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                              ignored_scope=scope, preset=nncf.QuantizationPreset.PERFORMANCE,
                              advanced_parameters=ranges)
        ctx.notes.append(f"calibrated on {len(samples)} samples of {ctx.calibration.source} "
                         f"(seed {settings.seed}, min/max, NNCF post-training quantization)")
        ctx.notes.append(f"first layer's weights on the full int8 range: the target has {vnni[0]}"
                         if vnni else "first layer's weights on 7 bits (NNCF's overflow fix: "
                         "the target declares no int8 dot-product instruction such as VNNI)")
        if settings.method != "minmax":
            ctx.notes.append(f"edgepack calibrates NNCF with min/max; profile method "
                             f"'{settings.method}' does not apply to OpenVINO")
    else:
        raise ValueError(f"OpenVINO compression has no precision {ctx.precision}")
    ov.save_model(model, str(out), compress_to_fp16=False)
