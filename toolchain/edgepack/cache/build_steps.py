"""One build's use of the step cache: the keys, hits and stores of conversion hops and validations.

A hop's key covers the content digest of its input, the edge, everything else the hop reads
(its ConvertContext: precision, fixed shapes, the source signature, the samples it is checked on,
and for compressing hops the quantization settings, the calibration data and the layers kept in
float), the source's outputs it is checked against, and the tool versions (cache.py). A hit
puts the files where the hop would have written them and gives back the hop's record (its check
numbers and notes), so nothing downstream can tell it from a fresh hop except the record's
``cached`` flag.

A validation's key covers the sha256 of every file of the finished artifact (metadata
embedded), the eval data and the source's outputs on it, the options latency was measured
with and the host (CPU model, cores, machine): the same bytes, timed the same way on the same
kind of machine, as the whole-build cache reuses a matrix cell's report. Its latency is flagged
as taken from the cache, so nobody mistakes it for a fresh measurement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.dataset import Dataset
from ..report.model import Hop
from ..signature import Signature
from ..validate.accuracy import Accuracy
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats
from .keys import arrays_digest, build_key, dataset_digest, model_digest, model_files
from .store import StepCache

if TYPE_CHECKING:
    from ..converters.base import ConvertContext
    from ..runtimes.base import Session

#: a cached hop's files are stored under this stem and renamed to the build's on a hit
STEM = "model"
#: ConvertContext fields that say where a hop writes and what it reports, not what it makes
_PLACEMENT = frozenset({"workdir", "stem", "notes", "scratch"})
#: ConvertContext fields only compressing (non-fp32) hops read
_COMPRESSION = frozenset({"quantization", "calibration", "keep_float", "isa"})


@dataclass
class CachedHop:
    """A hop taken from the cache: its output (now in place), that output's digest (the next
    hop's input), the hop record and the notes the hop made."""

    path: Path
    digest: str
    hop: Hop
    notes: list[str]


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
        return cls([OutputFidelity(**f) for f in r["fidelity"]],
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

    # ---------------------------------------------------------------------------- hops
    def hop_key(self, edge: str, input_digest: str, ctx: ConvertContext,
                refs: list[np.ndarray]) -> str:
        """The key of one hop: every field of its context (a field added later is covered
        without touching this), except where and under which name it writes, and except the
        compression settings for an fp32 hop, which does not read them."""
        settings = {f.name: self._keyable(getattr(ctx, f.name)) for f in fields(ctx)
                    if f.name not in _PLACEMENT
                    and not (ctx.precision == "fp32" and f.name in _COMPRESSION)}
        return build_key({"step": "hop", "edge": edge, "input": input_digest,
                          "settings": settings, "refs": self.digest(refs)})

    def _keyable(self, value: Any) -> Any:
        """``value`` as JSON that changes whenever it does (data by digest)."""
        if isinstance(value, Dataset):
            # the source path is quoted in the hops' notes, so it is part of the result
            return {"source": value.source, "data": self.digest(value)}
        if isinstance(value, np.ndarray):
            return arrays_digest([value])
        if isinstance(value, Signature):
            return value.to_dict()
        if hasattr(value, "model_dump"):  # profile settings (pydantic)
            return value.model_dump()
        if isinstance(value, dict):
            return {str(k): self._keyable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._keyable(v) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise TypeError(f"the step cache cannot key a {type(value).__name__}; "
                        "teach steps.BuildSteps._keyable how")

    def fetch_hop(self, key: str, workdir: Path, stem: str) -> CachedHop | None:
        """The hop's output copied into ``workdir`` under ``stem``; None on a miss."""
        t0 = time.perf_counter()
        hit = self.cache.fetch(key, workdir, rename=lambda name: stem + name[len(STEM):])
        if hit is None:
            return None
        r = hit.record
        hop = replace(Hop(**r["hop"]), cached=True, seconds=round(time.perf_counter() - t0, 3))
        self.reused += 1
        return CachedHop(workdir / (stem + r["output"][len(STEM):]), r["digest"], hop,
                         r["notes"])

    def store_hop(self, key: str, out: Path, stem: str, hop: Hop, notes: list[str]) -> str:
        """Store a fresh hop's output and record; returns the output's digest. An output not
        named for ``stem`` (no edge writes one) is not stored: a hit could not place it."""
        self.built += 1
        digest = model_digest(out)
        if not out.name.startswith(stem):
            return digest
        base = out.parent
        files = {STEM + str(f.relative_to(base))[len(stem):]: f for f in model_files(out)}
        self.cache.store(key, files, {"output": STEM + out.name[len(stem):], "digest": digest,
                                      "hop": asdict(hop), "notes": notes})
        return digest

    # ---------------------------------------------------------------------------- validation
    def fetch_measurement(self, key: str) -> Measurement | None:
        hit = self.cache.fetch(key)
        if hit is None:
            return None
        self.reused += 1
        return Measurement.from_record(hit.record)

    def store_measurement(self, key: str, measurement: Measurement) -> None:
        self.built += 1
        self.cache.store(key, {}, measurement.to_record())

    # ---------------------------------------------------------------------------- the source
    def fetch_facts(self, key: str) -> dict[str, Any] | None:
        """What loading the source told (format, signature, size, runtime)."""
        hit = self.cache.fetch(key)
        if hit is None:
            return None
        self.reused += 1
        return dict(hit.record)

    def store_facts(self, key: str, facts: dict[str, Any]) -> None:
        self.built += 1
        self.cache.store(key, {}, facts)

    def fetch_outputs(self, key: str, scratch: Path) -> list[np.ndarray] | None:
        """The source's outputs on the eval inputs (the yardstick of every artifact)."""
        hit = self.cache.fetch(key, scratch)
        if hit is None:
            return None
        self.reused += 1
        with np.load(scratch / "outputs.npz") as npz:
            return [npz[f"o{i}"] for i in range(hit.record["count"])]

    def store_outputs(self, key: str, outputs: list[np.ndarray], scratch: Path) -> None:
        self.built += 1
        path = scratch / "outputs.npz"
        np.savez(path, **{f"o{i}": o for i, o in enumerate(outputs)})
        self.cache.store(key, {"outputs.npz": path}, {"count": len(outputs)})

    # ------------------------------------------------------------- the accuracy fallback's
    def fetch_fidelity(self, key: str) -> tuple[list[OutputFidelity], Accuracy | None] | None:
        """An attempt's fidelity and accuracy on the eval set (no latency: the fallback only
        judges), when this very file was judged so before."""
        hit = self.cache.fetch(key)
        if hit is None:
            return None
        self.reused += 1
        r = hit.record
        return ([OutputFidelity(**f) for f in r["fidelity"]],
                Accuracy(**r["accuracy"]) if r["accuracy"] else None)

    def store_fidelity(self, key: str, fidelity: list[OutputFidelity],
                       accuracy: Accuracy | None) -> None:
        self.built += 1
        self.cache.store(key, {}, {"fidelity": [f.to_dict() for f in fidelity],
                                   "accuracy": accuracy.to_dict() if accuracy else None})

    def fetch_ranking(self, key: str) -> list[str] | None:
        hit = self.cache.fetch(key)
        if hit is None:
            return None
        self.reused += 1
        return list(hit.record["layers"])

    def store_ranking(self, key: str, layers: list[str]) -> None:
        self.built += 1
        self.cache.store(key, {}, {"layers": layers})
