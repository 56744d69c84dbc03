"""Channels-first ONNX (from PyTorch) -> TFLite with onnx2tf.

onnx2tf turns NCHW graphs into NHWC TFLite: the artifact takes its image channels-last, which
the layout on its signature records and validation honours. Gotchas handled (STACK.md): onnx2tf
rewrites its input .onnx in place (so it gets a private copy), it runs onnxsim from PATH (turned
off: the copy is already what the source exporter made), and it fails on NHWC ONNX from tf2onnx
(so the planner prefers SavedModel -> TFLite for TensorFlow sources, which is also cheaper).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import ConversionError
from ..quiet import captured
from .base import ConvertContext, Edge, converter_failed


class OnnxToTFLite(Edge):
    src = "onnx"
    dst = "tflite"
    tool = "onnx2tf"
    cost = 5.0
    precisions = ("fp32", "fp16")
    channels_last = True

    def tool_version(self) -> str:
        import importlib.metadata

        return f"onnx2tf {importlib.metadata.version('onnx2tf')}"

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec("onnx2tf") is not None

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        work = ctx.workdir / f"onnx2tf-{ctx.stem}-{ctx.precision}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        private = work / "input.onnx"
        shutil.copyfile(src, private)
        cap = None
        try:
            with captured() as cap:
                import onnx2tf

                onnx2tf.convert(
                    input_onnx_file_path=str(private), output_folder_path=str(work / "out"),
                    copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                    not_use_onnxsim=True,
                    overwrite_input_shape=[f"{n}:{','.join(map(str, s))}"
                                           for n, s in (ctx.input_shapes or {}).items()] or None)
        except Exception as exc:
            raise converter_failed("onnx2tf (onnx -> tflite)", exc, cap.text if cap else "",
                                   src) from exc
        suffix = "float16" if ctx.precision == "fp16" else "float32"
        produced = sorted((work / "out").glob(f"*_{suffix}.tflite"))
        if not produced:
            raise ConversionError(f"onnx2tf wrote no {suffix} TFLite file", path=src,
                                  hint=cap.last_lines(2) if cap else None)
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.tflite"
        shutil.move(str(produced[0]), out)
        shutil.rmtree(work, ignore_errors=True)
        return out
