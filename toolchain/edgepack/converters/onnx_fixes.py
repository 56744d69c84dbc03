"""Graph fixes edgepack makes to a private copy of an ONNX model before onnx2tf reads it.

onnx2tf builds a TensorFlow op for every ONNX node, shape arithmetic included, and it fails on
graphs whose shapes or constants it has to work out itself: pads computed by a small subgraph
(torch's TF-style SAME padding), a scale computed from constants (BERT's 1/sqrt(d)), shapes
taken from a dynamic input. Two fixes, both semantics-preserving:

* fixed input shapes: the dynamic dimensions a build fixes (``--input-shape``, a static-shape
  target, or the check samples' shapes for the static-shapes variant of the edge) are written
  into the graph's inputs, so every shape below them becomes a constant;
* constant folding: ONNX Runtime's basic graph optimizations (constant folding, redundant node
  elimination, Conv+BatchNorm fusion: standard ONNX operators only) saved to a file;
* Erf (a transformer's exact GELU) written with TFLite builtins: onnx2tf makes it tf.math.erf,
  which TFLite has only as a Flex (select TF) op that LiteRT and GPU delegates cannot run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..quiet import captured

#: ONNX Runtime cannot save a folded model past protobuf's 2 GB: larger files go unfolded
FOLD_MAX_BYTES = 1_800_000_000


def prepare(src: Path, dst: Path, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Write ``src`` to ``dst`` with ``shapes`` fixed and its constants folded; say what was
    done (for the hop's notes). A model ONNX Runtime cannot fold is written unfolded."""
    import onnx

    model = onnx.load(str(src))
    fixed = fix_input_shapes(model, shapes)
    onnx.save(model, str(dst))
    notes = [f"input shapes fixed for onnx2tf: {', '.join(fixed)}"] if fixed else []
    before = len(model.graph.node)
    if dst.stat().st_size <= FOLD_MAX_BYTES:
        after = fold_constants(dst)
        if after is not None and after < before:
            notes.append(f"constants folded for onnx2tf (ONNX Runtime basic optimizations): "
                         f"{before} -> {after} nodes")
    folded = onnx.load(str(dst))
    fused = fuse_bias_adds(folded)
    erfs = replace_erf(folded)
    if fused or erfs:
        onnx.save(folded, str(dst))
    if fused:
        notes.append(f"{fused} bias Add(s) fused into their Conv/ConvTranspose for onnx2tf")
    if erfs:
        notes.append(f"{erfs} Erf(s) written with TFLite builtins for onnx2tf "
                     "(Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7)")
    return notes


#: Abramowitz and Stegun 7.1.26: erf(x) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-x^2) for
#: x >= 0, t = 1 / (1 + P x); odd in x. Its error (1.5e-7) is below float32 rounding of erf.
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def replace_erf(model: Any) -> int:
    """Replace every float32 Erf node of the main graph by ``ERF_A``'s formula in Abs, Mul,
    Add, Div, Exp, Neg, Sub and Sign (TFLite builtins); the number replaced."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    erfs = [n for n in graph.node if n.op_type == "Erf" and not n.domain]
    if not erfs:
        return 0
    types = _elem_types(model)
    erfs = [n for n in erfs if types.get(n.input[0], TensorProto.FLOAT) == TensorProto.FLOAT]
    if not erfs:
        return 0
    consts = {"p": ERF_P, "one": 1.0, **{f"a{i + 1}": a for i, a in enumerate(ERF_A)}}
    names = {k: f"edgepack_erf_{k}" for k in consts}
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), names[k])
                             for k, v in consts.items())
    for index, erf in enumerate(erfs):
        at = list(graph.node).index(erf)
        graph.node.remove(erf)
        for offset, step in enumerate(_erf_nodes(erf, f"edgepack_erf{index}", names)):
            graph.node.insert(at + offset, step)
    return len(erfs)


def _erf_nodes(erf: Any, tag: str, names: dict[str, str]) -> list[Any]:
    """The nodes computing ``erf``'s output from its input by ``ERF_A``'s formula; their
    values are named ``tag``_..., the last node keeps the Erf's name."""
    from onnx import helper

    x = erf.input[0]

    def node(op: str, inputs: list[str], out: str) -> Any:
        return helper.make_node(op, inputs, [f"{tag}_{out}"], name=f"{tag}_{out}")

    steps = [node("Abs", [x], "ax"), node("Mul", [f"{tag}_ax", names["p"]], "px"),
             node("Add", [f"{tag}_px", names["one"]], "den"),
             node("Div", [names["one"], f"{tag}_den"], "t")]
    poly = names["a5"]
    for k in (4, 3, 2, 1):  # Horner: a_k + t * (...)
        steps += [node("Mul", [poly, f"{tag}_t"], f"m{k}"),
                  node("Add", [f"{tag}_m{k}", names[f"a{k}"]], f"h{k}")]
        poly = f"{tag}_h{k}"
    steps += [node("Mul", [poly, f"{tag}_t"], "poly"),
              node("Mul", [f"{tag}_ax", f"{tag}_ax"], "x2"), node("Neg", [f"{tag}_x2"], "nx2"),
              node("Exp", [f"{tag}_nx2"], "e"), node("Mul", [f"{tag}_poly", f"{tag}_e"], "tail"),
              node("Sub", [names["one"], f"{tag}_tail"], "pos"), node("Sign", [x], "sign"),
              helper.make_node("Mul", [f"{tag}_pos", f"{tag}_sign"], [erf.output[0]],
                               name=erf.name or f"{tag}_erf")]
    return steps


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every value ONNX's shape inference can type (empty where it fails)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - unknown types are taken as float32
        return {}
    graph = inferred.graph
    return {v.name: v.type.tensor_type.elem_type
            for v in [*graph.input, *graph.value_info, *graph.output]}


