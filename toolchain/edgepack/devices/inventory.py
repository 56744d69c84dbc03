"""The device inventory: which boards exist, how to reach them, what they are declared to run.

Two places, merged: the user's file (``$EDGEPACK_DEVICES``, else
``$XDG_CONFIG_HOME/edgepack/devices.yaml``, else ``~/.config/edgepack/devices.yaml``), which
``edgepack devices add/remove`` edit, and the ``devices:`` section of a project's
``edgepack.yaml``, which a team commits and edits by hand (it wins on a name clash). Both hold
the same mapping::

    devices:
      pi4:
        url: ssh://pi@192.168.1.20        # port optional (22)
        target: raspberrypi4              # optional: limits and defaults come from it
        key: ~/.ssh/id_ed25519            # optional: else the agent and ~/.ssh/id_*
        known_hosts: ~/.ssh/known_hosts   # default; host keys are checked against it
        runtimes: {tflite-runtime: "2.14"}  # optional: what the fleet runs (checked too)

No secret is ever stored here: login is by key or agent only.

Device names become file names (the per-device lock) and appear in messages, so every name is
checked wherever it is read (the user's file, a project's ``edgepack.yaml``, ``devices add``):
letters, digits, '.', '_' and '-', starting with a letter or digit. ``python`` is split into
words like a shell would and every word is quoted when it is sent to the board, so it names a
program and its arguments (``env PYTHONPATH=/opt/x python3`` works), never shell code.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator

from ..config.targets import Strict
from ..errors import ConfigError, UsageError

#: runtime packages a device may declare, and the adapter that runs each one's models
RUNTIME_PACKAGES: dict[str, str] = {
    "ai-edge-litert": "litert", "tflite-runtime": "litert", "tensorflow": "litert",
    "onnxruntime": "onnxruntime", "openvino": "openvino",
}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_HINT = "letters, digits, '.', '_' and '-', starting with a letter or digit (64 at most)"


def check_name(name: object, path: Path | None = None) -> str:
    """``name`` if it is a valid device name; else a ConfigError (from a file) or UsageError."""
    if isinstance(name, str) and re.match(NAME_PATTERN, name):
        return name
    if path is not None:
        raise ConfigError(f"devices: bad device name {str(name)[:80]!r}", path=path,
                          hint=NAME_HINT)
    raise UsageError(f"bad device name {str(name)[:80]!r}", hint=NAME_HINT)


class DeviceSpec(Strict):
    """One entry of the inventory, as written in the file."""

    url: str
    target: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    python: str = "python3"
    emulated: bool | None = None  # None: the probe decides (qemu-user is detected)
    runtimes: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        python_argv(value)
        return value

    @field_validator("runtimes")
    @classmethod
    def _runtimes(cls, value: dict[str, str]) -> dict[str, str]:
        for package, version in value.items():
            if package not in RUNTIME_PACKAGES:
                raise ValueError(f"unknown runtime package '{package}' (known: "
                                 f"{', '.join(RUNTIME_PACKAGES)})")
            if not all(p.isdigit() for p in str(version).split(".")):
                raise ValueError(f"version of {package} must look like 2.14 or 1.20.1")
        return {k: str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Device:
    """A device ready to connect to: its spec with the URL parsed and paths expanded."""

    name: str
    spec: DeviceSpec
    source: Path

    @property
    def user(self) -> str:
        return parse_url(self.spec.url)[0]

    @property
    def host(self) -> str:
        return parse_url(self.spec.url)[1]

    @property
    def port(self) -> int:
        return parse_url(self.spec.url)[2]

    @property
    def address(self) -> str:
        """How known_hosts names this host: ``host`` on port 22, else ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def python_command(self) -> str:
        """The board's python as a command line, every word quoted for the remote shell."""
        return " ".join(shlex.quote(w) for w in python_argv(self.spec.python))

    @property
    def key(self) -> Path | None:
        return Path(self.spec.key).expanduser() if self.spec.key else None

    @property
    def known_hosts(self) -> Path:
        return Path(self.spec.known_hosts or "~/.ssh/known_hosts").expanduser()


def python_argv(python: str) -> list[str]:
    """A device's ``python`` split into words as a shell would (program, then arguments)."""
    try:
        words = shlex.split(python)
    except ValueError as exc:
        raise ValueError(f"python: {exc}") from exc
    if not words or any(c in w for w in words for c in "\0\n\r"):
        raise ValueError("python must name a program (e.g. python3 or /usr/bin/python3)")
    return words


