"""Embed what an app needs to use a model correctly into each artifact.

Name, version, input layout and normalization, and labels travel with the file, in the place
each format has for them, so preprocessing cannot get lost between the ML team and the app:

- ONNX: ``metadata_props`` key ``edgepack`` (JSON);
- OpenVINO IR: ``rt_info`` — ``model_info/labels`` (OpenVINO's own convention) and ``edgepack``
  (JSON);
- TFLite: a sidecar ``<file>.json`` next to the model (the flatbuffer's metadata table would
  need a full rewrite of the file, which can change how its buffers are aligned).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..signature import Normalization, Signature

KEY = "edgepack"


def _onnx(path: Path, meta: dict[str, Any]) -> list[Path]:
    import onnx

    model = onnx.load(str(path))
    set_onnx_property(model, KEY, json.dumps(meta, sort_keys=True))
    if meta.get("name"):
        model.doc_string = f"{meta['name']} {meta.get('version', '')}".strip()
    onnx.save(model, str(path))
    return []


def set_onnx_property(model: Any, key: str, value: str | None) -> None:
    """``key`` in an ONNX ModelProto's ``metadata_props`` set to ``value`` (None: removed),
    whatever it held before."""
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if value is not None:
        model.metadata_props.add(key=key, value=value)


def _openvino(path: Path, meta: dict[str, Any]) -> list[Path]:
    import openvino as ov

    from .openvino_ir import write_ir

    model = ov.Core().read_model(str(path))
    model.set_rt_info(json.dumps(meta, sort_keys=True), [KEY])
    if meta.get("labels"):
        model.set_rt_info(" ".join(str(x).replace(" ", "_") for x in meta["labels"]),
                          ["model_info", "labels"])
    tmp = path.with_name(path.stem + ".meta-tmp.xml")
    # the weights are written as they are (an fp16 IR keeps its fp16 constants), and the
    # constants were already reduced when the IR was first saved
    write_ir(model, tmp, compress_to_fp16=False)
    del model
    tmp.replace(path)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    return [path.with_suffix(".bin")]


def _sidecar(path: Path, meta: dict[str, Any]) -> list[Path]:
    side = sidecar_path(path)
    side.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [side]


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


EMBED: dict[str, Callable[[Path, dict[str, Any]], list[Path]]] = {
    "onnx": _onnx,
    "openvino": _openvino,
    "tflite": _sidecar,
}


def embed(fmt: str, path: Path, meta: dict[str, Any]) -> list[Path]:
    """Write ``meta`` into (or next to) the artifact; return the extra files it now has."""
    return EMBED[fmt](path, meta)


def annotate(signature: Signature, meta: dict[str, Any] | str | None) -> Signature:
    """A signature read from a file, with the layouts and normalization edgepack embedded.

    Formats do not store layouts; what edgepack wrote when it built the file is the truth, and
    beats any guess from shapes. Inputs are matched by position (formats rename tensors).
    """
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return signature
    if not isinstance(meta, dict) or meta.get("producer") != "edgepack":
        return signature
    inputs = list(signature.inputs)
    for i, m in enumerate(meta.get("inputs", [])[:len(inputs)]):
        norm = m.get("normalization")
        inputs[i] = replace(inputs[i], layout=m.get("layout", inputs[i].layout),
                            normalization=Normalization.from_dict(norm) if norm
                            else inputs[i].normalization)
    outputs = list(signature.outputs)
    for i, lay in enumerate(meta.get("output_layouts", [])[:len(outputs)]):
        outputs[i] = replace(outputs[i], layout=lay)
    return Signature(tuple(inputs), tuple(outputs))
