"""The input-rounding floor: how closely the fp32 model follows itself when its float inputs are
rounded where an int8 file rounds them.

An int8 file rounds each float input to an int8 grid before its first quantized layer: over the
range its calibration data spans, or over a narrower one when an op before that layer clips
the input (a Clip, a Relu6). Whatever the layers after it do, its outputs follow the source no
closer than the fp32 model fed that rounded input does: the floor says how much of the file's
loss is the input's, and how much is the network's to fix.

Each file's floor is measured on the grid the file itself applies, read from it
(formats/input_grid.py and a reader per format); the fp32 model is fed the inputs clipped as
the file clips them and rounded on that grid, once per distinct grid (``InputFloors``). An
input the file reads in float before any grid (a first layer the accuracy fallback kept in
float) is fed unrounded, and a file that rounds none of its inputs, or whose grid cannot be
read, has no floor: the profile's bounds hold for it. A floor is thus never one the file does
not have. ``calibration_grids`` is the grid a file quantizing its raw input over the
calibration range would have (the report's build-wide floor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import first_line
from ..formats import onnx_grid, openvino_grid, tflite_grid
from ..formats.input_grid import GridReading, InputGrid
from .fidelity import OutputFidelity, compare_all

#: the steps of an 8-bit input
LEVELS = 256

#: the formats whose files' input grids edgepack reads, and their readers
READERS: dict[str, Callable[[Path], GridReading]] = {
    "onnx": onnx_grid.read, "tflite": tflite_grid.read, "openvino": openvino_grid.read}

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass
class InputFloor:
    """The grid applied to each float input, and the fp32 outputs' fidelity with it."""

    grids: list[InputGrid] = field(default_factory=list)
    fidelity: list[OutputFidelity] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the report: the grids, each output's cosine (its channel groups'
        too) and top-1 agreement at the floor."""
        outputs = "; ".join(
            f"`{f.name}` cosine {f.cosine:.6f}"
            + "".join(f", {g.name} cosine {g.cosine:.6f}" for g in f.groups)
            + ("" if f.top1_agreement is None else f", top-1 agreement {f.top1_agreement:.4f}")
            for f in self.fidelity)
        grids = ", ".join(g.describe() for g in self.grids)
        return f"the fp32 model fed its input rounded to int8 steps ({grids}): {outputs}"


@dataclass
class FileFloor:
    """One file's floor (None: it has none, and the profile's bounds hold) and a note for the
    report saying which floor it is, or why there is none."""

    floor: InputFloor | None
    note: str


def calibration_grids(calibration: Mapping[str, np.ndarray]) -> list[InputGrid]:
    """The int8 grid of each floating-point input over the range of the calibration samples,
    widened to hold 0 as int8 quantizers do (0 stays exact); integer inputs (token ids) and
    constant ones have none."""
    grids = []
    for name, x in calibration.items():
        if not np.issubdtype(x.dtype, np.floating):
            continue
        low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        if high > low:
            step = (high - low) / (LEVELS - 1)
            grids.append(InputGrid(name, step, round(-low / step), 0, LEVELS - 1,
                                   read_from="the calibration data's range"))
    return grids


class InputFloors:
    """The floors of one build's int8 files: ``run`` (the fp32 model) on the eval ``inputs``
    rounded on each distinct set of grids, once, compared with its outputs ``refs`` on the
    unrounded ones."""

    def __init__(self, run: Run, inputs: Mapping[str, np.ndarray], refs: list[np.ndarray],
                 names: list[str], roles: Sequence[str] | None = None):
        self.run, self.inputs, self.refs, self.names, self.roles = run, inputs, refs, names, roles
        self._measured: dict[tuple, InputFloor] = {}

    def at(self, grids: list[InputGrid]) -> InputFloor:
        """The floor with each input in ``grids`` rounded on its grid (the others as they are)."""
        key = tuple(sorted(g.key() for g in grids))
        if key not in self._measured:
            by_name = {g.name: g for g in grids}
            rounded = {k: by_name[k].round(v) if k in by_name else v
                       for k, v in self.inputs.items()}
            self._measured[key] = InputFloor(
                list(grids), compare_all(self.names, self.refs, self.run(rounded), self.roles))
        return self._measured[key]

    def of_file(self, fmt: str, path: Path) -> FileFloor:
        """The floor of the file at ``path`` (format ``fmt``), on the grids read from it."""
        reader = READERS.get(fmt)
        if reader is None:
            return FileFloor(None, f"no input-rounding floor: edgepack does not read the input "
                                   f"grid of {fmt} files; the profile's bounds hold")
        try:
            reading = reader(path)
        except Exception as exc:  # a reader meeting a graph it does not know
            return FileFloor(None, f"no input-rounding floor: the file's input grid could not "
                                   f"be read ({type(exc).__name__}: {first_line(exc)}); the "
                                   f"profile's bounds hold")
        grids = self._by_source_name(reading)
        if isinstance(grids, str):
            return FileFloor(None, f"no input-rounding floor: {grids}; the profile's bounds hold")
        unrounded = "".join(f"; {why} (fed unrounded)" for why in reading.missing.values())
        if not grids:
            return FileFloor(None, "no input-rounding floor: the file rounds no input"
                                   f"{unrounded}; the profile's bounds hold")
        floor = self.at(grids)
        inexact = [g.name for g in grids if not g.exact]
        strict = "" if not inexact else (
            f"; the grid of {', '.join(f'`{n}`' for n in inexact)} reaches past its clip's "
            "bounds, which the fp32 model's own clip takes back (at most half a step): a "
            "floor at least as strict as the file's")
        return FileFloor(floor, f"input-rounding floor on this file's own grid: "
                                f"{floor.summary()}{unrounded}{strict}")

    def _by_source_name(self, reading: GridReading) -> list[InputGrid] | str:
        """The file's grids named as the source's inputs are: by name where the file keeps
        the names, else by position among the float inputs."""
        floats = [k for k, v in self.inputs.items() if np.issubdtype(v.dtype, np.floating)]
        if set(reading.inputs) <= set(self.inputs):
            names = {n: n for n in reading.inputs}
        elif len(reading.inputs) == len(floats):
            names = dict(zip(reading.inputs, floats, strict=True))
        else:
            return (f"the file's float inputs ({', '.join(reading.inputs)}) do not match the "
                    f"source's ({', '.join(floats)})")
        return [replace(g, name=names[n]) for n, g in reading.grids.items()]

