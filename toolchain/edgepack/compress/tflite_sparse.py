"""Sparse constant weights of a TFLite file made dense, for every tool to read.

A TFLite file may store a weight sparse (the schema's SparsityParameters: a traversal order, a
block map and each dimension's CSR segments and indices) and expand it with a DENSIFY op when
the model is prepared: MediaPipe's pose detector and full-range face detector store their 1x1
convolutions' weights so. No other tool reads that format. tf2onnx's TFLite reader reshapes
the stored values as if they were dense ("cannot reshape array of size 96 into shape
(16,1,1,24)"), and ai-edge-quantizer takes the DENSIFY's output for an activation and
quantizes the convolution's weights with an asymmetric zero point, which LiteRT's int8
convolution refuses when the file loads. Each such weight becomes the dense constant LiteRT's
own DENSIFY makes of it, read directly by the op that read the DENSIFY: the model computes the
same values, and a quantizer sees a weight.
"""

from __future__ import annotations

import numpy as np

from . import tflite_graph as graph


def densified(flatbuffer: bytes) -> tuple[bytes, int]:
    """``flatbuffer`` with every DENSIFY of a constant in its main subgraph folded into the
    dense constant, and how many were (the bytes unchanged when none was, when LiteRT cannot
    run the file to expand them, or when the dense file's outputs on one input are not the
    source's, bit for bit)."""
    from ai_edge_litert.schema_py_generated import BufferT, BuiltinOperator

    if not graph.declares(flatbuffer, ("DENSIFY",)):
        return flatbuffer, 0
    model = graph.read(flatbuffer)
    if not model.subgraphs:
        return flatbuffer, 0
    main = model.subgraphs[0]
    ops = [op for op in main.operators
           if graph.op_code(model, op) == BuiltinOperator.DENSIFY
           and main.tensors[op.inputs[0]].sparsity is not None
           and graph.values(model, main.tensors[op.inputs[0]], np.uint8).size]
    if not ops:
        return flatbuffer, 0
    dense = _expanded(flatbuffer, [int(op.outputs[0]) for op in ops])
    if dense is None:
        return flatbuffer, 0
    for op in ops:
        out = main.tensors[op.outputs[0]]
        buffer = BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(dense[int(op.outputs[0])]).tobytes(),
                                    np.uint8)
        model.buffers.append(buffer)
        out.buffer = len(model.buffers) - 1
        main.operators.remove(op)
    graph.drop_unused(model, 0)
    dense_flatbuffer = graph.write(model)
    # the very outputs on one input, or the source stands as it is
    if not graph.same_outputs(flatbuffer, dense_flatbuffer):
        return flatbuffer, 0
    return dense_flatbuffer, len(ops)


def _expanded(flatbuffer: bytes, tensors: list[int]) -> dict[int, np.ndarray] | None:
    """The values LiteRT's DENSIFY kernel gives ``tensors`` of the main subgraph (it keeps them
    in persistent memory once expanded); None when the file cannot run here."""
    interpreter = graph.run_once(flatbuffer)
    return None if interpreter is None else {t: interpreter.get_tensor(t).copy()
                                             for t in tensors}


def describe(count: int) -> str:
    """The source fix's note."""
    return (f"{count} sparse weight(s) stored dense (each DENSIFY op folded into the constant "
            "LiteRT expands it to), for every tool to read")
