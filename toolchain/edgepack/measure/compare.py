"""``compare``: a Comparison from a build folder, or by measuring artifacts against their source.

From a build folder nothing runs: its report.json already holds every number. Given artifacts
and the source model, the source is run once on the evaluation inputs (or seeded random inputs
when there are none, said in the comparison's notes) and each artifact is run on the same
inputs, in this process, for fidelity and accuracy; then each is timed in its own process
(``measure_isolated``), batch 1, as ``build`` times its artifacts.

OpenVINO computes an f32 model in bf16 on CPUs with AVX512_BF16/AMX unless told otherwise.
Fidelity is therefore measured with the f32 hint (it describes the file), latency without it
(it describes what the device runs), and the precision OpenVINO chose is shown next to the
runtime.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path

from ..config.profiles import Precision
from ..data.dataset import Dataset, load_dataset
from ..data.random_inputs import random_inputs
from ..errors import DataError, OutputError, UsageError
from ..formats import detect
from ..formats.base import Format, ModelInfo
from ..progress import Progress
from ..report.comparison import Comparison, Entry, from_report
from ..report.load import load_report
from ..runtimes import RuntimeOptions, runtime_for_format
from ..signature import Signature
from ..validate import accuracy as acc
from ..validate.fidelity import compare_all
from ..validate.latency import measure_isolated
from ..validate.outputs import exact_options, feed_for
from .compare_layouts import from_shapes, outputs_as_source, recorded
from .host import real_valued

#: samples of seeded random inputs when no evaluation data is given
RANDOM_SAMPLES = 64
_PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def compare(paths: Sequence[str | Path], *, source: str | Path | None = None,
            evaluation: str | Path | None = None, threads: int | None = None, runs: int = 100,
            warmup: int = 10, seed: int = 0, progress: Progress | None = None) -> Comparison:
    """A build folder (one path, holding report.json) or artifacts compared with ``source``."""
    if not paths:
        raise UsageError("nothing to compare", hint="give a build folder, or artifacts and "
                                                    "--source MODEL")
    builds = [Path(p) for p in paths if (Path(p) / "report.json").is_file()]
    if builds:
        if len(paths) > 1:
            raise UsageError("compare one build folder at a time, or artifacts with --source",
                             path=builds[0])
        if source is not None or evaluation is not None:
            raise UsageError("a build folder is compared from its report.json; --source and "
                             "--eval apply to artifacts", path=builds[0])
        return from_report(load_report(builds[0]))
    if source is None:
        raise UsageError("which model are the artifacts compared with? pass --source MODEL",
                         hint="or give a build folder holding report.json")
    return compare_artifacts(paths, source, evaluation=evaluation, threads=threads, runs=runs,
                             warmup=warmup, seed=seed, progress=progress or Progress())


def compare_artifacts(paths: Sequence[str | Path], source: str | Path, *,
                      evaluation: str | Path | None, threads: int | None, runs: int, warmup: int,
                      seed: int, progress: Progress) -> Comparison:
    if runs < 1 or warmup < 0 or (threads is not None and threads < 1):
        raise UsageError("--runs and --threads must be at least 1, --warmup at least 0")
    src = Path(source)
    src_fmt = detect(src)
    # every artifact is read before anything runs: a bad path fails at once
    artifacts = [(Path(p), *_inspect(Path(p))) for p in paths]
    with progress.step(f"Loading the source model {src.name}"):
        src_session = runtime_for_format(src_fmt.name).load(str(src), RuntimeOptions())
    signature = real_valued(src_session.signature)
    notes = []
    if evaluation is not None:
        data = load_dataset(evaluation, signature)
        eval_meta = {"source": str(evaluation), "samples": len(data),
                     "labelled": data.labels is not None}
    else:
        data = Dataset("random", random_inputs(signature, src, RANDOM_SAMPLES, seed,
                                               data_flag="--eval"))
        eval_meta = {"source": f"random normal inputs (seed {seed})", "samples": len(data),
                     "labelled": False}
        notes.append(f"no evaluation data: fidelity is measured on {len(data)} random normal "
                     "inputs; pass --eval DATA")
    with progress.step(f"Running the source model on {len(data)} samples"):
        refs = list(src_session.run(data.inputs).values())
    del src_session  # not alive while artifacts are timed
    entries = []
    for path, fmt, info in artifacts:
        entries.append(_measure(path, fmt, info, (data, signature), refs, threads=threads,
                                runs=runs, warmup=warmup, progress=progress))
    return Comparison(title=f"{len(entries)} artifacts against {src.name}",
                      source={"name": src.stem, "path": str(src), "format": src_fmt.name},
                      eval=eval_meta, entries=entries,
                      source_accuracy=acc.measure(refs, data), notes=notes)


def _inspect(path: Path) -> tuple[Format, ModelInfo]:
    fmt = detect(path)  # ModelError: missing, unknown format
    return fmt, fmt.inspect(path)  # ModelError: corrupt


def _measure(path: Path, fmt: Format, info: ModelInfo, source: tuple[Dataset, Signature],
             refs: list, *, threads: int | None, runs: int, warmup: int,
             progress: Progress) -> Entry:
    """``path`` run on the source's samples (``source``: them and the source's signature), in
    its own input layouts, its outputs compared in the source's (compare_layouts.py)."""
    data, signature = source
    runtime = runtime_for_format(fmt.name)
    exact = exact_options(runtime.name, threads)
    layouts = recorded(path) or from_shapes(path, info.signature, signature, data.inputs)
    with progress.step(f"Running {path.name} on {len(data)} samples ({runtime.name})"):
        session = runtime.load(str(path), exact)
        try:
            outs = list(session.run(feed_for(session, data.inputs, signature,
                                             layouts.inputs)).values())
        except DataError as exc:
            raise DataError(f"does not take the source model's inputs: {exc}",
                            path=path) from None
        outs = outputs_as_source(outs, refs, signature, layouts)
        fidelity = compare_all(session.signature.output_names, refs, outs)
        feed = feed_for(session, data.head(1).inputs, signature, layouts.inputs)
        del session
    with progress.step(f"Timing {path.name} ({runtime.name}, own process)"):
        latency = measure_isolated(runtime.name, path, feed, RuntimeOptions(threads=threads),
                                   warmup=warmup, runs=runs)
    return Entry(file=str(path), format=fmt.name, precision=precision_of(path, info),
                 size_bytes=info.size_bytes, fidelity=fidelity, accuracy=acc.measure(outs, data),
                 latency=latency)


def precision_of(path: Path, info: ModelInfo) -> str:
    """The precision an artifact was built at: edgepack names files ``NAME.PRECISION.EXT``;
    otherwise int8 when its I/O is quantized, else "?" (it cannot be told from the outside)."""
    named = [t for t in path.name.lower().split(".")[1:-1] if t in _PRECISIONS]
    if named:
        return named[-1]
    if any(s.quantization for s in info.signature.inputs):
        return "int8"
    return "?"


def write_renderings(c: Comparison, markdown: str | Path | None = None,
                     html: str | Path | None = None) -> list[Path]:
    """Write the markdown and/or HTML renderings; the files written, in that order."""
    from ..report.html import comparison_html
    from ..report.markdown import comparison_markdown

    written = []
    for target, render in ((markdown, comparison_markdown), (html, comparison_html)):
        if target is None:
            continue
        path = Path(target)
        try:
            path.write_text(render(c), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror}", path=path) from None
        written.append(path)
    return written
