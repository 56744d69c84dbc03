"""PyTorch -> ONNX: ExportedProgram with the dynamo exporter, TorchScript with the TorchScript one.

The dynamo exporter (opset 20, onnxscript) is PyTorch's supported path for torch.export
programs; it must write weights inside the file (``external_data=False``) so the artifact is one
file. TorchScript modules can only go through the older exporter (opset 17).
"""

from __future__ import annotations

from pathlib import Path

from ..compress.context import ConvertContext
from ..errors import ConversionError
from ..quiet import captured
from .base import Edge, converter_failed
from .onnx_names import name_batch_dim


class TorchToOnnx(Edge):
    dst = "onnx"
    cost = 1.0

    def __init__(self, src: str):
        self.src = src
        self.requires = ("torch", "onnxscript") if src == "torch" else ("torch", "onnx")
        self.tool = "torch.onnx.export" + (" (dynamo)" if src == "torch" else " (TorchScript)")

    def tool_version(self) -> str:
        import torch

        return f"torch {torch.__version__.split('+')[0]}"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        from ..formats.torch import (
            TorchExportFormat,
            TorchScriptFormat,
            example_inputs,
            import_torch,
        )

        torch = import_torch()
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}.onnx"
        sig = ctx.source_signature
        cap = None
        try:
            with captured() as cap:
                if self.src == "torch":
                    program = torch.onnx.export(TorchExportFormat().load(src), (), dynamo=True,
                                                external_data=False, verbose=False)
                    program.save(str(out))
                else:
                    if sig is None:
                        raise ConversionError("TorchScript needs input shapes", path=src,
                                              hint="pass --input-shape NAME:1x3x224x224")
                    module = TorchScriptFormat().load(src)
                    example = example_inputs(sig, ctx.input_shapes)
                    dynamic = {s.name: {0: "batch"} for s in sig.inputs
                               if s.shape and isinstance(s.shape[0], str)}
                    dynamic.update({s.name: {0: "batch"} for s in sig.outputs
                                    if s.shape and isinstance(s.shape[0], str)})
                    torch.onnx.export(module, example, str(out), dynamo=False, opset_version=17,
                                      input_names=sig.input_names,
                                      output_names=sig.output_names, dynamic_axes=dynamic)
        except ConversionError:
            raise
        except Exception as exc:
            raise converter_failed(f"PyTorch ONNX export ({self.src} -> onnx)", exc,
                                   cap.text if cap else "", src) from exc
        import onnx

        model = onnx.load(str(out))
        name_batch_dim(model)
        onnx.save(model, str(out))
        return out
