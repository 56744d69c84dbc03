"""One cell of a build matrix: a request narrowed to one model and one target, built into its
own folder, or taken from the build cache when nothing it depends on changed.

The cache key covers the project's settings, the contents of the model and data files, the
target and profile, and every option that changes what is built or measured; a cell with
``--device`` is never taken from the cache (a board's numbers are measured, not reused).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache.keys import build_key, file_digest, host_facts, model_digest
from ..cache.store import BuildCache
from ..config.catalog import Catalog, load_catalog
from ..config.profiles import ROLE_NAMES
from ..config.project import LoadedProject
from ..errors import EdgepackError
from ..formats import detect, get_format
from ..staging import publish
from ..validate.accuracy import UserMetric
from .build import run_build
from .inputs import project_of, resolve_inputs

if TYPE_CHECKING:
    from ..request import BuildRequest

#: flat options that do not change what a cell's folder holds (where it goes, how the matrix
#: runs, whether to replace or reuse, how the exit is judged) and those the key covers
#: otherwise (the resolved data files' contents, the target and profile themselves, the
#: metric's code); a cell with devices is never cached. Every other option is in the key by
#: its value, or by the contents of the file it names.
_NOT_KEYED = frozenset({
    "model", "targets", "models", "output", "force", "jobs", "executor", "address", "cache",
    "cache_dir", "allow_accuracy_drop", "project", "targets_dirs", "profiles_dirs", "devices",
    "trust_new_host", "calibration", "evaluation", "metric"})


@dataclass
class Cell:
    model: str
    target: str
    status: str = "pending"  # built | cached | up-to-date | over budget | failed
    output: str = ""
    seconds: float = 0.0
    error: str | None = None
    exit_code: int = 0
    deliverables: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_cell(request: BuildRequest) -> Cell:
    """One cell, start to finish; every failure becomes the cell's status, never an exception
    (one broken model must not stop the rest of the matrix). The folder the cell writes is
    empty, an earlier build of this cell, or --force said to replace it (matrix.py)."""
    out = request.output.output
    cell = Cell(request.matrix.models[0], request.target, output=str(out))
    t0 = time.perf_counter()
    try:
        cache = BuildCache(request.cache.cache_dir)
        key = cell_key(request) if request.cache.cache and not request.devices.devices else None
        if key is not None:
            _refuse_untrusted(request)
        if key is not None and _up_to_date(cache, key, out):
            cell.status = "up-to-date"
        elif key is not None and _fetch(cache, key, out):
            cell.status = "cached"
        else:
            report = run_build(request.with_options(force=True))
            cell.status = "built" if report.passed else "over budget"
            if key is not None:
                cache.store(key, out)
        cell.deliverables = _summary(out)
        if cell.status != "over budget" and _report_failed(out):
            cell.status = "over budget"
    except EdgepackError as exc:
        cell.status, cell.error, cell.exit_code = "failed", str(exc), exc.exit_code
    cell.seconds = round(time.perf_counter() - t0, 2)
    return cell


def _refuse_untrusted(request: BuildRequest) -> None:
    """The exit-5 refusal a build gives a model file that can run code when code is not
    trusted: a cell built once with --trust-model-code must not hand its folder to a build
    without it (the cache key leaves trust out: trust changes who may build, not what)."""
    model = resolve_inputs(request, project_of(request)).model
    get_format(detect(model).name).checked_note(model)


def cell_key(request: BuildRequest) -> str | None:
    """Everything the cell's build folder depends on (the build cache's key); None (never
    cached) with a user metric whose code cannot be located."""
    inputs = resolve_inputs(request, project_of(request))
    project = inputs.project
    catalog = matrix_catalog(project, request)
    target = catalog.targets.get(request.target)
    profile = catalog.profile_for(target, request.profile)
    fallback = profile.fallback_without_calibration
    metric: dict[str, str] | None = None
    name = request.validation.metric
    if name in ROLE_NAMES:  # the first output's role, not code
        metric = {"role": name}
    elif name is not None:
        code = UserMetric.load(name).code_file()
        if code is None:
            return None
        metric = {"name": name, "code": file_digest(code)}
    # the model's every file: an IR's .bin, an ONNX file's external data
    files = {name: digest(p) for name, p, digest in (
        ("model", inputs.model, model_digest), ("calibration", inputs.calibration, file_digest),
        ("eval", inputs.evaluation, file_digest)) if p is not None and p.exists()}
    options = {name: _keyed(value) for name, value in request.flat().items()
               if name not in _NOT_KEYED}
    return build_key({
        "project": project.spec.model_dump(exclude={"models", "devices"}) if project else None,
        "data": files, "labels": inputs.labels, "target": target.model_dump(),
        "profile": profile.model_dump(),
        "fallback": catalog.profiles.get(fallback).model_dump() if fallback else None,
        "options": options, "metric": metric,
        "host": host_facts()})  # the cell's report holds latencies measured here


def matrix_catalog(project: LoadedProject | None, request: BuildRequest) -> Catalog:
    """The targets and profiles a cell's build sees: the project's folders, then the
    request's (as the build itself loads them)."""
    return load_catalog(
        [*(project.targets_dirs if project else []), *request.catalog.targets_dirs],
        [*(project.profiles_dirs if project else []), *request.catalog.profiles_dirs])


def _keyed(value: Any) -> Any:
    """An option's value in a key: a file by its contents, not its name."""
    if isinstance(value, Path):
        return file_digest(value) if value.exists() else str(value)
    return value


def _up_to_date(cache: BuildCache, key: str, out: Path) -> bool:
    """The output folder already is the cached build (same report): nothing to copy."""
    report = out / "report.json"
    if not report.is_file():
        return False
    recorded = cache.recorded_digest(key, "report.json")
    return recorded is not None and recorded == file_digest(report)


def _fetch(cache: BuildCache, key: str, out: Path) -> bool:
    """Replace ``out`` with the cached build; the old folder goes only once the new is in."""
    fresh = out.with_name(f".{out.name}.cached")
    shutil.rmtree(fresh, ignore_errors=True)
    if not cache.fetch(key, fresh):
        return False
    publish(fresh, out)
    return True


def _summary(out: Path) -> list[dict[str, Any]]:
    report = json.loads((out / "report.json").read_text())
    rows = []
    for a in report["artifacts"]:
        if a["role"] != "deliverable":
            continue
        fid = a["fidelity"][0] if a["fidelity"] else {}
        rows.append({"file": a["file"], "format": a["format"], "precision": a["precision"],
                     "size_bytes": a["size_bytes"],
                     "top1_agreement": fid.get("top1_agreement"), "cosine": fid.get("cosine"),
                     "top1": (a.get("accuracy") or {}).get("top1"),
                     "p50_ms": (a.get("latency") or {}).get("p50_ms")})
    return rows


def _report_failed(out: Path) -> bool:
    return json.loads((out / "report.json").read_text()).get("status") == "failed"
