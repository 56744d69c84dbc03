"""OpenVINO IR (.xml topology + .bin weights next to it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, first_line
from ..signature import Signature, TensorSpec, guess_layout
from .base import Format, ModelInfo, histogram
from .metadata import KEY, annotate

_PLUMBING = {"Parameter", "Result", "Constant"}


class OpenVinoFormat(Format):
    name = "openvino"
    description = "OpenVINO IR (.xml + .bin)"
    suffixes = (".xml",)
    runtime = "openvino"

    def load(self, path: Path) -> Any:
        import openvino as ov

        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelError(f"the weights file {weights.name} is missing next to it", path=path,
                             hint="an OpenVINO IR is an .xml and a .bin with the same name")
        try:
            return ov.Core().read_model(str(path), str(weights))
        except Exception as exc:
            raise ModelError(f"not a readable OpenVINO IR: {first_line(exc)}", path=path) from exc

    def inspect(self, path: Path) -> ModelInfo:
        model = self.load(path)
        try:
            return self._info(path, model)
        except (UnicodeDecodeError, RuntimeError, ValueError) as exc:
            # names, rt_info or shapes the IR reader accepted but cannot hand back (e.g. a
            # friendly name that is not UTF-8): a corrupt file, not an edgepack bug
            raise ModelError(f"not a readable OpenVINO IR: {first_line(exc)}", path=path,
                             hint="the .xml may be corrupt; re-export it") from exc

    def _info(self, path: Path, model: Any) -> ModelInfo:
        ops = list(model.get_ordered_ops())
        params = sum(int(np.prod(list(op.get_output_shape(0)))) for op in ops
                     if op.get_type_name() == "Constant"
                     and op.get_output_element_type(0).is_real())
        rt_info = {}
        if model.has_rt_info("model_info"):
            rt_info = {k: v.astype(str)
                       for k, v in model.get_rt_info("model_info").astype(dict).items()}
        edgepack_meta = model.get_rt_info([KEY]).astype(str) if model.has_rt_info([KEY]) else None
        return ModelInfo(
            path=str(path), format=self.name,
            signature=annotate(Signature(inputs=tuple(_spec(p) for p in model.inputs),
                                         outputs=tuple(_spec(p) for p in model.outputs)),
                               edgepack_meta),
            parameters=params,
            size_bytes=path.stat().st_size + path.with_suffix(".bin").stat().st_size,
            operators=histogram([op.get_type_name() for op in ops
                                 if op.get_type_name() not in _PLUMBING]),
            details={"friendly_name": model.get_friendly_name(), "model_info": rt_info,
                     "metadata": edgepack_meta})


def _spec(port: Any) -> TensorSpec:
    shape = tuple(
        int(d.get_length()) if d.is_static else ("batch" if i == 0 else "?")
        for i, d in enumerate(port.get_partial_shape()))
    names = sorted(port.get_names())
    name = names[0] if names else port.get_any_name()
    dtype = port.get_element_type().to_dtype().name
    return TensorSpec(name=name, shape=shape, dtype=dtype,
                      layout=guess_layout(shape, channels_first=True))
