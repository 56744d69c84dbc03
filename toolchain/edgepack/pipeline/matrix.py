"""Many models x many targets: the build matrix of an ``edgepack.yaml`` zoo.

Each (model, target) cell is an ordinary ``edgepack build`` into ``OUT/<model>-<target>``, run
in its own process (frameworks hold memory and threads, and are not thread-safe), ``jobs`` at a
time. A cell whose inputs did not change since a previous run is taken from the build cache
(cache.py) instead of being built again: a rebuild of an unchanged matrix only checks hashes.
A cell that is built again (its profile changed, say) still reuses every step of its build
that the change did not touch, from the step cache (steps.py).

For zoos that outgrow one machine the same cells run as Ray tasks (``executor="ray"``, the
address of an existing cluster): a task builds into its own temporary folder and returns the
folder's files, which are written into the local build folder; the cache is shared when
``EDGEPACK_CACHE`` points at storage every node sees.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache.keys import build_key, file_digest, host_facts
from ..cache.store import BuildCache
from ..config.catalog import load_catalog
from ..config.project import LoadedProject, load_project
from ..errors import EdgepackError, MissingDependencyError, UsageError, first_line
from ..staging import publish

if TYPE_CHECKING:
    from .structural import StructuralRequest


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


@dataclass(frozen=True)
class CellJob:
    project: str
    model: str
    target: str
    output: str
    profile: str | None
    runs: int
    warmup: int
    threads: int | None
    cache_root: str | None
    use_cache: bool
    targets_dirs: tuple[str, ...] = ()
    profiles_dirs: tuple[str, ...] = ()
    structural: StructuralRequest | None = None  # --prune/--distill/...: for every cell


def plan(project: LoadedProject, models: tuple[str, ...] = (),
         targets: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(model, target) pairs: each model's targets (its own, else the project's), narrowed."""
    names = project.model_names
    unknown = [m for m in models if m not in names]
    if unknown:
        raise UsageError(f"no model {', '.join(unknown)} in {project.path}",
                         hint=f"models: {', '.join(names)}")
    pairs = []
    for name in models or tuple(names):
        spec = project.for_model(name).spec
        for target in targets or tuple(spec.targets):
            pairs.append((name, target))
    if not pairs:
        raise UsageError(f"nothing to build: {project.path} names no targets",
                         hint="add `targets:` to edgepack.yaml or pass --target")
    return pairs


def run_matrix(project_path: Path, *, models: tuple[str, ...] = (),
               targets: tuple[str, ...] = (), output: Path = Path("build"),
               profile: str | None = None, jobs: int = 1, runs: int = 100, warmup: int = 10,
               threads: int | None = None, use_cache: bool = True,
               cache_root: Path | None = None, targets_dirs: tuple[Path, ...] = (),
               profiles_dirs: tuple[Path, ...] = (), executor: str = "local",
               address: str | None = None,
               on_cell: Callable[[Cell], None] | None = None,
               structural: StructuralRequest | None = None) -> list[Cell]:
    """Build every cell; ``on_cell`` sees each one as it finishes (for a live view)."""
    project = load_project(project_path)
    pairs = plan(project, models, targets)
    jobs_list = [CellJob(str(project.path), m, t, str(output / f"{m}-{t}"), profile, runs,
                         warmup, threads, str(cache_root) if cache_root else None, use_cache,
                         tuple(map(str, targets_dirs)), tuple(map(str, profiles_dirs)),
                         structural=structural)
                 for m, t in pairs]
    cells: dict[tuple[str, str], Cell] = {}
    if executor == "ray":
        for cell in _run_on_ray(jobs_list, address):
            cells[(cell.model, cell.target)] = cell
            if on_cell:
                on_cell(cell)
    elif jobs <= 1:
        for job in jobs_list:
            cell = build_cell(job)
            cells[(job.model, job.target)] = cell
            if on_cell:
                on_cell(cell)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(build_cell, job): job for job in jobs_list}
            for future in as_completed(futures):
                cell = future.result()
                cells[(cell.model, cell.target)] = cell
                if on_cell:
                    on_cell(cell)
    return [cells[p] for p in pairs]


