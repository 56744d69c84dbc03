"""Fold an ONNX graph's If nodes whose condition the build already knows, before converting it.

Exporters keep both branches of a Python ``if`` on a sample rate (``sr == 16000``) or on a
shape (``x.shape[-1] == 1``) as an ONNX If. OpenVINO and onnx2tf build every branch, and once
the build fixes the input shapes the branch not taken may no longer type-check (an LSTM fed a
tensor of the wrong rank), so ONNX Runtime cannot load the fixed-shape copy either. Here:

* a 0-d input that holds one value in every calibration and evaluation row and decides an If
  is frozen to that value (it leaves the graph's inputs: the files answer for that value only);
* an If whose condition is computed only from constants, frozen inputs and the static shapes
  ONNX's shape inference gives (with the build's fixed input shapes) is replaced by the branch
  it takes; repeated, so an If that becomes visible once its parent is inlined folds too;
* what only the folded conditions read is removed.

The result must pass ``onnx.checker`` and load in ONNX Runtime, or the source is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compress.qdq import drop_unread
from ..data.dataset import Dataset
from ..quiet import captured

#: operators whose value is not a function of their inputs: never evaluated at build time
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike", "Multinomial", "Bernoulli"})
#: a condition computed by more nodes than this is not evaluated at build time
MAX_CONE_NODES = 200
#: constants up to this many elements are folded to find shapes (pads, shape arithmetic)
SMALL_CONSTANT = 4096
#: rounds of inlining (an If inside a taken branch folds in the next round)
MAX_ROUNDS = 16


@dataclass
class Folded:
    """What folding did: inputs frozen (name -> value) and how many If nodes were inlined."""

    frozen: dict[str, Any] = field(default_factory=dict)
    inlined: int = 0

    def note(self) -> str:
        frozen = ", ".join(f"'{k}' = {v}" for k, v in self.frozen.items())
        return (f"{self.inlined} If node(s) folded to the branch they take"
                + (f"; input {frozen} frozen (its one value in the calibration and eval data;"
                   " the files answer for that value only and do not take that input)"
                   if frozen else "")
                + " (converters/onnx_control_flow.py)")


def fold_control_flow(src: Path, dst: Path, shapes: dict[str, tuple[int, ...]] | None,
                      data: list[Dataset]) -> Folded | None:
    """Write ``src`` with its decidable If nodes folded to ``dst`` (with ``shapes`` fixed);
    None, and nothing written, when no If could be folded or the result is not a valid model
    ONNX Runtime loads."""
    import onnx

    model = onnx.load(str(src))
    if not any(n.op_type == "If" for n in model.graph.node):
        return None
    if shapes:
        from ..formats.onnx import fix_input_shapes

        model = fix_input_shapes(model, shapes)
    folded = Folded()
    scalars = _constant_scalars(model.graph, data)
    for _ in range(MAX_ROUNDS):
        if not _fold_round(model, scalars, folded):
            break
    if not folded.inlined:
        return None
    drop_unread(model.graph, ops=None)
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inferred shapes are a convenience, not a requirement
        pass
    onnx.save(model, str(dst))
    if not _valid(dst):
        dst.unlink(missing_ok=True)
        return None
    return folded


def _constant_scalars(graph: Any, data: list[Dataset]) -> dict[str, np.ndarray]:
    """The graph's 0-d inputs that hold one value in every row of ``data``, as 0-d arrays of
    the input's type."""
    from onnx import helper

    found = {}
    for inp in graph.input:
        tensor = inp.type.tensor_type
        if not tensor.HasField("shape") or len(tensor.shape.dim) or not data:
            continue
        values = [d.inputs.get(inp.name) for d in data]
        if any(v is None or v.size == 0 for v in values):
            continue
        first = values[0].reshape(-1)[0]
        if all(np.all(v == first) for v in values):
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            found[inp.name] = np.array(first, dtype=dtype)
    return found


def _fold_round(model: Any, scalars: dict[str, np.ndarray], folded: Folded) -> int:
    """Inline every main-graph If whose condition can be computed now; how many were."""
    static = _static_shapes(model)
    count = 0
    for node in [n for n in model.graph.node if n.op_type == "If"]:
        cone = _cone(model.graph, node.input[0], static, scalars)
        if cone is None:
            continue
        nodes, needed = cone
        for name in needed & scalars.keys():
            _freeze(model.graph, name, scalars.pop(name), folded)
        taken = _evaluate(model, nodes, node.input[0], static)
        if taken is None or not _inline(model.graph, node, bool(taken)):
            continue
        count += 1
    folded.inlined += count
    return count


