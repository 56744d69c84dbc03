"""The fp16 overflow guard for OpenVINO IR: ops whose values leave the fp16 range compute in fp32.

``save_model(compress_to_fp16=True)`` stores weights in f16, and on its own keeps in f32 a
Constant whose values do not fit in f16, but it knows nothing of activations, and a device that
runs the IR in f16 (the GPU plugin, ARM CPUs with fp16 arithmetic) turns every value beyond
65504 into inf. The guard measures the fp32 activations on the build's check samples with
OpenVINO on the host, in f32 (the host's own bf16 or f32 would hide the overflow a GPU hits),
and marks the ops that make or take such values, or read such weights, with OpenVINO's "keep
this op in fp32" attribute, the rt_info ``DisablePrecisionConversion`` that the plugins'
precision conversion honours (the CPU plugin asked for bf16 runs a marked op in f32). The Python
rt_info setter does not serialise that attribute, so it is written into the saved .xml; the
.bin is not touched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..data.dataset import Dataset
from .fp16_range import FP16_MAX, beyond_fp16

#: how the IR spells "keep this op in fp32 whatever precision the device runs" (what OpenVINO
#: itself writes for an op that carries it, e.g. one read from an IR marked ``precise``)
KEEP_FP32 = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:f16"}
#: ops that compute nothing, so there is nothing to keep in fp32
_NOT_COMPUTE = ("Parameter", "Result", "Constant")


def overflow_ops(model: Any, samples: Dataset | None) -> list[str]:
    """Friendly names of the ops of the fp32 ``model`` (an ``ov.Model``, left unchanged) that
    read a float Constant beyond the fp16 range, or make or take an activation beyond it (or
    not finite) on ``samples`` (weights only when None), in graph order."""
    blocked: set[str] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant" and beyond_fp16(op.get_data()):
            blocked |= _around(op.output(0))
    if samples is not None:
        blocked |= _big_activations(model, samples)
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_friendly_name() in blocked and op.get_type_name() not in _NOT_COMPUTE]


def _around(out: Any) -> set[str]:
    """The op that makes the value ``out`` and the ops that take it."""
    return {out.get_node().get_friendly_name(),
            *(i.get_node().get_friendly_name() for i in out.get_target_inputs())}


def _big_activations(model: Any, samples: Dataset) -> set[str]:
    """Names of the ops that make or take a value beyond the fp16 range on any sample: every
    op output is made an output of a copy of ``model``, run in f32 by OpenVINO's CPU plugin."""
    import openvino as ov

    probe = model.clone()
    probe.add_outputs([o for op in probe.get_ordered_ops() if op.get_type_name()
                       not in ("Constant", "Result") for o in op.outputs()])
    request = ov.Core().compile_model(
        probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    names = [p.get_any_name() for p in probe.inputs]
    dtypes = [p.get_element_type().to_dtype() for p in probe.inputs]
    by_name = set(names) == set(samples.inputs)
    found: set[int] = set()
    for feed in samples.samples():
        arrays = [feed[n] for n in names] if by_name else list(feed.values())
        result = request.infer([a.astype(t) for a, t in zip(arrays, dtypes, strict=True)])
        found |= {i for i in range(len(probe.outputs)) if beyond_fp16(result[i])}
    blocked: set[str] = set()
    for i in found:  # an output of the copy is a Result; the value is what it reads
        blocked |= _around(probe.outputs[i].get_node().input_value(0))
    return blocked


def keep_fp32(xml: Path, names: list[str]) -> None:
    """Mark the layers named ``names`` of the IR ``xml`` to compute in fp32 on any device."""
    tree = ET.parse(xml)
    wanted = set(names)
    for layer in tree.getroot().iter("layer"):
        if layer.get("name") not in wanted:
            continue
        info = layer.find("rt_info")
        if info is None:  # where OpenVINO writes it: after <data>, before the ports
            info = ET.Element("rt_info")
            data = layer.find("data")
            layer.insert(0 if data is None else list(layer).index(data) + 1, info)
        if not any(a.get("name") == KEEP_FP32["name"] for a in info.iter("attribute")):
            ET.SubElement(info, "attribute", KEEP_FP32)
    tree.write(xml, encoding="utf-8", xml_declaration=True)


def guard_note(names: list[str]) -> str:
    """The report's note for ops kept in fp32, worded as the ONNX guard's."""
    return (f"fp16 overflow guard: {len(names)} op(s) kept in fp32 (OpenVINO "
            f"DisablePrecisionConversion) because their values exceed the fp16 range "
            f"(|x| > {FP16_MAX:g}): " + ", ".join(names))
