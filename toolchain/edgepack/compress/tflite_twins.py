"""Which layers int8 hurts most in a TFLite file quantized without a SavedModel (a TFLite source,
through ai-edge-quantizer), where the TFLite converter's QuantizationDebugger cannot run.

The ONNX ranker's measure, in the flatbuffer: every weighted op of the int8 file gets a float
twin (the same op and options, the float file's weights and bias) reading its own input
dequantized, and both outputs become graph outputs. The score is the RMSE between the twin's
output and the op's dequantized int8 output over that output's quantization step (about 0.29
for pure rounding), so a layer is scored by the error it makes itself, not by what earlier
layers passed on. Returned worst first as the ops' output tensor names, which the quantizer's
denylist (compress/tflite_quantizer.py) takes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from . import tflite_graph as graph
from .layer_order import TFLITE_LAYERS


@dataclass
class _Probe:
    layer: str  # the op's output tensor name
    twin: int  # tensor index of the twin's float output
    quantized: int  # tensor index of the op's int8 output
    step: float


def rank_tflite_file(parent: Path, int8: Path, samples: Dataset) -> list[str]:
    """The weighted layers of ``int8`` (quantized from the float TFLite file ``parent``), worst
    first; layers without a probe (kept float, or unmatched) last, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    from ..runtimes.litert import LiteRTSession

    reference = graph.read(parent.read_bytes())
    graph.fold_fp16_weights(reference)
    graph.fill_builtin_codes(reference)
    model = graph.read(int8.read_bytes())
    graph.fill_builtin_codes(model)
    model.signatureDefs = []  # the probes are graph outputs, read by tensor index
    order = _layer_names(model)
    probes = _add_twins(model, reference)
    interp = Interpreter(model_content=graph.write(model))
    interp.allocate_tensors()
    session = LiteRTSession(interp, "")
    details = {int(d["index"]): d for d in interp.get_tensor_details()}
    squared = np.zeros(len(probes))
    counts = np.zeros(len(probes))
    for feed in samples.samples():
        session.run(feed)
        for i, probe in enumerate(probes):
            twin = interp.get_tensor(probe.twin).astype(np.float64)
            scale, zero = details[probe.quantized]["quantization"]
            got = (interp.get_tensor(probe.quantized).astype(np.float64) - zero) * scale
            squared[i] += float(np.sum((twin - got) ** 2))
            counts[i] += twin.size
    scored = {p.layer: np.sqrt(squared[i] / max(counts[i], 1)) / p.step
              for i, p in enumerate(probes)}
    return sorted(order, key=lambda n: (-scored.get(n, -1.0), order.index(n)))


def _layer_names(model: Any) -> list[str]:
    g = model.subgraphs[0]
    return [g.tensors[op.outputs[0]].name.decode() for op in g.operators if _weighted(model, op)]


def _weighted(model: Any, op: Any) -> bool:
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    return graph.op_code(model, op) in {getattr(BuiltinOperator, n) for n in TFLITE_LAYERS}


def _add_twins(model: Any, reference: Any) -> list[_Probe]:
    """Append a float twin of every int8 weighted op of ``model`` whose float op ``reference``
    has (matched by output name), with DEQUANTIZEs of the twins' activation inputs."""
    g, ref = model.subgraphs[0], reference.subgraphs[0]
    floats = {ref.tensors[op.outputs[0]].name: op for op in ref.operators
              if _weighted(reference, op)}
    # (appended after every op of the file: each reads tensors made earlier)
    dequantized: dict[int, int] = {}
    appended: list[Any] = []
    probes = []
    for op in [op for op in g.operators if _weighted(model, op)]:
        out = g.tensors[op.outputs[0]]
        twin_of = floats.get(out.name)
        if twin_of is None or not _quantized(out):
            continue  # kept in float, or not in the float file
        inputs = _twin_inputs(model, op, reference, twin_of, dequantized, appended)
        if inputs is None:
            continue
        twin = _new_tensor(model, out, f"{out.name.decode()}/float_twin")
        clone = copy.copy(op)
        clone.inputs, clone.outputs = np.asarray(inputs, np.int32), np.asarray([twin], np.int32)
        appended.append(clone)
        probes.append(_Probe(out.name.decode(), twin, int(op.outputs[0]),
                             float(np.max(out.quantization.scale))))
    g.operators.extend(appended)
    exposed = [i for p in probes for i in (p.twin, p.quantized)]
    g.outputs = np.asarray([*g.outputs, *exposed], np.int32)
    return probes


def _twin_inputs(model: Any, op: Any, reference: Any, twin_of: Any,
                 dequantized: dict[int, int], appended: list[Any]) -> list[int] | None:
    """The inputs of ``op``'s float twin: its quantized weights and bias replaced by the float
    file's (``twin_of``'s at the same positions), its int8 activations by DEQUANTIZEs of them
    (made once per tensor, appended to ``appended``); None when a float weight is missing."""
    g, ref = model.subgraphs[0], reference.subgraphs[0]
    inputs = []
    for position, index in enumerate(op.inputs):
        tensor = g.tensors[index] if index >= 0 else None
        if tensor is None or not _quantized(tensor):
            inputs.append(int(index))
        elif graph.values(model, tensor, np.uint8).size:  # a weight or bias: the float one
            theirs = ref.tensors[twin_of.inputs[position]] if position < len(twin_of.inputs) \
                else None
            data = graph.values(reference, theirs, np.float32) if theirs is not None else None
            if data is None or data.size != int(np.prod(tensor.shape)):
                return None
            inputs.append(_new_tensor(model, tensor, f"{tensor.name.decode()}/float", data))
        else:
            if index not in dequantized:
                dequantized[index] = _new_tensor(model, tensor, f"{tensor.name.decode()}/f")
                appended.append(_op(model, "DEQUANTIZE", [index], [dequantized[index]]))
            inputs.append(dequantized[index])
    return inputs


def _quantized(tensor: Any) -> bool:
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


def _new_tensor(model: Any, like: Any, name: str, data: np.ndarray | None = None) -> int:
    """A FLOAT32 tensor shaped as ``like`` (holding ``data`` when given); its index."""
    from ai_edge_litert.schema_py_generated import BufferT, TensorT, TensorType

    tensor = TensorT()
    tensor.name, tensor.shape, tensor.type = name.encode(), like.shape, TensorType.FLOAT32
    tensor.shapeSignature = like.shapeSignature
    tensor.buffer = 0
    if data is not None:
        buffer = BufferT()
        buffer.data = np.frombuffer(data.astype("<f4").tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    g = model.subgraphs[0]
    g.tensors.append(tensor)
    return len(g.tensors) - 1


def _op(model: Any, kind: str, inputs: list[int], outputs: list[int]) -> Any:
    from ai_edge_litert.schema_py_generated import BuiltinOperator, OperatorCodeT, OperatorT

    code = getattr(BuiltinOperator, kind)
    index = next((i for i, c in enumerate(model.operatorCodes) if c.builtinCode == code), None)
    if index is None:
        entry = OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode = code, min(code, 127)
        entry.version = 2  # DEQUANTIZE of int8
        model.operatorCodes.append(entry)
        index = len(model.operatorCodes) - 1
    op = OperatorT()
    op.opcodeIndex = index
    op.inputs, op.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
    return op
