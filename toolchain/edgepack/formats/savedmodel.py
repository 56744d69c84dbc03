"""TensorFlow SavedModel folders, read through their serving signature.

A SavedModel without a serving signature cannot be converted or served; that is reported as a
model error naming the signatures it does have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..quiet import captured, import_tensorflow
from ..signature import Signature, TensorSpec, guess_layout
from .base import Format, ModelInfo, file_size, histogram

SERVING_KEY = "serving_default"
# graph plumbing that says nothing about what the model computes
_PLUMBING = {"Placeholder", "Identity", "NoOp", "Const", "ReadVariableOp", "VarHandleOp",
             "StatefulPartitionedCall", "PartitionedCall", "_Arg", "_Retval"}


class SavedModelFormat(Format):
    name = "savedmodel"
    description = "TensorFlow SavedModel folder (saved_model.pb + variables/)"
    suffixes = ()
    runtime = "tensorflow"

    def matches(self, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def load(self, path: Path) -> Any:
        """(loaded object, serving ConcreteFunction)."""
        tf = import_tensorflow()
        try:
            with captured():
                loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelError(f"not a loadable SavedModel: {first_line(exc)}",
                             path=path) from exc
        signatures = dict(getattr(loaded, "signatures", {}) or {})
        if SERVING_KEY not in signatures:
            have = ", ".join(sorted(signatures)) or "none"
            raise ModelError(
                f"the SavedModel has no '{SERVING_KEY}' signature (it has: {have})", path=path,
                hint="save it with a serving signature, e.g. keras model.export(path) or "
                     "tf.saved_model.save(obj, path, signatures=fn)")
        return loaded, signatures[SERVING_KEY]

    def inspect(self, path: Path) -> ModelInfo:
        loaded, fn = self.load(path)
        variables = getattr(loaded, "variables", None) or fn.variables
        params = sum(int(v.shape.num_elements() or 0) for v in variables)
        return ModelInfo(path=str(path), format=self.name, signature=signature_of(fn),
                         parameters=params, size_bytes=file_size(path),
                         operators=histogram(_op_types(fn)),
                         details={"signature_key": SERVING_KEY})


def signature_of(fn: Any) -> Signature:
    """The serving function's inputs (in argument order) and outputs (sorted by name).

    TFLite orders signature tensors by name too, so sorted order keeps outputs aligned across
    the SavedModel and the TFLite file converted from it.
    """
    _, kwargs = fn.structured_input_signature
    inputs = tuple(_spec(name, spec) for name, spec in sorted(kwargs.items()))
    outputs = tuple(_spec(name, spec) for name, spec in sorted(fn.structured_outputs.items()))
    return Signature(inputs=inputs, outputs=outputs)


def _spec(name: str, spec: Any) -> TensorSpec:
    dims = spec.shape.as_list() if spec.shape.rank is not None else []
    shape = tuple("batch" if (d is None and i == 0) else ("?" if d is None else int(d))
                  for i, d in enumerate(dims))
    return TensorSpec(name=name, shape=shape, dtype=spec.dtype.name,
                      layout=guess_layout(shape, channels_first=False))


def _op_types(fn: Any) -> list[str]:
    graph_def = fn.graph.as_graph_def()
    nodes = list(graph_def.node)
    for func in graph_def.library.function:
        nodes.extend(func.node_def)
    return [n.op for n in nodes if n.op not in _PLUMBING]
