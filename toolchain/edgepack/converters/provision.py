"""Converter tools whose declared pins conflict with edgepack's, installed on first use.

onnx2tf declares pins that would downgrade TensorFlow, numpy and protobuf, so it cannot be a
dependency of the package; it runs correctly on edgepack's pins. The first hop that needs it
installs the pinned set shipped with edgepack (``onnx2tf-requirements.txt``) into this Python
environment with ``pip install --no-deps``, the way Ultralytics installs its export tools:
the main pins are never touched, and the user sees one step saying what is installed. Where
pip cannot (offline, a read-only environment, ``EDGEPACK_AUTO_INSTALL=0``) the error names
the exact command to run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependencyError
from ..limits import run_child

#: set to 0 to never run pip: a missing tool is then an error saying what to install
AUTO_INSTALL_ENV = "EDGEPACK_AUTO_INSTALL"
#: pip gives up after this long (offline: a few retries, then the error)
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class ToolSet:
    """A pinned set of distributions a converter needs, installed without their dependencies."""

    name: str
    requirements: tuple[str, ...]  # "dist==version"

    @classmethod
    def from_file(cls, name: str, path: Path) -> ToolSet:
        """The pins of a requirements file (comments and blank lines skipped)."""
        lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
        return cls(name, tuple(ln for ln in lines if ln))

    def missing(self) -> list[str]:
        """The pins whose distribution is not installed here (any installed version counts:
        a user's own onnx2tf is used as it is)."""
        return [req for req in self.requirements if installed_version(_dist(req)) is None]

    def command(self, requirements: list[str] | None = None) -> list[str]:
        """The pip command that installs ``requirements`` (default: the whole set)."""
        return [sys.executable, "-m", "pip", "install", "--no-deps",
                "--disable-pip-version-check", "--no-input", "--retries", "2",
                *(requirements or self.requirements)]

    def hint(self) -> str:
        """What to run by hand: the whole set, pinned, without dependencies."""
        return f"install it with: {shlex.join(self.command())}"

    def ensure(self) -> list[str]:
        """Install what is missing; return what was installed (empty when nothing was).

        Raises MissingDependencyError, naming the command to run, when pip is turned off or
        fails. Concurrent builds on this machine wait for each other's install."""
        if not self.missing():
            return []
        if os.environ.get(AUTO_INSTALL_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
            raise MissingDependencyError(
                f"{self.name} is not installed ({AUTO_INSTALL_ENV}=0 turns off installing it "
                "on first use)", hint=self.hint())
        with _install_lock():
            todo = self.missing()
            if todo:
                _pip(self, todo)
        return todo


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dist(requirement: str) -> str:
    return requirement.split("==", 1)[0].strip()


def _pip(tools: ToolSet, requirements: list[str]) -> None:
    """Run pip; its last error line becomes the message when it fails."""
    try:
        done = run_child(tools.command(requirements), timeout=PIP_TIMEOUT_S, text=True,
                         stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"{tools.name} is not installed and pip could not install "
                                     f"it ({exc})", hint=tools.hint()) from exc
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no output"]
        raise MissingDependencyError(f"{tools.name} is not installed and pip could not install "
                                     f"it (exit {done.returncode}: {errors[0]})",
                                     hint=tools.hint())
    importlib.invalidate_caches()
    still = tools.missing()
    if still:
        raise MissingDependencyError(f"pip ran but {', '.join(still)} is still not importable "
                                     "here", hint=tools.hint())


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One install at a time into this environment (builds in parallel processes)."""
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"edgepack-install-{env}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: onnx2tf (ONNX -> TFLite and SavedModel) and what it imports beyond edgepack's dependencies
ONNX2TF = ToolSet.from_file("onnx2tf", Path(__file__).with_name("onnx2tf-requirements.txt"))
