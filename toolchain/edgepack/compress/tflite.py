"""TFLite converter settings for each precision of a profile.

- fp16: float16 weights, float32 compute on CPU, native on mobile GPU delegates.
- dynamic-int8: int8 weights, activations quantized on the fly; needs no calibration data.
- int8: full-integer: weights per-channel int8 and activations int8 calibrated on real samples,
  only integer builtin ops (so XNNPACK and accelerators run every op in int8), I/O as the
  profile says (float32 keeps the app's code unchanged; int8/uint8 feeds camera bytes directly).

The TFLite converter calibrates with min/max; with the profile's method ``mse`` or ``percentile``
each activation's min/max in its calibration is replaced by that method's range
(compress/tflite_ranges.py) before it quantizes. Other methods are reported as not applied.
Full-integer int8 is calibrated once per build and quantized from that calibration, so the
accuracy fallback's re-quantizations (other layers kept in float) cost a quantizer pass, not a
pass of the float model over every sample. Each quantization then gets its biases corrected
(compress/tflite_bias.py), which NNCF does for OpenVINO and the TFLite converter does not. Ops
whose calibrated ranges no int8 scale holds (compress/tflite_guard.py) stay float in every one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import onnx_guard, tflite_guard
from . import tflite_graph as flat
from . import tflite_ranges as ranged
from .activations import tflite_with_activations
from .bias import BIAS_SAMPLES, Shifts, cached
from .context import ConvertContext
from .tflite_bias import apply as apply_shifts
from .tflite_bias import measure as measure_shifts


def configure(converter: Any, tf: Any, ctx: ConvertContext,
              input_names: tuple[str, ...] = ()) -> None:
    """Set ``converter`` up for ``ctx.precision``; ``input_names``: the serving signature's
    input names of the model it converts (the calibration samples are fed by them)."""
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
    samples = ctx.minmax_sample("the TFLite converter",
                               applies=("minmax", *ranged.METHODS))
    quant = ctx.quantization
    converter.representative_dataset = lambda: _representative(samples.samples(), input_names)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_disable_per_channel = not quant.per_channel
    if quant.io_dtype != "float32":
        io = {"int8": tf.int8, "uint8": tf.uint8}[quant.io_dtype]
        converter.inference_input_type = io
        converter.inference_output_type = io


def debug_options(tf: Any) -> Any:
    """QuantizationDebugger options that also report each layer's quantization step, which the
    layer ranking divides the layer's error by."""
    return tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"scale": lambda f, q, s, zp: s})


def convert(converter: Any, tf: Any, ctx: ConvertContext, src: Path,
            input_names: tuple[str, ...] = ()) -> bytes:
    """The flatbuffer of ``src`` (the SavedModel ``converter`` reads).

    Full-integer int8 is calibrated once per build (the pass of the float model over every
    calibration sample is most of the time, and the accuracy fallback quantizes the same model
    again with other layers kept in float), then quantized by the converter's own MLIR
    quantizer with the converter's settings, ``ctx.keep_float`` being its denylist: the TFLite
    converter's selective quantization, which the quantization debugger also calls. Its biases
    are then corrected by the shifts measured on the build's first quantization
    (compress/bias.py).
    """
    if ctx.precision != "int8":
        return converter.convert()
    from tensorflow.lite.python.convert import deduplicate_readonly_buffers, mlir_quantize

    calibrated = calibrated_model(converter, ctx, src)
    # judged on the true min/max: a method's range may clip the very sentinel it hides
    guarded = tflite_guard.blind_spots(calibrated)
    if ctx.quantization is not None and ctx.quantization.calibration.method in ranged.METHODS:
        calibrated = _searched(calibrated, ctx, src)
    ctx.notes.extend(onnx_guard.notes(guarded))
    # a layer kept in float keeps its activation float with it
    floats = tflite_with_activations(flat.read(calibrated), ctx.keep_float) \
        if ctx.keep_float else ()
    settings = {
        "disable_per_channel": converter._experimental_disable_per_channel,
        "denylisted_nodes": list(dict.fromkeys([*floats, *guarded])) or None,
        "disable_per_channel_for_dense_layers":
            converter._experimental_disable_per_channel_quantization_for_dense_layers}
    quantized = mlir_quantize(
        calibrated, input_data_type=converter.inference_input_type or tf.float32,
        output_data_type=converter.inference_output_type or tf.float32, **settings)
    quant = ctx.quantization
    feeds = ctx.calibration.take(min(quant.calibration.samples, BIAS_SAMPLES),
                                 quant.calibration.seed)

    def measured() -> Shifts:
        # the same quantization with a float twin beside every op: each op's shift is measured
        debug = mlir_quantize(calibrated, enable_numeric_verify=True, **settings)
        return measure_shifts(quantized, debug,
                              _representative(feeds.samples(), input_names))

    # keyed by the quantized file itself, as in compress/onnx.py: the layers kept float, the
    # ranges and the weights all move the shifts
    path = ctx.scratch_file("tflite-bias", src, feeds, ".npz", shapes=ctx.input_shapes,
                            quantized=hashlib.sha256(quantized).hexdigest())
    quantized, corrected = apply_shifts(quantized, cached(path, measured))
    ctx.notes.append(f"bias correction: {corrected} layer(s) corrected, measured on "
                     f"{len(feeds)} calibration samples")
    # after the correction: deduplicating first could make two ops share one bias
    return deduplicate_readonly_buffers(quantized)


