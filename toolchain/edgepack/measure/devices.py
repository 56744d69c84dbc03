"""``edgepack bench ARTIFACT... --device NAME...``: every artifact on every device.

Inputs are prepared exactly as the host ``bench`` prepares them (``benchmark.inputs_for``: the
first samples of a data file, or seeded random values), but ``samples`` of them, because the
device run is also a fidelity check: all samples go through the model, the first one is timed.
Artifacts run one after the other; for each, the devices run concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..devices.remote import DeviceResult, bench_on_devices
from ..errors import EdgepackError

#: samples sent for the fidelity check: enough to see a broken kernel, few enough for emulation
DEFAULT_SAMPLES = 8


@dataclass
class ArtifactOnDevices:
    artifact: Path
    results: list[DeviceResult | EdgepackError]


def bench_artifacts(artifacts: Sequence[str | Path], devices: Sequence[str], *,
                    samples: int = DEFAULT_SAMPLES, inputs: str | Path | None = None,
                    seed: int = 0, **options: object) -> list[ArtifactOnDevices]:
    """Run each artifact on each device (``options`` go to ``bench_on_device``)."""
    from ..formats import detect
    from .host import inputs_for

    plans = []
    for raw in artifacts:  # every artifact and its inputs checked before any board is touched
        path = Path(raw)
        signature = detect(path).read_signature(path)
        plans.append((path, inputs_for(signature, path, batch=samples, inputs=inputs,
                                       seed=seed)))
    return [ArtifactOnDevices(path, bench_on_devices(devices, path, feed, **options))
            for path, feed in plans]
