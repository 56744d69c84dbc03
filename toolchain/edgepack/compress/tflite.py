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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # convert/ imports this module: no import at run time
    from ..convert.base import ConvertContext


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


def debug_options(tf: Any, layer_scale: bool = False, denylist: tuple[str, ...] = ()) -> Any:
    """QuantizationDebugger options: per-layer quantization step (for ranking) or the layers
    (tensor names) to keep in float (for the accuracy fallback)."""
    metrics = {"scale": lambda f, q, s, zp: s} if layer_scale else None
    return tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics=metrics, denylisted_nodes=list(denylist) or None)


def convert(converter: Any, tf: Any, ctx: ConvertContext) -> bytes:
    """The flatbuffer; with ``ctx.keep_float``, through the debugger that keeps those layers
    in float (the TFLite converter's own selective quantization)."""
    if not ctx.keep_float:
        return converter.convert()
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset,
        debug_options=debug_options(tf, denylist=ctx.keep_float))
    return debugger.get_nondebug_quantized_model()


def _representative(feeds: list[dict[str, np.ndarray]]) -> Iterator[list[np.ndarray]]:
    for feed in feeds:
        yield [v.astype(np.float32) for v in feed.values()]
