"""The parts of a build report, typed: the model, target, profile, evaluation and calibration
sections, the formats not built and the on-device runs (the accuracy fallback's attempts are
validate/attempts.py's, below the converters that carry them).

Each is written to report.json under the keys it always had; a device run writes itself
(``OWN_JSON``, report/decode.py): its latency goes without the per-run samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..devices.agreement import KERNELS
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats


@dataclass
class ModelSection:
    """The source model the build started from."""

    name: str
    version: str
    path: str
    format: str
    parameters: int
    size_bytes: int
    sha256: str
    signature: dict[str, Any]
    labels: list[str] | None = None


@dataclass
class TargetSection:
    name: str
    title: str
    arch: str
    runtimes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProfileSection:
    name: str
    title: str
    precision: str
    requested: str  # the profile asked for (``name`` differs when it had to fall back)
    budget: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSection:
    """The samples fidelity and accuracy were measured on."""

    source: str
    samples: int
    labelled: bool
    preprocessing: dict[str, Any] | None = None  # what was applied to image files


@dataclass
class CalibrationSection:
    source: str
    samples_available: int
    samples_used: int
    preprocessing: dict[str, Any] | None = None
    seed: int | None = None
    method: str | None = None


@dataclass
class SkippedFormat:
    """A format the target accepts that was not built, and why."""

    format: str
    precision: str
    reason: str


@dataclass
class DeviceRun:
    """The deliverable on one board (``build --device``): its latency there, and its outputs
    compared with the same artifact's on the host. Timings on an emulated board are not
    performance."""

    OWN_JSON: ClassVar[bool] = True

    device: str
    artifact: str
    emulated: bool
    timings_are_performance: bool
    passed: bool
    failures: list[str]
    runtime: str
    runtime_version: str
    latency: LatencyStats
    fidelity: list[OutputFidelity]
    tolerances: list[float]
    checked: list[str]
    seconds: dict[str, float]
    facts: dict[str, Any]  # what the board reported about itself (devices/facts.py)
    compared_with: str = KERNELS  # devices/agreement.py HostReference
    #: outputs beyond their tolerance that passed within the file's own error from the source
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency"] = self.latency.to_dict(with_samples=False)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceRun:
        if not isinstance(d, dict):
            raise ValueError(f"a device run must be an object, got {type(d).__name__}")
        return cls(**{**d, "latency": LatencyStats(**d["latency"]),
                      "fidelity": [OutputFidelity.from_dict(f) for f in d["fidelity"]]})
