"""Anything OpenVINO's frontends read -> OpenVINO IR, with ``openvino.convert_model``.

One edge class serves every source OpenVINO reads natively (ONNX, SavedModel, TFLite, PyTorch
ExportedProgram and TorchScript): the tool is the same, only the way the source is handed over
differs. The IR is saved with ``compress_to_fp16=False`` for fp32 (save_model's default would
silently store fp16 weights) and ``True`` for the fp16 deliverable, whose ops that overflow fp16
are kept in fp32 (compress/openvino_fp16.py). It is written compactly (formats/openvino_ir.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compress.context import ConvertContext
from ..compress.openvino_fp16 import guard_note, keep_fp32, overflow_ops
from ..errors import ConversionError
from ..formats.openvino_ir import save_ir
from ..quiet import captured
from .base import Edge, converter_failed


class ToOpenVino(Edge):
    dst = "openvino"
    tool = "openvino.convert_model"
    precisions = ("fp32", "fp16")

    def __init__(self, src: str, cost: float = 1.0):
        self.src = src
        self.cost = cost
        self.requires = ("openvino", "torch") if src in ("torch", "torchscript") else ("openvino",)

    def tool_version(self) -> str:
        import openvino as ov

        return f"openvino {ov.__version__.split('-')[0]}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        import openvino as ov

        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.xml"
        cap = None
        try:
            with captured() as cap:
                model = ov.convert_model(self._source(src, ctx), **self._shape_args(ctx))
                fp16 = ctx.precision == "fp16"
                blocked = overflow_ops(model, ctx.samples) if fp16 else []
                save_ir(model, out, compress_to_fp16=fp16)
                if blocked:
                    keep_fp32(out, blocked)
                    ctx.notes.append(guard_note(blocked))
        except ConversionError:
            raise
        except Exception as exc:
            raise converter_failed(f"OpenVINO conversion ({self.src} -> openvino)", exc,
                                   cap.text if cap else "", src) from exc
        return out

    def _source(self, src: Path, ctx: ConvertContext) -> Any:
        """What convert_model takes for this source: a path, or the loaded PyTorch program."""
        if self.src == "torch":
            from ..formats.torch import TorchExportFormat

            return TorchExportFormat().load(src)
        if self.src == "torchscript":
            from ..formats.torch import TorchScriptFormat

            return TorchScriptFormat().load(src)
        return str(src)

    def _shape_args(self, ctx: ConvertContext) -> dict[str, Any]:
        """State input shapes for PyTorch sources (and fixed shapes for any source).

        convert_model of a PyTorch program otherwise leaves every non-batch dimension dynamic.
        """
        sig = ctx.source_signature
        if sig is None or (self.src not in ("torch", "torchscript") and not ctx.input_shapes):
            return {}
        import openvino as ov

        shapes = []
        for spec in sig.inputs:
            fixed = (ctx.input_shapes or {}).get(spec.name)
            dims = fixed or tuple(d if isinstance(d, int) else -1 for d in spec.shape)
            shapes.append(ov.PartialShape(list(dims)))
        args: dict[str, Any] = {"input": shapes}
        if self.src == "torchscript":  # TorchScript is traced again: it needs real tensors
            from ..formats.torch import example_inputs

            args["example_input"] = example_inputs(sig, ctx.input_shapes)
        return args
