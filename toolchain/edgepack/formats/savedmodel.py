"""TensorFlow SavedModel folders, read through their serving signature.

A SavedModel without a serving signature cannot be converted or served; that is reported as a
model error naming the signatures it does have.

A SavedModel is a graph of operations, and operations can write files, read them or call
Python when the model loads or runs. ``inspect`` therefore reads ``saved_model.pb`` as a
protocol buffer and never loads it; ``load`` loads an untrusted SavedModel only when
``savedmodel_check`` finds nothing but computation in every function it could run, and says so
(``checked_note``); otherwise it needs ``--trust-model-code`` (see trust.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..quiet import captured, import_tensorflow
from ..signature import Signature, TensorSpec, guess_layout
from ..trust import model_code_trusted, refused
from . import savedmodel_check
from .base import Format, ModelInfo, code_check, file_size

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

    def checked_note(self, path: Path) -> str | None:
        """What an untrusted load relied on (None when the user trusts model code); raises
        the exit-5 refusal when the graph could do more than compute."""
        if model_code_trusted():
            return None
        meta = savedmodel_check.read_meta_graph(path)
        reason = savedmodel_check.unsafe_reason(meta)
        if reason:
            raise refused(path, f"in this SavedModel, {reason}, which would run when the "
                                "model loads or computes")
        return ("SavedModel checked without running it: no file, network or Python operations "
                "in any function it can run; loaded without --trust-model-code")

    def load(self, path: Path) -> Any:
        """(loaded object, serving ConcreteFunction)."""
        self.checked_note(path)
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

    def serving_input_names(self, path: Path) -> tuple[str, ...]:
        """The serving signature's input names, read from saved_model.pb (nothing runs)."""
        serving = savedmodel_check.read_meta_graph(path).signature_def.get(SERVING_KEY)
        return tuple(sorted(serving.inputs)) if serving is not None else ()

    def inspect(self, path: Path) -> ModelInfo:
        """Read from saved_model.pb without loading the model (nothing in it runs)."""
        meta = savedmodel_check.read_meta_graph(path)
        if SERVING_KEY not in meta.signature_def:
            have = ", ".join(sorted(k for k in meta.signature_def if not k.startswith("__")))
            raise ModelError(
                f"the SavedModel has no '{SERVING_KEY}' signature (it has: {have or 'none'})",
                path=path, hint="save it with a serving signature, e.g. keras "
                                "model.export(path) or tf.saved_model.save(obj, path, "
                                "signatures=fn)")
        serving = meta.signature_def[SERVING_KEY]
        signature = Signature(
            inputs=tuple(_proto_spec(k, serving.inputs[k]) for k in sorted(serving.inputs)),
            outputs=tuple(_proto_spec(k, serving.outputs[k]) for k in sorted(serving.outputs)))
        params = _parameters(meta.object_graph_def)
        ops = {op: c for op, c in savedmodel_check.serving_ops(meta, SERVING_KEY).items()
               if op not in _PLUMBING}
        reason = savedmodel_check.unsafe_reason(meta)
        return ModelInfo(path=str(path), format=self.name, signature=signature,
                         parameters=params, size_bytes=file_size(path), operators=ops,
                         details={"signature_key": SERVING_KEY,
                                  "code_check": code_check(reason)})


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


def _proto_spec(name: str, info: Any) -> TensorSpec:
    """A TensorSpec from a signature's TensorInfo (as ``_spec`` reads a loaded TensorSpec)."""
    import tensorflow as tf

    shape = info.tensor_shape
    dims = [] if shape.unknown_rank else [None if d.size < 0 else d.size for d in shape.dim]
    spec = tf.TensorSpec(dims if not shape.unknown_rank else None, tf.dtypes.as_dtype(info.dtype))
    return _spec(name, spec)


def _parameters(graph: Any) -> int:
    """Elements of the model's variables: those its root lists as ``variables`` (what
    ``loaded.variables`` gives; Keras exports hold copies elsewhere), else every variable."""
    nodes = graph.nodes
    ids = range(len(nodes))
    for child in nodes[0].children if nodes else ():
        if child.local_name == "variables":
            ids = [c.node_id for c in nodes[child.node_id].children]
    return sum(_elements(nodes[i].variable.shape) for i in ids
               if i < len(nodes) and nodes[i].WhichOneof("kind") == "variable")


def _elements(shape: Any) -> int:
    if shape.unknown_rank or any(d.size < 0 for d in shape.dim):
        return 0
    count = 1
    for d in shape.dim:
        count *= d.size
    return count