def _static_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every main-graph value whose shape ONNX's shape inference gives in numbers, on a copy
    whose small constant subgraphs (pads, shapes computed from constants) are folded first."""
    import onnx

    probe = _copy(model)
    _fold_small_constants(probe)
    try:
        graph = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph
    except Exception:  # noqa: BLE001 - without shapes, only constants decide
        graph = probe.graph
    shapes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _fold_small_constants(model: Any) -> None:
    """Replace the main-graph nodes computed from small constants only (at most
    ``SMALL_CONSTANT`` elements each) by initializers holding their values."""
    from onnx import numpy_helper

    graph = model.graph
    known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in list(graph.node):
        if not _evaluable(node) or not all(
                i in known and known[i].size <= SMALL_CONSTANT for i in node.input if i):
            continue
        values = _run(model, [node], list(node.output),
                      {i: known[i] for i in node.input if i})
        if values is None:
            continue
        graph.node.remove(node)
        for name, value in zip(node.output, values, strict=True):
            known[name] = value
            graph.initializer.append(numpy_helper.from_array(value, name))


def _evaluable(node: Any) -> bool:
    """Whether ``node`` can be computed at build time: a standard, deterministic operator
    without subgraphs."""
    return node.op_type not in RANDOM_OPS and node.domain in ("", "ai.onnx") \
        and not any(a.HasField("g") or len(a.graphs) for a in node.attribute)


def _cone(graph: Any, name: str, static: dict[str, tuple[int, ...]],
          scalars: dict[str, np.ndarray]) -> tuple[list[Any], set[str]] | None:
    """The nodes that compute ``name`` from constants, ``scalars`` and static shapes (in graph
    order), and the names they read from outside; None when it depends on anything else."""
    producer = {o: n for n in graph.node for o in n.output}
    consts = {i.name for i in graph.initializer} | scalars.keys()
    picked: dict[int, Any] = {}
    needed: set[str] = set()
    todo = [name]
    while todo:
        value = todo.pop()
        if not value or value in needed:
            continue
        needed.add(value)
        node = producer.get(value)
        if node is None:
            if value in consts:
                continue
            return None  # a graph input, or a name this graph does not define
        if id(node) in picked:
            continue
        if not _evaluable(node):
            return None
        picked[id(node)] = node
        if len(picked) > MAX_CONE_NODES:
            return None
        if node.op_type in ("Shape", "Size") and node.input[0] in static:
            continue  # computed from the static shape
        todo.extend(node.input)
    order = {id(n): i for i, n in enumerate(graph.node)}
    return sorted(picked.values(), key=lambda n: order[id(n)]), needed


def _evaluate(model: Any, nodes: list[Any], name: str,
              static: dict[str, tuple[int, ...]]) -> Any | None:
    """The value of ``name`` computed by ``nodes`` (onnx.reference), Shape and Size of static
    values taken from their shapes; None when the reference runtime cannot compute it."""
    from onnx import numpy_helper

    known: dict[str, np.ndarray] = {}
    rest = []
    for node in nodes:
        shape = static.get(node.input[0]) if node.op_type in ("Shape", "Size") else None
        if shape is None:
            rest.append(node)
        elif node.op_type == "Size":
            known[node.output[0]] = np.array(int(np.prod(shape)), dtype=np.int64)
        else:
            known[node.output[0]] = _shape_slice(node, shape)
    if name in known:
        return known[name].reshape(-1)[0]
    read = {i for n in rest for i in n.input}
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
              if i.name in read}
    values = _run(model, rest, [name], {**consts, **{k: v for k, v in known.items()
                                                      if k in read}})
    return None if values is None else values[0].reshape(-1)[0]


def _run(model: Any, nodes: list[Any], outputs: list[str],
         consts: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """``outputs`` computed by ``nodes`` from ``consts`` (onnx.reference, the model's
    opsets); None when the reference runtime cannot compute them."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(
        nodes, "constants", [], [helper.make_tensor_value_info(o, 0, None) for o in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    probe = helper.make_model(graph, opset_imports=list(model.opset_import),
                              ir_version=model.ir_version)
    try:
        with captured():
            return [np.asarray(v) for v in ReferenceEvaluator(probe).run(None, {})]
    except Exception:  # noqa: BLE001 - an operator the reference runtime lacks: not folded
        return None


def _shape_slice(node: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Shape's output for a static ``shape``, with its optional start/end attributes."""
    attrs = {a.name: a.i for a in node.attribute}
    return np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], dtype=np.int64)


def _freeze(graph: Any, name: str, value: np.ndarray, folded: Folded) -> None:
    """Turn graph input ``name`` into a constant holding ``value``."""
    from onnx import numpy_helper

    inp = next(i for i in graph.input if i.name == name)
    graph.input.remove(inp)
    graph.initializer.append(numpy_helper.from_array(value, name))
    folded.frozen[name] = value.item()


def _inline(graph: Any, node: Any, condition: bool) -> bool:
    """Replace the If ``node`` by the nodes of the branch ``condition`` takes; False (and
    nothing changed) when the branch's names clash with the graph's."""
    from onnx import helper

    branch = next(a.g for a in node.attribute
                  if a.name == ("then_branch" if condition else "else_branch"))
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer} \
        | {i.name for i in graph.input}
    made = [o for n in branch.node for o in n.output] + [i.name for i in branch.initializer]
    if taken & set(made):
        return False
    renames = {}
    tail = []
    for out, value in zip(branch.output, node.output, strict=True):
        if out.name in made and out.name not in renames and out.name not in taken:
            renames[out.name] = value
        else:
            tail.append(helper.make_node("Identity", [renames.get(out.name, out.name)], [value],
                                         name=f"{node.name}_{value}_identity"))
    body = [_copy(n) for n in branch.node]
    for n in body:
        _rename_in(n, renames)
    inits = [_copy(i) for i in branch.initializer]
    for init in inits:
        init.name = renames.get(init.name, init.name)
    at = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, n in enumerate([*body, *tail]):
        graph.node.insert(at + offset, n)
    graph.initializer.extend(inits)
    return True


def _copy(message: Any) -> Any:
    twin = type(message)()
    twin.CopyFrom(message)
    return twin


def _rename_in(node: Any, renames: dict[str, str]) -> None:
    """Rename values in ``node``'s inputs and outputs and in any subgraph it holds."""
    for i, name in enumerate(node.input):
        node.input[i] = renames.get(name, name)
    for i, name in enumerate(node.output):
        node.output[i] = renames.get(name, name)
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                _rename_in(inner, renames)
            for out in sub.output:
                out.name = renames.get(out.name, out.name)


def _valid(path: Path) -> bool:
    """Whether ``path`` passes onnx.checker and loads in ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        with captured():
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an invalid fold is dropped, the source used as is
        return False
    return True
