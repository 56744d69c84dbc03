"""The real Fashion-MNIST dataset, read from Debian's ``dataset-fashion-mnist`` package (IDX
files, offline): shared by the quantization and structural benchmarks."""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    _zero, _dtype, ndim = struct.unpack(">HBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.cache
def load() -> dict[str, np.ndarray]:
    """x_train/x_test as float32 N x 28 x 28 x 1 in [0, 1], y_train/y_test as int64."""
    if not FMNIST_DIR.exists():
        raise SystemExit(f"{FMNIST_DIR} missing: apt-get install dataset-fashion-mnist")

    def images(name: str) -> np.ndarray:
        return (read_idx(FMNIST_DIR / name)[..., None] / np.float32(255)).astype(np.float32)

    return {"x_train": images("train-images-idx3-ubyte.gz"),
            "y_train": read_idx(FMNIST_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64),
            "x_test": images("t10k-images-idx3-ubyte.gz"),
            "y_test": read_idx(FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)}
