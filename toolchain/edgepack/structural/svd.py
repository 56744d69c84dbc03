"""Low-rank factorization by truncated SVD, in numpy: a weight W (m x n) becomes A (m x r) @
B (r x n). The rank keeps a share of the singular values' energy or of the parameters; the pair
is worth it only when r * (m + n) < m * n, else the layer stays as it is. Each framework's pass
reads its weights, asks here, and rewrites its own graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..config.structural import LowRankSettings


@dataclass
class Factorization:
    """One layer's decision, for the report."""

    layer: str
    shape: tuple[int, int]
    rank: int | None  # None: left as it is
    kept_energy: float
    params_before: int
    params_after: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_rank(singular: np.ndarray, m: int, n: int,
                settings: LowRankSettings) -> tuple[int, float]:
    """(rank, energy it keeps): the smallest rank keeping ``energy`` of sum(s^2), or the rank
    whose factor pair has ``param_ratio`` of the original parameters (at least 1)."""
    energy = np.cumsum(singular.astype(np.float64) ** 2)
    energy /= energy[-1] if energy[-1] > 0 else 1.0
    if settings.energy is not None:
        rank = int(np.searchsorted(energy, settings.energy - 1e-9)) + 1
    else:
        rank = max(1, int(settings.param_ratio * m * n / (m + n)))
    rank = min(rank, len(singular))
    return rank, float(energy[rank - 1])


def factor(weight: np.ndarray, settings: LowRankSettings,
           name: str) -> tuple[Factorization, np.ndarray | None, np.ndarray | None]:
    """The decision for a 2-D ``weight`` and, when it pays, the two factors A and B."""
    m, n = weight.shape
    u, s, vt = np.linalg.svd(weight.astype(np.float64), full_matrices=False)
    rank, kept = choose_rank(s, m, n, settings)
    if rank * (m + n) >= m * n:
        return Factorization(name, (m, n), None, kept, m * n, m * n,
                             f"rank {rank} saves nothing (r*(m+n) >= m*n)"), None, None
    a = (u[:, :rank] * s[:rank]).astype(weight.dtype)
    b = vt[:rank].astype(weight.dtype)
    return Factorization(name, (m, n), rank, kept, m * n, rank * (m + n)), a, b
