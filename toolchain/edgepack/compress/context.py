"""The ConvertContext: what a conversion hop is given besides its input file.

Here in compress/ because the quantizers read it, and converters/ sits above compress/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.keys import build_key, dataset_digest, file_digest
from ..config.profiles import Precision, Quantization
from ..data.dataset import Dataset
from ..errors import DataError
from ..signature import Signature


@dataclass
class ConvertContext:
    """What a hop needs besides its input file.

    Only the last hop of a path produces the deliverable's precision; earlier hops are fp32.
    """

    workdir: Path
    stem: str  # file name stem for outputs, e.g. the model's name
    precision: Precision = "fp32"
    quantization: Quantization | None = None
    calibration: Dataset | None = None
    #: fixed input shapes by input name (static-shape targets, --input-shape); None: as is
    input_shapes: dict[str, tuple[int, ...]] | None = None
    #: the source's signature, for edges that must state shapes the file does not carry
    source_signature: Signature | None = None
    #: layers (node names) a quantizer must leave in float: the accuracy fallback's choice
    keep_float: tuple[str, ...] = ()
    #: layers (as ``keep_float`` names them) quantized with 16-bit activations and int8 weights
    #: (TFLite's 16x8 kernels), the rest int8: a mixed-precision attempt of the fallback
    int16_layers: tuple[str, ...] = ()
    #: the target CPU's instruction-set features (``isa`` in targets/*.yaml): what its int8
    #: kernels can do, e.g. whether NNCF must keep sums clear of int16 saturation; () unknown
    isa: tuple[str, ...] = ()
    #: representative inputs (the hop-check samples) for passes that inspect activations
    samples: Dataset | None = None
    #: a folder that lives as long as the build: what a quantizer may reuse across the
    #: accuracy fallback's attempts (ONNX Runtime's calibrated ranges); None: nothing kept
    scratch: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the hop wants the report to say

    def minmax_sample(self, tool: str, applies: tuple[str, ...] = ("minmax",)) -> Dataset:
        """The profile's seeded sample of the calibration data, for a quantizer (``tool``) that
        edgepack calibrates with min/max (or another of the methods it ``applies``), with the
        report's notes on it; DataError when the build has no calibration data."""
        quant = self.quantization
        if self.calibration is None or quant is None:
            raise DataError("full-integer int8 needs calibration data")
        settings = quant.calibration
        samples = self.calibration.take(settings.samples, settings.seed)
        method = settings.method if settings.method in applies else "min/max"
        self.notes.append(f"calibrated on {len(samples)} samples of {self.calibration.source} "
                          f"(seed {settings.seed}, {method.replace('minmax', 'min/max')}, "
                          f"{tool})")
        if settings.method not in applies:
            self.notes.append(f"edgepack calibrates {tool} with {' or '.join(applies)}; profile "
                              f"method '{settings.method}' does not apply to it")
        return samples

    def scratch_file(self, kind: str, model: Path, samples: Dataset | None,
                     suffix: str, **settings: Any) -> Path | None:
        """Where this build keeps what a quantizer computed from ``model`` on ``samples`` (its
        calibration) for the accuracy fallback's next attempts, keyed by their bytes and the
        ``settings``; None without a scratch folder. The file may not exist yet."""
        if self.scratch is None:
            return None
        key = build_key({"model": file_digest(model), **settings,
                         "samples": dataset_digest(samples) if samples is not None else None})
        folder = self.scratch / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key[:32]}{suffix}"
