"""Small edits of a TFLite flatbuffer that a quantizer needs before it reads a file.

- ``fold_fp16_weights``: weights stored as FLOAT16 constants expanded by DEQUANTIZE ops (how the
  TFLite converter writes fp16 models, and how MediaPipe ships float models) become FLOAT32
  constants read directly. The values are the same (every fp16 value is exact in fp32); a
  quantizer then sees each weight as a constant of the op that reads it, which it quantizes,
  instead of the output of another op, which it leaves alone.
- ``fill_builtin_codes``: operator codes in the field newer tools read.
- ``run_once`` / ``same_outputs``: a file run in LiteRT's own kernels on a seeded input, so an
  edit that must not change what a file computes is checked before its copy is used.
- ``add_signature``: a file without a SignatureDef (MediaPipe's) gets the serving signature
  that names its inputs and outputs after their tensors, which ai-edge-quantizer runs and
  calibrates the model through.

Each edits the object form of the file (``read`` / ``write``) in place.

The file is edited with LiteRT's own flatbuffer tools, as the TFLite converter edits the files
whose I/O types it changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the signature key ai-edge-quantizer and LiteRT's signature runners default to
SERVING_KEY = "serving_default"


def read(flatbuffer: bytes) -> Any:
    """The mutable object form of a flatbuffer (ModelT)."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))


