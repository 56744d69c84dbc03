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
from ..runtimes.base import RuntimeOptions, Session
from ..signature import Signature
from .accuracy import Accuracy
from .fidelity import OutputFidelity, compare_all

AccuracyFn = Callable[[list[np.ndarray], Dataset], Accuracy | None]


def exact_options(runtime: str, threads: int | None = None) -> RuntimeOptions:
    """Options under which a runtime computes what the file says (validation, not speed).

    OpenVINO computes f32 models in bf16 on CPUs that have it unless told otherwise. Without
    ``threads`` every core of this machine is used (LiteRT's own default is one thread).
    """
    hint = "f32" if runtime == "openvino" else None
    return RuntimeOptions(threads=threads or os.cpu_count() or 1, precision_hint=hint)


def feed_for(session: Session, inputs: dict[str, np.ndarray], source: Signature,
             layouts: list[str]) -> dict[str, np.ndarray]:
    """Source-ordered, source-layout inputs -> this session's names and layouts."""
    names = session.signature.input_names
    src_names = source.input_names
    by_name = set(names) == set(src_names)
    feed = {}
    for i, spec in enumerate(source.inputs):
        target = spec.name if by_name else names[i]
        feed[target] = layout.convert(inputs[spec.name], spec.layout, layouts[i])
    return feed


def outputs_in_source_order(session: Session, outputs: dict[str, np.ndarray],
                            source: Signature, layouts: list[str]) -> list[np.ndarray]:
    """This session's outputs, aligned with the source's (by name when they match) and moved
    back into the source's layout, so they can be compared element by element."""
    names = session.signature.output_names
    src = source.output_names
    ordered = [outputs[n] for n in src] if set(names) == set(src) else list(outputs.values())
    return [layout.convert(a, layouts[i], source.outputs[i].layout) if i < len(layouts) else a
            for i, a in enumerate(ordered)]


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
