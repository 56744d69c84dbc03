"""Resource limits: a time cap and a memory cap for a command, and a bound on the arrays
edgepack allocates from what a model file *declares*.

A model file is untrusted input: a shape of ``[1, 2**40, 2**20]`` is four bytes of protobuf, and
allocating random inputs of that shape would take the machine down (or fail deep in numpy with
an "internal error"). Every allocation made from a declared shape goes through
``check_allocation`` and is refused, naming the tensor, when it exceeds the memory cap.

The caps (``edgepack --max-seconds S --max-memory-mb M CMD``, or ``EDGEPACK_MAX_SECONDS`` /
``EDGEPACK_MAX_MEMORY_MB``) apply to the whole command, so to calibration and validation too:

* time: a wall-clock deadline. A watchdog thread interrupts Python-level work (calibration
  loops, validation loops, data loading) as soon as native code returns, and edgepack's waits
  for its child processes (``run_child``) in slices; long steps are also checked when they
  start and end (``guarded``). The build then stops, leaving no output. The watchdog interrupts
  once, so the build's cleanup (staging folders, child processes) runs to its end, and the step
  boundaries raise from then on, also where that one interruption landed in code that swallows
  exceptions (a weakref callback). It sends no OS signal: a signal's handler runs on the
  thread's alternate signal stack, and a native library that frees the one it installed leaves
  it dangling (seen in the test suite: SIGALRM's handler ran inside libtorch_global_deps.so's
  mapping and the process died with SIGSEGV).
* memory: the process's resident memory, checked at every step boundary and by the watchdog
  (every second), plus the allocation bound above. It is a cap that stops a runaway build with a
  clear message, not a kernel limit (TensorFlow reserves far more address space than it uses,
  so RLIMIT_AS would break normal builds).

Exceeding either raises ResourceLimitError (exit 13) naming the step that was running.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError, ResourceLimitError

#: allocations from declared shapes above this are refused even without --max-memory-mb
DEFAULT_MAX_ALLOCATION_MB = 4096
#: seconds between the watchdog's looks at the clock and the resident memory, and the slices
#: ``run_child`` waits in
WATCH_PERIOD_S = 1.0


@dataclass
class Limits:
    max_seconds: float | None = None
    max_memory_mb: float | None = None
    started: float = 0.0
    step: str = "starting"


_active: Limits | None = None


def from_env() -> tuple[float | None, float | None]:
    def num(name: str) -> float | None:
        value = os.environ.get(name, "").strip()
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            from .errors import UsageError

            raise UsageError(f"{name}={value!r} is not a number") from None

    return num("EDGEPACK_MAX_SECONDS"), num("EDGEPACK_MAX_MEMORY_MB")


def rss_mb() -> float:
    """Resident memory of this process now, in MB (0 where /proc is not readable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def exceeded(lim: Limits) -> ResourceLimitError | None:
    """The error for the first cap ``lim`` is past now, or None."""
    if lim.max_seconds is not None:
        spent = time.monotonic() - lim.started
        if spent > lim.max_seconds:
            return ResourceLimitError(
                f"time limit of {lim.max_seconds:g} s reached after {spent:.1f} s, during: "
                f"{lim.step}", hint="raise --max-seconds, or use less calibration/eval data "
                                    "and fewer --runs")
    if lim.max_memory_mb is not None:
        used = rss_mb()
        if used > lim.max_memory_mb:
            return ResourceLimitError(
                f"memory limit of {lim.max_memory_mb:g} MB exceeded ({used:.0f} MB resident), "
                f"during: {lim.step}", hint="raise --max-memory-mb, or use fewer calibration/"
                                            "eval samples")
    return None


def check(step: str | None = None) -> None:
    """Raise ResourceLimitError when the active caps are exceeded."""
    lim = _active
    if lim is None:
        return
    if step:
        lim.step = step
    error = exceeded(lim)
    if error is not None:
        raise error


def _on_interrupt(signum: int, frame: Any) -> None:
    """Runs in the main thread when the watchdog calls ``_thread.interrupt_main``."""
    check()


class _Watchdog(threading.Thread):
    """Looks at the caps every ``period`` seconds and interrupts the main thread once, the way
    a signal would but without one (``_thread.interrupt_main`` runs the Python handler)."""

    def __init__(self, lim: Limits, period: float):
        super().__init__(name="edgepack-limits", daemon=True)
        self.lim = lim
        self.period = period
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            if exceeded(self.lim) is not None:  # once: a second would break into the cleanup
                _thread.interrupt_main(signal.SIGALRM)
                return


def run_child(argv: Sequence[str], *, timeout: float, **popen: Any
              ) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, timeout=timeout, **popen)``, waiting in
    slices so that the caps stop the command while a child runs (the child is killed)."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          **popen) as proc:
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    out, err = proc.communicate(timeout=max(0.0, min(left, WATCH_PERIOD_S)))
                    break
                except subprocess.TimeoutExpired:
                    check()
                    if left <= WATCH_PERIOD_S:
                        raise subprocess.TimeoutExpired(list(argv), timeout) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


