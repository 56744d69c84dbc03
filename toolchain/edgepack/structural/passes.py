"""``run_passes``: prune -> low-rank -> distill on the source, in the source's own framework.

Each framework's chain lives in its subpackage and saves and measures every stage: Keras sources
are rebuilt and fine-tuned in Keras, PyTorch ExportedPrograms edited and fine-tuned in PyTorch,
SavedModels fine-tuned in TensorFlow on their restored variables, ONNX sources pruned and
factorized post-training on their weights. TFLite and TorchScript are refused with a hint:
neither is trainable here nor editable weight by weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config.structural import Structural
from ..data.dataset import Dataset
from ..errors import UsageError
from .stages import Evaluation, StageReport

if TYPE_CHECKING:
    from ..progress import Progress


def run_passes(source: Path, fmt: str, settings: Structural, ev: Evaluation,
               workdir: Path, progress: Progress, train: Dataset | None = None,
               student: Path | None = None) -> tuple[Path, list[StageReport]]:
    """The new source file and one report per stage, the original first.

    ``train`` is what distillation learns from (never the eval data that measures the result);
    ``student`` is a user-supplied model (of the source's framework) to distil into.
    """
    if fmt == "keras":
        from .keras.passes import run_keras

        return run_keras(source, settings, ev, workdir, progress, train, student)
    if fmt == "onnx":
        from .onnx.passes import run_onnx

        return run_onnx(source, settings, ev, workdir, progress)
    if fmt == "torch":
        from .torch.passes import run_torch

        return run_torch(source, settings, ev, workdir, progress, train, student)
    if fmt == "savedmodel":
        from .savedmodel.passes import run_savedmodel

        return run_savedmodel(source, settings, ev, workdir, progress, train, student)
    hint = ("export the module with torch.export.save (.pt2)" if fmt == "torchscript" else
            "give the Keras, SavedModel, PyTorch (.pt2) or ONNX model instead")
    raise UsageError(f"structural passes do not support {fmt} sources", hint=hint)