def fuse_bias_adds(model: Any) -> int:
    """Fold ``Add(Conv(x), c)`` with a per-channel constant ``c`` (shape [1, C, 1, ...]) into
    the convolution's bias; the number fused. Exporters that emit the bias as its own Add
    (paddle2onnx) leave onnx2tf guessing the layout of that Add, and on a square feature map
    it guesses channels-first: the BatchNormalization after it then normalises the width."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    users: dict[str, list[Any]] = {}
    for node, name in _uses(graph):
        users.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    fused = 0
    for conv in list(graph.node):
        if conv.op_type not in ("Conv", "ConvTranspose") or conv.output[0] in outputs:
            continue
        after = users.get(conv.output[0], [])
        weight = consts.get(conv.input[1]) if len(conv.input) > 1 else None
        if len(after) != 1 or after[0].op_type != "Add" or weight is None:
            continue
        add = after[0]
        other = next((n for n in add.input if n != conv.output[0]), None)
        channels = _out_channels(conv, numpy_helper.to_array(weight).shape)
        bias = _per_channel(consts.get(other), channels, len(weight.dims))
        if bias is None:
            continue
        old = consts.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        total = bias + (numpy_helper.to_array(old) if old is not None else 0)
        name = f"{conv.output[0]}_fused_bias"
        graph.initializer.append(numpy_helper.from_array(total.astype(bias.dtype), name))
        del conv.input[2:]
        conv.input.extend([name])
        conv.output[0] = add.output[0]
        graph.node.remove(add)
        fused += 1
    if fused:
        used = {name for _, name in _uses(graph)} | outputs
        for tensor in [t for t in graph.initializer if t.name not in used]:
            graph.initializer.remove(tensor)
    return fused


def _uses(graph: Any) -> Iterator[tuple[Any, str]]:
    """(node, input name) for every input of every node, subgraphs (If, Loop) included: a
    subgraph reads the outer graph's tensors by name. A subgraph's uses are its node's."""
    for node in graph.node:
        for name in node.input:
            yield node, name
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for _, name in _uses(sub):
                    yield node, name


def _out_channels(conv: Any, weight_shape: tuple[int, ...]) -> int:
    if conv.op_type == "Conv":
        return weight_shape[0]
    group = next((a.i for a in conv.attribute if a.name == "group"), 1) or 1
    return weight_shape[1] * group


def _per_channel(tensor: Any, channels: int, rank: int) -> Any:
    """``tensor`` as a [C] bias when it is a constant of shape [1, C, 1, ...] (or [C, 1, ...])
    that adds one value per output channel; None otherwise."""
    if tensor is None:
        return None
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor)
    shape = tuple(value.shape)
    if shape not in ((1, channels, *[1] * (rank - 2)), (channels, *[1] * (rank - 2))):
        return None
    return value.reshape(channels)


def fix_input_shapes(model: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Set the dimensions of the graph inputs named in ``shapes``; return "name:AxBxC" for
    each input changed. Output dimensions that were names become unknown (inferred again)."""
    changed = []
    for inp in model.graph.input:
        shape = shapes.get(inp.name)
        dims = inp.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        if all(d.HasField("dim_value") and d.dim_value == s for d, s in zip(dims, shape,
                                                                              strict=True)):
            continue
        for d, s in zip(dims, shape, strict=True):
            d.Clear()
            d.dim_value = int(s)
        changed.append(f"{inp.name}:{'x'.join(map(str, shape))}")
    if changed:
        del model.graph.value_info[:]  # shapes inferred from the old inputs
        for out in model.graph.output:
            for d in out.type.tensor_type.shape.dim:
                if d.HasField("dim_param"):
                    d.Clear()
    return changed


def static_shapes(model_inputs: Any, samples: Dataset | None) -> dict[str, tuple[int, ...]]:
    """Every input with a dynamic dimension, fixed to one sample's shape: declared dimensions
    kept, the dynamic ones taken from ``samples`` (one sample, so a dynamic batch becomes 1)."""
    if samples is None:
        return {}
    shapes = {}
    for inp in model_inputs:
        dims = inp.type.tensor_type.shape.dim
        data = samples.inputs.get(inp.name)
        if data is None or data.ndim != len(dims) or all(d.HasField("dim_value") for d in dims):
            continue
        one = (1, *data.shape[1:])
        if any(d.HasField("dim_value") and d.dim_value != one[i] for i, d in enumerate(dims)):
            continue  # the samples are not laid out as the input (a batch not on axis 0)
        shapes[inp.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else one[i]
                                 for i, d in enumerate(dims))
    return shapes


def fold_constants(path: Path) -> int | None:
    """Replace ``path`` by ONNX Runtime's basic-optimized graph; its node count, or None when
    ONNX Runtime cannot load the model (a custom operator): the file is left as it was."""
    import onnx
    import onnxruntime as ort

    folded = path.with_name(path.stem + ".folded.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    try:
        with captured():
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - folding is an improvement, never a requirement
        folded.unlink(missing_ok=True)
        return None
    folded.replace(path)
    return len(onnx.load(str(path), load_external_data=False).graph.node)