@contextlib.contextmanager
def applied(max_seconds: float | None = None,
            max_memory_mb: float | None = None) -> Iterator[Limits | None]:
    """Apply the caps (falling back to the environment's) for the ``with`` body."""
    global _active
    env_s, env_mb = from_env()
    max_seconds = max_seconds if max_seconds is not None else env_s
    max_memory_mb = max_memory_mb if max_memory_mb is not None else env_mb
    if max_seconds is None and max_memory_mb is None:
        yield None
        return
    previous = _active
    _active = Limits(max_seconds, max_memory_mb, time.monotonic())
    # interrupt_main reaches a Python handler only, and only the main thread may set one
    watch = threading.current_thread() is threading.main_thread()
    if watch:
        old_handler = signal.signal(signal.SIGALRM, _on_interrupt)
        watchdog = _Watchdog(_active, min(WATCH_PERIOD_S, max_seconds or WATCH_PERIOD_S))
        watchdog.start()
    try:
        yield _active
    finally:
        try:
            if watch:
                watchdog.stopped.set()
                watchdog.join()
        finally:  # an interruption tripped just now may land above: never skip this
            # first: signal.signal runs a pending interruption before it swaps the handler, and
            # that must find these caps gone (the body has ended), not raise past this line
            _active = previous
            if watch:
                signal.signal(signal.SIGALRM, old_handler)


class guarded:
    """Wraps a pipeline Progress: every step checks the caps when it starts and ends, and
    names itself in the message of a limit reached while it runs."""

    def __init__(self, progress: Any):
        self._progress = progress

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        check(text)
        with self._progress.step(text):
            yield
        check(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)


def max_allocation_bytes() -> int:
    lim = _active
    if lim is not None and lim.max_memory_mb is not None:
        return int(lim.max_memory_mb * 2**20)
    _, env_mb = from_env()
    return int((env_mb or DEFAULT_MAX_ALLOCATION_MB) * 2**20)


def check_allocation(shape: tuple[int, ...], dtype: Any, what: str,
                     path: str | Path | None = None) -> None:
    """Refuse to allocate an array of ``shape`` declared by a model file when it is too big."""
    import numpy as np

    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        itemsize = 8
    elements = 1
    for d in shape:
        if not isinstance(d, (int, np.integer)) or d < 0:
            raise ModelError(f"{what}: invalid dimension {d!r} in shape {tuple(shape)}",
                             path=path)
        elements *= int(d)  # Python ints: no overflow
    need = elements * itemsize
    cap = max_allocation_bytes()
    if need > cap:
        raise ModelError(
            f"{what}: the declared shape {tuple(int(d) for d in shape)} needs "
            f"{need / 2**20:,.0f} MB, more than the {cap / 2**20:,.0f} MB allowed", path=path,
            hint="the file may be corrupt; a real model this large: raise --max-memory-mb "
                 "(or EDGEPACK_MAX_MEMORY_MB), or pass real inputs of a smaller shape")
