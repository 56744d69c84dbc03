"""Numbers as the reports print them: sizes, percentages, measured values.

Every rendering (markdown, HTML, terminal, a bundle's model card) writes a number the same way,
so the same figure reads the same everywhere; "-" stands for not measured.
"""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """``311.6 KB``: bytes in the largest unit that keeps the number below 1024."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_pct(x: float | None) -> str:
    """A share as a percentage with two decimals."""
    return "-" if x is None else f"{100 * x:.2f}%"


def fmt_num(x: float | None, spec: str = ".3g") -> str:
    """A measured value in the format ``spec``."""
    return "-" if x is None else format(x, spec)
