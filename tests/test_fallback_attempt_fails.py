"""An accuracy-fallback attempt its quantizer cannot make fails that attempt, not the format.

The model (tests/model_files.py ``onnx_two_convs``) is small enough that the profile's size
allowance pays for both its layers in float: the attempt that keeps them leaves ONNX Runtime's
quantizer nothing to quantize, and it refuses. Before, that error failed the whole format, and
the edge was recorded as failed, so every later attempt on the same converter failed too.
"""

from __future__ import annotations

from pathlib import Path

import edgepack
import numpy as np

from tests.model_files import onnx_two_convs
from tests.test_compress import TARGET

PROFILE = """
name: int8-exact
title: int8 held to a cosine plain int8 misses, with room for every layer in float
precision: int8
formats: [onnx]
quantization: {calibration: {method: minmax, samples: 32, seed: 0}}
budget: {min_cosine: 0.99999}
fallback_max_size_growth: 4
"""


def test_an_attempt_the_quantizer_cannot_make_ends_its_search_only(tmp_path: Path) -> None:
    """The report says which attempt could not be made and why; the ranked search, which adds
    to the first layer (the best attempt so far), still reaches the quantizer on the same
    converter (and hears the same refusal for the same two layers), and the closest int8 file
    ships."""
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    (tmp_path / "t" / "onnx-board.yaml").write_text(TARGET.format(name="onnx-board",
                                                                  profile="int8-exact"))
    (tmp_path / "p" / "int8-exact.yaml").write_text(PROFILE)
    src = onnx_two_convs(tmp_path / "two_convs.onnx")
    rng = np.random.default_rng(2)
    for name in ("calib", "eval"):
        np.savez(tmp_path / f"{name}.npz",
                 x=rng.standard_normal((32, 3, 8, 8)).astype(np.float32))
    report = edgepack.build(src, "onnx-board", calibration=tmp_path / "calib.npz",
                            evaluation=tmp_path / "eval.npz", output=tmp_path / "out", runs=2,
                            warmup=0, targets_dirs=(tmp_path / "t",),
                            profiles_dirs=(tmp_path / "p",))
    art = report.deliverables[0]
    assert any(n.startswith("accuracy fallback: the attempt with 2 layer(s) kept in float "
                            "could not be made: ONNX Runtime's quantizer quantized no tensor")
               for n in art.notes), art.notes
    assert any(n.startswith("accuracy fallback: the attempt with 1 layer(s) kept in float "
                            "after the first 1 in float could not be made: ONNX Runtime's "
                            "quantizer quantized no tensor") for n in art.notes), art.notes
    assert [a.kept_float for a in art.fallback if a.chosen] == [["stem"]], art.fallback
    assert (art.format, art.precision) == ("onnx", "int8")
