"""The one error hierarchy of edgepack.

Every failure a user can act on is an ``EdgepackError`` carrying a one-line message and an exit
code. The CLI prints the message (no traceback unless ``--debug``) and exits with the code, so
scripts and CI can tell *why* a build failed without parsing text. The codes are documented in
the README; changing one is a breaking change.
"""

from __future__ import annotations

from pathlib import Path


class EdgepackError(Exception):
    """Base class: a failure with a message a user can act on."""

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.hint = hint
        text = f"{self.path}: {message}" if self.path else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)

    @property
    def message(self) -> str:
        return str(self)

    @property
    def bare(self) -> str:
        """The message without the leading path, for a caller whose message names the file
        once already."""
        text = str(self)
        return text[len(self.path) + 2:] if self.path and text.startswith(f"{self.path}: ") \
            else text


class EdgepackWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI shows it as
    one line, ``edgepack: warning: ...``)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception for a ModelError message."""
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else type(exc).__name__)


class InternalError(EdgepackError):
    """A bug in edgepack or a tool it drives that the user cannot fix by changing input."""

    exit_code = 1


class UsageError(EdgepackError):
    """Bad command-line arguments, an unknown target or profile, an invalid config file."""

    exit_code = 2


class ConfigError(UsageError):
    """A target, profile or project YAML file that does not match its schema."""


class BudgetError(EdgepackError):
    """Validation ran and the artifact failed the profile's accuracy budget."""

    exit_code = 3


class DeviceError(EdgepackError):
    """A device could not be reached or refused the work."""

    exit_code = 4


class HostKeyError(DeviceError):
    """A device's SSH host key is unknown or differs from known_hosts: nothing is sent to it."""


class DeviceConnectionError(DeviceError):
    """The SSH connection could not be made, was refused, dropped or timed out."""


class DeviceBusyError(DeviceError):
    """Another benchmark holds the device's lock."""


class DeviceCompatibilityError(DeviceError):
    """The artifact cannot run on the device: runtime missing or too old, not enough memory."""


class DeviceMismatchError(EdgepackError):
    """The device computed outputs that differ from the host's beyond tolerance (validation)."""

    exit_code = 3


class ModelError(EdgepackError):
    """A model file that is missing, unreadable, corrupt, of an unknown format or unsafe to load."""

    exit_code = 5


class DataError(EdgepackError):
    """Calibration or evaluation data that is missing, unreadable or does not fit the model."""

    exit_code = 6


class OutputError(EdgepackError):
    """The output location cannot be written (permissions, exists without --force, not a folder)."""

    exit_code = 7


class ConversionError(EdgepackError):
    """No converter path exists, or a converter failed or changed what the model computes."""

    exit_code = 8

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None,
                 edge: str | None = None, precision: str | None = None):
        super().__init__(message, path=path, hint=hint)
        #: the converter edge that failed, so the planner can route around it
        self.edge = edge
        #: the precision it failed to make (None: any): int8 that TensorFlow's calibrator
        #: cannot make says nothing about dynamic int8 by the same edge, which needs no
        #: calibration
        self.precision = precision


class MissingDependencyError(EdgepackError):
    """A runtime or tool a step needs is not installed here."""

    exit_code = 9


class BundleTamperedError(EdgepackError):
    """A release bundle whose contents do not match its manifest (checksum, file list, schema,
    model signature), or that cannot be read at all: it is not what was packaged."""

    exit_code = 10


class SignatureRequiredError(EdgepackError):
    """A public key was given but the bundle is unsigned, or its signature does not verify with
    that key: the bundle cannot be shown to come from the key's holder."""

    exit_code = 11


class UnsafeArchiveError(EdgepackError):
    """An archive refused before extraction: absolute or '..' paths, links, device files,
    duplicate names, or members too large or too compressed (zip bombs)."""

    exit_code = 12


class ResourceLimitError(EdgepackError):
    """A step ran past the time or memory cap (--max-seconds, --max-memory-mb)."""

    exit_code = 13


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug: please report it with --debug output)",
    2: "usage: bad arguments, unknown target/profile, invalid YAML config",
    3: "validation: an artifact failed the profile's accuracy budget",
    4: "device unreachable or refused the work",
    5: "model file missing, corrupt, of unknown format, or unsafe to load",
    6: "calibration/evaluation data missing, unreadable or not matching the model",
    7: "output location cannot be written",
    8: "conversion impossible or failed, or a hop changed the model's outputs",
    9: "a runtime or tool the step needs is not installed",
    10: "bundle tampered or corrupt: a checksum, the file list or the manifest does not match",
    11: "signature required (--key, --trusted-keys, --require-signature) but the bundle is "
        "unsigned or not signed by a trusted key",
    12: "unsafe archive refused before extraction (links, '..' or absolute paths, zip bomb)",
    13: "a time or memory limit was reached (--max-seconds, --max-memory-mb)",
}
