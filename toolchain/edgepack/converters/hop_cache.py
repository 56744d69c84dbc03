"""Conversion hops in the step cache: a hop's key, its output fetched into place or stored.

A hop's key covers the content digest of its input, the edge, everything else the hop reads
(its ConvertContext: precision, fixed shapes, the source signature, the samples it is checked on,
and for compressing hops the quantization settings, the calibration data and the layers kept in
float), the source's outputs it is checked against, and the tool versions (cache/keys.py). A hit
puts the files where the hop would have written them and gives back the hop's record (its check
numbers and notes), so nothing downstream can tell it from a fresh hop except the record's
``cached`` flag.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.keys import arrays_digest, build_key, model_digest, model_files
from ..cache.records import BuildSteps
from ..compress.context import ConvertContext
from ..data.dataset import Dataset
from ..signature import Signature
from .hop import Hop

#: a cached hop's files are stored under this stem and renamed to the build's on a hit
STEM = "model"
#: ConvertContext fields that say where a hop writes and what it reports, not what it makes
_PLACEMENT = frozenset({"workdir", "stem", "notes", "scratch"})
#: ConvertContext fields only compressing (non-fp32) hops read
_COMPRESSION = frozenset({"quantization", "calibration", "keep_float", "int16_layers", "isa"})


@dataclass
class CachedHop:
    """A hop taken from the cache: its output (now in place), that output's digest (the next
    hop's input), the hop record and the notes the hop made."""

    path: Path
    digest: str
    hop: Hop
    notes: list[str]


def hop_key(steps: BuildSteps, edge: str, input_digest: str, ctx: ConvertContext,
            refs: list[np.ndarray]) -> str:
    """The key of one hop: every field of its context (a field added later is covered
    without touching this), except where and under which name it writes, and except the
    compression settings for an fp32 hop, which does not read them."""
    settings = {f.name: _keyable(steps, getattr(ctx, f.name)) for f in fields(ctx)
                if f.name not in _PLACEMENT
                and not (ctx.precision == "fp32" and f.name in _COMPRESSION)}
    return build_key({"step": "hop", "edge": edge, "input": input_digest,
                      "settings": settings, "refs": steps.digest(refs)})


def _keyable(steps: BuildSteps, value: Any) -> Any:
    """``value`` as JSON that changes whenever it does (data by digest)."""
    if isinstance(value, Dataset):
        # the source path is quoted in the hops' notes, so it is part of the result
        return {"source": value.source, "data": steps.digest(value)}
    if isinstance(value, np.ndarray):
        return arrays_digest([value])
    if isinstance(value, Signature):
        return value.to_dict()
    if hasattr(value, "model_dump"):  # profile settings (pydantic)
        return value.model_dump()
    if isinstance(value, dict):
        return {str(k): _keyable(steps, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_keyable(steps, v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"the step cache cannot key a {type(value).__name__}; "
                    "teach converters.hop_cache._keyable how")


def fetch_hop(steps: BuildSteps, key: str, workdir: Path, stem: str) -> CachedHop | None:
    """The hop's output copied into ``workdir`` under ``stem``; None on a miss."""
    t0 = time.perf_counter()
    hit = steps.fetch(key, workdir, rename=lambda name: stem + name[len(STEM):])
    if hit is None:
        return None
    r = hit.record
    hop = replace(Hop(**r["hop"]), cached=True, seconds=round(time.perf_counter() - t0, 3))
    return CachedHop(workdir / (stem + r["output"][len(STEM):]), r["digest"], hop, r["notes"])


def store_hop(steps: BuildSteps, key: str, out: Path, stem: str, hop: Hop,
              notes: list[str]) -> str:
    """Store a fresh hop's output and record; returns the output's digest. An output not
    named for ``stem`` (no edge writes one) is not stored: a hit could not place it."""
    digest = model_digest(out)
    if not out.name.startswith(stem):
        steps.built += 1
        return digest
    base = out.parent
    files = {STEM + str(f.relative_to(base))[len(stem):]: f for f in model_files(out)}
    steps.store(key, files, {"output": STEM + out.name[len(stem):], "digest": digest,
                             "hop": asdict(hop), "notes": notes})
    return digest