def _run_on_ray(jobs: list[CellJob], address: str | None) -> Iterator[Cell]:
    """Each cell as a Ray task on the cluster at ``address``; results as they finish."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("the Ray executor needs ray",
                                     hint="pip install 'edgepack[ray]'") from exc
    _reachable(address)  # ray.init retries an unreachable address for minutes
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 ignore_reinit_error=True)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise UsageError(f"cannot join the Ray cluster at {address}: {first_line(exc)}",
                         hint="start one with `ray start --head` and pass its address") from exc
    try:
        task = ray.remote(num_cpus=1)(_remote_cell)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                cell, archive = ray.get(done[0])
            except Exception as exc:  # the task or its worker died
                yield Cell(job.model, job.target, "failed", job.output,
                           error=f"Ray task failed: {first_line(exc)}", exit_code=1)
                continue
            if archive is not None:
                _unpack(archive, Path(job.output))
            cell.output = job.output
            yield cell
    finally:
        ray.shutdown()


def _reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse at once an address nothing listens on (``None``/"auto": Ray finds its own)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: {exc}",
                         hint="start one with `ray start --head` and pass its address") from exc


def _remote_cell(job: CellJob) -> tuple[Cell, bytes | None]:
    """On a Ray worker: build the cell in a private folder, return it as a tar archive."""
    with tempfile.TemporaryDirectory(prefix="edgepack-ray-") as tmp:
        local = replace(job, output=str(Path(tmp) / Path(job.output).name))
        cell = build_cell(local)
        out = Path(local.output)
        if not out.is_dir():
            return cell, None
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for f in sorted(out.rglob("*")):
                if f.is_file():
                    tar.add(f, arcname=str(f.relative_to(out)))
        return cell, buffer.getvalue()


def _unpack(archive: bytes, out: Path) -> None:
    """Write a returned build folder to ``out`` atomically (regular files only)."""
    staging = out.with_name(f".{out.name}.ray")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith(("/", "..")) or ".." in \
                    Path(member.name).parts:
                continue  # our own workers only write plain relative files
            tar.extract(member, staging, filter="data")
    publish(staging, out)


def build_cell(job: CellJob) -> Cell:
    """One cell, start to finish; every failure becomes the cell's status, never an exception
    (one broken model must not stop the rest of the matrix)."""
    from . import builder as pipeline

    cell = Cell(job.model, job.target, output=job.output)
    t0 = time.perf_counter()
    out = Path(job.output)
    try:
        project = load_project(Path(job.project))
        key = _key(project.for_model(job.model), job)
        cache = BuildCache(Path(job.cache_root) if job.cache_root else None)
        if job.use_cache and _up_to_date(cache, key, out):
            cell.status = "up-to-date"
        elif job.use_cache and _fetch(cache, key, out):
            cell.status = "cached"
        else:
            report = pipeline.build(project.root, job.target, profile=job.profile, output=out,
                                    force=True, runs=job.runs, warmup=job.warmup,
                                    threads=job.threads, model_name=job.model,
                                    targets_dirs=tuple(map(Path, job.targets_dirs)),
                                    profiles_dirs=tuple(map(Path, job.profiles_dirs)),
                                    cache=job.use_cache, cache_dir=job.cache_root,
                                    **(job.structural.build_kwargs() if job.structural else {}))
            cell.status = "built" if report.passed else "over budget"
            if job.use_cache:
                cache.store(key, out)
        cell.deliverables = _summary(out)
        if cell.status != "over budget" and _report_failed(out):
            cell.status = "over budget"
    except EdgepackError as exc:
        cell.status, cell.error, cell.exit_code = "failed", str(exc), exc.exit_code
    cell.seconds = round(time.perf_counter() - t0, 2)
    return cell


def _key(project: LoadedProject, job: CellJob) -> str:
    """Everything the cell's build folder depends on (the cache key's inputs)."""
    spec = project.spec
    catalog = load_catalog([*project.targets_dirs, *map(Path, job.targets_dirs)],
                           [*project.profiles_dirs, *map(Path, job.profiles_dirs)])
    target = catalog.targets.get(job.target)
    profile = catalog.profile_for(target, job.profile)
    fallback = profile.fallback_without_calibration
    data = {name: file_digest(p) for name, p in
            (("model", project.model), ("calibration", project.resolve(spec.calibration)),
             ("eval", project.resolve(spec.eval))) if p is not None and p.exists()}
    return build_key({
        "project": spec.model_dump(exclude={"models", "devices"}), "data": data,
        "labels": project.labels(), "target": target.model_dump(),
        "profile": profile.model_dump(),
        "fallback": catalog.profiles.get(fallback).model_dump() if fallback else None,
        "options": {"runs": job.runs, "warmup": job.warmup, "threads": job.threads},
        "structural": job.structural.cache_facts() if job.structural else None,
        "host": host_facts()})  # the cell's report holds latencies measured here


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
