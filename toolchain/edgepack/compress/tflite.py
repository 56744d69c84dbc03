"""TFLite converter settings for each precision of a profile.

- fp16: float16 weights, float32 compute on CPU, native on mobile GPU delegates.
- dynamic-int8: int8 weights, activations quantized on the fly; needs no calibration data.
- int8: full-integer: weights per-channel int8 and activations int8 calibrated on real samples,
  only integer builtin ops (so XNNPACK and accelerators run every op in int8), I/O as the
  profile says (float32 keeps the app's code unchanged; int8/uint8 feeds camera bytes directly).

The TFLite converter calibrates with min/max; a profile asking for another method is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..convert.base import ConvertContext
from ..errors import DataError


def configure(converter: Any, tf: Any, ctx: ConvertContext) -> None:
    # Builtin ops only: "Select TF ops" need the Flex delegate, which device runtimes
    # (tflite-runtime, LiteRT in apps) do not ship; better to fail here, naming the op.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if ctx.precision == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if ctx.precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if ctx.precision == "dynamic-int8":
        return
    # full integer
    quant = ctx.quantization
    if ctx.calibration is None or quant is None:
        raise DataError("full-integer int8 needs calibration data")
    settings = quant.calibration
    samples = ctx.calibration.take(settings.samples, settings.seed)
    ctx.notes.append(f"calibrated on {len(samples)} samples of {ctx.calibration.source} "
                     f"(seed {settings.seed}, min/max)")
    if settings.method != "minmax":
        ctx.notes.append(f"the TFLite converter calibrates with min/max; profile method "
                         f"'{settings.method}' does not apply to TFLite")
    converter.representative_dataset = lambda: _representative(samples.samples())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_disable_per_channel = not quant.per_channel
    if quant.io_dtype != "float32":
        io = {"int8": tf.int8, "uint8": tf.uint8}[quant.io_dtype]
        converter.inference_input_type = io
        converter.inference_output_type = io


def _representative(feeds: list[dict[str, np.ndarray]]) -> Iterator[list[np.ndarray]]:
    for feed in feeds:
        yield [v.astype(np.float32) for v in feed.values()]
