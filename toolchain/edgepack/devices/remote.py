"""Run an artifact on a device: lock, connect, probe, check, upload, run, compare, clean up.

``bench_on_device`` is the whole protocol for one device; ``bench_on_devices`` runs several
devices at once (one thread and one connection each; a device's lock keeps two benchmarks off
the same board). The board gets a private ``mktemp -d`` folder holding the runner zipapp, the
artifact, the inputs and a spec; the runner prints its result as one JSON line, and the folder
is removed afterwards on every path:

* normal end, runner failure or timeout: the remote wrapper's EXIT trap removes it, and the host
  removes it again (idempotent) before closing;
* dropped connection: the host reconnects, stops the runner's process group and removes it; if
  the board cannot be reached again, the wrapper still removes it when the runner ends (the
  runner is itself bounded by ``timeout`` on the board), and the error says so.

Nothing here writes to the host build folder: results come back as a ``DeviceResult``.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, DeviceMismatchError, EdgepackError, ModelError
from ..runtimes.base import RuntimeOptions
from ..runtimes.integer_semantics import kernels_saturate
from ..signature import Signature
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats
from . import compat
from .agreement import AS_WRITTEN, KERNELS, HostReference, agree
from .facts import DeviceFacts, probe_device
from .inventory import Device, load_inventory, python_argv
from .lock import device_lock
from .quant_steps import output_steps
from .runner import build_runner
from .ssh import CommandTimeout, Connection, DroppedError, connect

#: the remote wrapper: private folder removed on every exit, runner bounded by `timeout`, its
#: process group recorded so a host that lost the connection can stop it
_WRAPPER = r"""
d=$1; t=$2; shift 2
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP
trap 'exit 143' INT TERM
cd "$d" || exit 97
timeout -k 5 "$t" "$@" &
echo $! > "$d/pgid"
wait $!
"""
#: seconds the host waits beyond the board's own deadline before calling a run lost
_GRACE_S = 20
#: what `mktemp -d` may answer: a plain absolute path (it goes into SFTP paths and commands)
_REMOTE_DIR = re.compile(r"/[A-Za-z0-9._/-]+")
#: stdout the runner may send beyond its outputs (base64 grows them by a third)
_ANSWER_OVERHEAD = 16 << 20


@dataclass
class DeviceResult:
    """What one device did with one artifact. Timings on an emulated device are not performance."""

    device: str
    artifact: str
    facts: DeviceFacts
    emulated: bool
    runtime: str
    runtime_version: str
    latency: LatencyStats
    fidelity: list[OutputFidelity]
    tolerances: list[float]
    failures: list[str]
    checked: list[str]
    seconds: dict[str, float]
    compared_with: str = KERNELS
    notes: list[str] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "artifact": self.artifact, "emulated": self.emulated,
            "timings_are_performance": not self.emulated, "passed": self.passed,
            "failures": self.failures, "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "latency": self.latency.to_dict(with_samples=False),
            "fidelity": [f.to_dict() for f in self.fidelity], "tolerances": self.tolerances,
            "checked": self.checked, "seconds": self.seconds, "facts": self.facts.to_dict(),
            "compared_with": self.compared_with, "notes": self.notes,
        }

    def raise_for_mismatch(self) -> None:
        if self.failures:
            raise DeviceMismatchError(f"{self.device}: {self.artifact} computes differently on "
                                      f"the device: {'; '.join(self.failures)}")


def check_device(device: Device | str, trust_new_host: bool = False,
                 timeout: float = 60) -> DeviceFacts:
    """Connect and probe: what ``edgepack devices check`` reports."""
    dev = _resolve(device)
    with connect(dev, trust_new_host=trust_new_host, timeout=min(timeout, 30)) as conn:
        return probe_device(conn, timeout=timeout)


def host_reference(artifact: Path, feed: dict[str, np.ndarray]) -> HostReference:
    """The artifact's outputs on this host, with the runtime the device will use: from this
    host's own kernels, and computed as written where those saturate (``exact_options``)."""
    from ..runtimes import get_runtime
    from ..validate.outputs import exact_options

    runtime = get_runtime(compat.runtime_for(artifact)[0])
    options = exact_options(runtime.name)

    def outputs(opts: RuntimeOptions) -> list[np.ndarray]:
        return list(runtime.load(str(artifact), opts).run(feed).values())

    return HostReference(outputs(replace(options, extra={})),
                         outputs(options) if options.extra else None)


#: eval samples sent to a board for its fidelity check: emulated boards are 170-700x slower
DEVICE_SAMPLES = 32


