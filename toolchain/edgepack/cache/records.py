"""One build's use of the step cache: keyed records fetched and stored, reuse counted.

The records are what the build measured: the source's facts and its outputs on the eval data,
each artifact's validation (a Measurement), the accuracy fallback's judgements and rankings,
the speed step's verdicts.
A validation's key covers the sha256 of every file of the finished artifact (metadata
embedded), the eval data and the source's outputs on it, the options latency was measured
with and the host (CPU model, cores, machine): the same bytes, timed the same way on the same
kind of machine, as the whole-build cache reuses a matrix cell's report. Its latency is flagged
as taken from the cache, so nobody mistakes it for a fresh measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..runtimes.base import Session
from ..signature import Signature
from ..validate.accuracy import Accuracy
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats
from .keys import arrays_digest, dataset_digest
from .store import StepCache, StepHit


@dataclass
class Measurement:
    """What validating one artifact measured (the part a cached validation restores)."""

    fidelity: list[OutputFidelity]
    accuracy: Accuracy | None
    latency: LatencyStats
    runtime_version: str
    #: the signature the artifact's runtime reports
    signature: Signature
    #: the session it was measured with; None when the numbers came from the cache
    session: Session | None = None

    @property
    def cached(self) -> bool:
        return self.session is None

    def to_record(self) -> dict[str, Any]:
        return {"fidelity": [f.to_dict() for f in self.fidelity],
                "accuracy": self.accuracy.to_dict() if self.accuracy else None,
                "latency": self.latency.to_dict(), "runtime_version": self.runtime_version,
                "signature": self.signature.to_dict()}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Measurement:
        return cls([OutputFidelity.from_dict(f) for f in r["fidelity"]],
                   Accuracy(**r["accuracy"]) if r["accuracy"] else None,
                   replace(LatencyStats(**r["latency"]), cached=True), r["runtime_version"],
                   Signature.from_dict(r["signature"]))


class BuildSteps:
    """The step cache as one build sees it; counts what it reused and what it built."""

    def __init__(self, cache: StepCache):
        self.cache = cache
        self.reused = 0
        self.built = 0
        # digests of this build's data, computed once: id -> (the object, kept alive, digest)
        self._digests: dict[int, tuple[object, str]] = {}

    def digest(self, value: Dataset | Sequence[np.ndarray]) -> str:
        """The digest of a Dataset or a list of arrays, memoized for the build."""
        memo = self._digests.get(id(value))
        if memo is None:
            text = dataset_digest(value) if isinstance(value, Dataset) else arrays_digest(value)
            memo = self._digests[id(value)] = (value, text)
        return memo[1]

    def summary(self) -> dict[str, int]:
        return {"reused": self.reused, "built": self.built}

    def fetch(self, key: str, dest: Path | None = None,
              rename: Callable[[str], str] = str) -> StepHit | None:
        """Entry ``key`` (see StepCache.fetch), counted as reused on a hit."""
        hit = self.cache.fetch(key, dest, rename)
        if hit is not None:
            self.reused += 1
        return hit

    def store(self, key: str, files: Mapping[str, Path], record: Any) -> None:
        """A step's files and record stored under ``key``, counted as built."""
        self.built += 1
        self.cache.store(key, files, record)

    # ---------------------------------------------------------------------------- validation
    def fetch_measurement(self, key: str) -> Measurement | None:
        hit = self.fetch(key)
        return None if hit is None else Measurement.from_record(hit.record)

    def store_measurement(self, key: str, measurement: Measurement) -> None:
        self.store(key, {}, measurement.to_record())

    # ---------------------------------------------------------------------------- the source
    def fetch_facts(self, key: str) -> dict[str, Any] | None:
        """What loading the source told (format, signature, size, runtime)."""
        hit = self.fetch(key)
        return None if hit is None else dict(hit.record)

    def store_facts(self, key: str, facts: dict[str, Any]) -> None:
        self.store(key, {}, facts)

    def fetch_outputs(self, key: str, scratch: Path) -> list[np.ndarray] | None:
        """The source's outputs on the eval inputs (the yardstick of every artifact)."""
        hit = self.fetch(key, scratch)
        if hit is None:
            return None
        with np.load(scratch / "outputs.npz") as npz:
            return [npz[f"o{i}"] for i in range(hit.record["count"])]

    def store_outputs(self, key: str, outputs: list[np.ndarray], scratch: Path) -> None:
        path = scratch / "outputs.npz"
        np.savez(path, **{f"o{i}": o for i, o in enumerate(outputs)})
        self.store(key, {"outputs.npz": path}, {"count": len(outputs)})

    # ------------------------------------------------------------- the accuracy fallback's
    def fetch_fidelity(self, key: str) -> tuple[list[OutputFidelity], Accuracy | None] | None:
        """An attempt's fidelity and accuracy on the eval set (no latency: the fallback only
        judges), when this very file was judged so before."""
        hit = self.fetch(key)
        if hit is None:
            return None
        r = hit.record
        return ([OutputFidelity.from_dict(f) for f in r["fidelity"]],
                Accuracy(**r["accuracy"]) if r["accuracy"] else None)

    def store_fidelity(self, key: str, fidelity: list[OutputFidelity],
                       accuracy: Accuracy | None) -> None:
        self.store(key, {}, {"fidelity": [f.to_dict() for f in fidelity],
                             "accuracy": accuracy.to_dict() if accuracy else None})

    def fetch_speed(self, key: str) -> dict[str, Any] | None:
        """The speed step's verdict on one plain int8 file (pipeline/fallback_speed.py)."""
        hit = self.fetch(key)
        return None if hit is None else dict(hit.record)

    def store_speed(self, key: str, verdict: dict[str, Any]) -> None:
        self.store(key, {}, verdict)

    def fetch_ranking(self, key: str) -> list[str] | None:
        hit = self.fetch(key)
        return None if hit is None else list(hit.record["layers"])

    def store_ranking(self, key: str, layers: list[str]) -> None:
        self.store(key, {}, {"layers": layers})
