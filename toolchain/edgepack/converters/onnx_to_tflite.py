"""Channels-first ONNX (from PyTorch) -> TFLite or SavedModel with onnx2tf.

onnx2tf turns NCHW graphs into NHWC TensorFlow graphs: the artifact takes its image
channels-last, which the layout on its signature records and validation honours. Two edges use
it: straight to a float TFLite (onnx2tf's own file), and to the SavedModel it writes on the way,
from which the TFLite converter makes every other precision. That second path is how an ONNX
or PyTorch model gets a calibrated full-integer int8 TFLite: the TFLite converter quantizes the
float graph, and its selective quantization is what the accuracy fallback uses. onnx2tf's fp16
file goes through the overflow guard (compress/tflite_fp16.py).

Gotchas handled: onnx2tf rewrites its input .onnx in place (so it gets a private
copy), it runs onnxsim from PATH (turned off: the copy is already what the source exporter
made), it fails on NHWC ONNX from tf2onnx (so the planner prefers SavedModel -> TFLite for
TensorFlow sources, which is also cheaper), it moves the second axis of every rank-3+ input
last (told to keep those the build feeds as they are: an RNN state), and for a fixed-batch
3-channel image input it downloads sample images from GitHub for its own output check, failing
offline: it finds them in the working directory instead, made from the build's own samples.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..compress.context import ConvertContext
from ..compress.tflite_fp16 import guard
from ..data.dataset import Dataset
from ..data.layout import CHANNELS_LAST, in_layouts
from ..errors import ConversionError
from ..quiet import captured, import_tensorflow
from .base import Edge, converter_failed
from .onnx2tf_log import failed_node, onnx2tf_failed
from .onnx_fixes import prepare, static_shapes
from .provision import ONNX2TF


class _Onnx2tf(Edge):
    src = "onnx"
    tool = "onnx2tf"
    channels_last = True
    requires = ("onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "sne4onnx")
    tools = ONNX2TF
    #: let onnx2tf write its files (a SavedModel, then float32 and float16 TFLites, each a full
    #: TFLite conversion: most of its time)
    save = True
    #: fix every dynamic input dimension to the check samples' shapes first (the variant the
    #: planner routes to when onnx2tf fails on, or miscomputes, the dynamic graph)
    static = False
    #: onnx2tf failures while building the graph, by (source, settings): the SavedModel and
    #: the TFLite edge build the same graph, so the second fails at once with the same reason
    _failed_builds: ClassVar[dict[tuple[str, ...], ConversionError]] = {}

    def __init__(self, static: bool = False):
        self.static = static
        if static:
            self.tool = "onnx2tf (static shapes)"
            self.cost = type(self).cost + 0.5

    def tool_version(self) -> str:
        import importlib.metadata

        return f"onnx2tf {importlib.metadata.version('onnx2tf')}"

    def available(self) -> bool:
        return True  # installed on first use; where it cannot be, the hop says what to run

    def _run(self, src: Path, ctx: ConvertContext, work: Path) -> Any:
        """onnx2tf's result: with ``save`` (the TFLite edge) its output folder, a SavedModel
        and float TFLites; without, the Keras model it built, nothing written."""
        work = work.resolve()  # onnx2tf runs with ``work`` as the working directory
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        private = work / "input.onnx"
        shapes = self._shapes(src, ctx)
        key = (str(src), str(src.stat().st_mtime_ns), repr(sorted(shapes.items())))
        if key in self._failed_builds:  # the same graph failed to build for the other edge
            again = copy.copy(self._failed_builds[key])
            again.edge = again.precision = None
            raise again
        ctx.notes.extend(prepare(src, private, shapes))
        cap = None
        try:
            with captured() as cap, _sample_images(work, ctx), _prints_to_fds():
                import onnx2tf

                model = onnx2tf.convert(
                    input_onnx_file_path=str(private), output_folder_path=str(work / "out"),
                    copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                    not_use_onnxsim=True, output_signaturedefs=True,
                    keep_shape_absolutely_input_names=_kept_inputs(ctx) or None,
                    disable_model_save=not self.save)
        except Exception as exc:
            error = onnx2tf_failed(f"{self.tool} (onnx -> {self.dst})", exc,
                                   cap.text if cap else "", src, ctx.stem, private)
            if failed_node(cap.text if cap else ""):
                self._failed_builds[key] = error
            raise error from exc
        return work / "out" if self.save else model

    def _shapes(self, src: Path, ctx: ConvertContext) -> dict[str, tuple[int, ...]]:
        """The input shapes to fix: the build's, and for the static variant every dynamic
        dimension, from the check samples."""
        shapes = dict(ctx.input_shapes or {})
        if not self.static:
            return shapes
        import onnx

        inputs = onnx.load(str(src), load_external_data=False).graph.input
        fixed = {**static_shapes(inputs, ctx.samples), **shapes}
        if fixed == shapes:
            raise ConversionError(f"{self.tool} (onnx -> {self.dst}) not tried: every input "
                                  "shape is already fixed", path=src)
        return fixed


def _kept_inputs(ctx: ConvertContext) -> list[str]:
    """Inputs of rank 3 or more that have no channels-first layout (an RNN state
    ``[layers, batch, hidden]``, integer ids): onnx2tf would move their second axis last, and
    the build feeds them as they are."""
    signature = ctx.source_signature
    if signature is None:
        return []
    return [s.name for s in signature.inputs if s.rank >= 3 and s.layout not in CHANNELS_LAST]


class OnnxToTFLite(_Onnx2tf):
    dst = "tflite"
    # dearer than through the SavedModel (2 + 1): a build that makes an int8 TFLite then runs
    # onnx2tf once for its fp32 reference and its int8 file; this edge is the route around a
    # failing SavedModel -> TFLite conversion
    cost = 6.5
    precisions = ("fp32", "fp16")

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        work = ctx.workdir / f"onnx2tf-{ctx.stem}-{ctx.precision}"
        folder = self._run(src, ctx, work)
        suffix = "float16" if ctx.precision == "fp16" else "float32"
        produced = sorted(folder.glob(f"*_{suffix}.tflite"))
        if not produced:
            raise ConversionError(f"onnx2tf wrote no {suffix} TFLite file", path=src)
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.tflite"
        if ctx.precision == "fp16":  # the weights' true values: in onnx2tf's float32 file
            fp32 = produced[0].with_name(produced[0].name.replace("_float16", "_float32"))
            with captured():
                out.write_bytes(guard(produced[0].read_bytes(), fp32.read_bytes,
                                      _channels_last(ctx), ctx.notes))
        else:
            shutil.move(str(produced[0]), out)
        shutil.rmtree(work, ignore_errors=True)
        return out


class OnnxToSavedModel(_Onnx2tf):
    """The Keras model onnx2tf builds, exported as a SavedModel with the serving signature
    onnx2tf itself would write (``output_signaturedefs``), without the two TFLite conversions
    onnx2tf runs after it: the TFLite converter makes this build's TFLites from the SavedModel
    anyway."""

    dst = "savedmodel"
    cost = 2.0
    save = False

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        tf = import_tensorflow()
        work = ctx.workdir / f"onnx2tf-{ctx.stem}-savedmodel"
        model = self._run(src, ctx, work)
        out = ctx.workdir / f"{ctx.stem}.onnx2tf.savedmodel"
        shutil.rmtree(out, ignore_errors=True)
        cap = None
        try:
            with captured() as cap:
                import tf_keras

                archive = tf_keras.export.ExportArchive()
                archive.add_endpoint(
                    name="serving_default", fn=lambda *inputs: model(inputs),
                    input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name)
                                     for t in model.inputs])
                archive.write_out(str(out))
        except Exception as exc:
            raise converter_failed("SavedModel export of onnx2tf's model", exc,
                                   cap.text if cap else "", src) from exc
        shutil.rmtree(work, ignore_errors=True)
        return out


def _channels_last(ctx: ConvertContext) -> Dataset | None:
    """The check samples in the layouts of onnx2tf's file (images channels-last), as the build
    moves them for it; the samples arrive in the ONNX model's layouts, the source's."""
    sig = ctx.source_signature
    if ctx.samples is None or sig is None:
        return ctx.samples
    return in_layouts(ctx.samples, sig, [CHANNELS_LAST.get(s.layout, s.layout)
                                         for s in sig.inputs])


@contextlib.contextmanager
def _prints_to_fds() -> Iterator[None]:
    """onnx2tf reports which ONNX node failed with print(): send sys.stdout and sys.stderr to
    the process's own streams (fds 1 and 2, which ``captured`` holds) even where a caller has
    replaced them (pytest, click's runner), so the report lands in onnx2tf's log."""
    if sys.__stdout__ is None or sys.__stderr__ is None:
        yield
        return
    with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
        yield


#: the file onnx2tf reads from the working directory before trying to download it
SAMPLE_IMAGES = "calibration_image_sample_data_20x128x128x3_float32.npy"


@contextlib.contextmanager
def _sample_images(work: Path, ctx: ConvertContext) -> Iterator[None]:
    """Run onnx2tf in ``work`` holding its sample-image file: 20 RGB 128x128 images in [0, 1]
    from the build's check samples (resized by nearest pixel, each rescaled to [0, 1]), or
    seeded noise when the model has no image input."""
    images = None
    if ctx.samples is not None:
        first = next(iter(ctx.samples.inputs.values()))
        if first.ndim == 4 and 3 in (first.shape[1], first.shape[-1]):
            nhwc = first if first.shape[-1] == 3 else first.transpose(0, 2, 3, 1)
            rows = np.arange(128) * nhwc.shape[1] // 128
            cols = np.arange(128) * nhwc.shape[2] // 128
            images = nhwc[np.resize(np.arange(len(nhwc)), 20)][:, rows][:, :, cols]
            low = images.min(axis=(1, 2, 3), keepdims=True)
            span = np.maximum(images.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
            images = (images - low) / span
    if images is None:
        images = np.random.default_rng(0).random((20, 128, 128, 3))
    np.save(work / SAMPLE_IMAGES, images.astype(np.float32))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        yield
    finally:
        os.chdir(cwd)
