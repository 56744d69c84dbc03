"""One benchmark per device at a time: an fcntl lock file per device on this host.

Two benchmarks sharing a board's cores measure each other, so the second one waits (up to
``wait_s``) and is then refused with the holder's pid. The lock is released by the kernel when
the holding process dies, so a crashed run never leaves a device locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import DeviceBusyError
from .inventory import check_name


def state_dir() -> Path:
    """Where edgepack keeps per-user state: ``$EDGEPACK_STATE_DIR``, else the XDG state dir."""
    if os.environ.get("EDGEPACK_STATE_DIR"):
        return Path(os.environ["EDGEPACK_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgepack"


@contextlib.contextmanager
def device_lock(name: str, wait_s: float = 600, poll_s: float = 0.2) -> Iterator[Path]:
    """Hold ``name``'s lock for the block; DeviceBusyError after ``wait_s`` seconds of waiting.
    The name is checked first: it becomes a file name in the lock folder."""
    check_name(name)
    folder = state_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                    raise DeviceBusyError(
                        f"{name}: busy with another benchmark ({holder or 'unknown holder'})",
                        hint="run again when it has finished") from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
