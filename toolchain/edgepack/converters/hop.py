"""One conversion hop as the report records it: the tool, its time and its check against the
source. The converter makes these; the report holds them (it sits above the converters)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hop:
    src: str
    dst: str
    tool: str
    tool_version: str
    seconds: float
    #: the new file vs the source on the same samples, right after the hop (worst output)
    check_samples: int = 0
    check_max_abs_error: float | None = None
    check_cosine: float | None = None
    check_top1_agreement: float | None = None
    #: taken from the step cache (an earlier build made and checked the same file from the same
    #: input and settings); ``seconds`` is then what fetching it took
    cached: bool = False
