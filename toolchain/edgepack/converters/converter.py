"""Running planned conversion paths: shared hops once, every hop checked, failures routed around.

A build converts one source to several (format, precision) artifacts whose paths share hops
(Keras -> SavedModel feeds TFLite, ONNX and OpenVINO alike): each intermediate file is made once
and cached by the hops that led to it. After every hop the new file runs in its own runtime on
the same samples as the source, with inputs moved into its layout; an fp32 hop that changes the
outputs beyond float rounding fails there, naming the hop and the numbers, before anything is
built on top of it. A hop that fails is excluded and the planner asked for the next path.

Across builds, a hop whose input, settings and tools did not change is taken from the step cache
(converters/hop_cache.py): its file is copied into place and its recorded check stands, marked
``cached``.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.keys import model_digest
from ..cache.records import BuildSteps
from ..compress.context import ConvertContext
from ..config.profiles import Precision, Quantization
from ..data import layout
from ..data.dataset import Dataset
from ..errors import (
    ConversionError,
    DataError,
    EdgepackError,
    MissingDependencyError,
    ModelError,
    ResourceLimitError,
)
from ..formats import get_format
from ..runtimes import child_probe, get_runtime
from ..signature import BATCH_NAMES, Signature
from ..validate.attempts import FallbackAttempt
from ..validate.fidelity import compare, head_rows
from ..validate.outputs import exact_options, feed_for, outputs_in_source_order
from ..validate.rounding import beyond_rounding
from . import Edge, edge_id, edges_toward, plan_path
from .hop import Hop
from .hop_cache import CachedHop, fetch_hop, hop_key, store_hop
from .prepared import preparation_key, prepare_source
from .root_cause import root_cause
from .source_fixes import fixed_source

#: samples of the eval set each hop is checked on
HOP_CHECK_SAMPLES = 32
#: how many failing edges a build routes around before giving up on a format
MAX_REPLANS = 6


@dataclass
class ConvertedFile:
    """A converted file with what validation needs to feed it."""

    path: Path
    format: str
    hops: list[Hop]
    #: layouts of the inputs and outputs, in source order, after the hops (onnx2tf: NHWC)
    input_layouts: list[str]
    output_layouts: list[str]
    notes: list[str] = field(default_factory=list)
    #: the accuracy fallback's attempts, when it ran (see fallback.py)
    fallback: list[FallbackAttempt] = field(default_factory=list)
    #: the file the last hop read (a quantizer's float input, e.g. the SavedModel)
    parent: Path | None = None
    #: content digest of ``path`` (cache.keys.model_digest): the next hop's cache key; None when
    #: the build runs without the step cache
    digest: str | None = None
    #: plain int8 (the fallback's first attempt), kept when layers were kept in float so the
    #: report can say what they cost in host latency; None otherwise
    plain_int8: Path | None = None
    #: what it was quantized to (the accuracy fallback may ship dynamic-int8 for int8)
    precision: Precision = "fp32"


class Converter:
    """Converts one source along planned paths for one build."""

    def __init__(self, source: Path, src_format: str, signature: Signature, evals: Dataset,
                 refs: list[np.ndarray], workdir: Path,
                 step: Callable[[str], Any], input_shapes: dict[str, tuple[int, ...]] | None,
                 steps: BuildSteps | None = None, isa: tuple[str, ...] = (),
                 shown: Path | None = None, quantized_source: bool = False):
        self.source = source
        #: the model errors name: the user's file, when ``source`` is a copy the build made
        #: (structural passes, folded control flow)
        self.shown = shown or source
        self.src_format = src_format
        self.signature = signature
        self.check = evals.head(HOP_CHECK_SAMPLES)
        self.refs = [head_rows(r, len(evals), len(self.check)) for r in refs]
        self.workdir = workdir
        self.step = step
        self.input_shapes = input_shapes
        #: (edge id, the precision it failed to make; None: any) -> why it failed
        self.failed: dict[tuple[str, str | None], str] = {}
        self.tools: dict[str, str] = {}
        self._cache: dict[tuple[str, ...], ConvertedFile] = {}
        self.steps = steps  # the step cache across builds; None: every hop runs
        self.isa = isa  # the target CPU's instruction sets, for its quantizers
        #: the source is int8 already (formats/prequantized.py): each runtime rounds integer
        #: arithmetic its own way, so its hops are judged as quantized ones, by the budget
        self.quantized_source = quantized_source
        self._source_digest: str | None = None
        #: the file paths start from: the source or its fixed copy, with what was fixed
        self._start: tuple[Path, list[str]] | None = None
        #: converters over the source's prepared float models (converters/prepared.py); False
        #: in such a converter, whose source is prepared already
        self.prepared: dict[tuple, tuple[Converter, list[str]]] = {}
        self.prepares = True

    def produce(self, dst: str, precision: Precision, out_dir: Path, stem: str,
                quantization: Quantization | None = None, calibration: Dataset | None = None,
                keep_float: tuple[str, ...] = (),
                int16_layers: tuple[str, ...] = (), replan: bool = True) -> ConvertedFile:
        """``dst`` at ``precision`` in ``out_dir``, by the cheapest path that works. With int8,
        the layers named in ``keep_float`` stay float and (TFLite only) those in
        ``int16_layers`` get 16-bit activations with int8 weights (LiteRT's 16x8 kernels); int8
        is made from the prepared float model when the profile asks for it (prepared.py).
        ``replan``: a converter that fails is recorded and the next path tried; False raises
        its failure as it is and records nothing (an accuracy-fallback attempt: its recipe
        failed, not the edge that made plain int8 and makes the other attempts)."""
        if int16_layers and (dst != "tflite" or precision != "int8"):
            raise ValueError(f"int16_layers is for int8 TFLite, not {precision} {dst}")
        key = preparation_key(quantization, calibration, self.src_format) \
            if precision == "int8" and self.prepares else None
        if key is not None:
            if key not in self.prepared:
                self.prepared[key] = self._prepared(quantization, calibration)
            child, notes = self.prepared[key]
            produced = child.produce(dst, precision, out_dir, stem, quantization, calibration,
                                     keep_float, int16_layers, replan)
            self.tools.update(child.tools)
            produced.notes = [*notes, *produced.notes]
            return produced
        for _ in range(MAX_REPLANS + 1):
            excluded = self._excluded(precision)
            try:
                path = plan_path(self.src_format, dst, precision, exclude=excluded)
            except ConversionError as exc:
                if not excluded:
                    raise
                # each names its edge; two edges that built the same graph failed alike
                toward = edges_toward(self.src_format, dst)
                tried = "; ".join(dict.fromkeys(
                    why for edge, why in excluded.items() if edge in toward))
                raise ConversionError(f"every path to {dst} ({precision}) failed: {tried}",
                                      path=self.shown) from exc
            try:
                produced = self._run(path, precision, out_dir, stem, quantization,
                                     calibration, keep_float, int16_layers)
                produced.notes += self._routed_around(dst, precision)
                produced.precision = precision
                return produced
            except ConversionError as exc:
                if exc.edge is None or not replan:
                    raise
                self.failed[(exc.edge, exc.precision)] = exc.bare
        raise ConversionError(f"gave up on {dst} after {MAX_REPLANS} failing converters: "
                              + "; ".join(self.failed.values()), path=self.shown)

    def _prepared(self, quantization: Quantization, calibration: Dataset
                  ) -> tuple[Converter, list[str]]:
        """A converter over this source's prepared float model (it prepares nothing itself),
        and the notes of the passes."""
        made = prepare_source(self.source, self.workdir / f"prepared-{len(self.prepared)}",
                              self.signature, self.check, quantization, calibration, self.step)
        child = Converter(made.path, "onnx", self.signature, self.check, made.refs,
                          made.path.parent, self.step, self.input_shapes, self.steps, self.isa,
                          self.shown)
        child.prepares = False
        return child, made.notes

    def _excluded(self, precision: Precision) -> dict[str, str]:
        """The edges a path to ``precision`` must not take, with why: those that failed at it,
        at fp32 (a float conversion fails every precision, and is every path's intermediate
        hop) or at any precision."""
        return {edge: why for (edge, at), why in self.failed.items() if _fails(at, precision)}

    def _routed_around(self, dst: str, precision: Precision) -> list[str]:
        """Why the file did not come by the cheapest path: the edges of that path that failed
        in this build (a slower or different converter made it instead)."""
        preferred = plan_path(self.src_format, dst, precision)
        excluded = self._excluded(precision)
        return [f"made by another path: the cheaper {edge.src} -> {edge.dst} ({edge.tool}) "
                f"failed: {excluded[edge_id(edge)]}"
                for edge in preferred if edge_id(edge) in excluded]

    def _run(self, path: list[Edge], precision: Precision, out_dir: Path, stem: str,
             quantization: Quantization | None, calibration: Dataset | None,
             keep_float: tuple[str, ...], int16_layers: tuple[str, ...]) -> ConvertedFile:
        start, fixed = self._start_file()
        current = ConvertedFile(start, self.src_format, [],
                                [s.layout for s in self.signature.inputs],
                                [s.layout for s in self.signature.outputs], list(fixed),
                                digest=self._digest_of_source())
        key: tuple[str, ...] = ()
        for i, edge in enumerate(path):
            last = i == len(path) - 1
            hop_precision = precision if last else "fp32"
            key = (*key, f"{edge_id(edge)}@{hop_precision}")  # what was made, at what precision
            if key in self._cache:
                current = self._cache[key]
                if last:  # made (and checked) already as an intermediate: deliver a copy
                    current = _copy_to(current, out_dir, f"{stem}.{precision}")
                continue
            # data a quantizer reads goes in the layouts of the file it quantizes
            layouts = current.input_layouts
            ctx = ConvertContext(
                workdir=out_dir if last else self.workdir, stem=stem,
                precision=hop_precision, quantization=quantization,
                calibration=layout.in_layouts(calibration, self.signature, layouts)
                if calibration is not None else None,
                input_shapes=layout.shapes_in_layouts(self.input_shapes, self.signature, layouts),
                source_signature=self.signature, keep_float=keep_float if last else (),
                int16_layers=int16_layers if last else (),
                samples=layout.in_layouts(self.check, self.signature, layouts),
                scratch=self.workdir, isa=self.isa)
            current = self._hop(edge, current, ctx)
            if not last or precision == "fp32":  # an fp32 result can feed later paths
                self._cache[key] = current
        return current

    def _hop(self, edge: Edge, prev: ConvertedFile, ctx: ConvertContext) -> ConvertedFile:
        label = f"Converting {edge.src} -> {edge.dst}" + \
            (f" ({ctx.precision})" if ctx.precision != "fp32" else "")
        key = None
        if self.steps is not None and prev.digest is not None:
            key = hop_key(self.steps, edge_id(edge), prev.digest, ctx, self.refs)
            hit = fetch_hop(self.steps, key, ctx.workdir, ctx.stem)
            if hit is not None:
                with self.step(f"{label} (cached)"):
                    return self._cached(edge, prev, hit)
        self._install_tools(edge)
        # the user's data (missing calibration) is the user's to fix, not the converter's
        with fails_edge(edge, f"{edge.tool} ({edge.src} -> {edge.dst})", self.shown,
                        passes=(DataError,), precision=ctx.precision):
            with self.step(label):
                t0 = time.perf_counter()
                out = edge.convert(prev.path, ctx)
                seconds = time.perf_counter() - t0
            version = edge.tool_version()
        self.tools[edge.tool] = version
        produced = self._after(edge, prev, out, ctx.notes)
        hop = Hop(edge.src, edge.dst, edge.tool, version, round(seconds, 3))
        with fails_edge(edge, f"the check of {edge.tool}'s {edge.dst} file", self.shown,
                        precision=ctx.precision):
            self._check(edge, produced, hop, ctx.precision)
        produced.hops.append(hop)
        if key is not None:  # checked: worth keeping
            produced.digest = store_hop(self.steps, key, out, ctx.stem, hop, ctx.notes)
        return produced

    def _install_tools(self, edge: Edge) -> None:
        """Install the edge's tools on first use, as a step of its own; failing (offline, pip
        turned off) fails the edge with the command to run."""
        if edge.tools is None or not edge.tools.missing():
            return
        what = ", ".join(edge.tools.missing())
        try:
            with self.step(f"Installing {edge.tools.name} on first use (pip install --no-deps "
                           f"{what})"):
                edge.tools.ensure()
        except MissingDependencyError as exc:
            raise ConversionError(f"{edge.tool} ({edge.src} -> {edge.dst}): {exc}",
                                  path=self.shown, edge=edge_id(edge)) from exc

    def _cached(self, edge: Edge, prev: ConvertedFile, hit: CachedHop) -> ConvertedFile:
        """The ConvertedFile a fresh hop would have returned, from a cache hit."""
        self.tools[edge.tool] = hit.hop.tool_version
        produced = self._after(edge, prev, hit.path, hit.notes)
        produced.hops.append(hit.hop)
        produced.digest = hit.digest
        return produced

    def _after(self, edge: Edge, prev: ConvertedFile, out: Path, notes: list[str]) -> ConvertedFile:
        """``out`` made from ``prev`` by ``edge``: layouts moved as the edge moves them."""
        to_last = layout.CHANNELS_LAST if edge.channels_last else {}
        outputs = [to_last.get(x, x) for x in prev.output_layouts]
        if edge.channels_last:
            outputs = self._outputs_as_made(out, edge.dst, prev.output_layouts, outputs)
        return ConvertedFile(
            out, edge.dst, [*prev.hops], [to_last.get(x, x) for x in prev.input_layouts],
            outputs, [*prev.notes, *notes], parent=prev.path)

    def _outputs_as_made(self, out: Path, fmt: str, before: list[str],
                         after: list[str]) -> list[str]:
        """onnx2tf moves most outputs channels-last, but leaves one channels-first where its
        graph ends in the ONNX layout: an output whose shape in the file is the source's own,
        not the channels-last one, kept its layout (a shape that reads the same both ways is
        taken as moved)."""
        try:
            made = get_format(fmt).read_signature(out).outputs
        except Exception:  # noqa: BLE001 - the check reports an unreadable file
            return after
        kept = list(after)
        for i, (spec, old, new) in enumerate(zip(self.signature.outputs, before, after,
                                                 strict=False)):
            if old == new or i >= len(made):
                continue
            shape = _as_computed(spec.shape, self.refs[i].shape if i < len(self.refs) else ())
            moved = layout.convert_shape(shape, old, new)
            if _same_dims(made[i].shape, shape) and not _same_dims(made[i].shape, moved):
                kept[i] = old
        return kept

    def _start_file(self) -> tuple[Path, list[str]]:
        """The file every path starts from, made once: the source, or its copy with the graph
        fixes its format needs (source_fixes.py), and the notes of those fixes."""
        if self._start is None:
            self._start = fixed_source(self.source, self.src_format, self.workdir / "fixed")
        return self._start

    def _digest_of_source(self) -> str | None:
        """The start file's content digest, computed once per build (only with the step
        cache)."""
        if self.steps is not None and self._source_digest is None:
            self._source_digest = model_digest(self._start_file()[0])
        return self._source_digest

    def _check(self, edge: Edge, produced: ConvertedFile, hop: Hop, precision: str) -> None:
        """Run the new file on the check samples; an fp32 hop must match to float rounding."""
        fmt = get_format(produced.format)
        runtime = get_runtime(fmt.runtime)
        try:
            session = child_probe.load(runtime, produced.path, exact_options(runtime.name))
        except ModelError as exc:
            raise ConversionError(f"{edge.tool} wrote a file {runtime.name} cannot load: "
                                  f"{exc.bare}", path=self.shown, edge=edge_id(edge)) from exc
        outs = session.run(feed_for(session, self.check.inputs, self.signature,
                                    produced.input_layouts))
        outs_list = outputs_in_source_order(session, outs, self.signature,
                                            produced.output_layouts)
        if len(outs_list) != len(self.refs):
            raise ConversionError(f"{edge.tool} produced {len(outs_list)} outputs, the source "
                                  f"has {len(self.refs)}", path=self.shown, edge=edge_id(edge))
        fids = [compare(n, r, o) for n, r, o in
                zip(self.signature.output_names, self.refs, outs_list, strict=True)]
        hop.check_samples = len(self.check)
        hop.check_max_abs_error = max(f.max_abs_error for f in fids)
        hop.check_cosine = min(f.cosine for f in fids)
        agreements = [f.top1_agreement for f in fids if f.top1_agreement is not None]
        hop.check_top1_agreement = min(agreements) if agreements else None
        for f in fids:
            if f.mismatch:  # not the same output any more, whatever the precision
                raise ConversionError(f"{edge.tool} changed output '{f.name}' ({edge.src} -> "
                                      f"{edge.dst}): {f.mismatch}", path=self.shown,
                                      edge=edge_id(edge))
        if precision != "fp32" or self.quantized_source:
            return  # quantized hops are judged by the profile's budget, on the whole eval set
        for ref, f in zip(self.refs, fids, strict=True):
            why = beyond_rounding(ref, f)  # an fp32 hop may differ by float rounding only
            if why:
                raise ConversionError(
                    f"{edge.tool} changed the model's outputs ({edge.src} -> {edge.dst}: "
                    f"output '{f.name}' {why}, cosine {f.cosine:.6f} on {len(self.check)} "
                    "samples)", path=self.shown, edge=edge_id(edge))


#: errno values of a full or read-only disk: the build's problem, not the converter's
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


@contextlib.contextmanager
def fails_edge(edge: Edge, what: str, source: Path,
               passes: tuple[type[BaseException], ...] = (),
               precision: str | None = None) -> Iterator[None]:
    """Any exception in the block fails ``edge`` at ``precision`` (None: at any) with one line
    naming ``what`` failed and the root cause, so the planner routes around it; only a time
    or memory limit, memory exhaustion, a full disk (they would stop any other path too) and
    the ``passes`` types stop the build."""
    try:
        yield
    except ConversionError as exc:
        if exc.edge in (None, edge_id(edge)):  # this edge's own failure, not a nested one
            exc.edge, exc.precision = edge_id(edge), exc.precision or precision
        raise
    except (ResourceLimitError, MemoryError, *passes):
        raise
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise
        raise ConversionError(f"{what} failed: {root_cause(exc)}", path=source,
                              edge=edge_id(edge), precision=precision) from exc
    except Exception as exc:
        detail = exc.bare if isinstance(exc, EdgepackError) else root_cause(exc)
        raise ConversionError(f"{what} failed: {detail}", path=source,
                              edge=edge_id(edge), precision=precision) from exc


def _fails(at: str | None, precision: str) -> bool:
    """Whether an edge that failed at ``at`` would fail making ``precision``."""
    return at in (None, "fp32", precision)


def _as_computed(shape: tuple, computed: tuple) -> tuple:
    """An output's declared ``shape`` with the dimensions its exporter left unnamed in the
    file read from the source's output as computed (``computed``, on the check samples), the
    first (samples) and any named like a batch kept: a detector exported with a dynamic batch
    declares ``d0 x d1 x d2`` for its ``N x 7 x 320``, which reads the same in any layout."""
    if len(computed) != len(shape):
        return shape
    return tuple(c if isinstance(d, str) and i > 0 and d.lower() not in BATCH_NAMES else d
                 for i, (d, c) in enumerate(zip(shape, computed, strict=True)))


def _same_dims(a: tuple, b: tuple) -> bool:
    """Whether two shapes agree wherever both dimensions are known."""
    return len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True)
                                    if isinstance(x, int) and isinstance(y, int))


def _copy_to(produced: ConvertedFile, folder: Path, stem: str) -> ConvertedFile:
    """A cached intermediate file copied into the build folder under the deliverable's name."""
    dest = folder / f"{stem}{produced.path.suffix}"
    if dest == produced.path:
        return produced
    shutil.copyfile(produced.path, dest)
    if dest.suffix == ".xml":
        shutil.copyfile(produced.path.with_suffix(".bin"), dest.with_suffix(".bin"))
    return replace(produced, path=dest)
