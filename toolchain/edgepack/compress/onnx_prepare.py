"""An ONNX model made ready for ONNX Runtime's static quantizer, whatever its dynamic dims.

ONNX Runtime asks for ``quant_pre_process`` first: symbolic shape inference, its graph
optimizer, then ONNX shape inference, so the quantizer knows every tensor's type and shape.
Symbolic shape inference gives up on many real graphs with dynamic dims ("Incomplete symbolic
shape inference": transformers, PP-OCR, YOLO exports), and a failure there must not cost the
format: the steps are tried in order, each dropping what failed, down to none at all. The
quantizer calibrates a graph with dynamic dims as it is (only the calibration samples' shapes
are run), so the dims stay as the delivered file should have them.

Per-channel QDQ writes ``DequantizeLinear`` with an ``axis``, which opset 13 introduced: an
older graph (PP-OCR is opset 12) is converted to opset 13 first, or the int8 file would not
load ("Unrecognized attribute: axis for operator DequantizeLinear").

Every node gets a name (one of its own, or ``<op type>_<first output>``): the quantizer keeps
names, and what pairs a QDQ node with its float original (the layer ranking's twins, the bias
correction) and what keeps a layer in float (``nodes_to_exclude``) are node names; graphs
written without them (onnx.helper's default) would leave every node called "".
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from ..errors import first_line

#: the opset where QuantizeLinear/DequantizeLinear take a per-channel ``axis``
PER_CHANNEL_OPSET = 13

#: quant_pre_process settings, tried in order until one works: (what it does, keywords)
STEPS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("symbolic shape inference, graph optimization, ONNX shape inference", {}),
    ("graph optimization and ONNX shape inference (no symbolic shape inference)",
     {"skip_symbolic_shape": True}),
    ("ONNX shape inference only", {"skip_symbolic_shape": True, "skip_optimization": True}),
)


def prepare(src: Path, out: Path, notes: list[str]) -> None:
    """Write ``src`` pre-processed for quantization to ``out``; say in ``notes`` what had to
    be left out and why. Never raises for a pre-processing failure: the last resort is the
    model as it is."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src))
    failed: list[str] = []
    out = out.resolve()
    # in the temporary folder: symbolic shape inference that gives up saves its partial model
    # (sym_shape_infer_temp.onnx, and the weights beside it) in the working directory
    with tempfile.TemporaryDirectory(prefix="edgepack-prepare-") as tmp, contextlib.chdir(tmp):
        path = Path(tmp) / "in.onnx"
        onnx.save(with_opset(model, PER_CHANNEL_OPSET, notes), str(path))
        for what, skips in STEPS:
            try:
                quant_pre_process(str(path), str(out), **skips)
            except Exception as exc:  # the tools' own errors are many kinds: note and go on
                failed.append(f"{what} failed ({first_line(exc) or type(exc).__name__})")
                continue
            if failed:
                notes.append("quantization pre-processing: " + "; ".join(failed)
                             + f"; done with {what}")
            name_nodes(out)
            return
        out.write_bytes(path.read_bytes())
    name_nodes(out)
    notes.append("quantization pre-processing skipped (" + "; ".join(failed) + "): the "
                 "quantizer runs its own shape inference")


def name_nodes(path: Path) -> None:
    """Name every unnamed node of the ONNX file at ``path`` (in place) after its op type and
    first output, which is unique: the same graph always gets the same names."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    taken = {n.name for n in model.graph.node}
    unnamed = [n for n in model.graph.node if not n.name]
    for node in unnamed:
        name = base = f"{node.op_type}_{node.output[0] if node.output else 'node'}"
        k = 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        taken.add(name)
    if unnamed:
        onnx.save(model, str(path))


def with_opset(model: Any, opset: int, notes: list[str]) -> Any:
    """``model`` in at least ``opset`` of the default domain (converted by ONNX's version
    converter; kept as it is when that fails, with a note)."""
    import onnx

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception as exc:
        notes.append(f"opset {current} kept (conversion to {opset} failed: {first_line(exc)}); "
                     "per-channel int8 needs opset 13")
        return model
    notes.append(f"converted from opset {current} to {opset} (per-channel int8 needs it)")
    return converted
