"""What a device has, as the probe found it: a typed, serialisable object.

``probe_device`` sends ``probe.py`` to the board's python over stdin, so a check leaves nothing
behind on the board and needs nothing there but python3.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeviceCompatibilityError, DeviceError
from ..runtimes.integer_semantics import saturating
from .ssh import Connection

PROBE_TIMEOUT_S = 60


@dataclass
class DeviceFacts:
    arch: str
    os: str
    kernel: str
    hostname: str
    python: str
    python_executable: str
    cpu: str
    cores: int | None
    memory_total_mb: int | None
    memory_available_mb: int | None
    tmp_dir: str
    disk_free_mb: int | None
    packages: dict[str, str] = field(default_factory=dict)
    emulated: bool | None = None
    emulation: str = ""
    qemu_cpu: str | None = None
    throttled: str | None = None
    temperature_c: float | None = None
    cpu_flags: list[str] = field(default_factory=list)

    @property
    def int8_saturates(self) -> bool:
        """Whether ONNX Runtime's and OpenVINO's int8 kernels on this board add products in
        saturating 16-bit steps (an x86 CPU without VNNI: runtimes/integer_semantics.py)."""
        return saturating(self.arch, self.cpu_flags)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceFacts:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def probe_device(conn: Connection, timeout: float = PROBE_TIMEOUT_S) -> DeviceFacts:
    """Run the probe on the device behind ``conn``."""
    device = conn.device
    source = (Path(__file__).with_name("probe.py")).read_bytes()
    done = conn.run(f"{device.python_command} -", stdin=source, timeout=timeout)
    if done.exit_status == 127:
        raise DeviceCompatibilityError(
            f"{device.name}: no '{device.spec.python}' on the board",
            hint="install python3 and numpy there (e.g. `sudo apt install python3-numpy`)")
    last = done.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    try:
        data = json.loads(last[0])
    except json.JSONDecodeError:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
        raise DeviceError(f"{device.name}: the probe failed (exit {done.exit_status}): "
                          f"{said[0][:200]}") from None
    facts = DeviceFacts.from_dict(data)
    if device.spec.emulated is not None:  # the inventory knows better than the heuristic
        facts.emulated = device.spec.emulated
        facts.emulation = "declared in the inventory"
    return facts
