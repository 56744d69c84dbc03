"""What half precision can hold, shared by the fp16 overflow guards of every format."""

from __future__ import annotations

import numpy as np

#: the largest finite float16 value; anything beyond it becomes inf in half precision
FP16_MAX = 65504.0


def beyond_fp16(values: np.ndarray) -> bool:
    """Whether float ``values`` hold anything fp16 cannot: beyond +-65504, inf or NaN."""
    values = np.asarray(values)
    if values.dtype.kind != "f":
        return False
    return bool(not np.isfinite(values).all()
                or np.abs(values).max(initial=0) > FP16_MAX)
