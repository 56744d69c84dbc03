"""Matrix cells as Ray tasks on an existing cluster: a task builds its cell into a private
temporary folder and returns the folder's files, which are written into the local build folder;
the cache is shared when ``EDGEPACK_CACHE`` points at storage every node sees."""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError, UsageError, first_line
from ..staging import publish
from .cell import Cell, build_cell

if TYPE_CHECKING:
    from ..request import BuildRequest


def run_on_ray(requests: list[BuildRequest], address: str | None) -> Iterator[Cell]:
    """Each cell as a Ray task on the cluster at ``address``; results as they finish."""
    if not requests:
        return
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
        pending = {task.remote(request): request for request in requests}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            request = pending.pop(done[0])
            output = request.output.output
            try:
                cell, archive = ray.get(done[0])
            except Exception as exc:  # the task or its worker died
                yield Cell(request.matrix.models[0], request.target, "failed", str(output),
                           error=f"Ray task failed: {first_line(exc)}", exit_code=1)
                continue
            if archive is not None:
                _unpack(archive, output)
            cell.output = str(output)
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


def _remote_cell(request: BuildRequest) -> tuple[Cell, bytes | None]:
    """On a Ray worker: build the cell in a private folder, return it as a tar archive."""
    with tempfile.TemporaryDirectory(prefix="edgepack-ray-") as tmp:
        out = Path(tmp) / request.output.output.name
        cell = build_cell(request.with_options(output=out))
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
