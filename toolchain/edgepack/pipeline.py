"""``build``: model + target -> deliverable artifacts + a report, written atomically.

load -> plan(target, profile) -> convert along the cheapest path (each fp32 hop checked against
the source) -> quantize at the format's own converter -> validate (fidelity, accuracy, host
latency in its own process) -> gate on the profile's budget -> write the folder, then move it
into place. A failure at any point leaves no output folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .catalog import Catalog, load_catalog
from .convert import ConvertContext, Edge, plan_path
from .data import Dataset, load_dataset
from .errors import ConversionError, DataError, OutputError, UsageError
from .formats import detect, get_format
from .formats.base import ModelInfo
from .profiles import Profile
from .project import LoadedProject, find_project
from .report import Artifact, Hop, Report
from .runtimes import get_runtime
from .runtimes.base import RuntimeOptions, Session
from .signature import Normalization, Signature
from .targets import Target
from .validate import accuracy as acc
from .validate import budget as budget_gate
from .validate.fidelity import compare_all
from .validate.latency import measure_isolated

#: samples of the eval set used to check each intermediate fp32 hop
HOP_CHECK_SAMPLES = 32
#: an fp32 hop may differ from the source by float rounding only: |err| <= tol * (1 + max|ref|)
HOP_CHECK_TOLERANCE = 1e-4
#: fidelity without any data: seeded standard-normal inputs (said loudly in the report)
RANDOM_EVAL_SAMPLES = 64


class Progress:
    """Receives the long steps of a build; the CLI draws them, the API ignores them."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        yield

    def warn(self, text: str) -> None:
        """A message the user must see now, not only in the report."""


@dataclass
class BuildRequest:
    model: Path
    target: str
    profile: str | None = None
    calibration: Path | None = None
    eval: Path | None = None
    output: Path | None = None
    force: bool = False
    threads: int | None = None
    warmup: int = 10
    runs: int = 100
    name: str | None = None
    labels: list[str] | None = None
    normalization: Normalization | None = None
    project: LoadedProject | None = None


def build(model: str | Path, target: str = "raspberrypi", *, profile: str | None = None,
          calibration: str | Path | None = None, eval: str | Path | None = None,
          output: str | Path | None = None, force: bool = False, threads: int | None = None,
          warmup: int = 10, runs: int = 100, targets_dirs: tuple[Path, ...] = (),
          profiles_dirs: tuple[Path, ...] = (), progress: Progress | None = None) -> Report:
    """Build ``model`` for ``target``; return the Report (also written to the output folder).

    ``model`` may be a model file/folder or a project folder holding ``edgepack.yaml``, whose
    settings fill in whatever is not passed here.
    """
    model_path = Path(model)
    project = find_project(model_path) if model_path.is_dir() else None
    req = BuildRequest(model=model_path, target=target, profile=profile,
                       calibration=Path(calibration) if calibration else None,
                       eval=Path(eval) if eval else None,
                       output=Path(output) if output else None, force=force, threads=threads,
                       warmup=warmup, runs=runs)
    if project is not None:
        _apply_project(req, project)
    catalog = load_catalog([*(project.targets_dirs if project else []), *targets_dirs],
                           [*(project.profiles_dirs if project else []), *profiles_dirs])
    return Builder(req, catalog, progress or Progress()).run()


def _apply_project(req: BuildRequest, project: LoadedProject) -> None:
    spec = project.spec
    req.project = project
    req.model = project.model
    req.name = project.name
    req.calibration = req.calibration or project.resolve(spec.calibration)
    req.eval = req.eval or project.resolve(spec.eval)
    req.labels = project.labels()
    req.normalization = spec.normalization.to_normalization() if spec.normalization else None


