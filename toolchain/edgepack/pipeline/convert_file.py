"""``edgepack convert``: one model to one format at fp32, for users who want a single file.

The same planner, hop checks and metadata as a build, without a target, compression or report
folder: the result is the file (plus OpenVINO's .bin, or a TFLite metadata sidecar), each file
written atomically next to where the user asked for it, the model file last (and a replaced
model file removed first), so a model never stands beside another model's weights.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..converters.converter import Converter
from ..converters.hop import Hop
from ..data.dataset import Dataset, load_dataset
from ..data.random_inputs import random_inputs
from ..errors import ConversionError, OutputError, UsageError
from ..formats import detect, metadata
from ..progress import Progress
from ..staging import out_of_space
from .source import open_source

SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
#: samples of seeded random inputs the hops are checked on when no data is given
RANDOM_SAMPLES = 64


@dataclass
class ConvertResult:
    path: Path
    format: str
    hops: list[Hop]
    files: list[Path] = field(default_factory=list)  # every file written, the model first

    @property
    def conversion_path(self) -> str:
        return " -> ".join([self.hops[0].src, *(h.dst for h in self.hops)]) if self.hops else ""


def convert(model: str | Path, to: str, output: str | Path | None = None, *,
            evaluation: str | Path | None = None,
            input_shapes: dict[str, tuple[int, ...]] | None = None, force: bool = False,
            progress: Progress | None = None) -> ConvertResult:
    """Convert ``model`` to ``to`` ("tflite", "onnx" or "openvino"), each hop checked."""
    if to not in SUFFIX:
        raise UsageError(f"cannot convert to '{to}'", hint=f"choose one of {', '.join(SUFFIX)}")
    progress = progress or Progress()
    src = Path(model)
    fmt = detect(src)
    out = Path(output) if output else Path(f"{src.stem if src.is_file() else src.name}{SUFFIX[to]}")
    if out.suffix.lower() != SUFFIX[to]:
        raise UsageError(f"output {out} must end in {SUFFIX[to]} for {to}")
    if out.exists() and not force:
        raise OutputError("exists", path=out, hint="pass --force to replace it")
    with progress.step(f"Loading {fmt.name} model"):
        source = open_source(src, input_shapes)
    samples = load_dataset(evaluation, source.signature) if evaluation else Dataset(
        "random", random_inputs(source.signature, src, RANDOM_SAMPLES, 0, "--eval"))
    refs = list(source.session.run(samples.inputs).values())
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror}", path=parent) from exc
    try:
        with tempfile.TemporaryDirectory(prefix="edgepack-work-") as work:
            converter = Converter(src, fmt.name, source.signature, samples, refs, Path(work),
                                  progress.step, input_shapes)
            produced = converter.produce(to, "fp32", staging, out.stem)
            meta = {"name": out.stem, "version": "0.0.0", "producer": "edgepack",
                    "edgepack_version": __version__,
                    "inputs": [dict(s.to_dict(), layout=lay) for s, lay in
                               zip(source.signature.inputs, produced.input_layouts, strict=True)],
                    "output_layouts": produced.output_layouts, "labels": None}
            extra = metadata.embed(to, produced.path, meta)
            # the old model goes first and the new one last: a crash between the renames
            # leaves no model file, never a model beside another model's .bin or sidecar
            out.unlink(missing_ok=True)
            sidecars = [_place(f, out) for f in extra]
            files = [_place(produced.path, out), *sidecars]
    except (OSError, ConversionError) as exc:
        # a full disk: converters fail to write (OpenVINO: "iostream error"); say so, exit 7
        if isinstance(exc, ConversionError) and not out_of_space(parent):
            raise
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT,
                                                          errno.EFBIG, errno.EROFS):
            raise
        why = exc.strerror if isinstance(exc, OSError) else "No space left on device"
        raise OutputError(f"cannot write the converted model: {why}", path=parent,
                          hint="free space there or choose another -o") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConvertResult(files[0], to, produced.hops, files)


def _place(produced: Path, out: Path) -> Path:
    """Move one produced file to its final name: the model, its .bin, or its sidecar."""
    if produced.suffix == ".bin":
        dest = out.with_suffix(".bin")
    elif produced.suffix == ".json":
        dest = metadata.sidecar_path(out)
    else:
        dest = out
    produced.replace(dest)
    return dest
