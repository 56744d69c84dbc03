"""A source already in the deliverable's format: copied, then checked and tagged like any hop.

Delivering an ONNX source as ONNX still runs it through the hop check and gets edgepack's
metadata embedded, so every artifact in a build folder has passed the same checks. An ONNX
copy takes the fixed input shapes (``--input-shape``, a static-shape target) into the file, and
the source's external data (``model.onnx.data``) inside it: the file delivered is the whole
model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..compress.context import ConvertContext
from .base import Edge


class Copy(Edge):
    tool = "copy"
    cost = 0.1

    def __init__(self, fmt: str):
        self.src = self.dst = fmt

    def tool_version(self) -> str:
        return "edgepack"

    def convert(self, src: Path, ctx: ConvertContext) -> Path:
        out = ctx.workdir / f"{ctx.stem}.{ctx.precision}{src.suffix}"
        if self.src == "onnx":
            from ..formats.onnx import external_data_files, write_self_contained, write_with_shapes

            if ctx.input_shapes:
                return write_with_shapes(src, out, ctx.input_shapes)
            if external_data_files(src):
                return write_self_contained(src, out)
        shutil.copyfile(src, out)
        if src.suffix == ".xml":  # an OpenVINO IR is two files
            shutil.copyfile(src.with_suffix(".bin"), out.with_suffix(".bin"))
        return out
