"""``build``: model + target -> deliverable artifacts + a report, written atomically.

load -> plan(target, profile) -> convert along the cheapest path (each fp32 hop checked against
the source) -> quantize at the format's own converter -> validate (fidelity, accuracy, host
latency in its own process) -> gate on the profile's budget -> write the folder, then move it
into place. A failure at any point leaves no output folder behind.

Every conversion hop and every validation goes through the step cache (steps.py) unless the
build asks for none: what an earlier build made or measured from the same bytes with the same
settings and tools is reused, and the report says which steps were.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .. import staging as staging_mod
from ..cache.keys import build_key, file_digest, host_facts, model_files
from ..cache.records import BuildSteps, Measurement
from ..cache.store import StepCache
from ..config.catalog import Catalog, load_catalog
from ..config.profiles import ROLE_NAMES, Profile
from ..config.project import LoadedProject, find_project
from ..config.targets import Target
from ..converters import plan_path
from ..converters.converter import Converter, Produced, exact_options, feed_for
from ..data.dataset import Dataset, fixed_shapes, is_class_labels, load_dataset, overlap
from ..data.preprocess import Preprocessing
from ..errors import ConversionError, DataError, EdgepackError, OutputError, UsageError
from ..formats import detect, get_format, metadata
from ..formats.source import Source, SourceFacts, export_module, open_source
from ..limits import guarded
from ..progress import Progress
from ..report.model import Artifact, Report
from ..report.write import write_report
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions, Session
from ..signature import Normalization, Signature
from ..validate import accuracy as acc
from ..validate import budget as budget_gate
from ..validate.floor import InputFloor, input_floor
from ..validate.latency import measure_isolated
from .fallback import Judge, fit_budget, measure_fidelity
from .structural import StructuralRequest, run_step

#: errors of a location that cannot take the build (reported as OutputError, exit 7)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
#: fidelity without any data: seeded standard-normal inputs (said loudly in the report)
RANDOM_EVAL_SAMPLES = 64


@dataclass
class BuildRequest:
    model: Path
    target: str
    input_shapes: dict[str, tuple[int, ...]] | None = None
    profile: str | None = None
    calibration: Path | None = None
    eval: Path | None = None
    output: Path | None = None
    force: bool = False
    threads: int | None = None
    warmup: int = 10
    runs: int = 100
    name: str | None = None
    devices: tuple[str, ...] = ()
    trust_new_host: bool = False
    metric: str | None = None  # "package.module:function", called as f(outputs, labels)
    version: str = "0.0.0"
    labels: list[str] | None = None
    normalization: Normalization | None = None
    preprocessing: Preprocessing | None = None
    project: LoadedProject | None = None
    structural: StructuralRequest | None = None
    cache: bool = True  # reuse (and store) steps in the step cache
    cache_dir: Path | None = None  # the cache's root; None: cache.cache_root()
    #: batch axes of inputs whose batch is not axis 0 (the project's ``batch_axis``)
    batch_axes: dict[str, int] | None = None


def build(model: str | Path | Any, target: str = "raspberrypi", *, profile: str | None = None,
          calibration: str | Path | None = None, eval: str | Path | None = None,
          output: str | Path | None = None, force: bool = False, threads: int | None = None,
          warmup: int = 10, runs: int = 100, input_shapes: dict[str, tuple[int, ...]] | None = None,
          example_inputs: Any = None, name: str | None = None, devices: tuple[str, ...] = (),
          trust_new_host: bool = False, metric: str | None = None,
          model_name: str | None = None,
          targets_dirs: tuple[Path, ...] = (), profiles_dirs: tuple[Path, ...] = (),
          prune: float | None = None, structured: bool = False, lowrank: float | None = None,
          distill: bool = False, student: str | Path | None = None,
          train: str | Path | None = None, progress: Progress | None = None,
          cache: bool = True, cache_dir: str | Path | None = None) -> Report:
    """Build ``model`` for ``target``; return the Report (also written to the output folder).

    ``model`` is a model file or folder, a project folder holding ``edgepack.yaml`` (whose
    settings fill in whatever is not passed here), or a ``torch.nn.Module`` together with
    ``example_inputs``. ``prune``/``structured``/``lowrank``/``distill``/``student`` run the
    structural passes on the source first (over the profile's ``structural`` section);
    distillation learns from ``train`` data, else from the calibration data. ``cache=False``
    runs every step afresh and stores nothing; ``cache_dir`` overrides ``$EDGEPACK_CACHE``.
    """
    progress = progress or Progress()
    with tempfile.TemporaryDirectory(prefix="edgepack-src-") as tmp:
        if not isinstance(model, (str, Path)):
            with progress.step("Exporting the PyTorch module (torch.export)"):
                model, note = export_module(model, example_inputs, Path(tmp),
                                            name or type(model).__name__.lower())
        else:
            note = None
        model_path = Path(model)
        project = find_project(model_path) if model_path.is_dir() else None
        if project is not None and model_name is not None:
            project = project.for_model(model_name)
        req = BuildRequest(model=model_path, target=target, profile=profile,
                           calibration=Path(calibration) if calibration else None,
                           eval=Path(eval) if eval else None, input_shapes=input_shapes,
                           output=Path(output) if output else None, force=force,
                           threads=threads, warmup=warmup, runs=runs, name=name,
                           devices=tuple(devices), trust_new_host=trust_new_host,
                           metric=metric, cache=cache,
                           cache_dir=Path(cache_dir) if cache_dir else None,
                           structural=StructuralRequest(
                               prune, structured, lowrank, distill,
                               Path(student) if student else None,
                               Path(train) if train else None))
        if project is not None:
            _apply_project(req, project)
        catalog = load_catalog([*(project.targets_dirs if project else []), *targets_dirs],
                               [*(project.profiles_dirs if project else []), *profiles_dirs])
        builder = Builder(req, catalog, progress)
        if note:
            builder.notes.append(f"PyTorch module: {note}")
        return builder.run()


def _apply_project(req: BuildRequest, project: LoadedProject) -> None:
    spec = project.spec
    req.project = project
    req.model = project.model
    req.name = project.name
    req.version = spec.version
    req.calibration = req.calibration or project.resolve(spec.calibration)
    req.eval = req.eval or project.resolve(spec.eval)
    req.labels = project.labels()
    req.normalization = spec.normalization.to_normalization() if spec.normalization else None
    req.preprocessing = spec.preprocessing.to_preprocessing() if spec.preprocessing else None
    req.input_shapes = req.input_shapes or {n: tuple(s) for n, s in spec.input_shape.items()} \
        or None
    req.batch_axes = spec.batch_axis or None


class Builder:
    def __init__(self, req: BuildRequest, catalog: Catalog, progress: Progress):
        self.req = req
        self.catalog = catalog
        self.progress = guarded(progress)  # --max-seconds/--max-memory-mb at every step
        self.target: Target = catalog.targets.get(req.target)
        self.profile: Profile = catalog.profile_for(self.target, req.profile)
        self.warnings: list[str] = []
        self.notes: list[str] = []  # build-wide facts for the report (fixed shapes, exports)
        self.preprocessing: dict[str, Any] | None = None
        self.tools: dict[str, str] = {}
        self.name = req.name or req.model.stem or req.model.name
        self.metric = (req.metric, acc.load_metric(req.metric)) \
            if req.metric and req.metric not in ROLE_NAMES else None  # a role: see _roles
        self.output = req.output or Path("build") / f"{self.name}-{self.target.name}"
        self.steps = BuildSteps(StepCache(req.cache_dir)) if req.cache else None
        self._source: Source | None = None  # the loaded model, when a step needed it
        self._digest: str | None = None  # sha256 of the model file(s), computed once

    # ------------------------------------------------------------------------------ the build
    def run(self) -> Report:
        staging_mod.clean_stale(self.output)  # hidden folders of killed builds (staging.py)
        self._check_output()
        fmt = detect(self.req.model)
        profile = self._effective_profile(has_calibration=self.req.calibration is not None)
        if self.req.project is not None:  # the project file's limits per output
            profile = profile.with_output_budgets(self.req.project.output_budgets())
        formats, skipped = self._choose_formats(fmt.name, profile)
        source = self._load_source(fmt.name)
        self.notes.extend(source.notes)  # e.g. a SavedModel checked and loaded untrusted
        self.tools[source.runtime] = source.runtime_version
        signature = source.signature.with_normalization(self.req.normalization)
        signature = signature.with_roles(self._roles(signature))
        calib, evals, eval_meta = self._load_data(signature, profile)
        shapes = self._fixed_shapes(signature, calib if calib is not None else evals)

        staging = staging_mod.staging_dir(self.output)
        try:
            with tempfile.TemporaryDirectory(prefix="edgepack-work-") as work:
                refs = self._reference_outputs(evals, Path(work))
                floor = self._input_floor(profile, calib, evals, refs, signature, Path(work))
                src, src_refs, structural = run_step(self, fmt.name, calib, evals, refs,
                                                     signature, Path(work))
                converter = Converter(src, fmt.name, signature, evals, src_refs,
                                      Path(work), self.progress.step, shapes, self.steps,
                                      isa=tuple(self.target.isa))
                source_acc = self._accuracy(refs, evals)
                produced = self._convert(converter, formats, profile, calib, staging, skipped,
                                         Judge(evals, refs, signature, source_acc, profile,
                                               self._accuracy, self.steps,
                                               lambda p: self._measure_key(
                                                   p, model_files(p.path), evals, refs,
                                                   signature, latency=False)))
                self.tools.update(converter.tools)
                artifacts = [self._validate(role, prec, p, staging, evals, refs, signature,
                                            source_acc, profile)
                             for role, prec, p in produced]
                self.warnings += slower_than_fp32(artifacts)
            report = Report(
                edgepack_version=__version__,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                model=self._model_section(source, signature),
                target={"name": self.target.name, "title": self.target.title,
                        "arch": self.target.arch, "runtimes": [r.model_dump()
                                                               for r in self.target.runtimes]},
                profile={"name": profile.name, "title": profile.title,
                         "precision": profile.precision,
                         "requested": self.req.profile or self.target.default_profile,
                         "budget": profile.budget.model_dump()},
                eval=eval_meta,
                calibration=self._calibration_section(calib, profile),
                tools=self.tools, host=_host(), artifacts=artifacts,
                source_accuracy=source_acc, output=str(self.output), warnings=self.warnings,
                notes=self.notes, skipped=skipped, structural=structural,
                step_cache=self.steps.summary() if self.steps else None, input_floor=floor)
            write_report(report, staging)
            self._publish(staging)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in _NO_SPACE:  # disk full, quota, read-only: say where, exit 7
                where = exc.filename or self.output.resolve().parent
                raise OutputError(f"cannot write the build: {exc.strerror}", path=where,
                                  hint="free space there or choose another -o; nothing was "
                                       "left behind") from exc
            raise
        except ConversionError as exc:  # a converter that could not write its file
            shutil.rmtree(staging, ignore_errors=True)
            parent = self.output.resolve().parent
            if staging_mod.out_of_space(parent):
                raise OutputError(f"cannot write the build: No space left on device ({exc})",
                                  path=parent, hint="free space there or choose another -o; "
                                                    "nothing was left behind") from exc
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return report

    # ------------------------------------------------------------------------------ steps
    def _check_output(self) -> None:
        out = self.output
        if out.exists() and not out.is_dir():
            raise OutputError("exists and is not a folder", path=out)
        if out.exists() and any(out.iterdir()) and not self.req.force:
            raise OutputError("output folder exists and is not empty", path=out,
                              hint="pass --force to replace it, or choose another -o")
        parent = out.resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder's parent: {exc.strerror}",
                              path=parent) from exc
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError("not writable", path=parent,
                              hint="choose an output folder you can write with -o")

    def _load_data(self, signature: Signature,
                   profile: Profile) -> tuple[Dataset | None, Dataset, dict[str, Any]]:
        settings = profile.quantization.calibration if profile.quantization else None
        image_options = {"preprocessing": self.req.preprocessing, "class_names": self.req.labels,
                         "batch_axes": self.req.batch_axes}
        calib = load_dataset(self.req.calibration, signature, **image_options,
                             max_samples=settings.samples if settings else None,
                             seed=settings.seed if settings else 0) \
            if self.req.calibration else None
        if self.req.eval:
            evals = load_dataset(self.req.eval, signature, **image_options)
            meta = {"source": str(self.req.eval), "samples": len(evals),
                    "labelled": evals.labels is not None, "preprocessing": evals.preprocessing}
            shared = overlap(calib, evals) if calib is not None else 0
            if shared:
                self.warnings.append(f"{shared} of {len(evals)} evaluation samples are also "
                                     f"calibration samples: accuracy and fidelity are "
                                     f"flattered; use disjoint data")
        elif calib is not None:
            evals = calib
            self.warnings.append("no evaluation data: fidelity is measured on the calibration "
                                 "samples, which flatters int8; pass --eval DATA")
            meta = {"source": f"{calib.source} (calibration data)", "samples": len(calib),
                    "labelled": calib.labels is not None}
        else:
            evals = _random_inputs(signature)
            self.warnings.append(f"no evaluation data: fidelity is measured on "
                                 f"{len(evals)} random normal inputs; pass --eval DATA")
            meta = {"source": "random normal inputs (seed 0)", "samples": len(evals),
                    "labelled": False}
        # what was applied to image data travels in every artifact's metadata
        self.preprocessing = (calib.preprocessing if calib is not None else None) \
            or evals.preprocessing
        return calib, evals, meta

    def _effective_profile(self, has_calibration: bool) -> Profile:
        profile = self.profile
        if profile.needs_calibration and not has_calibration:
            fallback = profile.fallback_without_calibration
            if fallback is None:
                raise DataError(f"profile {profile.name} needs calibration data and has no "
                                "fallback", hint="pass --calibration DATA (.npz or a folder "
                                "of .npy)")
            msg = (f"NO CALIBRATION DATA: built {fallback} (weights-only int8) instead of the "
                   f"full-integer int8 of profile {profile.name}; activations stay float, so it "
                   f"is slower and accelerators cannot run it. Pass --calibration DATA.")
            self.warnings.append(msg)
            self.progress.warn(msg)
            return self.catalog.profiles.get(fallback)
        return profile

    def _choose_formats(self, src: str, profile: Profile) -> tuple[list[str],
                                                                      list[dict[str, str]]]:
        """Every format the target accepts that the profile produces and edgepack reaches."""
        skipped: list[dict[str, str]] = []
        chosen = []
        for fmt in self.target.formats:
            if fmt not in profile.formats:
                continue
            try:
                plan_path(src, fmt, profile.precision)
            except ConversionError as exc:
                skipped.append({"format": fmt, "precision": profile.precision,
                                "reason": str(exc)})
                continue
            chosen.append(fmt)
        if not chosen:
            raise ConversionError(
                f"cannot build any format {self.target.name} accepts "
                f"({', '.join(self.target.formats)}) at {profile.precision} from {src}",
                hint="; ".join(s["reason"] for s in skipped) or
                     f"profile {profile.name} produces {', '.join(profile.formats)}")
        return chosen, skipped

    def _fixed_shapes(self, signature: Signature,
                      data: Dataset) -> dict[str, tuple[int, ...]] | None:
        """Static input shapes when the target needs them or the user gave them, else None.

        A dimension the user fixed by name (``seq`` of ``input_ids``) is fixed in every input
        that has it; for a static-shape target the batch becomes 1 and the rest is taken from
        the data's samples. Inputs left with dynamic dimensions keep them where the target
        allows it.
        """
        given = self.req.input_shapes or {}
        static = self.target.constraints.static_shapes
        if not static and not given:
            return None
        shapes = fixed_shapes(signature, given, data if static else None)
        for spec in signature.inputs:
            if static and spec.name not in shapes:
                raise UsageError(
                    f"{self.target.name} needs static shapes and input '{spec.name}' has dynamic "
                    f"dimensions ({spec.shape_str()})",
                    hint=f"pass --input-shape {spec.name}:" + "x".join(
                        str(d) if isinstance(d, int) else "N" for d in spec.shape))
        why = "the target needs static shapes" if static else "given with --input-shape"
        self.notes.append("input shapes fixed to " + ", ".join(
            f"{n} {'x'.join(map(str, s)) or 'scalar'}" for n, s in shapes.items())
            + f" ({why})")
        return shapes

    def _source_key(self, step: str, **more: Any) -> str | None:
        if self.steps is None:
            return None
        return build_key({"step": step, "model": self._model_digest(),
                          "input_shapes": self.req.input_shapes, **more})

    def _model_digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.req.model)
        return self._digest

    def _load_source(self, fmt: str) -> SourceFacts:
        """What the source is (signature, size, runtime), from the step cache when this very
        model was loaded before; else the model is loaded (and kept for its outputs)."""
        key = self._source_key("load", format=fmt)
        record = self.steps.fetch_facts(key) if self.steps is not None and key else None
        if record is not None:
            get_format(fmt).checked_note(self.req.model)  # refused untrusted, as when loaded
            with self.progress.step(f"Loading {fmt} model (cached)"):
                return SourceFacts.from_record(record)
        with self.progress.step(f"Loading {fmt} model"):
            self._source = open_source(self.req.model, self.req.input_shapes)
        facts = SourceFacts.of(self._source)
        if self.steps is not None and key:
            self.steps.store_facts(key, facts.to_record())
        return facts

    def _reference_outputs(self, evals: Dataset, scratch: Path) -> list[np.ndarray]:
        """The source's outputs on the eval inputs: every artifact is compared with them."""
        key = self._source_key("outputs", eval=self.steps.digest(evals)) \
            if self.steps is not None else None
        if self.steps is not None and key:
            cached = self.steps.fetch_outputs(key, scratch)
            if cached is not None:
                with self.progress.step(f"Running the source model on {len(evals)} eval "
                                        "samples (cached)"):
                    return cached
        if self._source is None:  # its facts came from the cache
            with self.progress.step("Loading the source model"):
                self._source = open_source(self.req.model, self.req.input_shapes)
        with self.progress.step(f"Running the source model on {len(evals)} eval samples"):
            out = list(self._source.session.run(evals.inputs).values())
        if self.steps is not None and key:
            self.steps.store_outputs(key, out, scratch)
        return out

    def _roles(self, signature: Signature) -> dict[str, str]:
        """The roles the user gave outputs (validate/roles.py): the project file's by output
        name, and ``--metric ROLE`` for the first output."""
        roles = self.req.project.output_roles() if self.req.project is not None else {}
        if self.req.metric in ROLE_NAMES and signature.outputs:
            roles = {**roles, signature.outputs[0].name: self.req.metric}
        return roles

    def _input_floor(self, profile: Profile, calib: Dataset | None, evals: Dataset,
                     refs: list[np.ndarray], signature: Signature,
                     scratch: Path) -> InputFloor | None:
        """The source on the eval inputs rounded to the int8 input's steps over the calibration
        data's range (validate/floor.py); int8 builds only."""
        if profile.precision != "int8":
            return None
        return input_floor(lambda rounded: self._reference_outputs(
                               replace(evals, inputs=rounded), scratch),
                           evals.inputs, (calib or evals).inputs, refs,
                           signature.output_names, signature.output_roles)

    def _convert(self, converter: Converter, formats: list[str], profile: Profile,
                 calib: Dataset | None, staging: Path, skipped: list[dict[str, str]],
                 judge: Judge) -> list[tuple[str, str, Produced]]:
        """Each format's deliverable, and its fp32 reference when the deliverable is compressed.

        A format whose every path fails is reported as not built (loudly); the build fails
        only when no format could be built. An int8 deliverable over budget goes through the
        layer-wise fallback before it is accepted.
        """
        produced: list[tuple[str, str, Produced]] = []
        for fmt in formats:
            try:
                reference = None
                if profile.precision != "fp32":
                    reference = converter.produce(fmt, "fp32", staging, self.name)
                deliverable = converter.produce(fmt, profile.precision, staging, self.name,
                                                profile.quantization, calib)
                if profile.precision == "int8" and reference is not None:
                    deliverable = fit_budget(converter, fmt, deliverable, reference, profile,
                                             calib, staging, self.name, judge, self.progress)
                produced.append(("deliverable", profile.precision, deliverable))
                if reference is not None:
                    produced.append(("reference", "fp32", reference))
            except ConversionError as exc:
                if len(formats) == 1:
                    raise
                skipped.append({"format": fmt, "precision": profile.precision,
                                "reason": str(exc)})
                msg = f"{fmt} not built: {exc}"
                self.warnings.append(msg)
                self.progress.warn(msg)
        if not produced:
            raise ConversionError("no format could be built: " +
                                  "; ".join(s["reason"] for s in skipped), path=self.req.model)
        return produced

    def _accuracy(self, outs: list[np.ndarray], evals: Dataset) -> acc.Accuracy | None:
        """Top-1/top-5 for a classifier with class labels; the user's metric when given."""
        if evals.labels is None or not outs:
            return None
        result = None
        if is_class_labels(evals.labels) and outs[0].ndim == 2:
            result = acc.classification(outs[0], evals.labels)
        if self.metric is not None:
            name, fn = self.metric
            value = acc.with_metric(name, fn, outs[0], evals.labels)
            if result is None:
                return value
            result.metric, result.value = value.metric, value.value
        return result

    def _validate(self, role: str, precision: str, produced: Produced, staging: Path,
                  evals: Dataset, refs: list[np.ndarray], source_sig: Signature,
                  source_acc: acc.Accuracy | None, profile: Profile) -> Artifact:
        """Embed metadata, then measure the final file: fidelity, accuracy, latency, budget."""
        file = produced.path
        meta = self._metadata(source_sig, produced)
        extra = metadata.embed(produced.format, file, meta)
        runtime = get_runtime(get_format(produced.format).runtime)
        shipped = [file, *(p for p in extra if p.suffix != ".json")]
        m = self._measure(produced, [file, *extra], evals, refs, source_sig)
        self.tools[runtime.name] = m.runtime_version
        notes = [*produced.notes]
        if produced.plain_int8 is not None:
            notes.append(self._fallback_cost(produced, produced.plain_int8, m, evals, refs,
                                             source_sig))
        if m.cached:
            notes.append("fidelity, accuracy and host latency taken from the step cache: "
                         "measured by an earlier build of this byte-identical file, with the "
                         "same data and options, on a host with the same CPU")
        if self.target.constraints.static_shapes and any(
                s.is_dynamic for s in m.signature.inputs):
            notes.append(f"{file.name} still has dynamic input dimensions; {self.target.name} "
                         "needs static shapes")
        art_sig = _with_layouts(m.signature, produced).with_normalization(
            self.req.normalization)
        art = Artifact(
            role=role, format=produced.format, precision=precision, file=file.name,
            fallback=produced.fallback,
            size_bytes=sum(p.stat().st_size for p in shipped), sha256=file_digest(file),
            path=produced.hops, signature=art_sig.to_dict(), fidelity=m.fidelity,
            accuracy=m.accuracy, latency=m.latency, notes=notes,
            extra_files=sorted(p.name for p in extra),
            extra_sha256={p.name: file_digest(p) for p in sorted(extra)})
        if role == "deliverable":
            art.budget = budget_gate.evaluate(profile.name, profile.budget, m.fidelity,
                                              source_acc, m.accuracy)
            if self.req.devices:  # device runs are never cached: they need a host session
                session = m.session or runtime.load(
                    str(file), exact_options(runtime.name, self._threads()))
                art.devices = self._on_devices(session, produced, evals, source_sig)
        return art

    def _fallback_cost(self, produced: Produced, plain: Path, shipped: Measurement,
                       evals: Dataset, refs: list[np.ndarray], source_sig: Signature) -> str:
        """What the layers the accuracy fallback kept in float cost: plain int8's host latency
        is measured as the shipped file's is, both are recorded on their attempts, and the
        note states the size and latency ratios."""
        m = self._measure(replace(produced, path=plain, plain_int8=None), model_files(plain),
                          evals, refs, source_sig)
        first = produced.fallback[0]
        chosen = next(a for a in produced.fallback if a.get("chosen"))
        first["p50_ms"], chosen["p50_ms"] = m.latency.p50_ms, shipped.latency.p50_ms
        return (f"accuracy fallback cost: the {len(chosen['kept_float'])} layer(s) kept in float "
                f"make the file {chosen['size_bytes'] / first['size_bytes']:.3f}x the size of "
                f"plain int8 and its host p50 latency "
                f"{shipped.latency.p50_ms / m.latency.p50_ms:.2f}x plain int8's "
                f"({shipped.latency.p50_ms:.3f} ms vs {m.latency.p50_ms:.3f} ms)")

    def _measure(self, produced: Produced, files: list[Path], evals: Dataset,
                 refs: list[np.ndarray], source_sig: Signature) -> Measurement:
        """Fidelity and accuracy on the eval set, then host latency in its own process; from
        the step cache when this very file was measured so before (same data, options and
        kind of host)."""
        file = produced.path
        key = self._measure_key(produced, files, evals, refs, source_sig)
        cached = self.steps.fetch_measurement(key) if self.steps and key else None
        if cached is not None:
            with self.progress.step(f"Validating {file.name} (cached)"):
                return cached
        runtime = get_runtime(get_format(produced.format).runtime)
        with self.progress.step(f"Validating {file.name} on {len(evals)} eval samples"):
            session, fidelity, accuracy = measure_fidelity(produced, evals, refs, source_sig,
                                                           self._accuracy, self._threads())
        with self.progress.step(f"Measuring host latency of {file.name} ({runtime.name})"):
            feed = feed_for(session, evals.head(1).inputs, source_sig, produced.input_layouts)
            latency = measure_isolated(runtime.name, file, feed,
                                       RuntimeOptions(threads=self._threads()),
                                       warmup=self.req.warmup, runs=self.req.runs)
        m = Measurement(fidelity, accuracy, latency, session.runtime_version, session.signature,
                        session)
        if self.steps and key:
            self.steps.store_measurement(key, m)
        return m

    def _measure_key(self, produced: Produced, files: list[Path], evals: Dataset,
                     refs: list[np.ndarray], source_sig: Signature,
                     latency: bool = True) -> str | None:
        """What a validation's numbers depend on (``latency=False``: fidelity and accuracy
        only, the accuracy fallback's judging); None (not cached) without the step cache or
        with a user metric whose code cannot be located (it could change under its name)."""
        if self.steps is None:
            return None
        metric = None
        if self.metric is not None:
            code = _code_file(self.metric[1])
            if code is None:
                return None
            metric = {"name": self.metric[0], "code": file_digest(code)}
        timing = {"threads": self._threads(), "warmup": self.req.warmup, "runs": self.req.runs,
                  "host": host_facts()} if latency else {}
        return build_key({
            "step": "validation" if latency else "fidelity",
            "files": {p.name: file_digest(p) for p in files},
            "format": produced.format,
            "layouts": [produced.input_layouts, produced.output_layouts],
            "signature": source_sig.to_dict(), "eval": self.steps.digest(evals),
            "refs": self.steps.digest(refs), "metric": metric, **timing})

    def _on_devices(self, session: Session, produced: Produced, evals: Dataset,
                    source_sig: Signature) -> list[dict[str, Any]]:
        """The deliverable on each named board: latency there, and its outputs compared with
        the same artifact's host outputs (a device problem fails the build, exit 4)."""
        from ..devices.remote import DEVICE_SAMPLES, bench_on_devices

        feed = feed_for(session, evals.head(DEVICE_SAMPLES).inputs, source_sig,
                        produced.input_layouts)
        host = list(session.run(feed).values())
        with self.progress.step(f"Running {produced.path.name} on "
                                f"{', '.join(self.req.devices)}"):
            results = bench_on_devices(self.req.devices, produced.path, feed, host,
                                       runs=min(self.req.runs, 20), warmup=3,
                                       threads=self._threads(),
                                       trust_new_host=self.req.trust_new_host)
        for r in results:
            if isinstance(r, EdgepackError):
                raise r
        return [r.to_dict() for r in results]

    def _metadata(self, source_sig: Signature, produced: Produced) -> dict[str, Any]:
        """What an app needs to feed the artifact: name, version, layouts, normalization."""
        inputs = []
        for spec, lay in zip(source_sig.inputs, produced.input_layouts, strict=True):
            d = spec.to_dict()
            d["layout"] = lay
            inputs.append(d)
        return {"name": self.name, "version": self.req.version, "producer": "edgepack",
                "edgepack_version": __version__, "inputs": inputs,
                "output_layouts": produced.output_layouts, "labels": self.req.labels,
                "preprocessing": self.preprocessing}

    def _threads(self) -> int:
        """Host latency uses as many threads as the target has cores, at most the host's."""
        return max(1, min(self.req.threads or self.target.device.cores, os.cpu_count() or 1))

    def _model_section(self, source: SourceFacts, signature: Signature) -> dict[str, Any]:
        return {"name": self.name, "version": self.req.version, "path": str(self.req.model),
                "format": source.format, "parameters": source.parameters,
                "size_bytes": source.size_bytes, "sha256": self._model_digest(),
                "signature": signature.to_dict(), "labels": self.req.labels}

    def _calibration_section(self, calib: Dataset | None,
                             profile: Profile) -> dict[str, Any] | None:
        if calib is None:
            return None
        settings = profile.quantization.calibration if profile.quantization else None
        used = min(len(calib), settings.samples) if settings else 0
        return {"source": calib.source, "samples_available": len(calib), "samples_used": used,
                "preprocessing": calib.preprocessing,
                "seed": settings.seed if settings else None,
                "method": settings.method if settings else None}

    def _publish(self, staging: Path) -> None:
        """Move the finished folder into place; an old one is swapped out, then removed."""
        staging_mod.publish(staging, self.output)


#: how much slower than its fp32 reference (host p50) a deliverable whose accuracy fallback
#: kept layers in float may be before the report warns: above run-to-run noise
SLOWER_THAN_FP32 = 1.1


def slower_than_fp32(artifacts: list[Artifact]) -> list[str]:
    """Warnings for deliverables that the accuracy fallback's float layers made slower than
    their fp32 reference on this host (ONNX Runtime pays a layout change around each float
    island): the budget was met, but the int8 file no longer buys speed, and fp32 (or a looser
    budget) may be the better thing to ship. Measured on the build host, not on the device."""
    warnings = []
    for art in artifacts:
        chosen = next((a for a in art.fallback if a.get("chosen")), None)
        ref = next((r for r in artifacts if r.role == "reference" and r.format == art.format),
                   None)
        if art.role != "deliverable" or not chosen or not chosen["kept_float"] \
                or ref is None or art.latency is None or ref.latency is None \
                or art.latency.p50_ms <= SLOWER_THAN_FP32 * ref.latency.p50_ms:
            continue
        warnings.append(
            f"{art.file} runs slower than its fp32 reference on this host (p50 "
            f"{art.latency.p50_ms:.3f} ms vs {ref.latency.p50_ms:.3f} ms) with the "
            f"{len(chosen['kept_float'])} layer(s) the accuracy fallback kept in float: check "
            f"on the device (--device) before shipping it for speed; fp32 or a looser budget "
            f"may serve better")
    return warnings


def _with_layouts(sig: Signature, produced: Produced) -> Signature:
    """The artifact's signature with the layouts its conversion path gave its tensors."""
    return Signature(
        inputs=tuple(replace(s, layout=lay) for s, lay in
                     zip(sig.inputs, produced.input_layouts, strict=False)),
        outputs=tuple(replace(s, layout=lay) for s, lay in
                      zip(sig.outputs, produced.output_layouts, strict=False)))


def _code_file(fn: Any) -> Path | None:
    """The file a function's code is in (None: built in, or defined interactively)."""
    import inspect

    try:
        name = inspect.getsourcefile(fn)
    except TypeError:
        return None
    return Path(name) if name and Path(name).is_file() else None


def _random_inputs(signature: Signature) -> Dataset:
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in signature.inputs:
        dims = [RANDOM_EVAL_SAMPLES] + [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
        if any(isinstance(d, str) for d in spec.shape[1:]):
            raise UsageError(f"input '{spec.name}' has dynamic dimensions {spec.shape_str()} and "
                             "no data was given to fix them", hint="pass --eval DATA")
        from ..limits import check_allocation

        check_allocation(tuple(dims), spec.dtype, f"input '{spec.name}'")
        inputs[spec.name] = rng.standard_normal(dims).astype(spec.dtype)
    return Dataset("random", inputs)


def _host() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            **host_facts()}