class Builder:
    def __init__(self, req: BuildRequest, catalog: Catalog, progress: Progress):
        self.req = req
        self.catalog = catalog
        self.progress = progress
        self.target: Target = catalog.targets.get(req.target)
        self.profile: Profile = catalog.profile_for(self.target, req.profile)
        self.warnings: list[str] = []
        self.tools: dict[str, str] = {}
        self.name = req.name or req.model.stem or req.model.name
        self.output = req.output or Path("build") / f"{self.name}-{self.target.name}"

    # ------------------------------------------------------------------------------ the build
    def run(self) -> Report:
        self._check_output()
        fmt = detect(self.req.model)
        profile = self._effective_profile(has_calibration=self.req.calibration is not None)
        dst_format, skipped = self._choose_format(fmt.name, profile)
        with self.progress.step(f"Loading {fmt.name} model"):
            info = fmt.inspect(self.req.model)
            source = get_runtime(fmt.runtime).load(str(self.req.model), RuntimeOptions())
        signature = info.signature.with_normalization(self.req.normalization)
        calib, evals, eval_meta = self._load_data(signature)

        parent = self.output.resolve().parent
        staging = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.tmp-", dir=parent))
        try:
            with tempfile.TemporaryDirectory(prefix="edgepack-work-") as work:
                refs = self._reference_outputs(source, evals)
                artifacts = self._convert(fmt.name, dst_format, profile, calib, evals, refs,
                                          source, Path(work), staging)
                source_acc = self._accuracy(refs, evals)
                for art in artifacts:
                    self._validate(art, staging, evals, refs, source_acc, profile)
            report = Report(
                edgepack_version=__version__,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                model=self._model_section(info, signature),
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
                skipped=skipped)
            report.write(staging)
            self._publish(staging)
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

    def _load_data(self, signature: Signature) -> tuple[Dataset | None, Dataset, dict[str, Any]]:
        calib = load_dataset(self.req.calibration, signature) if self.req.calibration else None
        if self.req.eval:
            evals = load_dataset(self.req.eval, signature)
            meta = {"source": str(self.req.eval), "samples": len(evals),
                    "labelled": evals.labels is not None}
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

    def _choose_format(self, src: str, profile: Profile) -> tuple[str, list[dict[str, str]]]:
        """The target's most preferred format that the profile produces and edgepack reaches."""
        skipped: list[dict[str, str]] = []
        chosen = None
        for fmt in self.target.formats:
            if fmt not in profile.formats:
                continue
            try:
                plan_path(src, fmt, profile.precision)
            except ConversionError as exc:
                skipped.append({"format": fmt, "precision": profile.precision,
                                "reason": str(exc)})
                continue
            if chosen is None:
                chosen = fmt
            else:
                skipped.append({"format": fmt, "precision": profile.precision,
                                "reason": f"{chosen} is preferred by the target"})
        if chosen is None:
            raise ConversionError(
                f"cannot build any format {self.target.name} accepts "
                f"({', '.join(self.target.formats)}) at {profile.precision} from {src}",
                hint="; ".join(s["reason"] for s in skipped) or
                     f"profile {profile.name} produces {', '.join(profile.formats)}")
        return chosen, skipped

    def _reference_outputs(self, source: Session, evals: Dataset) -> list[np.ndarray]:
        with self.progress.step(f"Running the source model on {len(evals)} eval samples"):
            out = source.run(evals.inputs)
        self.tools[source.runtime] = source.runtime_version
        return list(out.values())

    def _convert(self, src_format: str, dst_format: str, profile: Profile,
                 calib: Dataset | None, evals: Dataset, refs: list[np.ndarray],
                 source: Session, work: Path, staging: Path) -> list[Artifact]:
        """Deliverable and fp32 reference; the fp32 hops they share are run and checked once."""
        path = plan_path(src_format, dst_format, profile.precision)
        current = self.req.model
        hops: list[Hop] = []
        for edge in path[:-1]:
            ctx = ConvertContext(workdir=work, stem=self.name)
            current, hop = self._hop(edge, current, ctx)
            hop.check_max_abs_error = self._check_hop(edge, current, evals, refs)
            hops.append(hop)
        variants = [("deliverable", profile.precision)]
        if profile.precision != "fp32":
            variants.append(("reference", "fp32"))
        artifacts = []
        for role, precision in variants:
            ctx = ConvertContext(workdir=staging, stem=self.name, precision=precision,
                                 quantization=profile.quantization, calibration=calib)
            final, hop = self._hop(path[-1], current, ctx)
            artifacts.append(Artifact(
                role=role, format=dst_format, precision=precision, file=final.name,
                size_bytes=final.stat().st_size, sha256=_sha256(final), path=[*hops, hop],
                signature={}, notes=ctx.notes))
        return artifacts

    def _hop(self, edge: Edge, src: Path, ctx: ConvertContext) -> tuple[Path, Hop]:
        label = f"Converting {edge.src} -> {edge.dst}" + \
            (f" ({ctx.precision})" if ctx.precision != "fp32" else "")
        with self.progress.step(label):
            t0 = time.perf_counter()
            out = edge.convert(src, ctx)
            seconds = time.perf_counter() - t0
        version = edge.tool_version()
        self.tools[edge.tool] = version
        return out, Hop(edge.src, edge.dst, edge.tool, version, round(seconds, 3))

    def _check_hop(self, edge: Edge, produced: Path, evals: Dataset,
                   refs: list[np.ndarray]) -> float:
        """An fp32 hop must reproduce the source up to float rounding before the next hop."""
        fmt = get_format(edge.dst)
        check = evals.head(HOP_CHECK_SAMPLES)
        session = get_runtime(fmt.runtime).load(str(produced), RuntimeOptions())
        outs = list(session.run(check.inputs).values())
        worst = 0.0
        for ref, out in zip(refs, outs, strict=True):
            ref = ref[:len(check)]
            err = float(np.max(np.abs(np.asarray(out, np.float64).reshape(ref.shape) - ref)))
            worst = max(worst, err)
            if err > HOP_CHECK_TOLERANCE * (1 + float(np.max(np.abs(ref)))):
                raise ConversionError(
                    f"{edge.tool} changed the model's outputs ({edge.src} -> {edge.dst}: max abs "
                    f"error {err:.3g} on {len(check)} eval samples)", path=self.req.model)
        return worst

    def _accuracy(self, outs: list[np.ndarray], evals: Dataset) -> acc.Accuracy | None:
        if evals.labels is None or not outs or outs[0].ndim != 2:
            return None
        return acc.classification(outs[0], evals.labels)

    def _validate(self, art: Artifact, staging: Path, evals: Dataset, refs: list[np.ndarray],
                  source_acc: acc.Accuracy | None, profile: Profile) -> None:
        file = staging / art.file
        runtime = get_runtime(get_format(art.format).runtime)
        with self.progress.step(f"Validating {art.file} on {len(evals)} eval samples"):
            session = runtime.load(str(file), RuntimeOptions(threads=self._threads()))
            art.signature = session.signature.with_normalization(self.req.normalization).to_dict()
            outs = list(session.run(evals.inputs).values())
            art.fidelity = compare_all(session.signature.output_names, refs, outs)
            art.accuracy = self._accuracy(outs, evals)
        self.tools[runtime.name] = session.runtime_version
        with self.progress.step(f"Measuring host latency of {art.file} ({runtime.name})"):
            feed = evals.head(1).inputs
            art.latency = measure_isolated(runtime.name, file, feed,
                                           RuntimeOptions(threads=self._threads()),
                                           warmup=self.req.warmup, runs=self.req.runs)
        if art.role == "deliverable":
            art.budget = budget_gate.evaluate(profile.name, profile.budget, art.fidelity,
                                              source_acc, art.accuracy)

    def _threads(self) -> int:
        """Host latency uses as many threads as the target has cores, at most the host's."""
        return max(1, min(self.req.threads or self.target.device.cores, os.cpu_count() or 1))

    def _model_section(self, info: ModelInfo, signature: Signature) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.req.model), "format": info.format,
                "parameters": info.parameters, "size_bytes": info.size_bytes,
                "sha256": _sha256(self.req.model), "signature": signature.to_dict(),
                "labels": self.req.labels}

    def _calibration_section(self, calib: Dataset | None,
                             profile: Profile) -> dict[str, Any] | None:
        if calib is None:
            return None
        settings = profile.quantization.calibration if profile.quantization else None
        used = min(len(calib), settings.samples) if settings else 0
        return {"source": calib.source, "samples_available": len(calib), "samples_used": used,
                "seed": settings.seed if settings else None,
                "method": settings.method if settings else None}

    def _publish(self, staging: Path) -> None:
        """Move the finished folder into place; an old one is swapped out, then removed."""
        out = self.output
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp made it private; a build folder is not
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _random_inputs(signature: Signature) -> Dataset:
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in signature.inputs:
        dims = [RANDOM_EVAL_SAMPLES] + [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
        if any(isinstance(d, str) for d in spec.shape[1:]):
            raise UsageError(f"input '{spec.name}' has dynamic dimensions {spec.shape_str()} and "
                             "no data was given to fix them", hint="pass --eval DATA")
        inputs[spec.name] = rng.standard_normal(dims).astype(spec.dtype)
    return Dataset("random", inputs)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _host() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count()}
