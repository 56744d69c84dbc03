"""SavedModel -> TFLite with the TensorFlow Lite converter, at any TFLite precision.

Quantization happens here because the TFLite converter is the tool that quantizes TFLite best:
it sees the float graph and folds scales into the kernels XNNPACK runs. When the target needs
static shapes and the SavedModel's signature has dynamic ones, the serving function is traced
again at the fixed shapes and converted from that concrete function. The fp16 file goes through
the overflow guard (compress/tflite_fp16.py). int8 with layers at 16-bit activations (16x8) is
quantized by ai-edge-quantizer from the converter's float32 file instead: the converter's own
quantizer takes one activation width for the whole model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..compress import tflite_quantizer
from ..compress.context import ConvertContext
from ..compress.tflite import calibrated_model, calibrated_path, configure, convert
from ..compress.tflite_fp16 import guard
from ..errors import ConversionError
from ..formats.savedmodel import SavedModelFormat
from ..quiet import captured, import_tensorflow
from .base import Edge, converter_failed


class SavedModelToTFLite(Edge):
    src = "savedmodel"
    dst = "tflite"
    tool = "tf.lite.TFLiteConverter"
    requires = ("tensorflow",)
    cost = 1.0
    precisions = ("fp32", "fp16", "dynamic-int8", "int8")

    def tool_version(self) -> str:
        tf = import_tensorflow()
        return f"tensorflow {tf.__version__}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        tf = import_tensorflow()
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.tflite"
        cap = None
        try:
            with captured() as cap:
                converter = self._converter(tf, src, ctx)
                if _by_quantizer(ctx):
                    tflite_quantizer.compress(self._fp32_file(tf, src, ctx), out, ctx)
                    return out
                names = SavedModelFormat().serving_input_names(src)
                if ctx.precision == "int8":
                    _calibrate_apart(src, ctx, names)
                configure(converter, tf, ctx, names)
                flatbuffer = convert(converter, tf, ctx, src, names)
                if ctx.precision == "fp16":
                    flatbuffer = guard(flatbuffer, lambda: self._fp32(tf, src, ctx),
                                       ctx.samples, ctx.notes)
        except ConversionError:
            raise
        except Exception as exc:
            raise converter_failed(f"TFLite conversion ({ctx.precision})", exc,
                                   cap.text if cap else "", src) from exc
        out.write_bytes(flatbuffer)
        return out

    def _fp32(self, tf: Any, src: Path, ctx: ConvertContext) -> bytes:
        """The float32 flatbuffer of the same model: the true values of the weights that the
        fp16 conversion clamped."""
        converter = self._converter(tf, src, ctx)
        configure(converter, tf, replace(ctx, precision="fp32"))
        return converter.convert()

    def _fp32_file(self, tf: Any, src: Path, ctx: ConvertContext) -> Path:
        """The float32 file of ``src``, kept in the build's scratch folder (each conversion is
        stamped with an id: one file keeps ai-edge-quantizer's calibration of it reusable)."""
        path = ctx.scratch_file("tflite-fp32", src, None, ".tflite", shapes=ctx.input_shapes)
        if path is None:
            path = ctx.workdir / f"{ctx.stem}.fp32-for-quantizer.tflite"
        elif path.is_file():
            return path
        part = path.with_suffix(".part")
        part.write_bytes(self._fp32(tf, src, ctx))
        part.replace(path)
        return path

    def _converter(self, tf: Any, src: Path, ctx: ConvertContext) -> Any:
        SavedModelFormat().checked_note(src)  # the converter runs its init functions
        if not ctx.input_shapes:
            return tf.lite.TFLiteConverter.from_saved_model(str(src))
        loaded, fn = SavedModelFormat().load(src)
        _, kwargs = fn.structured_input_signature
        if all(tuple(kwargs[n].shape.as_list()) == tuple(ctx.input_shapes.get(n, ()))
               for n in kwargs):
            return tf.lite.TFLiteConverter.from_saved_model(str(src))
        specs = {n: tf.TensorSpec(ctx.input_shapes.get(n, kwargs[n].shape), kwargs[n].dtype,
                                  name=n) for n in kwargs}
        concrete = tf.function(lambda **kw: fn(**kw)).get_concrete_function(**specs)
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)


def _by_quantizer(ctx: ConvertContext) -> bool:
    """Whether ai-edge-quantizer quantizes the float file instead of the TFLite converter:
    for what only it does: 16-bit activations, and dynamic int8 with layers kept in float (the
    converter's dynamic range takes no denylist) or with calibration data (an embedding
    table's Gather then gets int8 too, compress/tflite_quantizer.py)."""
    if ctx.precision == "int8":
        return bool(ctx.int16_layers)
    return ctx.precision == "dynamic-int8" and bool(ctx.keep_float or ctx.calibration)


def _calibrate_apart(src: Path, ctx: ConvertContext, names: tuple[str, ...]) -> None:
    """Run the TFLite converter's calibration in a child process, into the build's scratch
    folder, where the conversion then finds it. TensorFlow's calibrator crashes the process
    on some graphs (a segmentation fault on silero-vad's LSTM, whatever the input order):
    here that fails this edge with one line, and the planner routes around it. An exception
    in the child is left to the conversion in this process to raise with its own message."""
    import multiprocessing
    import signal

    path = calibrated_path(ctx, src)
    if path is None or path.is_file():
        return
    child = multiprocessing.get_context("spawn").Process(
        target=_calibrate, args=(src, replace(ctx, notes=[]), names), daemon=True)
    child.start()
    child.join()
    if child.exitcode is not None and child.exitcode < 0:
        try:
            name = signal.Signals(-child.exitcode).name
        except ValueError:
            name = f"signal {-child.exitcode}"
        raise ConversionError(f"TFLite conversion (int8) failed: TensorFlow's calibrator "
                              f"crashed ({name}) running this model on the calibration "
                              "samples (found in a child process)", path=src)


def _calibrate(src: Path, ctx: ConvertContext, names: tuple[str, ...]) -> None:
    """The child: the same converter, configured the same way, calibrated into the scratch
    folder."""
    tf = import_tensorflow()
    with captured():
        converter = SavedModelToTFLite()._converter(tf, src, ctx)
        configure(converter, tf, ctx, names)
        calibrated_model(converter, ctx, src)
