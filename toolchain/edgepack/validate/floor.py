"""The model's own input-rounding floor: how closely the fp32 model follows itself when its
input is rounded to the steps of an int8 input.

A full-integer int8 model quantizes its input first, over the range its calibration data
spans. Whatever the layers after it do, its outputs follow the source no closer than the fp32
model fed that rounded input does: the floor says how much of an int8 file's loss is the
input's, and how much is the network's to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .fidelity import OutputFidelity, compare_all

#: the steps of an 8-bit input
LEVELS = 256


@dataclass
class InputStep:
    """The int8 grid of one floating-point input: ``(q - zero_point) * step``, q in 0..255."""

    name: str
    step: float
    zero_point: int

    def round(self, x: np.ndarray) -> np.ndarray:
        q = np.clip(np.round(x / self.step) + self.zero_point, 0, LEVELS - 1)
        return ((q - self.zero_point) * self.step).astype(x.dtype)


@dataclass
class InputFloor:
    """The rounding applied to each float input, and the fp32 outputs' fidelity with it."""

    steps: list[InputStep] = field(default_factory=list)
    fidelity: list[OutputFidelity] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the report: each output's cosine (its channel groups' too) and top-1
        agreement at the floor."""
        outputs = "; ".join(
            f"`{f.name}` cosine {f.cosine:.6f}"
            + "".join(f", {g.name} cosine {g.cosine:.6f}" for g in f.groups)
            + ("" if f.top1_agreement is None else f", top-1 agreement {f.top1_agreement:.4f}")
            for f in self.fidelity)
        steps = ", ".join(f"`{s.name}` step {s.step:.4g}" for s in self.steps)
        return f"the fp32 model fed its input rounded to int8 steps ({steps}): {outputs}"


def input_steps(calibration: Mapping[str, np.ndarray]) -> list[InputStep]:
    """The int8 grid of each floating-point input over the range of the calibration samples,
    widened to hold 0 as int8 quantizers do (0 stays exact); integer inputs (token ids) and
    constant ones have none."""
    steps = []
    for name, x in calibration.items():
        if not np.issubdtype(x.dtype, np.floating):
            continue
        low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        if high > low:
            step = (high - low) / (LEVELS - 1)
            steps.append(InputStep(name, step, int(round(-low / step))))
    return steps


def input_floor(run: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
                inputs: Mapping[str, np.ndarray], calibration: Mapping[str, np.ndarray],
                refs: list[np.ndarray], names: list[str],
                roles: Sequence[str] | None = None) -> InputFloor | None:
    """Run the fp32 model (``run``) on ``inputs`` rounded to the int8 grid ``calibration``
    spans and compare with its outputs on the unrounded ones (``refs``); None when no input
    is a floating-point tensor."""
    steps = input_steps(calibration)
    if not steps:
        return None
    by_name = {s.name: s for s in steps}
    rounded = {k: by_name[k].round(v) if k in by_name else v for k, v in inputs.items()}
    return InputFloor(steps, compare_all(names, refs, run(rounded), roles))