def calibrated_path(ctx: ConvertContext, src: Path) -> Path | None:
    """Where the build keeps ``src``'s calibration (by the source's bytes, the samples' bytes
    and the input shapes); None without a scratch folder."""
    quant = ctx.quantization
    samples = ctx.calibration.take(quant.calibration.samples, quant.calibration.seed) \
        if ctx.calibration is not None and quant is not None else None
    return ctx.scratch_file("tflite-calibrated", src, samples, ".tflite",
                            shapes=ctx.input_shapes)


def calibrated_model(converter: Any, ctx: ConvertContext, src: Path) -> bytes:
    """The float model with the activation ranges the calibration samples gave, kept in the
    build's scratch folder (``calibrated_path``)."""
    path = calibrated_path(ctx, src)
    if path is not None and path.is_file():
        return path.read_bytes()
    converter._experimental_calibrate_only = True
    try:
        calibrated = converter.convert()
    finally:
        converter._experimental_calibrate_only = False
    if path is not None:  # written whole, then renamed: a killed build leaves no torn file
        part = path.with_suffix(".part")
        part.write_bytes(calibrated)
        part.replace(path)
    return calibrated


def _searched(calibrated: bytes, ctx: ConvertContext, src: Path) -> bytes:
    """The calibration with each activation's range by the profile's method in place of its
    min/max (what reaches the model's outputs keeps its min/max), kept like the calibration."""
    quant = ctx.quantization
    assert ctx.calibration is not None and quant is not None  # configure() checked
    samples = ctx.calibration.take(quant.calibration.samples, quant.calibration.seed)
    method = quant.calibration.method
    path = ctx.scratch_file(f"tflite-{method}", src, samples, ".json", shapes=ctx.input_shapes)
    ranges = ranged.searched_ranges(calibrated, ranged.calibrated_names(calibrated), samples,
                                    method, path)
    ctx.notes.append(ranged.note(method))
    return ranged.set_calibrated_ranges(calibrated, ranges)


def _representative(feeds: list[dict[str, np.ndarray]], names: tuple[str, ...] = ()
                    ) -> Iterator[dict[str, np.ndarray] | list[np.ndarray]]:
    """The samples as the converter's calibrator takes them: keyed by name when they are the
    file's input names, which it then orders by the graph's input tensors (neither the data's
    order nor the signature's: onnx2tf's silero-vad graph takes ``state`` before ``input``),
    else as a list in the data's order (inputs an earlier hop renamed)."""
    for feed in feeds:
        values = {name: v.astype(np.float32) if v.dtype.kind == "f" else v
                  for name, v in feed.items()}
        yield values if names and set(values) == set(names) else list(values.values())