def bench_on_device(device: Device | str, artifact: str | Path, feed: dict[str, np.ndarray],
                    reference: HostReference | None = None, *, runs: int = 20,
                    warmup: int = 3, threads: int | None = None, timeout: float = 600,
                    trust_new_host: bool = False, lock_wait_s: float = 600,
                    tolerance: float | None = None,
                    sources: list[np.ndarray | None] | None = None) -> DeviceResult:
    """Run ``artifact`` on ``device``: on-device latency and fidelity against ``reference``.

    ``feed``: input name -> batch; all of it is run for fidelity, its first sample is timed.
    ``reference``: the host's outputs for ``feed`` (None: run the artifact here to get them).
    ``sources``: for a compressed file, the source model's outputs for ``feed`` in the file's
    order and layouts (devices/agreement.py ``as_faithful``).
    Device problems raise DeviceError subclasses (exit 4); a fidelity mismatch does not raise
    but fills ``failures`` (``raise_for_mismatch`` turns it into exit 3).
    """
    dev = _resolve(device)
    path = Path(artifact)
    if not path.is_file():
        raise ModelError("no such file", path=path)
    if reference is None:
        reference = host_reference(path, feed)
    with device_lock(dev.name, wait_s=lock_wait_s), \
            tempfile.TemporaryDirectory(prefix="edgepack-device-") as tmp:
        return _Run(dev, path, feed, Path(tmp), runs, warmup, threads, timeout,
                    trust_new_host).execute(reference, tolerance, sources)


def bench_on_devices(devices: Sequence[Device | str], artifact: str | Path,
                     feed: dict[str, np.ndarray], reference: HostReference | None = None,
                     **options: Any) -> list[DeviceResult | EdgepackError]:
    """``bench_on_device`` on several devices concurrently; one result or error per device.

    An error on one device does not stop the others: each entry is that device's DeviceResult
    or the EdgepackError it raised, in the order the devices were given (duplicates dropped).
    """
    names = list(dict.fromkeys(d if isinstance(d, str) else d.name for d in devices))
    resolved = {(d if isinstance(d, str) else d.name): _resolve(d) for d in devices}
    if reference is None:
        reference = host_reference(Path(artifact), feed)

    def one(name: str) -> DeviceResult | EdgepackError:
        try:
            return bench_on_device(resolved[name], artifact, feed, reference, **options)
        except EdgepackError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return list(pool.map(one, names))


@dataclass
class TurnsResult:
    """Files timed in turns on a board: each file's p50 in ms per round (rows: files)."""

    device: str
    facts: DeviceFacts
    runtime: str
    runtime_version: str
    p50_ms: np.ndarray


def time_in_turns_on_device(device: Device | str, files: Sequence[Path],
                            feeds: Sequence[dict[str, np.ndarray]], *, rounds: int, runs: int,
                            warmup: int, threads: int | None, extra: dict[str, Any],
                            timeout: float = 600, trust_new_host: bool = False,
                            lock_wait_s: float = 600) -> TurnsResult:
    """``files`` (one format, each with its feed) timed in turns on ``device``, as the
    build's speed step times them on the host (validate/latency.py ``time_in_turns``)."""
    dev = _resolve(device)
    with device_lock(dev.name, wait_s=lock_wait_s), \
            tempfile.TemporaryDirectory(prefix="edgepack-device-") as tmp:
        run = _Turns(dev, list(files), list(feeds), Path(tmp), rounds, runs, warmup, threads,
                     extra, timeout, trust_new_host)
        facts, check, answer = run._exchange(_ANSWER_OVERHEAD)
    return TurnsResult(dev.name, facts, check.runtime, answer["runtime_version"],
                       np.asarray(answer["p50_ms"], dtype=float))


def _resolve(device: Device | str) -> Device:
    if isinstance(device, Device):
        return device
    from ..config.project import PROJECT_FILE

    return load_inventory(project_file=Path.cwd() / PROJECT_FILE).get(device)


