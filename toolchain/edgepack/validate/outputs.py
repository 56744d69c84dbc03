"""Running an artifact the way validation does, and how closely its outputs follow the source.

A converted file may take its inputs in another layout (onnx2tf's NHWC), under other names and
in another order than the source model: inputs are fed in the file's terms and its outputs are
read back in the source's, so every comparison is element by element. The runtime computes at
the file's own precision (``exact_options``), not the fastest one it might pick.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..data import layout
from ..data.dataset import Dataset
from ..errors import DataError
from ..runtimes.base import RuntimeOptions, Session
from ..runtimes.integer_semantics import kernels_saturate
from ..signature import Signature, TensorSpec, batch_axis
from .accuracy import Accuracy
from .fidelity import OutputFidelity, compare_all

AccuracyFn = Callable[[list[np.ndarray], Dataset], Accuracy | None]


def exact_options(runtime: str, threads: int | None = None,
                  as_written: bool | None = None) -> RuntimeOptions:
    """Options under which a runtime computes what the file says (validation, not speed).

    OpenVINO computes f32 models in bf16 on CPUs that have it unless told otherwise. ONNX
    Runtime's and OpenVINO's int8 kernels on an x86 CPU without VNNI add products in
    saturating 16-bit steps, which no device edgepack targets does (ARM, x86 with VNNI): there
    the file's int8 ops are computed as they read (runtimes/integer_semantics.py), unless a
    build for a target whose kernels saturate too says otherwise (``as_written``). Without
    ``threads`` every core of this machine is used (LiteRT's own default is one thread).
    """
    hint = "f32" if runtime == "openvino" else None
    written = kernels_saturate() if as_written is None else as_written
    extra = {"integer_semantics": True} \
        if runtime in ("onnxruntime", "openvino") and written else {}
    return RuntimeOptions(threads=threads or os.cpu_count() or 1, precision_hint=hint,
                          extra=extra)


def feed_for(session: Session, inputs: dict[str, np.ndarray], source: Signature,
             layouts: list[str]) -> dict[str, np.ndarray]:
    """Source-ordered, source-layout inputs -> this session's names and layouts.

    A file that takes only some of the source's inputs by name was made with the others
    frozen (converters/onnx_control_flow.py): it is fed the rest, and DataError says so when
    the samples hold more than one value of an input it lacks."""
    names = session.signature.input_names
    src_names = source.input_names
    by_name = set(names) <= set(src_names)
    feed = {}
    for i, spec in enumerate(source.inputs):
        if by_name and spec.name not in names:
            if np.unique(inputs[spec.name]).size > 1:
                raise DataError(f"the file takes no input '{spec.name}', which the source "
                                f"takes and the samples vary; it was made with that input "
                                f"frozen to one value", hint="compare it on samples that hold "
                                "the value it was built with")
            continue
        target = spec.name if by_name else names[i]
        feed[target] = layout.convert(inputs[spec.name], spec.layout, layouts[i])
    return feed


def outputs_in_source_order(session: Session, outputs: dict[str, np.ndarray],
                            source: Signature, layouts: list[str]) -> list[np.ndarray]:
    """This session's outputs, aligned with the source's (by name when they match) and moved
    back into the source's layout, so they can be compared element by element."""
    names = session.signature.output_names
    src = source.output_names
    by_name = set(names) == set(src)
    ordered = [outputs[n] for n in src] if by_name else list(outputs.values())
    made = {s.name: s for s in session.signature.outputs}
    specs = [made[n] for n in src] if by_name else list(session.signature.outputs)
    moved = [layout.convert(a, layouts[i], source.outputs[i].layout) if i < len(layouts) else a
             for i, a in enumerate(ordered)]
    return [_samples_axis(a, specs[i] if i < len(specs) else None, source.outputs[i])
            if i < len(source.outputs) else a for i, a in enumerate(moved)]


def outputs_in_file_order(session: Session, outputs: list[np.ndarray], source: Signature,
                          layouts: list[str]) -> list[np.ndarray | None]:
    """The source's outputs (its order and layouts) as this session gives its own, None where
    the file has an output the source lacks: ``outputs_in_source_order`` the other way, to
    compare them with the file's outputs as a board returns them."""
    names = session.signature.output_names
    src = source.output_names
    index = [src.index(n) for n in names] if set(names) == set(src) else range(len(names))
    return [None if i >= len(outputs) else outputs[i] if i >= len(layouts)
            else layout.convert(outputs[i], source.outputs[i].layout, layouts[i])
            for i in index]


def _samples_axis(a: np.ndarray, made: TensorSpec | None, spec: TensorSpec) -> np.ndarray:
    """``a`` with its samples moved to the source's batch axis when the file declares the
    output with every dimension fixed and its batch of one on another axis (onnx2tf returns
    an RNN state the source gives as ``[2, N, 128]`` as ``[1, 2, 128]``); as it is otherwise."""
    if made is None or not made.shape or made.rank != a.ndim or spec.rank != a.ndim \
            or not all(isinstance(d, int) for d in made.shape):
        return a
    got, want = batch_axis(made.shape), batch_axis(spec.shape)
    if got is None or want is None or got == want:
        return a
    back = np.moveaxis(a, got, want)
    fits = all(i == want or not isinstance(d, int) or d == n
               for i, (d, n) in enumerate(zip(spec.shape, back.shape, strict=True)))
    return back if fits else a


def measure_fidelity(session: Session, evals: Dataset, refs: list[np.ndarray],
                     source: Signature, layouts: tuple[list[str], list[str]],
                     accuracy: AccuracyFn) -> tuple[list[OutputFidelity], Accuracy | None]:
    """Run ``session`` on the eval inputs (in its input layouts, ``layouts[0]``) and compare
    its outputs (``layouts[1]``) with the source's ``refs``; its accuracy on the eval labels."""
    outs = outputs_in_source_order(
        session, session.run(feed_for(session, evals.inputs, source, layouts[0])), source,
        layouts[1])
    fidelity = compare_all(source.output_names, refs, outs, source.output_roles)
    return fidelity, accuracy(outs, evals)
