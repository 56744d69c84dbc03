"""Seeded random inputs for a model when no data is given: the one generator of the package.

A build without evaluation data measures fidelity on them, ``convert`` checks its hops on them,
and ``bench``/``compare`` time and compare on them. Floats are standard normal; integer inputs
(ids, indices) are zeros, since 0 is always a valid one and a random integer may not be. Only
the batch may be dynamic: a dynamic height or width would have to be guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..limits import check_allocation
from ..signature import Signature, TensorSpec
from .dataset import fixed_batch


def random_inputs(signature: Signature, path: Path, batch: int, seed: int,
                  data_flag: str = "--inputs") -> dict[str, np.ndarray]:
    """``batch`` samples of every input, from ``seed``; ``data_flag`` is the option an error
    suggests (a model whose inputs random values cannot fill needs real data)."""
    rng = np.random.default_rng(seed)
    return {s.name: _random(s, path, batch, rng, data_flag) for s in signature.inputs}


def _random(spec: TensorSpec, path: Path, batch: int, rng: np.random.Generator,
            data_flag: str) -> np.ndarray:
    fixed = fixed_batch(spec, 0) if spec.shape else None
    if fixed is not None:
        raise UsageError(fixed[0], path=path, hint=fixed[1])
    rest = spec.shape[1:]
    if any(isinstance(d, str) for d in rest):
        raise UsageError(f"input '{spec.name}' has dynamic dimensions ({spec.shape_str()}) "
                         "that random inputs cannot fill", path=path,
                         hint=f"pass {data_flag} DATA.npz with real samples of that size")
    shape = (batch, *rest) if spec.shape else ()
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        raise UsageError(f"input '{spec.name}' has a type random inputs cannot make "
                         f"({spec.dtype})", path=path, hint=f"pass {data_flag} DATA.npz") from None
    check_allocation(shape, dtype, f"input '{spec.name}'", path)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)
