"""Writing an OpenVINO IR as small as its content allows, without changing a value it computes.

A small model's IR is mostly its .xml: every node is a few hundred bytes of text, and converters
and NNCF make many. MediaPipe's selfie segmenter (106 k fp16 weights, 213 KB of .bin) has a
270 KB .xml at fp32 and a 340 KB one at int8, where each of the 84 activation quantizers adds a
FakeQuantize and its range constants; so whether its int8 IR is smaller than its fp32 one is
decided here, not by the weights. Every IR edgepack writes goes through :func:`save_ir`, the
references as well as the deliverables, so sizes compare like with like:

- equal constants are shared by one node (the .bin stores equal data once, the .xml does not);
- a float32 constant whose values are all exact in fp16 and big enough to pay for the Convert
  node that reads it is stored in fp16, as OpenVINO stores compressed weights (an fp16 source's
  weights that NNCF left float come out of it as float32, twice their size in the source);
- the .xml is written without the indentation ``save_model`` adds (a sixth of its bytes);
  OpenVINO's reader does not need it.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

#: the least an fp16 copy must save to be worth its Convert node: a Convert layer and its edge
#: take about 400 bytes of the compact .xml
MIN_FP16_SAVING = 512


def save_ir(model: Any, xml: Path, *, compress_to_fp16: bool) -> None:
    """``ov.save_model`` of ``model`` to ``xml`` (and its .bin) with the reductions above;
    ``compress_to_fp16`` as save_model's (True stores every float weight in fp16)."""
    share_equal_constants(model)
    if not compress_to_fp16:
        store_exact_fp16(model)
    write_ir(model, xml, compress_to_fp16=compress_to_fp16)


def write_ir(model: Any, xml: Path, *, compress_to_fp16: bool) -> None:
    """``ov.save_model`` with the .xml written compactly, the constants as they are: for a
    model read back from an IR :func:`save_ir` wrote (the metadata writer's)."""
    import openvino as ov

    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    write_compact(xml)


def write_compact(xml: Path) -> None:
    """Rewrite the .xml ``xml`` without whitespace between its elements (an IR's elements hold
    no text that is only whitespace)."""
    tree = ET.parse(xml)
    for element in tree.getroot().iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    tree.write(xml, encoding="utf-8", xml_declaration=True)


def share_equal_constants(model: Any) -> int:
    """Point every consumer of a Constant equal to an earlier one (same element type, shape
    and bytes) at the earlier one; how many Constants that left unused. A Constant read by a
    model output is left alone, as its tensor names are the output's."""
    first: dict[tuple[str, tuple[int, ...], str], Any] = {}
    shared = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        out = op.output(0)
        targets = list(out.get_target_inputs())
        if _read_by_output(targets):
            continue
        key = (out.get_element_type().get_type_name(), tuple(out.get_shape()),
               hashlib.sha256(op.get_data().tobytes()).hexdigest())
        if key not in first:
            first[key] = out
            continue
        for target in targets:
            target.replace_source_output(first[key])
        shared += 1
    return shared


def store_exact_fp16(model: Any) -> int:
    """Store each float32 Constant whose values fp16 holds exactly, and whose fp16 copy saves
    at least :data:`MIN_FP16_SAVING` bytes, as Constant(f16) -> Convert(f32); how many."""
    import openvino.opset13 as ops

    stored = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" \
                or op.get_output_element_type(0).get_type_name() != "f32":
            continue
        targets = list(op.output(0).get_target_inputs())
        values = np.asarray(op.get_data())
        if _read_by_output(targets) or values.nbytes // 2 < MIN_FP16_SAVING:
            continue
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values, equal_nan=True):
            continue
        weight = ops.constant(half)
        weight.set_friendly_name(op.get_friendly_name())
        widened = ops.convert(weight, "f32")
        widened.set_friendly_name(f"{op.get_friendly_name()}/decompress")
        for target in targets:
            target.replace_source_output(widened.output(0))
        stored += 1
    return stored


def _read_by_output(targets: list[Any]) -> bool:
    return any(t.get_node().get_type_name() == "Result" for t in targets)