class _Run:
    """One benchmark on one device; ``execute`` always leaves the board as it found it."""

    def __init__(self, device: Device, artifact: Path, feed: dict[str, np.ndarray], tmp: Path,
                 runs: int, warmup: int, threads: int | None, timeout: float,
                 trust_new_host: bool):
        self.device, self.artifact, self.feed, self.tmp = device, artifact, feed, tmp
        self.runs, self.warmup, self.threads, self.timeout = runs, warmup, threads, timeout
        self.trust_new_host = trust_new_host
        self.remote_dir: str | None = None
        self.seconds: dict[str, float] = {}

    def execute(self, reference: HostReference, tolerance: float | None,
                sources: list[np.ndarray | None] | None) -> DeviceResult:
        facts, check, answer = self._exchange(_ANSWER_OVERHEAD + 2 * sum(
            r.nbytes for r in reference.kernels))
        return self._result(facts, check, answer, reference, tolerance, sources)

    def _exchange(self, max_answer: int
                  ) -> tuple[DeviceFacts, compat.Compatibility, dict[str, Any]]:
        """Connect, probe, check, upload, run: the board's facts, what was checked and the
        runner's answer; the board is left as it was found on every path."""
        t0 = time.perf_counter()
        conn = connect(self.device, trust_new_host=self.trust_new_host,
                       timeout=min(self.timeout, 30))
        self.seconds["connect"] = _since(t0)
        try:
            facts = probe_device(conn, timeout=min(self.timeout, 120))
            self.seconds["probe"] = _since(t0) - self.seconds["connect"]
            uploads = self._prepare()
            check = compat.check_artifact(self.device, facts, self.artifact,
                                          sum(p.stat().st_size for p in uploads),
                                          self._memory_limit())
            answer = self._upload_and_run(conn, uploads, check.runtime, max_answer)
        except DroppedError as exc:
            raise self._after_drop(exc) from None
        finally:
            self._cleanup(conn)
            conn.close()
        self.seconds["total"] = _since(t0)
        return facts, check, answer

    # -- steps ---------------------------------------------------------------------------------
    def _prepare(self) -> list[Path]:
        """Runner, inputs and spec in a local folder, ready to upload with the artifact."""
        runtime, _ = compat.runtime_for(self.artifact)
        names = list(self.feed)
        np.savez(self.tmp / "inputs.npz", **{f"in{i}": np.asarray(self.feed[n])
                                             for i, n in enumerate(names)})
        spec = {"runtime": runtime, "model": self.artifact.name, "inputs": "inputs.npz",
                "input_names": names, "threads": self.threads or self._cores(),
                "runs": self.runs, "warmup": self.warmup}
        (self.tmp / "spec.json").write_text(json.dumps(spec))
        build_runner(self.tmp / "runner.pyz")
        return [self.tmp / "runner.pyz", self.tmp / "inputs.npz", self.tmp / "spec.json",
                *compat.artifact_files(self.artifact)]

    def _upload_and_run(self, conn: Connection, uploads: list[Path], runtime: str,
                        max_answer: int) -> dict[str, Any]:
        made = conn.run('mktemp -d "${TMPDIR:-/tmp}/edgepack.XXXXXXXX"', timeout=60,
                        max_stdout=4096)
        folder = made.stdout.decode("utf-8", "replace").strip()
        if made.exit_status != 0 or not _REMOTE_DIR.fullmatch(folder) or ".." in folder:
            raise DeviceError(f"{self.device.name}: cannot make a temporary folder on the "
                              f"board: {made.stderr.decode(errors='replace').strip()[:200]}")
        self.remote_dir = folder
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        for local in uploads:
            conn.put(local, f"{folder}/{local.name}",
                     timeout=max(1.0, deadline - time.monotonic()))
        self.seconds["upload"] = _since(t0)
        limit = int(self.timeout)
        command = " ".join(shlex.quote(a) for a in [
            "sh", "-c", _WRAPPER, "sh", folder, str(limit),
            *python_argv(self.device.spec.python), "runner.pyz", "spec.json"])
        t0 = time.perf_counter()
        try:
            done = conn.run(command, timeout=limit + _GRACE_S, max_stdout=max_answer)
        except CommandTimeout:
            raise DeviceError(f"{self.device.name}: the run of {self.artifact.name} did not "
                              f"finish within {limit} s", hint="raise --timeout") from None
        self.seconds["run"] = _since(t0)
        if done.exit_status == 124:
            raise DeviceError(f"{self.device.name}: the run of {self.artifact.name} did not "
                              f"finish within {limit} s on the board", hint="raise --timeout")
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
            raise DeviceError(f"{self.device.name}: the runner failed (exit "
                              f"{done.exit_status}): {said[0][:300]}") from None
        if not answer.get("ok"):
            raise DeviceError(f"{self.device.name}: {runtime} on the board could not run "
                              f"{self.artifact.name}: {answer.get('error')}",
                              hint="see `edgepack devices check` for what the board has")
        return answer

    def _result(self, facts: DeviceFacts, check: compat.Compatibility, answer: dict[str, Any],
                reference: HostReference, tolerance: float | None,
                sources: list[np.ndarray | None] | None) -> DeviceResult:
        with np.load(io.BytesIO(base64.b64decode(answer["outputs_npz"])),
                     allow_pickle=False) as npz:
            outputs = [npz[f"out{i}"] for i in range(int(answer["outputs"]))]
        signature = Signature.from_dict(answer["signature"])
        host, as_written = reference.for_board(facts.int8_saturates)
        verdict = agree(host, outputs, list(signature.outputs), tolerance,
                        output_steps(self.artifact), as_written, sources)
        if verdict.failures and facts.int8_saturates and not kernels_saturate() \
                and check.runtime in ("onnxruntime", "openvino"):
            verdict.failures.append(
                "this board's int8 kernels add products in saturating 16-bit steps (an x86 "
                "CPU without VNNI), which this host's do not: its int8 outputs differ from "
                "what the file says")
        return DeviceResult(
            device=self.device.name, artifact=self.artifact.name, facts=facts,
            emulated=bool(facts.emulated), runtime=check.runtime,
            runtime_version=answer["runtime_version"],
            latency=LatencyStats(**answer["latency"]), fidelity=verdict.fidelity,
            tolerances=verdict.tolerances, failures=verdict.failures, checked=check.checked,
            seconds={k: round(v, 3) for k, v in self.seconds.items()},
            compared_with=AS_WRITTEN if as_written else KERNELS, notes=verdict.notes,
            outputs=outputs)

    # -- cleanup -------------------------------------------------------------------------------
    def _cleanup(self, conn: Connection) -> None:
        """Stop the runner if it still runs and remove the folder (over ``conn`` if alive)."""
        if self.remote_dir is None or not conn.active:
            return
        try:
            conn.run(_kill_and_remove(self.remote_dir), timeout=30)
            self.remote_dir = None
        except DeviceError:
            pass  # the caller reports what was left

    def _after_drop(self, exc: DroppedError) -> DroppedError:
        """Reconnect to clean up after a dropped connection; say whether it worked."""
        if self.remote_dir is None:
            return exc
        try:
            with connect(self.device, timeout=15) as again:
                again.run(_kill_and_remove(self.remote_dir), timeout=30)
            self.remote_dir = None
            note = "the run was stopped and its folder removed from the board"
        except EdgepackError:
            note = (f"{self.remote_dir} on the board could not be removed now; it removes "
                    f"itself when the run ends (within {int(self.timeout)} s)")
        return DroppedError(f"{exc} ({note})")

    # -- device knowledge ----------------------------------------------------------------------
    def _target(self) -> Any:
        if not self.device.spec.target:
            return None
        from ..config.catalog import load_catalog

        return load_catalog().targets.get(self.device.spec.target)

    def _memory_limit(self) -> float | None:
        target = self._target()
        return target.limits.max_model_mb if target is not None else None

    def _cores(self) -> int | None:
        target = self._target()
        return target.device.cores if target is not None else None


