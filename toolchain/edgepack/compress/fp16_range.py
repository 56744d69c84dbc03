"""What half precision can hold, shared by the fp16 overflow guards of every format and by the
passes that expand fp16-stored weights before quantizing."""

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


def expanded_note(count: int) -> str:
    """The report's note for a quantizer pass that expanded ``count`` fp16-stored weights."""
    return (f"{count} fp16-stored weight tensor(s) expanded to float32 before quantizing "
            f"(the values are unchanged)")
