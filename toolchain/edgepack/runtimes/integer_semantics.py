"""What an int8 file computes, computed without this host's x86 integer kernels.

ONNX Runtime's int8 kernels (and OpenVINO's: runtimes/openvino.py) on an x86 CPU without VNNI
(AVX2, or AVX-512 without VNNI: AMD EPYC before Zen 4, Intel before Cascade Lake) multiply u8
by s8 with VPMADDUBSW, which adds pairs of products in 16 bits and saturates: a file that ARM's
SDOT, VNNI's VPDPBUSD or the ONNX semantics sum exactly in 32 bits comes out different here.
Measured on an AMD EPYC with a small 1-D U-Net in QDQ int8: cosine 0.99989 to fp32 with the QDQ
ops run as written, 0.98412 through the fused integer kernels. The edge devices edgepack
targets (ARM CPUs, x86 CPUs with VNNI: targets/*.yaml ``isa``) sum exactly, so on such a host
the validation computes the file's semantics instead: QDQ ops left unfused (graph
optimizations up to "basic" only), and the integer ops of dynamic int8 (MatMulInteger,
ConvInteger) rewritten to the float ops they equal (zero points subtracted in float, products
summed in float32: exact for the sums int8 layers make). Only numpy is imported at module
level: the onnx package is loaded when a file is rewritten, which never happens on a board.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import numpy as np

#: integer ops rewritten to float: the float op, and the inputs that carry zero points
INTEGER_OPS = {"MatMulInteger": "MatMul", "ConvInteger": "Conv"}
#: OpenVINO CPU plugin settings that compute an int8 IR's FakeQuantize ops as written: its
#: low-precision transformations (which hand them to the int8 kernels) off
OPENVINO_SETTINGS = {"LP_TRANSFORMS_MODE": "NO"}
#: /proc/cpuinfo flags of x86 CPUs whose int8 dot products sum in 32 bits
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.cache
def kernels_saturate() -> bool:
    """Whether ONNX Runtime's and OpenVINO's int8 kernels on this host add products in
    saturating 16-bit steps (``saturating``, on this host's machine type and CPU flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # not Linux: nothing read, so nothing claimed
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return saturating(platform.machine(), flags)


def as_written_for(arch: str, isa: list[str]) -> bool:
    """Whether int8 files built for a target (``arch`` and ``isa`` as targets/*.yaml give them)
    are computed as written on this host: this host's kernels saturate and the target's do
    not. A target whose kernels saturate too (an x86 CPU without VNNI, as ``x86-host`` is) is
    judged through this host's kernels: they are what it will run."""
    return kernels_saturate() and not saturating(arch, isa)


def saturating(machine: str, flags: list[str]) -> bool:
    """An x86 CPU without VNNI; ARM and other CPUs sum int8 products exactly."""
    return machine.lower() in ("x86_64", "amd64", "i686", "x86") and \
        not any(f in flags for f in VNNI_FLAGS)


def rewritten(path: Path) -> bytes | None:
    """``path`` with its MatMulInteger and ConvInteger nodes as the float ops they equal
    (serialized), or None when it has none."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    if not any(n.op_type in INTEGER_OPS for n in graph.node):
        return None
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type not in INTEGER_OPS:
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        weight_rank = len(inits[node.input[1]].dims) if node.input[1] in inits else 2
        floats = []
        for i, value in enumerate(node.input[:2]):
            cast = f"{name}/semantics/{i}"
            nodes.append(helper.make_node("Cast", [value], [cast], to=TensorProto.FLOAT))
            zero = node.input[i + 2] if len(node.input) > i + 2 else ""
            if zero:
                zero_float = f"{cast}/zero"
                nodes.append(helper.make_node("Cast", [zero], [zero_float],
                                              to=TensorProto.FLOAT))
                if i == 1 and node.op_type == "ConvInteger" and zero in inits \
                        and len(inits[zero].dims) == 1:
                    # a per-output-channel zero point lines up with the weight's first axis
                    shape = f"{cast}/zero_shape"
                    graph.initializer.append(numpy_helper.from_array(
                        np.array([-1] + [1] * (weight_rank - 1), np.int64), shape))
                    nodes.append(helper.make_node("Reshape", [zero_float, shape],
                                                  [f"{zero_float}/lined"]))
                    zero_float = f"{zero_float}/lined"
                nodes.append(helper.make_node("Sub", [cast, zero_float], [f"{cast}/centred"]))
                cast = f"{cast}/centred"
            floats.append(cast)
        product = f"{name}/semantics/product"
        op = helper.make_node(INTEGER_OPS[node.op_type], floats, [product], name=name)
        op.attribute.extend(node.attribute)
        nodes.append(op)
        nodes.append(helper.make_node("Cast", [product], list(node.output), to=TensorProto.INT32))
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()