def parse_url(url: str) -> tuple[str, str, int]:
    """``ssh://user@host[:port]`` -> (user, host, port); the user defaults to the local one."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"'{url}' is not ssh://user@host[:port]")
    if parts.password is not None:
        raise ValueError("passwords are never stored: use a key or the ssh agent")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"'{url}' has a path or query; expected ssh://user@host[:port]")
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise ValueError(f"'{url}': bad port") from exc
    # both go into known_hosts lines and messages: names and addresses only
    if not re.fullmatch(r"[A-Za-z0-9._:%-]+", parts.hostname) or \
            not re.fullmatch(r"[A-Za-z0-9._-]*", parts.username or ""):
        raise ValueError(f"'{url}': the user and host may hold letters, digits, '.', '_', "
                         "'-' (and ':' in an IPv6 address) only")
    return parts.username or getpass.getuser(), parts.hostname, port


def user_inventory_path() -> Path:
    """The user's inventory file (it may not exist yet)."""
    if os.environ.get("EDGEPACK_DEVICES"):
        return Path(os.environ["EDGEPACK_DEVICES"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgepack" / "devices.yaml"


@dataclass
class Inventory:
    devices: dict[str, Device]
    user_file: Path

    def names(self) -> list[str]:
        return sorted(self.devices)

    def get(self, name: str) -> Device:
        if name in self.devices:
            return self.devices[name]
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = (f"did you mean {', '.join(close)}?" if close else
                f"known devices: {', '.join(self.names())}" if self.devices else
                "add one with `edgepack devices add NAME ssh://user@host --target TARGET`")
        raise UsageError(f"unknown device '{name}'", hint=hint)


def load_inventory(user_file: Path | None = None, project_file: Path | None = None) -> Inventory:
    """The user's devices, then the project's (which replace a user device of the same name)."""
    path = user_file or user_inventory_path()
    devices = _read(path) if path.is_file() else {}
    if project_file is not None and project_file.is_file():
        devices.update(_read(project_file, section_required=False))
    return Inventory(devices, path)


def add_device(name: str, spec: DeviceSpec, user_file: Path | None = None,
               replace: bool = False) -> Device:
    """Write ``name`` into the user's inventory (atomically); refuse to overwrite unless asked."""
    check_name(name)
    path = user_file or user_inventory_path()
    data = _raw(path)
    if name in data["devices"] and not replace:
        raise UsageError(f"device '{name}' already exists in {path}",
                         hint="pass --force to replace it")
    data["devices"][name] = spec.model_dump(exclude_defaults=True)
    _write(path, data)
    return Device(name, spec, path)


def remove_device(name: str, user_file: Path | None = None) -> None:
    path = user_file or user_inventory_path()
    data = _raw(path)
    if name not in data["devices"]:
        known = ", ".join(sorted(data["devices"])) or "none"
        raise UsageError(f"no device '{name}' in {path}", hint=f"known there: {known}")
    del data["devices"][name]
    _write(path, data)


def _raw(path: Path) -> dict:
    """The user file as plain data (an empty inventory when it does not exist yet)."""
    if not path.is_file():
        return {"devices": {}}
    data = _yaml(path)
    if not isinstance(data.get("devices", {}), dict):
        raise ConfigError("devices: expected a mapping of device names", path=path)
    data.setdefault("devices", {})
    return data


def _read(path: Path, section_required: bool = True) -> dict[str, Device]:
    data = _yaml(path)
    section = data.get("devices")
    if section is None:
        if section_required:
            raise ConfigError("expected a 'devices:' mapping at the top level", path=path)
        return {}
    if not isinstance(section, dict):
        raise ConfigError("devices: expected a mapping of device names", path=path)
    devices = {}
    for name, entry in section.items():
        check_name(name, path)
        try:
            spec = DeviceSpec.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"devices.{name}{'.' + loc if loc else ''}: {first['msg']}",
                              path=path) from exc
        devices[str(name)] = Device(str(name), _relative_to(spec, path.parent), path)
    return devices


def _relative_to(spec: DeviceSpec, folder: Path) -> DeviceSpec:
    """Key and known_hosts paths written relative to the file are relative to its folder."""
    update = {k: str(folder / Path(v)) for k in ("key", "known_hosts")
              if (v := getattr(spec, k)) and not Path(v).expanduser().is_absolute()
              and not v.startswith("~")}
    return spec.model_copy(update=update) if update else spec


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path) from exc
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".devices-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(data, fh, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
