"""Read a TF2 SavedModel without loading it, and tell whether loading and running it can do
more than compute.

``saved_model.pb`` is a protocol buffer: parsing it runs nothing. What loading runs is its
graph: every function the object graph names (methods, signatures, resource initialisers,
custom savers' restore functions) and every top-level node but the saver's, with everything
they call (function attributes, function-named ops, gradients). ``unsafe_reason`` walks all of
it and refuses operations that are unknown to this TensorFlow (custom ops), that touch files,
networks or Python, or that are stateful without being in the allowed list (``safe_ops.json``).
The saver's own functions may hold checkpoint reads and writes, and only those.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelError

PB = "saved_model.pb"
#: a saved_model.pb larger than this is not parsed (protobuf's own limit is 2 GiB)
MAX_PB_BYTES = 2 << 30


@dataclass(frozen=True)
class _Policy:
    stateful_allowed: frozenset[str]
    denied: frozenset[str]
    denied_pattern: re.Pattern[str]
    checkpoint_ops: frozenset[str]


@cache
def _policy() -> _Policy:
    text = (resources.files("edgepack.formats") / "safe_ops.json").read_text("utf-8")
    data = json.loads(text)["savedmodel"]
    return _Policy(frozenset(data["stateful_allowed"]), frozenset(data["denied"]),
                   re.compile("|".join(data["denied_patterns"])),
                   frozenset(data["checkpoint_ops"]))


def read_meta_graph(path: Path) -> Any:
    """The serving MetaGraphDef of the SavedModel folder ``path``, parsed, never executed."""
    from ..quiet import import_tensorflow

    import_tensorflow()
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / PB
    try:
        if pb.stat().st_size > MAX_PB_BYTES:
            raise ModelError(f"{PB} is larger than {MAX_PB_BYTES >> 30} GiB", path=path)
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(pb.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot read {PB}: {exc.strerror}", path=path) from exc
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"not a SavedModel: {PB} does not parse ({exc})", path=path,
                         hint="the file may be truncated or corrupt") from exc
    if len(proto.meta_graphs) != 1:
        raise ModelError(f"{PB} holds {len(proto.meta_graphs)} meta graphs; edgepack reads "
                         "SavedModels with exactly one", path=path)
    return proto.meta_graphs[0]


def unsafe_reason(meta: Any) -> str | None:
    """None when loading the SavedModel and running any of its functions only computes; else
    one line naming the first operation that could do more, and where it is."""
    if not meta.object_graph_def.nodes:
        return ("a TF1 SavedModel (no object graph): its own restore and init ops run when it "
                "loads, and edgepack checks only TF2 SavedModels")
    functions = {f.signature.name: f for f in meta.graph_def.library.function}
    gradients = {g.function_name: g.gradient_func for g in meta.graph_def.library.gradient}
    saver = {meta.saver_def.save_tensor_name.split(":")[0],
             meta.saver_def.restore_op_name.split(":")[0]} - {""}
    main_nodes = [n for n in meta.graph_def.node if n.name not in saver]
    roots = set(meta.object_graph_def.concrete_functions)
    main = _reachable(_called(main_nodes, functions) | roots, functions, gradients)
    saver_only = _reachable(_called([n for n in meta.graph_def.node if n.name in saver],
                                    functions), functions, gradients) - main
    checkpoint = _policy().checkpoint_ops
    parts = [("the graph", main_nodes, frozenset[str]())]
    parts += [(f"function {n}", functions[n].node_def, frozenset()) for n in sorted(main)]
    parts += [(f"saver function {n}", functions[n].node_def, checkpoint)
              for n in sorted(saver_only)]
    for where, nodes, allowed in parts:
        for node in nodes:
            why = _op_problem(node.op, functions, allowed)
            if why:
                return f"{where} holds operation {node.op!r} ({why})"
    return None


def serving_ops(meta: Any, key: str) -> Counter[str]:
    """Operation types the serving signature ``key`` runs (function calls followed)."""
    functions = {f.signature.name: f for f in meta.graph_def.library.function}
    outputs = {t.name.split(":")[0] for t in meta.signature_def[key].outputs.values()}
    nodes = [n for n in meta.graph_def.node if n.name in outputs]
    reach = _reachable(_called(nodes, functions), functions, {})
    ops: Counter[str] = Counter()
    for name in reach:
        ops.update(n.op for n in functions[name].node_def if n.op not in functions)
    return ops


def _op_problem(op: str, functions: dict[str, Any], extra: frozenset[str]) -> str | None:
    from tensorflow.python.framework import op_def_registry

    if op in functions or op in extra:
        return None
    policy = _policy()
    if op in policy.denied or policy.denied_pattern.search(op):
        return "it can touch files, the network or Python"
    definition = op_def_registry.get(op)
    if definition is None:
        return "a custom operation this TensorFlow does not know"
    if definition.is_stateful and op not in policy.stateful_allowed:
        return "a stateful operation edgepack does not know to be harmless"
    return None


def _called(nodes: Iterable[Any], functions: dict[str, Any]) -> set[str]:
    """The functions ``nodes`` call: by op name or through any function-valued attribute."""
    names: set[str] = set()
    for node in nodes:
        if node.op in functions:
            names.add(node.op)
        for value in node.attr.values():
            names.update(_attr_functions(value))
    return names


def _attr_functions(value: Any) -> Iterator[str]:
    if value.HasField("func"):
        yield value.func.name
        for inner in value.func.attr.values():
            yield from _attr_functions(inner)
    if value.HasField("list"):
        for func in value.list.func:
            yield func.name
            for inner in func.attr.values():
                yield from _attr_functions(inner)


def _reachable(start: set[str], functions: dict[str, Any],
               gradients: dict[str, str]) -> set[str]:
    """``start`` and every function they call, transitively, with their gradients (a name
    missing from the library is left out: TensorFlow refuses to load such a graph)."""
    seen: set[str] = set()
    todo = [n for n in start if n in functions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        more = _called(functions[name].node_def, functions)
        if name in gradients:
            more.add(gradients[name])
        todo.extend(n for n in more if n in functions and n not in seen)
    return seen