def write(model: Any) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_code(model: Any, op: Any) -> int:
    """The builtin operator code of ``op`` (the schema keeps small codes in a deprecated
    field and the others in a newer one; the larger of the two is the code)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def declares(flatbuffer: bytes, ops: tuple[str, ...]) -> bool:
    """Whether the file declares any of the builtin ``ops`` (schema names), read without
    unpacking it, so a file without them costs nothing."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator, Model

    wanted = {getattr(BuiltinOperator, n) for n in ops}
    model = Model.GetRootAs(flatbuffer, 0)
    codes = (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
    return any({c.BuiltinCode(), c.DeprecatedBuiltinCode()} & wanted for c in codes)


def is_dequantize(model: Any, op: Any) -> bool:
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    return op_code(model, op) == BuiltinOperator.DEQUANTIZE


def values(model: Any, tensor: Any, dtype: type) -> np.ndarray:
    """The constant data of ``tensor`` as a flat array of ``dtype`` (empty when it has none)."""
    data = model.buffers[tensor.buffer].data
    return np.zeros(0, dtype) if data is None else np.frombuffer(bytes(data), dtype)


def fold_fp16_weights(model: Any) -> int:
    """Make every FLOAT16 constant that a DEQUANTIZE op expands a FLOAT32 constant read by the
    DEQUANTIZE's readers, and remove the DEQUANTIZE; how many were."""
    from ai_edge_litert.schema_py_generated import BufferT, TensorType

    folded = 0
    for g, graph in enumerate(model.subgraphs):
        for op in [op for op in graph.operators if is_dequantize(model, op)]:
            half = graph.tensors[op.inputs[0]]
            data = values(model, half, np.float16)
            if half.type != TensorType.FLOAT16 or not data.size:
                continue  # an int8 weight's DEQUANTIZE, or a runtime fp16 tensor
            buffer = BufferT()
            buffer.data = np.frombuffer(data.astype("<f4").tobytes(), np.uint8)
            model.buffers.append(buffer)
            half.type, half.buffer = TensorType.FLOAT32, len(model.buffers) - 1
            graph.operators.remove(op)
            _rewire(graph, int(op.outputs[0]), int(op.inputs[0]))
            folded += 1
        _drop_unused_tensors(model, g)
    _empty_unused_buffers(model)
    return folded


def fill_builtin_codes(model: Any) -> None:
    """Write each operator code in the schema's newer field too: files of older converters
    (MediaPipe's) set only the deprecated one, and tools that read only the newer field (such
    as ai-edge-quantizer) would take every op for an ADD."""
    for code in model.operatorCodes:
        code.builtinCode = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def add_signature(model: Any) -> bool:
    """Give ``model`` a serving SignatureDef over subgraph 0 when it has none (inputs and
    outputs keyed by their tensor names); whether one was added."""
    from ai_edge_litert.schema_py_generated import SignatureDefT, TensorMapT

    if model.signatureDefs:
        return False
    graph = model.subgraphs[0]

    def entry(index: int) -> Any:
        item = TensorMapT()
        item.name, item.tensorIndex = graph.tensors[index].name.decode(), int(index)
        return item

    signature = SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SERVING_KEY, 0
    signature.inputs = [entry(i) for i in graph.inputs]
    signature.outputs = [entry(i) for i in graph.outputs]
    model.signatureDefs = [signature]
    return True


def io_names(model: Any) -> tuple[list[bytes], list[bytes]]:
    """The tensor names of subgraph 0's inputs and outputs."""
    graph = model.subgraphs[0]
    return ([graph.tensors[i].name for i in graph.inputs],
            [graph.tensors[i].name for i in graph.outputs])


def rename_io(model: Any, names: tuple[list[bytes], list[bytes]]) -> None:
    """Name subgraph 0's inputs and outputs ``names`` (io_names of the file the model was made
    from): a quantizer that appends a DEQUANTIZE to an output gives the new output tensor
    another name, and apps find a model's outputs by name."""
    graph = model.subgraphs[0]
    for ids, wanted in zip((graph.inputs, graph.outputs), names, strict=True):
        for index, name in zip(ids, wanted, strict=True):
            graph.tensors[index].name = name


def run_once(flatbuffer: bytes) -> Any:
    """A LiteRT interpreter (its own kernels, no delegate) after one run of ``flatbuffer`` on
    a seeded input; None when the file cannot run here."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rng = np.random.default_rng(0)
    try:
        interpreter = Interpreter(
            model_content=flatbuffer,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"],
                                   rng.random(detail["shape"]).astype(detail["dtype"]))
        interpreter.invoke()
    except (RuntimeError, ValueError):
        return None
    return interpreter


def same_outputs(a: bytes, b: bytes) -> bool:
    """Whether two files' outputs on the same seeded input are equal, bit for bit (False when
    either cannot run)."""
    x, y = run_once(a), run_once(b)
    if x is None or y is None:
        return False
    return all(np.array_equal(x.get_tensor(p["index"]), y.get_tensor(q["index"]))
               for p, q in zip(x.get_output_details(), y.get_output_details(), strict=True))


def drop_unused(model: Any, g: int) -> None:
    """Remove the tensors of subgraph ``g`` that nothing refers to any more, and the data of
    buffers no tensor refers to (after ops were removed)."""
    _drop_unused_tensors(model, g)
    _empty_unused_buffers(model)


def _rewire(graph: Any, old: int, new: int) -> None:
    """Every reader of tensor ``old`` (and the graph's outputs) reads tensor ``new`` instead
    (tensor indices are int32 vectors in the flatbuffer)."""
    def swap(ids: Any) -> np.ndarray:
        ids = np.asarray(ids, np.int32)
        return np.where(ids == old, new, ids).astype(np.int32)

    for reader in graph.operators:
        reader.inputs = swap(reader.inputs)
    graph.outputs = swap(graph.outputs)


def _drop_unused_tensors(model: Any, g: int) -> None:
    """Remove the tensors of subgraph ``g`` that no op, graph input or output refers to,
    renumbering the rest (in the ops, the graph and the signatures over it)."""
    graph = model.subgraphs[g]
    lists = [ids for op in graph.operators
             for ids in (op.inputs, op.outputs, op.intermediates) if ids is not None]
    used = {int(t) for ids in [*lists, graph.inputs, graph.outputs] for t in ids if t >= 0}
    if len(used) == len(graph.tensors):
        return
    keep = sorted(used)
    index = np.full(len(graph.tensors), -1, np.int32)
    index[keep] = np.arange(len(keep), dtype=np.int32)

    def renumber(ids: Any) -> Any:
        ids = np.asarray(ids, np.int32)
        return np.where(ids >= 0, index[np.maximum(ids, 0)], ids).astype(np.int32)

    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == g:
            for item in [*(signature.inputs or []), *(signature.outputs or [])]:
                item.tensorIndex = int(index[item.tensorIndex])
    graph.tensors = [graph.tensors[i] for i in keep]


def _empty_unused_buffers(model: Any) -> None:
    """Clear the data of buffers no tensor refers to any more (buffer 0 is always empty)."""
    used = {t.buffer for graph in model.subgraphs for t in graph.tensors}
    for i, buffer in enumerate(model.buffers):
        if i not in used and buffer.data is not None:
            buffer.data = None