class _Turns(_Run):
    """Several files of one format timed in turns in one run of the runner; each goes to the
    board under a name of its own (``m<i>.``), as the files of a search share one name."""

    def __init__(self, device: Device, files: list[Path], feeds: list[dict[str, np.ndarray]],
                 tmp: Path, rounds: int, runs: int, warmup: int, threads: int | None,
                 extra: dict[str, Any], timeout: float, trust_new_host: bool):
        super().__init__(device, files[0], feeds[0], tmp, runs, warmup, threads, timeout,
                         trust_new_host)
        self.files, self.feeds, self.rounds, self.extra = files, feeds, rounds, extra

    def _prepare(self) -> list[Path]:
        runtime, _ = compat.runtime_for(self.artifact)
        models, uploads = [], []
        for j, file in enumerate(self.files):
            for part in compat.artifact_files(file):
                renamed = self.tmp / f"m{j}.{part.name}"
                shutil.copyfile(part, renamed)
                uploads.append(renamed)
            models.append(f"m{j}.{file.name}")
        np.savez(self.tmp / "inputs.npz", **{f"m{j}_in{i}": np.asarray(v)
                                             for j, feed in enumerate(self.feeds)
                                             for i, v in enumerate(feed.values())})
        spec = {"mode": "turns", "runtime": runtime, "models": models, "inputs": "inputs.npz",
                "input_names": [list(feed) for feed in self.feeds],
                "threads": self.threads or self._cores(), "rounds": self.rounds,
                "runs": self.runs, "warmup": self.warmup, "extra": self.extra}
        (self.tmp / "spec.json").write_text(json.dumps(spec))
        build_runner(self.tmp / "runner.pyz")
        return [self.tmp / "runner.pyz", self.tmp / "inputs.npz", self.tmp / "spec.json",
                *uploads]


def _kill_and_remove(folder: str) -> str:
    q = shlex.quote(folder)
    return (f"if [ -f {q}/pgid ]; then kill -TERM -- -$(cat {q}/pgid) 2>/dev/null; fi; "
            f"rm -rf {q}")


def _since(t0: float) -> float:
    return time.perf_counter() - t0
